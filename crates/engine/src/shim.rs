//! The supervisor processes the engine starts for containers and execs.
//!
//! A container's shim is `bosun engine-shim` in its own session: it creates the
//! container with the runtime library (so the container is its child and it can
//! reap it), writes the container's output to the log file, feeds its stdin and
//! terminal size from the daemon's control connections, and records the exit
//! code. It outlives the daemon, which is what lets a daemon restart leave
//! containers running (live restore): nothing of a running container depends on
//! the daemon's process. It is single-threaded and small (it runs one poll loop),
//! which matters because there is one per running container.
//!
//! An exec helper (`bosun engine-exec`) does the same for one process started in
//! a running container, but stays attached to the daemon: its stdout and stderr
//! are the process's, and its exit status is the process's exit code.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use bosun_oci::ContainerId;
use bosun_runtime::{Attached, CreateOptions, Runtime};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::logs::{LogWriter, Stream};
use crate::time::now_rfc3339_nano;

/// What the daemon tells a container's shim (passed as one JSON argument).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShimConfig {
    pub id: String,
    pub runtime_root: PathBuf,
    pub bundle: PathBuf,
    pub log: PathBuf,
    pub exit_file: PathBuf,
    pub socket: PathBuf,
    pub stdin: bool,
    /// Unmounted when the container ends, so no mount outlives its process.
    pub rootfs: PathBuf,
}

/// How a container's process ended, as its shim records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ExitRecord {
    pub code: i32,
    pub finished_at: String,
    pub oom_killed: bool,
}

/// What the daemon tells an exec helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExecConfig {
    pub id: String,
    pub runtime_root: PathBuf,
    pub process: oci_spec::runtime::Process,
    /// Where the helper writes `{"pid":N}` or `{"error":"…"}` once launched.
    pub status_file: PathBuf,
}

/// Frames on a control connection, daemon to supervisor:
/// `[kind: u8][length: u32 big-endian][payload]`.
pub(crate) mod frame {
    pub(crate) const STDIN: u8 = 0;
    /// Close the process's stdin (the client half-closed its side).
    pub(crate) const CLOSE_STDIN: u8 = 1;
    /// Payload: rows and columns, u16 big-endian each.
    pub(crate) const RESIZE: u8 = 2;

    pub(crate) fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    pub(crate) fn resize(rows: u16, cols: u16) -> Vec<u8> {
        let mut p = rows.to_be_bytes().to_vec();
        p.extend_from_slice(&cols.to_be_bytes());
        encode(RESIZE, &p)
    }
}

/// Largest frame a supervisor accepts; bigger means a confused peer.
const MAX_FRAME: usize = 1 << 20;

/// Bytes read from a control connection, split into frames.
#[derive(Debug, Default)]
struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Feed bytes; returns complete frames, or None when the peer is confused.
    fn feed(&mut self, bytes: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            if self.buf.len() < 5 {
                return Some(frames);
            }
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_FRAME {
                return None;
            }
            if self.buf.len() < 5 + len {
                return Some(frames);
            }
            let kind = self.buf[0];
            let payload = self.buf[5..5 + len].to_vec();
            self.buf.drain(..5 + len);
            frames.push((kind, payload));
        }
    }
}

/// The process's input side: a pipe or the terminal master, with what is
/// waiting to be written to it (a slow reader must not block the loop).
#[derive(Debug)]
struct Input<'a> {
    fd: Option<OwnedFd>,
    pending: VecDeque<u8>,
    close_when_drained: bool,
    /// The terminal, for resizes and its ^D end of input.
    master: Option<BorrowedFd<'a>>,
}

impl Input<'_> {
    fn push(&mut self, bytes: &[u8]) {
        if self.fd.is_some() && !self.close_when_drained {
            self.pending.extend(bytes);
        }
    }

    /// Write what the fd takes now; close it if asked and drained.
    fn flush(&mut self) {
        let Some(fd) = &self.fd else { return };
        while !self.pending.is_empty() {
            let (a, _) = self.pending.as_slices();
            match nix::unistd::write(fd, a) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => {
                    self.pending.clear();
                    self.fd = None;
                    return;
                }
            }
        }
        if self.close_when_drained {
            self.fd = None;
        }
    }
}

