//! Starting a process inside the container's namespaces: the runtime side (P) and
//! the two children it makes.
//!
//! ```text
//!  P (runtime) ──fork──► C1 (joins the cgroup, joins namespaces by path, unshares
//!   │                     │  new ones; P writes its id maps)
//!   │                     └─clone(CLONE_PARENT)──► C2: pid 1 of the new pid namespace,
//!   │                                              a child of P; sets up the rootfs and
//!   │◄──────── sync socket (SOCK_SEQPACKET) ─────── the process, then execs
//! ```
//! C1 exists because a new pid namespace only applies to children of the process
//! that unshared it, and CLONE_PARENT makes C2 P's child so `run` can wait for it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, setresgid, setresuid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Process};

use bosun_oci::ContainerId;

use crate::cgroups::Cgroup;
use crate::channel::{Channel, Msg};
use crate::config::Bundle;
use crate::error::{Context, Error, Result};
use crate::sys::{self, Forked};

/// Which namespaces the new process enters.
#[derive(Debug, Clone)]
pub(crate) struct NsPlan {
    /// Created fresh (one `unshare` in C1).
    pub(crate) new: CloneFlags,
    /// Joined by path, in this order (user first).
    pub(crate) join: Vec<(CloneFlags, PathBuf)>,
}

impl NsPlan {
    pub(crate) fn has_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
            || self
                .join
                .iter()
                .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
    }

    pub(crate) fn new_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }

    pub(crate) fn new_pid(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWPID)
    }
}

pub(crate) fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // Refused when the config is validated.
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// Join order: user first (it grants the capabilities to join the rest), mount last
/// (paths are opened before any join, but keep the host view as long as possible).
fn join_rank(f: CloneFlags) -> u8 {
    if f == CloneFlags::CLONE_NEWUSER {
        0
    } else if f == CloneFlags::CLONE_NEWNS {
        2
    } else {
        1
    }
}

/// The plan for a container's init, from `linux.namespaces`.
pub(crate) fn plan_for_config(bundle: &Bundle) -> NsPlan {
    let mut plan = NsPlan {
        new: CloneFlags::empty(),
        join: Vec::new(),
    };
    let namespaces = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        let flag = clone_flag(ns.typ());
        match ns.path() {
            Some(p) => plan.join.push((flag, p.clone())),
            None => plan.new |= flag,
        }
    }
    plan.join.sort_by_key(|(f, _)| join_rank(*f));
    plan
}

/// The plan for `exec`: every namespace of the container's init that differs from ours.
pub(crate) fn plan_for_pid(pid: i32) -> NsPlan {
    let mut plan = NsPlan {
        new: CloneFlags::empty(),
        join: Vec::new(),
    };
    for (name, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
        let differs = match (std::fs::read_link(&theirs), std::fs::read_link(&ours)) {
            (Ok(a), Ok(b)) => a != b,
            _ => false,
        };
        if differs {
            plan.join.push((flag, theirs));
        }
    }
    plan
}

/// What the container process is: the init of a new container, or an extra process.
#[derive(Debug)]
pub(crate) enum Role {
    /// Holds the exec fifo's descriptor; the process blocks on it until `start`.
    Init {
        fifo: OwnedFd,
    },
    Exec,
}

/// Everything the children need, prepared by P before it forks.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    pub(crate) id: &'a ContainerId,
    pub(crate) bundle: &'a Bundle,
    pub(crate) process: &'a Process,
    pub(crate) ns: NsPlan,
    pub(crate) cgroup: &'a Cgroup,
    pub(crate) role: Role,
    pub(crate) console: Option<OwnedFd>,
    pub(crate) preserve_fds: u32,
}

/// Kills and reaps the processes of a launch that failed half-way.
struct Reaper(Vec<Pid>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        for pid in &self.0 {
            let _ = waitpid(*pid, None);
        }
    }
}

