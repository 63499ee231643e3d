//! The resident runtime of `run` and `exec`: forward signals to the container
//! process, proxy its terminal, reap it, and report how it ended.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Context, Result};

pub(crate) const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGPIPE,
];

/// Signals are blocked from before the fork, so none sent while the container
/// starts is lost: they queue on the signalfd and are forwarded once it runs.
#[derive(Debug)]
pub(crate) struct Forwarder {
    sfd: SignalFd,
    old: SigSet,
}

impl Forwarder {
    pub(crate) fn block() -> Result<Self> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(*s);
        }
        set.add(Signal::SIGCHLD);
        set.add(Signal::SIGWINCH);
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .ctx(|| "block signals".into())?;
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .ctx(|| "signalfd".into())?;
        Ok(Self { sfd, old })
    }

    /// Wait for `pid` (our child) to end; returns its exit code (128+N if killed by N).
    pub(crate) fn wait(self, pid: Pid, master: Option<BorrowedFd<'_>>) -> Result<i32> {
        let raw = master.and_then(|_| RawMode::enter());
        if let Some(m) = master {
            copy_winsize(m);
        }
        let mut stdin_open = master.is_some();
        let mut buf = [0u8; 8192];
        let code = loop {
            if let Some(code) = reap(pid)? {
                break code;
            }
            let stdin = std::io::stdin();
            let mut fds = vec![PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(m) = master {
                fds.push(PollFd::new(m, PollFlags::POLLIN));
                if stdin_open {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).ctx(|| "poll".into()),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                while let Ok(Some(info)) = self.sfd.read_signal() {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    match sig {
                        Signal::SIGCHLD => {}
                        Signal::SIGWINCH => {
                            if let Some(m) = master {
                                copy_winsize(m);
                            }
                        }
                        other => {
                            let _ = kill(pid, other);
                        }
                    }
                }
            }
            if let Some(m) = master {
                if ready.get(1) == Some(&true) && !pump(m, &mut std::io::stdout(), &mut buf) {
                    // EIO: the container closed the terminal; it is exiting.
                    let code = waitpid(pid, None).map(exit_code).ctx(|| "wait".into())?;
                    break code.unwrap_or(0);
                }
                if ready.get(2) == Some(&true) {
                    match stdin.lock().read(&mut buf) {
                        Ok(0) | Err(_) => stdin_open = false,
                        Ok(n) => {
                            let _ = nix::unistd::write(m, &buf[..n]);
                        }
                    }
                }
            }
        };
        if let Some(m) = master {
            let _ = nix::fcntl::fcntl(
                m,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            while pump(m, &mut std::io::stdout(), &mut buf) {}
        }
        drop(raw);
        Ok(code)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// Copy what the terminal has to `out`; false at end of file or error.
fn pump(master: BorrowedFd<'_>, out: &mut impl Write, buf: &mut [u8]) -> bool {
    match nix::unistd::read(master, buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            true
        }
    }
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Reap every exited child; the exit code of `pid` if it is among them.
fn reap(pid: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Ok(status) if status.pid() == Some(pid) => {
                if let Some(code) = exit_code(status) {
                    return Ok(Some(code));
                }
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).ctx(|| "waitpid".into()),
        }
    }
}

fn copy_winsize(master: BorrowedFd<'_>) {
    if let Ok((rows, cols)) = crate::sys::get_winsize(std::io::stdin().as_fd()) {
        let _ = crate::sys::set_winsize(master, rows, cols);
    }
}

/// The caller's terminal in raw mode for as long as this lives.
struct RawMode(termios::Termios);

impl RawMode {
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Self(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}
