//! The image builder's host side: RUN steps as `bosun runtime run` child
//! processes of the bosun binary (the runtime forks into namespaces and
//! wants a process of its own), and `ADD URL` downloads. Used by `bosun
//! build` and by the engine's `POST /build`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bosun_image::build::{RunRequest, StepRunner};
use serde_json::{Value, json};

use crate::spec::DEFAULT_CAPS;

/// Runs RUN steps with this binary's runtime in a child process.
#[derive(Debug, Clone)]
pub struct ChildRuntime {
    exe: PathBuf,
}

impl ChildRuntime {
    /// Steps run by `exe`, the bosun binary.
    pub fn new(exe: PathBuf) -> Self {
        Self { exe }
    }
}

impl StepRunner for ChildRuntime {
    fn run(&self, req: &RunRequest, output: &mut dyn Write) -> io::Result<i32> {
        let bundle = req.scratch.join("bundle");
        std::fs::create_dir_all(&bundle)?;
        std::fs::write(bundle.join("config.json"), spec_for(req)?.to_string())?;
        let state = req.scratch.join("state");
        let (mut reader, writer) = io::pipe()?;
        let mut child = Command::new(&self.exe)
            .arg("runtime")
            .arg("--root")
            .arg(&state)
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&req.id)
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .spawn()?;
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // Progress output is best effort.
                    let _ = output.write_all(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let status = child.wait()?;
        Ok(status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        }))
    }

    fn cleanup(&self, scratch: &Path, id: &str) {
        // Kills the step's container and removes its runtime state.
        let _ = Command::new(&self.exe)
            .arg("runtime")
            .arg("--root")
            .arg(scratch.join("state"))
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn fetch(&self, url: &str, out: &mut dyn Write) -> Result<(), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
            let mut response = client.get(url).send().await.map_err(|e| {
                let reason = std::error::Error::source(&e)
                    .map(|s| format!("{e}: {s}"))
                    .unwrap_or_else(|| e.to_string());
                format!("unreachable: {reason}")
            })?;
            if !response.status().is_success() {
                return Err(format!("the server answered {}", response.status()));
            }
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| format!("download cut short: {e}"))?
            {
                out.write_all(&chunk)
                    .map_err(|e| format!("cannot store the download: {e}"))?;
            }
            Ok(())
        })
    }
}

/// The bundle config for one RUN step: the runtime's default spec with the
/// step's process, Docker's capabilities and, normally, the host network.
fn spec_for(req: &RunRequest) -> io::Result<Value> {
    let mut spec =
        serde_json::to_value(bosun_runtime::default_spec(None)).map_err(io::Error::other)?;
    spec["root"] = json!({"path": req.rootfs, "readonly": false});
    spec["hostname"] = json!("bosun-build");
    let caps = json!(DEFAULT_CAPS);
    let rlimits = spec["process"]["rlimits"].clone();
    spec["process"] = json!({
        "rlimits": rlimits,
        "terminal": false,
        "args": req.args,
        "env": req.env,
        "cwd": req.cwd,
        "user": {"uid": req.uid, "gid": req.gid, "additionalGids": req.additional_gids},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": false,
    });
    // Docker's default seccomp profile for these capabilities, as a RUN step
    // under Docker's builder gets.
    let caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    spec["linux"]["seccomp"] =
        serde_json::to_value(bosun_runtime::default_seccomp(&caps)).map_err(io::Error::other)?;
    if req.host_network
        && let Some(ns) = spec["linux"]["namespaces"].as_array_mut()
    {
        ns.retain(|n| n["type"] != "network");
    }
    // With the host's network, its name resolution too, where the image has
    // the files to bind over (creating them would leak into the layer).
    if req.host_network {
        for file in ["/etc/resolv.conf", "/etc/hosts"] {
            let inside = req.rootfs.join(file.trim_start_matches('/'));
            let is_file = std::fs::symlink_metadata(&inside).is_ok_and(|m| m.is_file());
            if is_file
                && Path::new(file).exists()
                && let Some(mounts) = spec["mounts"].as_array_mut()
            {
                mounts.push(json!({
                    "destination": file,
                    "type": "bind",
                    "source": file,
                    "options": ["rbind", "ro"],
                }));
            }
        }
    }
    Ok(spec)
}
