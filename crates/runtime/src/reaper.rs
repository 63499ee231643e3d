//! `--init`: a minimal init as PID 1 of the container, like Docker's
//! (tini). The container's init process forks right before `execve`: the
//! child runs the configured program; the parent stays PID 1, forwards the
//! signals it gets to that child, reaps every orphan that the namespace
//! hands it, and exits with the child's exit code. It is this runtime's own
//! code, already in memory, so no binary needs to be in the image.
//!
//! Asked for with the annotation `run.bosun.init` = `true`.

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The annotation that asks for the init.
pub(crate) const ANNOTATION: &str = "run.bosun.init";

/// Prepare before the fork: handlers and a blocked mask, so no signal sent
/// between the fork and the loop is lost. The child unblocks in `exec`.
pub(crate) fn prepare() -> nix::Result<SignalFd> {
    // What `run` forwards, and the window size (a terminal's program wants it).
    let mut set = SigSet::empty();
    for s in crate::wait::FORWARDED.iter().chain([&Signal::SIGWINCH]) {
        crate::sys::catch_signal(*s)?;
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// PID 1's loop; never returns.
pub(crate) fn run(child: Pid, signals: SignalFd) -> ! {
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => crate::sys::exit_now(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    crate::sys::exit_now(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::NONE);
        while let Ok(Some(info)) = signals.read_signal() {
            if let Ok(sig) = Signal::try_from(info.ssi_signo as i32)
                && sig != Signal::SIGCHLD
            {
                let _ = kill(child, sig);
            }
        }
    }
}
