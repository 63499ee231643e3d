//! The only place in this crate where `unsafe` is allowed. Each function wraps one
//! system call (or a small fixed sequence) in a safe signature.
#![allow(
    unsafe_code,
    reason = "thin wrappers over system calls, each with a SAFETY line"
)]

pub(crate) mod bpf;
pub(crate) mod exe;

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Which side of a fork this process is on.
pub(crate) enum Forked {
    Parent(Pid),
    Child,
}

/// `fork()`. Only ever called from the single-threaded runtime process, where the
/// child may keep using the heap and Rust data it inherited.
pub(crate) fn fork() -> nix::Result<Forked> {
    // SAFETY: the runtime is single-threaded (dispatched before any thread starts), so no
    // lock can be held by another thread at the moment of the fork.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// `clone(CLONE_PARENT | SIGCHLD)`: a fork whose child becomes a child of our parent.
/// The intermediate process uses it so the container init is a direct child of the
/// runtime (which can then wait for it) while being the first process of the new pid
/// namespace that the intermediate process unshared.
pub(crate) fn fork_as_sibling() -> nix::Result<Forked> {
    raw_fork(libc::CLONE_PARENT as libc::c_ulong)
}

/// `clone(flags | SIGCHLD)` without a new stack: a fork whose child starts in the
/// new namespaces `flags` asks for (a new pid namespace makes it PID 1).
pub(crate) fn fork_into(flags: nix::sched::CloneFlags) -> nix::Result<Forked> {
    raw_fork(flags.bits() as libc::c_ulong)
}

/// The raw `clone` system call with fork semantics: no CLONE_VM, no new stack.
fn raw_fork(flags: libc::c_ulong) -> nix::Result<Forked> {
    // SAFETY: without CLONE_VM and a new stack, clone behaves like fork(); the
    // caller is single-threaded, as for `fork` above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// `_exit(code)`: leave a forked child without running the parent's exit handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Give every ignored signal back its default action and unblock all signals, so
/// the container process starts clean. Handlers are reset by execve anyway; ignored
/// signals are not (Rust ignores SIGPIPE at start-up, a parent may ignore more).
/// The raw system call is used because glibc refuses to touch signals 32 and 33,
/// which a posix_spawn-ing parent can leave ignored.
pub(crate) fn reset_signals() {
    // The kernel's struct sigaction on x86_64: handler, flags, restorer, mask.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    for sig in 1..=64i64 {
        if sig == libc::SIGKILL as i64 || sig == libc::SIGSTOP as i64 {
            continue;
        }
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: reads the current action into a struct of the kernel's layout that
        // lives for the call; the size argument is the kernel's sigset size (8).
        let got = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old,
                8usize,
            )
        };
        if got == 0 && old.handler == libc::SIG_IGN {
            let dfl = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            // SAFETY: installs SIG_DFL from a struct that lives for the call.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Give `sig` a handler that does nothing. PID 1 of a pid namespace never gets
/// a signal whose action is the default, even when it is blocked and read
/// from a signalfd; with a handler it is queued like for any process.
pub(crate) fn catch_signal(sig: nix::sys::signal::Signal) -> nix::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(
        SigHandler::Handler(ignore_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing, so it is async-signal-safe; the
    // caller blocks the signal and reads it from a signalfd anyway.
    unsafe { nix::sys::signal::sigaction(sig, &action) }.map(drop)
}

/// `setdomainname(2)`; nix has no wrapper.
pub(crate) fn set_domainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(ret).map(drop)
}

/// Make `fd` (a terminal) the controlling terminal of this session.
pub(crate) fn set_controlling_terminal(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument by value; fd is a valid open descriptor.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(ret).map(drop)
}

/// Set a terminal's window size.
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the duration of the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(ret).map(drop)
}

/// Read a terminal's window size.
pub(crate) fn get_winsize(fd: BorrowedFd<'_>) -> nix::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize struct we own for the duration of the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(ret).map(|_| (ws.ws_row, ws.ws_col))
}

/// `pidfd_open(pid)`: a descriptor that becomes readable when the process exits,
/// which lets us wait for processes that are not our children.
pub(crate) fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(ret)?;
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Close every descriptor >= `from` except those in `keep`, by marking them
/// close-on-exec (they must stay usable until the final execve).
pub(crate) fn cloexec_from(from: i32, keep: &[i32]) -> nix::Result<()> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|_| Errno::EBADF)?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= from && !keep.contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number; a stale number (the read_dir fd
        // itself, now closed) just returns EBADF, which we ignore.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Close every descriptor >= 3 that is not in `keep` (`close_range(2)` over the
/// gaps). Only for a forked child that will exec or exit and never drops the
/// values it inherited: one holding a closed number would close it again.
pub(crate) fn close_all_except(keep: &[i32]) -> nix::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .filter(|fd| *fd >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    for next in keep.into_iter().map(Some).chain([None]) {
        let last = match next {
            Some(k) if k > from => k - 1,
            Some(k) => {
                from = k + 1;
                continue;
            }
            None => u32::MAX,
        };
        // SAFETY: close_range takes plain integers; the numbers it closes are owned
        // by no live Rust value in this child (see above).
        let ret = unsafe { libc::syscall(libc::SYS_close_range, from, last, 0u32) };
        Errno::result(ret)?;
        match next {
            Some(k) => from = k + 1,
            None => break,
        }
    }
    Ok(())
}

/// Whether the working directory is reachable from this process's root. The
/// kernel's getcwd answers "(unreachable)/…" for a directory outside it, which is
/// where a cwd reached through a leaked descriptor would be.
pub(crate) fn cwd_reachable() -> nix::Result<bool> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer is writable for its whole length, which is passed.
    let ret = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    Errno::result(ret)?;
    Ok(buf[0] == b'/')
}

/// Clear close-on-exec on a descriptor number we do not own (for `--preserve-fds`).
pub(crate) fn clear_cloexec(fd: i32) -> nix::Result<()> {
    // SAFETY: F_GETFD/F_SETFD on a descriptor number only change its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    Errno::result(flags)?;
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) };
    Errno::result(ret).map(drop)
}

/// `dup2(src, dst)` onto a raw descriptor number (stdio), which std has no safe way to name.
pub(crate) fn dup_onto(src: BorrowedFd<'_>, dst: i32) -> nix::Result<()> {
    // SAFETY: dup2 atomically replaces `dst`; the standard streams we target are not
    // owned by any Rust object in this process.
    let ret = unsafe { libc::dup2(src.as_raw_fd(), dst) };
    Errno::result(ret).map(drop)
}

/// Take ownership of a descriptor the kernel just gave us (SCM_RIGHTS).
pub(crate) fn own_fd(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: the descriptor was just received with SCM_RIGHTS and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