/// `bosun engine-shim CONFIG_JSON`. Returns the process exit code.
///
/// Handshake with the daemon on the shim's stdin and stdout: the shim writes
/// `created PID` (or `error MESSAGE`), the daemon answers `go` once the
/// container's network is ready (or closes), the shim writes `started` (or
/// `error MESSAGE`). Then both pipes are closed and the shim is on its own.
pub fn shim_main(arg: &str) -> i32 {
    let config: ShimConfig = match serde_json::from_str(arg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("engine-shim: bad configuration: {e}");
            return 2;
        }
    };
    // Its own session: a terminal's signals and the daemon's process group
    // never reach it.
    let _ = nix::unistd::setsid();
    let mut report = match take_handshake() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("engine-shim: {e}");
            return 2;
        }
    };
    match supervise(&config, &mut report) {
        Ok(()) => 0,
        Err(message) => {
            let _ = report.say(&format!("error {}", message.replace('\n', " ")));
            1
        }
    }
}

/// The handshake pipes, moved off fds 0 and 1 so those can become the
/// container's.
#[derive(Debug)]
struct Handshake {
    tx: Option<File>,
    rx: Option<File>,
}

impl Handshake {
    fn say(&mut self, line: &str) -> std::io::Result<()> {
        match &mut self.tx {
            Some(tx) => writeln!(tx, "{line}"),
            None => Ok(()),
        }
    }