/// Run the launch protocol from P's side. `hooks` runs the prestart and
/// createRuntime hooks with the container pid. Returns the pid of C2 (P's child).
pub(crate) fn launch(launch: Launch<'_>, hooks: &dyn Fn(i32) -> Result<()>) -> Result<Pid> {
    let is_init = matches!(launch.role, Role::Init { .. });
    let (parent, child) = Channel::pair()?;
    // Fast path: with nothing to join and no user namespace (whose unmapped root
    // could not write the host's cgroup files), clone the container process
    // directly into its new namespaces and skip the intermediate process.
    let direct = launch.ns.join.is_empty() && !launch.ns.new_user();
    let forked = if direct {
        let flags = launch.ns.new.difference(CloneFlags::CLONE_NEWCGROUP);
        sys::fork_into(flags).ctx(|| format!("clone into {flags:?}"))?
    } else {
        sys::fork().ctx(|| "fork".into())?
    };
    let c1 = match forked {
        Forked::Child => {
            drop(parent);
            let err = if direct {
                match stage_direct(&launch, &child) {
                    Ok(never) => match never {},
                    Err(e) => e,
                }
            } else {
                match stage1(&launch, &child) {
                    Ok(()) => sys::exit_now(0),
                    Err(e) => e,
                }
            };
            let _ = child.send(&Msg::Error(child_message(err)));
            sys::exit_now(1)
        }
        Forked::Parent(pid) => pid,
    };
    drop(child);
    // Only the container may hold the fifo open, or `start` could not tell whether
    // anyone is waiting on it; the console socket is the container's to use.
    let Launch {
        bundle,
        cgroup: _,
        role,
        console,
        ..
    } = launch;
    drop(role);
    drop(console);
    let mut reaper = Reaper(vec![c1]);
    let mut pid: Option<Pid> = direct.then_some(c1);
    let mut hooks_wanted = false;
    loop {
        match parent.recv()? {
            Some(Msg::MapIds) => {
                write_id_maps(c1, bundle)?;
                parent.send(&Msg::MapsDone)?;
            }
            Some(Msg::Child(p)) => {
                let p = Pid::from_raw(p);
                reaper.0.push(p);
                pid = Some(p);
                match waitpid(c1, None) {
                    Ok(WaitStatus::Exited(_, 0)) => reaper.0.retain(|x| *x != c1),
                    other => {
                        return Err(Error::Init(format!(
                            "intermediate process ended with {other:?}"
                        )));
                    }
                }
            }
            Some(Msg::RunHooks) => hooks_wanted = true,
            Some(Msg::Ready) if is_init => break,
            Some(Msg::Error(message)) => return Err(Error::Init(message)),
            Some(other) => return Err(Error::Init(format!("unexpected message {other:?}"))),
            None if !is_init && pid.is_some() => break,
            None => return Err(Error::Init("container process exited during setup".into())),
        }
        if hooks_wanted && let Some(p) = pid {
            hooks_wanted = false;
            hooks(p.as_raw())?;
            parent.send(&Msg::HooksDone(p.as_raw()))?;
        }
    }
    let pid = pid.ok_or_else(|| Error::Init("no container pid received".into()))?;
    reaper.0.clear();
    Ok(pid)
}

/// A child's error as P will wrap it (P adds "container init failed: ").
fn child_message(e: Error) -> String {
    match e {
        Error::Init(m) => m,
        other => other.to_string(),
    }
}

