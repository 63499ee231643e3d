/* A probe for tests/security.rs, built with `cc -static` and bind-mounted into
 * containers: `syscall NAME` makes one system call with arguments chosen to be
 * harmless when it is allowed (a bad descriptor, a missing path, a bad magic
 * number, a child that exits at once), and prints `ok` or the errno's name.
 * Seccomp refuses with EPERM (ENOSYS for clone3) before the kernel looks at
 * the arguments; any other answer means the call reached the kernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long child_exits(long ret) {
	if (ret == 0)
		_exit(0);
	if (ret > 0)
		waitpid((pid_t)ret, NULL, __WALL);
	return ret;
}

static long call(const char *name) {
	if (!strcmp(name, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring */
		return syscall(SYS_keyctl, 0, -3, 0);
	if (!strcmp(name, "add_key"))
		return syscall(SYS_add_key, "user", "bosun-test", "x", 1, -2 /* process keyring */);
	if (!strcmp(name, "unshare_user"))
		return syscall(SYS_unshare, CLONE_NEWUSER);
	if (!strcmp(name, "unshare_mount"))
		return syscall(SYS_unshare, CLONE_NEWNS);
	if (!strcmp(name, "clone_newuts"))
		return child_exits(syscall(SYS_clone, CLONE_NEWUTS | SIGCHLD, 0, 0, 0, 0));
	if (!strcmp(name, "clone_plain"))
		return child_exits(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
	if (!strcmp(name, "clone3")) {
		struct clone_args args;
		memset(&args, 0, sizeof args);
		args.exit_signal = SIGCHLD;
		return child_exits(syscall(SYS_clone3, &args, sizeof args));
	}
	if (!strcmp(name, "setns"))
		return syscall(SYS_setns, -1, 0);
	if (!strcmp(name, "mount"))
		/* no such file system type: refused after the capability check */
		return syscall(SYS_mount, "none", "/", "bosun-no-such-fs", 0, 0);
	if (!strcmp(name, "umount2"))
		return syscall(SYS_umount2, "/nonexistent", 0);
	if (!strcmp(name, "bpf")) {
		union bpf_attr attr;
		memset(&attr, 0, sizeof attr);
		attr.map_type = BPF_MAP_TYPE_ARRAY;
		attr.key_size = 4;
		attr.value_size = 4;
		attr.max_entries = 1;
		long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
		if (fd >= 0)
			close((int)fd);
		return fd;
	}
	if (!strcmp(name, "perf_event_open")) {
		struct perf_event_attr attr;
		memset(&attr, 0, sizeof attr);
		attr.size = sizeof attr;
		attr.type = PERF_TYPE_SOFTWARE;
		attr.config = PERF_COUNT_SW_CPU_CLOCK;
		attr.disabled = 1;
		long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
		if (fd >= 0)
			close((int)fd);
		return fd;
	}
	if (!strcmp(name, "finit_module"))
		return syscall(SYS_finit_module, -1, "", 0);
	if (!strcmp(name, "delete_module"))
		return syscall(SYS_delete_module, "bosun_no_such_module", 0);
	if (!strcmp(name, "kexec_load")) /* a bad flag: refused before anything is loaded */
		return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL);
	if (!strcmp(name, "open_by_handle_at"))
		return syscall(SYS_open_by_handle_at, -1, NULL, 0);
	if (!strcmp(name, "reboot")) /* wrong magic numbers */
		return syscall(SYS_reboot, 0, 0, 0, NULL);
	if (!strcmp(name, "swapon"))
		return syscall(SYS_swapon, "/nonexistent", 0);
	if (!strcmp(name, "swapoff"))
		return syscall(SYS_swapoff, "/nonexistent");
	fprintf(stderr, "unknown call %s\n", name);
	_exit(2);
}

/* Each call in a child of its own, so that one that succeeds (unshare of a
 * user namespace, say) cannot change what the next one may do. */
int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid == 0) {
			errno = 0;
			long r = call(argv[i]);
			printf("%s %s\n", argv[i], r < 0 ? strerrorname_np(errno) : "ok");
			fflush(stdout);
			_exit(0);
		}
		waitpid(pid, NULL, 0);
	}
	return 0;
}
