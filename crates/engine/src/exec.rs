//! `docker exec`: a process started in a running container by an exec helper
//! (`bosun engine-exec`, see `shim.rs`) that stays the daemon's child.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::{Engine, random_id};
use crate::error::{EngineError, Result};
use crate::model::nullable;
use crate::shim::ExecConfig;

/// `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ExecRequest {
    #[serde(deserialize_with = "nullable")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stderr: bool,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(deserialize_with = "nullable")]
    pub cmd: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ExecState {
    pub running: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
    pub started: bool,
}

#[derive(Debug)]
pub(crate) struct Exec {
    pub id: String,
    pub container: String,
    pub request: ExecRequest,
    pub state: Mutex<ExecState>,
    /// The helper's framed input while it runs (stdin and resize).
    pub control: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
}

impl Exec {
    pub(crate) fn inspect(&self) -> Value {
        let s = self.state.lock().expect("exec lock").clone();
        json!({
            "ID": self.id,
            "ContainerID": self.container,
            "Running": s.running,
            "ExitCode": s.exit_code,
            "Pid": s.pid,
            "OpenStdin": self.request.attach_stdin,
            "OpenStdout": self.request.attach_stdout,
            "OpenStderr": self.request.attach_stderr,
            "CanRemove": false,
            "DetachKeys": "",
            "ProcessConfig": {
                "tty": self.request.tty,
                "entrypoint": self.request.cmd.first(),
                "arguments": self.request.cmd.get(1..).unwrap_or_default(),
                "privileged": self.request.privileged,
                "user": self.request.user,
            },
        })
    }
}

/// A started exec: the helper process and where its launch status lands.
#[derive(Debug)]
pub(crate) struct Running {
    pub child: tokio::process::Child,
    pub status_file: PathBuf,
}

impl Engine {
    pub(crate) fn exec_create(&self, name_or_id: &str, request: ExecRequest) -> Result<String> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        if !rec.state.status.is_live() {
            return Err(EngineError::NotRunning(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if request.cmd.is_empty() || request.cmd[0].is_empty() {
            return Err(EngineError::Invalid("No exec command specified".into()));
        }
        let id = random_id();
        let exec = Arc::new(Exec {
            id: id.clone(),
            container: rec.id.clone(),
            request,
            state: Mutex::new(ExecState::default()),
            control: tokio::sync::Mutex::new(None),
        });
        self.execs
            .lock()
            .expect("execs lock")
            .insert(id.clone(), exec);
        self.emit(
            "container",
            &format!(
                "exec_create: {}",
                exec_cmd_line(&self.exec(&id)?.request.cmd)
            ),
            &rec.id,
            &[("name", &rec.name), ("execID", &id)],
        );
        Ok(id)
    }

    pub(crate) fn exec(&self, id: &str) -> Result<Arc<Exec>> {
        self.execs
            .lock()
            .expect("execs lock")
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
    }

    /// Start the helper for exec `exec`; its stdio are pipes for the caller.
    pub(crate) fn exec_spawn(&self, exec: &Exec) -> Result<Running> {
        let running = self.exec_spawn_quiet(exec)?;
        let c = self.find(&exec.container)?.record();
        self.emit(
            "container",
            &format!("exec_start: {}", exec_cmd_line(&exec.request.cmd)),
            &c.id,
            &[("name", &c.name), ("execID", &exec.id)],
        );
        Ok(running)
    }

    /// `exec_spawn` without the event (healthchecks run quietly, as in Docker).
    pub(crate) fn exec_spawn_quiet(&self, exec: &Exec) -> Result<Running> {
        {
            let mut s = exec.state.lock().expect("exec lock");
            if s.started {
                return Err(EngineError::Conflict(format!(
                    "exec {} has already been started",
                    exec.id
                )));
            }
            s.started = true;
        }
        let c = self.find(&exec.container)?;
        let rec = c.record();
        if !rec.state.status.is_live() {
            return Err(EngineError::NotRunning(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let spec_text = std::fs::read(c.dir.join("config.json"))
            .map_err(|e| EngineError::internal("read the container's spec", e))?;
        let spec: Value = serde_json::from_slice(&spec_text)
            .map_err(|e| EngineError::internal("parse the container's spec", e))?;
        let mut process = spec["process"].clone();
        let req = &exec.request;
        process["args"] = json!(req.cmd);
        process["terminal"] = json!(req.tty);
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for e in &req.env {
            crate::spec::set_env(&mut env, e);
        }
        if req.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process["env"] = json!(env);
        if !req.working_dir.is_empty() {
            process["cwd"] = json!(req.working_dir);
        }
        if !req.user.is_empty() {
            let root = PathBuf::from(format!("/proc/{}/root", rec.state.pid));
            let (uid, gid, groups) =
                bosun_image::build::resolve_user(&root, &req.user).map_err(|e| {
                    EngineError::Invalid(format!("unable to find user {}: {e}", req.user))
                })?;
            process["user"] = json!({"uid": uid, "gid": gid, "additionalGids": groups});
        }
        if req.privileged {
            let all = crate::spec::capabilities(&crate::model::HostConfig {
                privileged: true,
                ..Default::default()
            })?;
            process["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
        }
        let process = serde_json::from_value(process)
            .map_err(|e| EngineError::internal("exec process", e))?;
        let status_file = self.exec_root().join(format!("exec-{}.json", exec.id));
        let config = ExecConfig {
            id: rec.id.clone(),
            runtime_root: self.runtime_root(),
            process,
            status_file: status_file.clone(),
        };
        let arg = serde_json::to_string(&config).map_err(|e| EngineError::internal("exec", e))?;
        let child = tokio::process::Command::new(self.exe())
            .arg("engine-exec")
            .arg(arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| EngineError::internal("start the exec helper", e))?;
        {
            let mut s = exec.state.lock().expect("exec lock");
            s.running = true;
        }
        Ok(Running { child, status_file })
    }

    /// Record how the exec ended; returns the launch error, if it never ran.
    pub(crate) fn exec_finish(
        &self,
        exec: &Exec,
        code: i32,
        status_file: &PathBuf,
    ) -> Option<String> {
        let status: Option<Value> = std::fs::read(status_file)
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok());
        let _ = std::fs::remove_file(status_file);
        let error = status
            .as_ref()
            .and_then(|s| s["error"].as_str().map(str::to_owned));
        let mut s = exec.state.lock().expect("exec lock");
        s.running = false;
        s.exit_code = Some(code);
        s.pid = status.and_then(|s| s["pid"].as_i64()).unwrap_or(0) as i32;
        drop(s);
        self.emit(
            "container",
            "exec_die",
            &exec.container,
            &[("execID", &exec.id), ("exitCode", &code.to_string())],
        );
        error
    }
}

fn exec_cmd_line(cmd: &[String]) -> String {
    cmd.join(" ")
}
