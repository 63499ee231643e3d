//! The runtime's operations on containers, one method per runc verb.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun_oci::ContainerId;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources, Process, Spec};

use crate::cgroups::Cgroup;
use crate::config::{self, Bundle};
use crate::error::{Context, Error, Result};
use crate::launch::{self, Launch, NsPlan, Role};
use crate::state::{self, Record, State, StateDir, Status};

/// A runtime rooted at a state directory (runc's `--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
}

/// Options of `create` and `run`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// Options of `exec` besides the process itself.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub detach: bool,
}

/// A process started for a caller that supervises it: see
/// [`Runtime::create_attached`] and [`Runtime::exec_attached`].
#[derive(Debug)]
pub struct Attached {
    /// Host pid; a direct child of the caller.
    pub pid: i32,
    /// The terminal's master end when the process has a terminal.
    pub master: Option<OwnedFd>,
}

/// How a foreground process ended, as a shell exit code (128 + signal if killed).
pub type ExitCode = i32;

pub(crate) fn hook_state(id: &ContainerId, bundle: &Bundle, pid: i32, status: Status) -> State {
    State {
        oci_version: state::OCI_VERSION.into(),
        id: id.to_string(),
        pid,
        status,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: String::new(),
        owner: String::new(),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        oom_killed: false,
    }
}

/// Undoes a half-made `create`: the process, the cgroup, the state directory.
struct CreateGuard {
    dir: StateDir,
    cgroup: Option<Cgroup>,
    pid: Option<Pid>,
    armed: bool,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Some(cg) = &self.cgroup {
            kill_cgroup(cg);
            let _ = cg.destroy();
        }
        let _ = self.dir.remove();
    }
}