    /// Wait for the daemon's `go`; false if it said anything else or went away.
    fn wait_go(&mut self) -> bool {
        let Some(rx) = &mut self.rx else { return true };
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = rx.read(&mut byte) {
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        line == b"go"
    }

    fn close(&mut self) {
        self.tx = None;
        self.rx = None;
    }
}

fn take_handshake() -> Result<Handshake, String> {
    let rx = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("dup stdin: {e}"))?;
    let tx = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("dup stdout: {e}"))?;
    Ok(Handshake {
        tx: Some(File::from(tx)),
        rx: Some(File::from(rx)),
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn devnull() -> Result<OwnedFd, String> {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| format!("open /dev/null: {e}"))
}

/// Point standard stream `target` (0, 1 or 2) at `src`; the container inherits it.
fn install(src: BorrowedFd<'_>, target: i32) -> Result<(), String> {
    let done = match target {
        0 => nix::unistd::dup2_stdin(src),
        1 => nix::unistd::dup2_stdout(src),
        _ => nix::unistd::dup2_stderr(src),
    };
    done.map_err(|e| format!("dup2 onto {target}: {e}"))
}

fn supervise(config: &ShimConfig, report: &mut Handshake) -> Result<(), String> {
    let id: ContainerId = config
        .id
        .parse()
        .map_err(|e| format!("container id: {e}"))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("subreaper: {e}"))?;
    let _ = std::fs::remove_file(&config.socket);
    let listener =
        UnixListener::bind(&config.socket).map_err(|e| format!("bind control socket: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("control socket: {e}"))?;
    let terminal = spec_terminal(&config.bundle)?;

    // The container's standard streams: ours at the moment of create.
    let null = devnull()?;
    let (stdin_r, stdin_w) = match (config.stdin, terminal) {
        (true, false) => {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        }
        _ => (None, None),
    };
    let (outputs, out_w, err_w) = match terminal {
        false => {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            (
                vec![(out_r, Stream::Stdout), (err_r, Stream::Stderr)],
                Some(out_w),
                Some(err_w),
            )
        }
        true => (Vec::new(), None, None),
    };
    install(stdin_r.as_ref().map_or(null.as_fd(), |f| f.as_fd()), 0)?;
    install(out_w.as_ref().map_or(null.as_fd(), |f| f.as_fd()), 1)?;
    install(err_w.as_ref().map_or(null.as_fd(), |f| f.as_fd()), 2)?;
    drop((stdin_r, out_w, err_w));

    let signals = block_sigchld()?;
    let runtime = Runtime::new(&config.runtime_root);
    let created = runtime.create_attached(
        &id,
        &CreateOptions {
            bundle: config.bundle.clone(),
            ..Default::default()
        },
    );
    // The container holds its ends now; ours must go, or no EOF ever comes.
    for fd in 0..3 {
        install(null.as_fd(), fd)?;
    }
    let Attached { pid, master } = created.map_err(|e| e.to_string())?;
    let pid = Pid::from_raw(pid);
    let _ = report.say(&format!("created {pid}"));
    if !report.wait_go() {
        let _ = runtime.delete(&id, true);
        return Err("the engine cancelled the start".into());
    }
    if let Err(e) = runtime.start(&id) {
        let _ = runtime.delete(&id, true);
        return Err(e.to_string());
    }
    let _ = report.say("started");
    report.close();

    let mut log = LogWriter::open(&config.log).map_err(|e| format!("open log: {e}"))?;
    let mut sources: Vec<(OwnedFd, Stream)> = outputs;
    let mut input = Input {
        fd: None,
        pending: VecDeque::new(),
        close_when_drained: false,
        master: master.as_ref().map(|m| m.as_fd()),
    };
    if let Some(m) = &master {
        let dup = m.try_clone().map_err(|e| format!("dup terminal: {e}"))?;
        sources.push((dup, Stream::Stdout));
        if config.stdin {
            input.fd = Some(m.try_clone().map_err(|e| format!("dup terminal: {e}"))?);
        }
    } else if let Some(w) = stdin_w {
        input.fd = Some(w);
    }
    if let Some(fd) = &input.fd {
        set_nonblocking(fd.as_fd());
    }
    // The daemon learns of the exit when these connections close: they must
    // outlive the exit record.
    let mut clients = Vec::new();
    let code = pump_until_exit(
        pid,
        &signals,
        &listener,
        &mut clients,
        &mut sources,
        &mut input,
        &mut |bytes, stream| log.write(stream, bytes),
    );
    // What is left in the pipes once the process is gone.
    for (fd, stream) in &sources {
        set_nonblocking(fd.as_fd());
        let mut buf = [0u8; 16384];
        while let Ok(n @ 1..) = nix::unistd::read(fd, &mut buf) {
            log.write(*stream, &buf[..n]);
        }
    }
    log.finish();
    let oom_killed = runtime.oom_kill_count(&id).is_ok_and(|n| n > 0);
    let _ = runtime.delete(&id, true);
    let _ = nix::mount::umount2(&config.rootfs, nix::mount::MntFlags::MNT_DETACH);
    let record = ExitRecord {
        code,
        finished_at: now_rfc3339_nano(),
        oom_killed,
    };
    let text = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(&config.exit_file, &text)
        .map_err(|e| format!("write exit record: {e}"))?;
    drop(listener);
    let _ = std::fs::remove_file(&config.socket);
    drop(clients);
    Ok(())
}

/// `bosun engine-exec CONFIG_JSON`: run one process in a running container with
/// this helper's stdio; stdin arrives framed (see [`frame`]) on fd 0. Exits
/// with the process's exit code.
pub fn exec_main(arg: &str) -> i32 {
    let config: ExecConfig = match serde_json::from_str(arg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("engine-exec: bad configuration: {e}");
            return 2;
        }
    };
    let status = |value: serde_json::Value| {
        let _ = crate::fsutil::write_atomic(&config.status_file, value.to_string().as_bytes());
    };
    let run = || -> Result<i32, String> {
        let id: ContainerId = config
            .id
            .parse()
            .map_err(|e| format!("container id: {e}"))?;
        let terminal = config.process.terminal().unwrap_or(false);
        // Framed control input stays ours; the process gets a pipe (or the terminal).
        let control = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("dup stdin: {e}"))?;
        let out = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("dup stdout: {e}"))?;
        let (stdin_r, stdin_w) = pipe()?;
        if !terminal {
            install(stdin_r.as_fd(), 0)?;
        }
        drop(stdin_r);
        let signals = block_sigchld()?;
        let launched = Runtime::new(&config.runtime_root).exec_attached(&id, &config.process);
        let null = devnull()?;
        install(null.as_fd(), 0)?;
        let Attached { pid, master } = match launched {
            Ok(a) => a,
            Err(e) => {
                status(serde_json::json!({"error": e.to_string()}));
                // Docker's codes: 127 for a program that is not there, 126
                // for one that cannot be run.
                let missing = e.kind() == bosun_oci::ErrorKind::NotFound
                    || e.to_string().contains("not found")
                    || e.to_string().contains("No such file");
                return Ok(if missing { 127 } else { 126 });
            }
        };
        status(serde_json::json!({"pid": pid}));
        let mut sources = Vec::new();
        let mut input = Input {
            fd: Some(stdin_w),
            pending: VecDeque::new(),
            close_when_drained: false,
            master: master.as_ref().map(|m| m.as_fd()),
        };
        if let Some(m) = &master {
            sources.push((m.try_clone().map_err(|e| e.to_string())?, Stream::Stdout));
            input.fd = Some(m.try_clone().map_err(|e| e.to_string())?);
        }
        if let Some(fd) = &input.fd {
            set_nonblocking(fd.as_fd());
        }
        let mut out = File::from(out);
        let code = pump_exec(
            Pid::from_raw(pid),
            &signals,
            control,
            &mut sources,
            &mut input,
            &mut out,
        );
        Ok(code)
    };
    match run() {
        Ok(code) => code,
        Err(message) => {
            status(serde_json::json!({"error": message}));
            126
        }
    }
}

