//! Healthchecks (`HEALTHCHECK`, `--health-cmd`): the test runs as an exec in
//! the running container every interval; its results make the container
//! `starting`, `healthy` or `unhealthy`, shown by inspect and `ps`, and
//! reported as `health_status` events.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::engine::{Container, Engine};
use crate::exec::{Exec, ExecRequest, ExecState};
use crate::model::{Health, Healthcheck};
use crate::time::now_rfc3339_nano;

/// How many results inspect keeps (Docker keeps five).
const KEEP: usize = 5;

/// The command a healthcheck runs, or None when there is none (`NONE`).
pub(crate) fn command(h: &Healthcheck) -> Option<Vec<String>> {
    match h.test.first().map(String::as_str) {
        Some("CMD") if h.test.len() > 1 => Some(h.test[1..].to_vec()),
        Some("CMD-SHELL") if h.test.len() > 1 => {
            Some(vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")])
        }
        _ => None,
    }
}

fn duration(ns: i64, default: Duration) -> Duration {
    match ns {
        n if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The state after one probe. Failures inside the start period do not count.
pub(crate) fn next(health: &Health, code: i32, retries: u32, starting: bool) -> Health {
    let mut h = health.clone();
    if code == 0 {
        h.status = "healthy".into();
        h.failing_streak = 0;
    } else if !starting {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    h
}

impl Engine {
    /// Run the container's healthcheck for as long as this run of it lasts.
    pub(crate) fn start_health(self: &Arc<Self>, c: Arc<Container>) {
        let rec = c.record();
        let Some(check) = rec.config.healthcheck.clone() else {
            return;
        };
        let Some(cmd) = command(&check) else {
            return;
        };
        let interval = duration(check.interval, Duration::from_secs(30));
        let timeout = duration(check.timeout, Duration::from_secs(30));
        let start_period = duration(check.start_period, Duration::ZERO);
        let retries = match check.retries {
            n if n > 0 => n as u32,
            _ => 3,
        };
        let _ = c.set_health(Some(Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }));
        let engine = self.clone();
        let exits = c.subscribe().borrow().exits;
        tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(interval).await;
                let now = *c.subscribe().borrow();
                if now.exits != exits || now.removed || !now.status.is_live() {
                    return;
                }
                let start = now_rfc3339_nano();
                let (code, output) = engine.probe(&c, &cmd, timeout).await;
                let Some(before) = c.record().state.health else {
                    return;
                };
                let mut after = next(&before, code, retries, began.elapsed() < start_period);
                after.log.push(json!({
                    "Start": start, "End": now_rfc3339_nano(), "ExitCode": code, "Output": output,
                }));
                if after.log.len() > KEEP {
                    after.log.remove(0);
                }
                let changed = after.status != before.status;
                let status = after.status.clone();
                if c.set_health(Some(after)).is_err() {
                    return;
                }
                if changed {
                    engine.emit_health(&c, &status);
                }
            }
        });
    }

    /// One run of the test: its exit code (-1 when it could not run or timed
    /// out) and the start of its output.
    async fn probe(&self, c: &Container, cmd: &[String], timeout: Duration) -> (i32, String) {
        let exec = Exec {
            id: crate::engine::random_id(),
            container: c.id.clone(),
            request: ExecRequest {
                attach_stdout: true,
                attach_stderr: true,
                cmd: cmd.to_vec(),
                ..Default::default()
            },
            state: std::sync::Mutex::new(ExecState::default()),
            control: tokio::sync::Mutex::new(None),
        };
        let Ok(mut running) = self.exec_spawn_quiet(&exec) else {
            return (-1, "the healthcheck could not start".into());
        };
        let mut stdout = running.child.stdout.take();
        let mut stderr = running.child.stderr.take();
        let read = async {
            let mut out = Vec::new();
            if let Some(o) = stdout.as_mut() {
                let _ = o.read_to_end(&mut out).await;
            }
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_end(&mut out).await;
            }
            let status = running.child.wait().await;
            (status.ok().and_then(|s| s.code()).unwrap_or(-1), out)
        };
        let result = tokio::time::timeout(timeout, read).await;
        let _ = std::fs::remove_file(&running.status_file);
        match result {
            Ok((code, out)) => {
                let text = String::from_utf8_lossy(&out[..out.len().min(4096)]).into_owned();
                (code, text)
            }
            Err(_) => (-1, format!("Health check exceeded timeout ({timeout:?})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(status: &str, streak: u32) -> Health {
        Health {
            status: status.into(),
            failing_streak: streak,
            log: Vec::new(),
        }
    }

    #[test]
    fn commands() {
        let shell = Healthcheck {
            test: vec!["CMD-SHELL".into(), "wget -q localhost".into()],
            ..Default::default()
        };
        assert_eq!(command(&shell).expect("cmd")[2], "wget -q localhost");
        let none = Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(command(&none), None);
    }

    #[test]
    fn transitions() {
        assert_eq!(next(&h("starting", 0), 0, 3, false).status, "healthy");
        let one = next(&h("healthy", 0), 1, 2, false);
        assert_eq!((one.status.as_str(), one.failing_streak), ("healthy", 1));
        assert_eq!(next(&one, 1, 2, false).status, "unhealthy");
        // In the start period failures do not count.
        assert_eq!(next(&h("starting", 0), 1, 1, true).failing_streak, 0);
    }
}
