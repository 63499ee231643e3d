//! OCI hooks: run a program with the container state on its stdin.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};
use crate::state::State;

/// Run each hook in order; the first failure stops the rest.
pub(crate) fn run_all(hooks: Option<&Vec<Hook>>, state: &State) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    if hooks.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(state).unwrap_or_default();
    for hook in hooks {
        run_one(hook, &input)?;
    }
    Ok(())
}

fn run_one(hook: &Hook, input: &[u8]) -> Result<()> {
    let path = hook.path().display().to_string();
    let fail = |message: String| Error::Hook {
        path: path.clone(),
        message,
    };
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(argv0) = args.first() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is allowed: ignore EPIPE.
        let _ = stdin.write_all(input);
    }
    let Some(deadline) = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t as u64))
    else {
        let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
        return if status.success() {
            Ok(())
        } else {
            Err(fail(format!("exited with {status}")))
        };
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("exited with {status}")))
    }
}