fn spec_terminal(bundle: &Path) -> Result<bool, String> {
    let text = std::fs::read(bundle.join("config.json")).map_err(|e| format!("read spec: {e}"))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("parse spec: {e}"))?;
    Ok(spec["process"]["terminal"].as_bool().unwrap_or(false))
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}

/// SIGCHLD blocked and read from a signalfd, so an exit between the fork and
/// the first poll is never missed.
fn block_sigchld() -> Result<SignalFd, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGPIPE);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| format!("block signals: {e}"))?;
    let mut only_chld = SigSet::empty();
    only_chld.add(Signal::SIGCHLD);
    SignalFd::with_flags(&only_chld, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Reap every exited child (we are a subreaper); `pid`'s code if it ended.
fn reap(pid: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(status) if status.pid() == Some(pid) => {
                if let Some(code) = exit_code(status) {
                    found = Some(code);
                }
            }
            Ok(_) => {}
        }
    }
}

/// Apply one control frame to the process's input or terminal.
fn apply_frame(kind: u8, payload: &[u8], input: &mut Input<'_>) {
    let master = input.master;
    match kind {
        frame::STDIN => input.push(payload),
        frame::CLOSE_STDIN => {
            // A terminal has no half-close: EOF is the terminal's ^D.
            match master {
                Some(_) => input.push(&[4]),
                None => input.close_when_drained = true,
            }
        }
        frame::RESIZE if payload.len() == 4 => {
            if let Some(m) = master {
                let rows = u16::from_be_bytes([payload[0], payload[1]]);
                let cols = u16::from_be_bytes([payload[2], payload[3]]);
                let _ = bosun_runtime::set_winsize(m, rows, cols);
            }
        }
        _ => {}
    }
}