fn kill_cgroup(cg: &Cgroup) {
    if cg.is_frozen().unwrap_or(false) {
        let _ = cg.thaw();
    }
    for pid in cg.pids().unwrap_or_default() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The device cgroup rules the container gets: the config's, plus an allow for
/// every device node the config asks the runtime to create.
fn device_rules(spec: &Spec) -> Vec<LinuxDeviceCgroup> {
    let linux = spec.linux().as_ref();
    let mut rules = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    rules.extend(
        linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .map(LinuxDeviceCgroup::from),
    );
    rules
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, id: &ContainerId) -> StateDir {
        StateDir::new(&self.root, id)
    }

    fn load(&self, id: &ContainerId) -> Result<(StateDir, Record)> {
        let dir = self.dir(id);
        let record = dir.load(id)?;
        Ok((dir, record))
    }

    fn saved_bundle(&self, dir: &StateDir, record: &Record) -> Result<Bundle> {
        let text =
            std::fs::read(dir.config()).ctx(|| format!("read {}", dir.config().display()))?;
        let spec = config::parse(&text).map_err(|message| Error::ParseConfig {
            path: dir.config(),
            message,
        })?;
        Ok(Bundle {
            dir: record.bundle.clone(),
            rootfs: record.rootfs.clone(),
            spec,
            raw: text,
        })
    }

    /// `create`: set the container up and leave its process waiting for `start`.
    pub fn create(&self, id: &ContainerId, opts: &CreateOptions) -> Result<i32> {
        let bundle = config::load(&opts.bundle)?;
        self.create_inner(id, opts, &bundle, None)
            .map(|(_, record)| record.pid)
    }

    /// `create` on a loaded bundle; returns the state directory and the saved record.
    fn create_inner(
        &self,
        id: &ContainerId,
        opts: &CreateOptions,
        bundle: &Bundle,
        own_console: Option<OwnedFd>,
    ) -> Result<(StateDir, Record)> {
        let process = bundle.spec.process().clone().unwrap_or_default();
        let terminal = process.terminal().unwrap_or(false);
        if terminal && opts.console_socket.is_none() && own_console.is_none() {
            return Err(Error::invalid(
                "process.terminal",
                "a terminal needs --console-socket when the runtime does not stay attached",
            ));
        }
        let console = match (&opts.console_socket, own_console) {
            (_, Some(fd)) => Some(fd),
            (Some(path), None) if terminal => Some(crate::console::connect(path)?),
            _ => None,
        };
        let dir = self.dir(id);
        dir.create(id)?;
        let mut guard = CreateGuard {
            dir: dir.clone(),
            cgroup: None,
            pid: None,
            armed: true,
        };
        let linux = bundle.spec.linux().clone().unwrap_or_default();
        let mut cgroup = Cgroup::resolve(linux.cgroups_path().as_deref(), id)?;
        cgroup.create()?;
        guard.cgroup = Some(cgroup.clone());
        if let Some(resources) = linux.resources() {
            cgroup.apply(resources)?;
        }
        cgroup.apply_devices(&device_rules(&bundle.spec))?;

        std::fs::write(dir.config(), &bundle.raw)
            .ctx(|| format!("write {}", dir.config().display()))?;
        nix::unistd::mkfifo(&dir.fifo(), Mode::from_bits_truncate(0o600))
            .ctx(|| format!("mkfifo {}", dir.fifo().display()))?;
        // O_RDWR so the open does not block; the container keeps it as a reader and
        // blocks in read() until `start` writes.
        let fifo = nix::fcntl::open(&dir.fifo(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("open {}", dir.fifo().display()))?;

        let ns = launch::plan_for_config(bundle);
        let own_pid_ns = ns.new_pid();
        let hooks = |pid: i32| -> Result<()> {
            let state = hook_state(id, bundle, pid, Status::Creating);
            let h = bundle.spec.hooks().as_ref();
            crate::hooks::run_all(h.and_then(|h| h.prestart().as_ref()), &state)?;
            crate::hooks::run_all(h.and_then(|h| h.create_runtime().as_ref()), &state)
        };
        let pid = launch::launch(
            Launch {
                id,
                bundle,
                process: &process,
                ns,
                cgroup: &cgroup,
                role: Role::Init { fifo },
                console,
                preserve_fds: opts.preserve_fds,
            },
            &hooks,
        )?;
        guard.pid = Some(pid);
        let pid_start = state::proc_start(pid.as_raw())
            .map(|(s, _)| s)
            .ok_or_else(|| Error::Init("container process exited during create".into()))?;
        let record = Record {
            id: id.clone(),
            pid: pid.as_raw(),
            pid_start,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: state::now_rfc3339(),
            owner: state::user_name(nix::unistd::Uid::effective().as_raw()),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            cgroup,
            own_pid_ns,
        };
        dir.save(&record)?;
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, pid.as_raw())?;
        }
        guard.armed = false;
        Ok((dir, record))
    }

    /// `create` for a supervisor that stays the container's parent (the engine's
    /// shim): a terminal needs no console socket, its master comes back instead.
    /// The container process is a direct child of the caller, which must reap it.
    pub fn create_attached(&self, id: &ContainerId, opts: &CreateOptions) -> Result<Attached> {
        let bundle = config::load(&opts.bundle)?;
        let terminal = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let (ours, theirs) = match terminal {
            true => {
                let (a, b) = socket_pair()?;
                (Some(a), Some(b))
            }
            false => (None, None),
        };
        let (_, record) = self.create_inner(id, opts, &bundle, theirs)?;
        let master = match ours.map(|s| crate::console::recv_fd(&s)).transpose() {
            Ok(m) => m,
            Err(e) => {
                let _ = self.delete(id, true);
                return Err(e);
            }
        };
        Ok(Attached {
            pid: record.pid,
            master,
        })
    }

    /// `start`: release a created container's process.
    pub fn start(&self, id: &ContainerId) -> Result<()> {
        let (dir, record) = self.load(id)?;
        let bundle = self.saved_bundle(&dir, &record)?;
        self.release(id, &dir, &record, &bundle)
    }

    /// Wake the process waiting on the exec fifo, then run the poststart hooks.
    fn release(
        &self,
        id: &ContainerId,
        dir: &StateDir,
        record: &Record,
        bundle: &Bundle,
    ) -> Result<()> {
        let status = record.status(dir);
        if status != Status::Created {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.as_str(),
                action: "start",
                wanted: "created",
            });
        }
        let fifo = nix::fcntl::open(
            &dir.fifo(),
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ENXIO => {
                Error::Init("container process is no longer waiting for start".into())
            }
            e => Error::Sys {
                context: format!("open {}", dir.fifo().display()),
                source: e,
            },
        })?;
        nix::unistd::write(&fifo, &[0]).ctx(|| "write exec fifo".into())?;
        drop(fifo);
        let _ = std::fs::remove_file(dir.fifo());
        let state = record.to_state(Status::Running);
        if let Err(e) = crate::hooks::run_all(
            bundle
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststart().as_ref()),
            &state,
        ) {
            eprintln!("warning: poststart hook failed: {e}");
        }
        Ok(())
    }

    /// `run`: create + start, then (unless `detach`) wait, forwarding signals, and delete.
    pub fn run(&self, id: &ContainerId, opts: &CreateOptions, detach: bool) -> Result<ExitCode> {
        if detach {
            self.create(id, opts)?;
            if let Err(e) = self.start(id) {
                let _ = self.delete(id, true);
                return Err(e);
            }
            return Ok(0);
        }
        let signals = crate::wait::Forwarder::block()?;
        let bundle = config::load(&opts.bundle)?;
        let proxy = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
            && opts.console_socket.is_none();
        let (ours, theirs) = if proxy {
            let (a, b) = socket_pair()?;
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        let (dir, record) = self.create_inner(id, opts, &bundle, theirs)?;
        let pid = Pid::from_raw(record.pid);
        let master = match ours {
            Some(sock) => match crate::console::recv_fd(&sock) {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = self.delete(id, true);
                    return Err(e);
                }
            },
            None => None,
        };
        if let Err(e) = self.release(id, &dir, &record, &bundle) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        let code = signals.wait(pid, master.as_ref().map(|m| m.as_fd()));
        self.delete(id, true)?;
        code
    }

    /// `state`: the OCI state document.
    pub fn state(&self, id: &ContainerId) -> Result<State> {
        let (dir, record) = self.load(id)?;
        let status = record.status(&dir);
        let mut state = record.to_state(status);
        state.oom_killed =
            status == Status::Stopped && record.cgroup.oom_kill_count().unwrap_or(0) > 0;
        Ok(state)
    }

    /// `list`: the states of all containers under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<State>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("read {}", self.root.display())),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(Ok(id)) = entry.file_name().to_str().map(str::parse::<ContainerId>) else {
                continue;
            };
            if let Ok(state) = self.state(&id) {
                out.push(state);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// `kill`: signal the init process, or with `all` every process in the cgroup.
    pub fn kill(&self, id: &ContainerId, signal: Signal, all: bool) -> Result<()> {
        let (dir, record) = self.load(id)?;
        let status = record.status(&dir);
        if status == Status::Stopped && !all {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.as_str(),
                action: "kill",
                wanted: "created, running or paused",
            });
        }
        if all {
            for pid in record.cgroup.pids()? {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        } else {
            kill(Pid::from_raw(record.pid), signal)
                .ctx(|| format!("kill {} with {signal}", record.pid))?;
        }
        if status == Status::Paused && signal == Signal::SIGKILL {
            let _ = record.cgroup.thaw();
        }
        Ok(())
    }

    /// `delete`: remove a stopped (or created) container; `force` kills a running one first.
    pub fn delete(&self, id: &ContainerId, force: bool) -> Result<()> {
        let dir = self.dir(id);
        let record = match dir.load(id) {
            Ok(r) => r,
            // A state directory without a record is a create that died half-way.
            Err(Error::NotFound(_)) if force => return dir.remove(),
            Err(e) => return Err(e),
        };
        let status = record.status(&dir);
        match status {
            Status::Stopped | Status::Created => {}
            Status::Running | Status::Paused | Status::Creating if force => {}
            _ => {
                return Err(Error::WrongState {
                    id: id.to_string(),
                    status: status.as_str(),
                    action: "delete",
                    wanted: "stopped (or use --force)",
                });
            }
        }
        if status != Status::Stopped {
            let _ = kill(Pid::from_raw(record.pid), Signal::SIGKILL);
            if status == Status::Paused {
                let _ = record.cgroup.thaw();
            }
            wait_gone(&record, Duration::from_secs(10));
        }
        // Processes that outlived init (no private pid namespace, or reparented).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = record.cgroup.pids().unwrap_or_default();
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            kill_cgroup(&record.cgroup);
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok(bundle) = self.saved_bundle(&dir, &record) {
            let state = record.to_state(Status::Stopped);
            if let Err(e) = crate::hooks::run_all(
                bundle
                    .spec
                    .hooks()
                    .as_ref()
                    .and_then(|h| h.poststop().as_ref()),
                &state,
            ) {
                eprintln!("warning: poststop hook failed: {e}");
            }
        }
        record.cgroup.destroy()?;
        dir.remove()
    }

    /// `exec`: run another process in a running container.
    pub fn exec(
        &self,
        id: &ContainerId,
        process: &Process,
        opts: &ExecOptions,
    ) -> Result<ExitCode> {
        let (dir, record) = self.load(id)?;
        let status = record.status(&dir);
        if !matches!(status, Status::Running | Status::Created) {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.as_str(),
                action: "exec",
                wanted: "running",
            });
        }
        let bundle = self.saved_bundle(&dir, &record)?;
        let terminal = process.terminal().unwrap_or(false);
        let signals = if opts.detach {
            None
        } else {
            Some(crate::wait::Forwarder::block()?)
        };
        let (console, ours) = match (&opts.console_socket, terminal) {
            (Some(path), true) => (Some(crate::console::connect(path)?), None),
            (None, true) if !opts.detach => {
                let (ours, theirs) = socket_pair()?;
                (Some(theirs), Some(ours))
            }
            (None, true) => {
                return Err(Error::invalid(
                    "process.terminal",
                    "a detached terminal needs --console-socket",
                ));
            }
            _ => (None, None),
        };
        let ns: NsPlan = launch::plan_for_pid(record.pid);
        let pid = launch::launch(
            Launch {
                id,
                bundle: &bundle,
                process,
                ns,
                cgroup: &record.cgroup,
                role: Role::Exec,
                console,
                preserve_fds: opts.preserve_fds,
            },
            &|_| Ok(()),
        )?;
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, pid.as_raw())?;
        }
        let Some(signals) = signals else { return Ok(0) };
        let master = ours.map(|s| crate::console::recv_fd(&s)).transpose()?;
        signals.wait(pid, master.as_ref().map(|m| m.as_fd()))
    }

    /// `exec` for a supervisor that waits for the process itself: it is a direct
    /// child of the caller, and a terminal's master comes back to the caller.
    pub fn exec_attached(&self, id: &ContainerId, process: &Process) -> Result<Attached> {
        let (dir, record) = self.load(id)?;
        let status = record.status(&dir);
        if !matches!(status, Status::Running | Status::Created) {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.as_str(),
                action: "exec",
                wanted: "running",
            });
        }
        let bundle = self.saved_bundle(&dir, &record)?;
        let (ours, theirs) = match process.terminal().unwrap_or(false) {
            true => {
                let (a, b) = socket_pair()?;
                (Some(a), Some(b))
            }
            false => (None, None),
        };
        let pid = launch::launch(
            Launch {
                id,
                bundle: &bundle,
                process,
                ns: launch::plan_for_pid(record.pid),
                cgroup: &record.cgroup,
                role: Role::Exec,
                console: theirs,
                preserve_fds: 0,
            },
            &|_| Ok(()),
        )?;
        let master = match ours.map(|s| crate::console::recv_fd(&s)).transpose() {
            Ok(m) => m,
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(e);
            }
        };
        Ok(Attached {
            pid: pid.as_raw(),
            master,
        })
    }

    /// The saved config of a container (what `exec` starts from).
    pub fn config(&self, id: &ContainerId) -> Result<Spec> {
        let (dir, record) = self.load(id)?;
        Ok(self.saved_bundle(&dir, &record)?.spec)
    }

    /// `ps`: every process of the container (host pids).
    pub fn pids(&self, id: &ContainerId) -> Result<Vec<i32>> {
        let (_, record) = self.load(id)?;
        Ok(record.cgroup.pids()?)
    }

    pub fn pause(&self, id: &ContainerId) -> Result<()> {
        let (dir, record) = self.load(id)?;
        match record.status(&dir) {
            Status::Running => Ok(record.cgroup.freeze()?),
            s => Err(Error::WrongState {
                id: id.to_string(),
                status: s.as_str(),
                action: "pause",
                wanted: "running",
            }),
        }
    }

    pub fn resume(&self, id: &ContainerId) -> Result<()> {
        let (dir, record) = self.load(id)?;
        match record.status(&dir) {
            Status::Paused => Ok(record.cgroup.thaw()?),
            s => Err(Error::WrongState {
                id: id.to_string(),
                status: s.as_str(),
                action: "resume",
                wanted: "paused",
            }),
        }
    }

    /// Resource usage, in the shape of `runc events --stats` `data`.
    pub fn stats(&self, id: &ContainerId) -> Result<serde_json::Value> {
        let (_, record) = self.load(id)?;
        let stats = record.cgroup.stats()?;
        Ok(serde_json::to_value(stats).unwrap_or_default())
    }

    /// How many times the kernel's OOM killer has killed a process of this container.
    pub fn oom_kill_count(&self, id: &ContainerId) -> Result<u64> {
        let (_, record) = self.load(id)?;
        Ok(record.cgroup.oom_kill_count()?)
    }

    /// `update`: change the resources of a created, running or paused container.
    pub fn update(&self, id: &ContainerId, resources: &LinuxResources) -> Result<()> {
        let (dir, record) = self.load(id)?;
        let status = record.status(&dir);
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.as_str(),
                action: "update",
                wanted: "running",
            });
        }
        record.cgroup.apply(resources)?;
        Ok(())
    }
}

/// Wait until the recorded init is gone (exited, or a zombie nobody reaped yet).
fn wait_gone(record: &Record, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    if let Ok(fd) = crate::sys::pidfd_open(Pid::from_raw(record.pid)) {
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = timeout.as_millis().min(u16::MAX as u128) as u16;
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
    }
    while record.init_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A connected unix socket pair: our end and the container's, for a terminal the
/// runtime proxies itself.
fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    let (a, b) = std::os::unix::net::UnixStream::pair().ctx(|| "socketpair".into())?;
    Ok((OwnedFd::from(a), OwnedFd::from(b)))
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    state::write_atomic(path, pid.to_string().as_bytes())
}