fn write_id_maps(pid: Pid, bundle: &Bundle) -> Result<()> {
    let linux = bundle.spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<LinuxIdMapping>>| -> String {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let uid = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    if !Uid::effective().is_root() {
        // An unprivileged writer may only map its own ids, after denying setgroups.
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
            .ctx(|| "write setgroups".into())?;
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .ctx(|| format!("linux.uidMappings: write {:?}", uid.trim()))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .ctx(|| format!("linux.gidMappings: write {:?}", gid.trim()))?;
    Ok(())
}

/// The container process made directly by P (the fast path): join the cgroup,
/// then make the cgroup namespace so its root is the container's cgroup.
fn stage_direct(launch: &Launch<'_>, chan: &Channel) -> Result<std::convert::Infallible> {
    launch.cgroup.join_self()?;
    if launch.ns.new.contains(CloneFlags::CLONE_NEWCGROUP) {
        unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "unshare cgroup namespace".into())?;
    }
    stage2(launch, chan)
}

/// C1: join the cgroup, join and create namespaces, then make C2.
fn stage1(launch: &Launch<'_>, chan: &Channel) -> Result<()> {
    // Before any cgroup namespace is made, so its root is the container's cgroup.
    launch.cgroup.join_self()?;
    let fds: Vec<(CloneFlags, OwnedFd)> = launch
        .ns
        .join
        .iter()
        .map(|(flag, path)| {
            let f =
                std::fs::File::open(path).ctx(|| format!("open namespace {}", path.display()))?;
            Ok((*flag, OwnedFd::from(f)))
        })
        .collect::<Result<_>>()?;
    for ((flag, fd), (_, path)) in fds.iter().zip(&launch.ns.join) {
        setns(fd.as_fd(), *flag).ctx(|| format!("join namespace {}", path.display()))?;
    }
    drop(fds);
    if !launch.ns.new.is_empty() {
        unshare(launch.ns.new).ctx(|| format!("unshare {:?}", launch.ns.new))?;
    }
    if launch.ns.new_user() {
        chan.send(&Msg::MapIds)?;
        match chan.recv()? {
            Some(Msg::MapsDone) => {}
            other => return Err(Error::Init(format!("expected id maps, got {other:?}"))),
        }
    }
    match sys::fork_as_sibling().ctx(|| "clone container process".into())? {
        Forked::Child => {
            let err = match stage2(launch, chan) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = chan.send(&Msg::Error(child_message(err)));
            sys::exit_now(1)
        }
        Forked::Parent(pid) => chan.send(&Msg::Child(pid.as_raw())),
    }
}

/// C2: the container process. Sets up everything and execs; never returns on success.
fn stage2(launch: &Launch<'_>, chan: &Channel) -> Result<std::convert::Infallible> {
    let bundle = launch.bundle;
    let process = launch.process;
    // Nothing of the host reaches the container through a descriptor: everything
    // but stdio, `--preserve-fds` and this setup's own (sync socket, exec fifo,
    // console socket, all close-on-exec) is closed now, before any path is looked
    // up, whether the caller leaked it or the runtime opened it (cgroup and state
    // directories, signalfd).
    let mut keep: Vec<i32> = (3..3 + launch.preserve_fds as i32).collect();
    keep.push(chan.raw_fd());
    if let Role::Init { fifo } = &launch.role {
        keep.push(fifo.as_raw_fd());
    }
    if let Some(console) = &launch.console {
        keep.push(console.as_raw_fd());
    }
    sys::close_all_except(&keep).ctx(|| "close inherited descriptors".into())?;
    if !launch.ns.has_user() {
        // Until its execve this process is the runtime, in the container's pid
        // namespace: not dumpable, no container process may open its
        // /proc/PID/{exe,fd,cwd,root}. (With a user namespace this waits until
        // /proc/self files are written, as it makes them owned by host root.)
        nix::sys::prctl::set_dumpable(false).ctx(|| "make the runtime not dumpable".into())?;
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if launch.ns.has_user() {
        // Become root of the user namespace so the file system work below is done
        // as a mapped user.
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "setgid 0 in user namespace".into())?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "setuid 0 in user namespace".into())?;
    }
    let terminal = process.terminal().unwrap_or(false);
    let init = matches!(launch.role, Role::Init { .. });
    let mut host_pid = 0;
    if init {
        let opts = crate::rootfs::Options {
            in_user_ns: launch.ns.has_user(),
            terminal,
        };
        crate::rootfs::prepare(bundle, &opts)?;
        chan.send(&Msg::RunHooks)?;
        host_pid = match chan.recv()? {
            Some(Msg::HooksDone(pid)) => pid,
            other => return Err(Error::Init(format!("expected hooks done, got {other:?}"))),
        };
        let state = crate::container::hook_state(
            launch.id,
            bundle,
            host_pid,
            crate::state::Status::Creating,
        );
        crate::hooks::run_all(
            bundle
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.create_container().as_ref()),
            &state,
        )?;
        crate::rootfs::pivot(&bundle.rootfs)?;
        // Before `finish`: it makes /proc/sys read-only (default readonlyPaths).
        crate::rootfs::sysctls(bundle)?;
        crate::rootfs::finish(bundle)?;
        if let Some(h) = bundle.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).ctx(|| format!("hostname: set {h:?}"))?;
        }
        if let Some(d) = bundle
            .spec
            .domainname()
            .as_deref()
            .filter(|d| !d.is_empty())
        {
            sys::set_domainname(d).ctx(|| format!("domainname: set {d:?}"))?;
        }
    }
    if terminal {
        let sock = launch.console.as_ref().ok_or_else(|| {
            Error::invalid("process.terminal", "a terminal needs --console-socket")
        })?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        let slave = crate::console::setup(sock, size)?;
        if init {
            crate::rootfs::bind_console(std::path::Path::new(&slave))?;
        }
    }
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    enter_cwd(process.cwd(), init)?;
    crate::process::apply_rlimits(process)?;
    crate::process::apply_oom_score_adj(process)?;
    if launch.ns.has_user() {
        nix::sys::prctl::set_dumpable(false).ctx(|| "make the runtime not dumpable".into())?;
    }
    let cmd = crate::process::resolve_exec(process)?;
    let keep: Vec<i32> = (3..3 + launch.preserve_fds as i32).collect();
    for fd in &keep {
        sys::clear_cloexec(*fd).ctx(|| format!("--preserve-fds: fd {fd}"))?;
    }
    sys::cloexec_from(3, &keep).ctx(|| "mark descriptors close-on-exec".into())?;
    let seccomp = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref());
    let mut pending = crate::process::finalize(process, seccomp)?;
    if let Role::Init { fifo } = &launch.role {
        chan.send(&Msg::Ready)?;
        wait_for_start(fifo)?;
        let state = crate::container::hook_state(
            launch.id,
            bundle,
            host_pid,
            crate::state::Status::Created,
        );
        crate::hooks::run_all(
            bundle
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.start_container().as_ref()),
            &state,
        )?;
        let wants_init = bundle.spec.annotations().as_ref().is_some_and(|a| {
            a.get(crate::reaper::ANNOTATION)
                .is_some_and(|v| v == "true")
        });
        if wants_init {
            // PID 1 stays this process, filtered like the program it runs.
            if let Some(filter) = pending.take() {
                crate::seccomp::load(&filter)?;
            }
            let signals = crate::reaper::prepare().ctx(|| "prepare the init".into())?;
            match sys::fork().ctx(|| "fork the program under the init".into())? {
                sys::Forked::Parent(child) => crate::reaper::run(child, signals),
                sys::Forked::Child => drop(signals),
            }
        }
    }
    crate::process::exec(&cmd, pending)
}

/// Change into `process.cwd` (made first for a container's init), resolved inside
/// the container's root: a magic link such as `/proc/self/fd/N` is refused, and a
/// working directory the root cannot reach is an error, never a place to run in.
fn enter_cwd(cwd: &std::path::Path, create: bool) -> Result<()> {
    let root = crate::inroot::Root::new(std::path::Path::new("/"))?;
    let dir = if create {
        root.mkdir_all(cwd)
    } else {
        root.open_ctx(
            cwd,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
        )
    }
    .map_err(|e| Error::invalid("process.cwd", format!("{}: {e}", cwd.display())))?;
    nix::unistd::fchdir(dir.as_fd()).ctx(|| format!("process.cwd: chdir {}", cwd.display()))?;
    if !sys::cwd_reachable().ctx(|| "process.cwd: getcwd".into())? {
        return Err(Error::invalid(
            "process.cwd",
            format!("{} is outside the container's root", cwd.display()),
        ));
    }
    Ok(())
}

/// Block until `start` writes a byte into the exec fifo.
fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fifo, &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(Error::Init("exec fifo closed".into())),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).ctx(|| "wait on exec fifo".into()),
        }
    }
}