/// A container's loop: output to the log, control connections to the input,
/// until the container's process has ended. Returns its exit code.
fn pump_until_exit(
    pid: Pid,
    signals: &SignalFd,
    listener: &UnixListener,
    clients: &mut Vec<(UnixStream, FrameReader)>,
    sources: &mut Vec<(OwnedFd, Stream)>,
    input: &mut Input<'_>,
    sink: &mut dyn FnMut(&[u8], Stream),
) -> i32 {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(code) = reap(pid) {
            return code;
        }
        let mut fds = vec![
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        ];
        for (fd, _) in sources.iter() {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        for (c, _) in clients.iter() {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let want_out = input.fd.is_some() && !input.pending.is_empty();
        if let (true, Some(fd)) = (want_out, &input.fd) {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 255,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(_)) = signals.read_signal() {}
        }
        let base = 2;
        let mut dead_sources = Vec::new();
        for (i, (fd, stream)) in sources.iter().enumerate() {
            if !ready[base + i] {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => dead_sources.push(i),
                Ok(n) => sink(&buf[..n], *stream),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                // EIO: the terminal's last process closed it.
                Err(_) => dead_sources.push(i),
            }
        }
        let cbase = base + sources.len();
        let mut dead_clients = Vec::new();
        for (i, (c, reader)) in clients.iter_mut().enumerate() {
            if !ready[cbase + i] {
                continue;
            }
            match c.read(&mut buf) {
                Ok(0) => dead_clients.push(i),
                Ok(n) => match reader.feed(&buf[..n]) {
                    Some(frames) => {
                        for (kind, payload) in frames {
                            apply_frame(kind, &payload, input);
                        }
                    }
                    None => dead_clients.push(i),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => dead_clients.push(i),
            }
        }
        for i in dead_clients.into_iter().rev() {
            clients.remove(i);
        }
        // New connections last: the indexes above follow this round's poll set.
        if ready[1] {
            while let Ok((c, _)) = listener.accept() {
                let _ = c.set_nonblocking(true);
                clients.push((c, FrameReader::default()));
            }
        }
        for i in dead_sources.into_iter().rev() {
            sources.remove(i);
        }
        input.flush();
    }
}

/// An exec's loop: framed input from `control`, terminal output to `out`.
fn pump_exec(
    pid: Pid,
    signals: &SignalFd,
    control: OwnedFd,
    sources: &mut Vec<(OwnedFd, Stream)>,
    input: &mut Input<'_>,
    out: &mut File,
) -> i32 {
    let mut control = Some(File::from(control));
    let mut reader = FrameReader::default();
    let mut buf = vec![0u8; 32 * 1024];
    let code = loop {
        if let Some(code) = reap(pid) {
            break code;
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        for (fd, _) in sources.iter() {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        let control_at = fds.len();
        if let Some(c) = &control {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        if let (false, Some(fd)) = (input.pending.is_empty(), &input.fd) {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break 255,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(_)) = signals.read_signal() {}
        }
        let mut dead = Vec::new();
        for (i, (fd, _)) in sources.iter().enumerate() {
            if !ready[1 + i] {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => dead.push(i),
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(_) => dead.push(i),
            }
        }
        for i in dead.into_iter().rev() {
            sources.remove(i);
        }
        if control.is_some() && ready.get(control_at) == Some(&true) {
            let c = control.as_mut().map(|c| c.read(&mut buf));
            match c {
                Some(Ok(n @ 1..)) => match reader.feed(&buf[..n]) {
                    Some(frames) => {
                        for (kind, payload) in frames {
                            apply_frame(kind, &payload, input);
                        }
                    }
                    None => control = None,
                },
                Some(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                _ => {
                    // The daemon went away or closed stdin for good.
                    control = None;
                    if input.master.is_none() {
                        input.close_when_drained = true;
                    }
                }
            }
        }
        input.flush();
    };
    for (fd, _) in sources.iter() {
        set_nonblocking(fd.as_fd());
        while let Ok(n @ 1..) = nix::unistd::read(fd, &mut buf) {
            let _ = out.write_all(&buf[..n]);
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join() {
        let mut r = FrameReader::default();
        let mut bytes = frame::encode(frame::STDIN, b"hello");
        bytes.extend(frame::resize(24, 80));
        let (a, b) = bytes.split_at(3);
        assert_eq!(r.feed(a), Some(vec![]));
        let frames = r.feed(b).expect("valid frames");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], (frame::STDIN, b"hello".to_vec()));
        assert_eq!(frames[1], (frame::RESIZE, vec![0, 24, 0, 80]));
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut r = FrameReader::default();
        let mut bytes = vec![frame::STDIN];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(r.feed(&bytes), None);
    }
}
