//! The container life cycle through the runc command line.

mod common;

use std::io::Read;
use std::os::fd::AsFd;

use common::*;
use serde_json::json;

#[test]
fn create_start_kill_delete() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sleep", "60"]);
    let id = unique_id("life");
    let pid_file = b.path().join("pid");
    rt.ok(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    let state = rt.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["ociVersion"], "1.2.0");
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    // Created: the process exists but has not exec'd the user program yet.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!comm.starts_with("sleep"), "{comm}");

    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
    rt.wait_until(|| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .starts_with("sleep")
    });
    // start twice is refused.
    let again = rt.exec_files(&["start", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("running"));

    // Listed while running.
    let list: serde_json::Value =
        serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str() && s["status"] == "running")
    );

    // delete without --force refuses a running container.
    let del = rt.exec_files(&["delete", &id]);
    assert!(!del.status.success());

    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    rt.ok(&["delete", &id]);
    assert!(!rt.exec_files(&["state", &id]).status.success());
    assert!(!rt.root().join(&id).exists());
}

#[test]
fn flags_after_the_container_id_are_accepted() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sleep", "60"]);
    let id = unique_id("order");
    rt.ok(&["create", &id, "--bundle", b.path().to_str().unwrap()]);
    rt.ok(&["start", &id]);
    rt.ok(&["kill", &id, "9"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id, "--force"]);
}

#[test]
fn exit_codes_and_signals_propagate() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sh", "-c", "exit 7"]);
    assert_eq!(rt.run(&b, &unique_id("exit")).0, 7);
    // PID 1 of a pid namespace cannot be killed from inside; `kill` from outside can.
    b.args(&["sleep", "60"]);
    let sig_id = unique_id("sig");
    let mut runner = rt
        .command()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &sig_id])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    rt.wait_until(|| {
        rt.exec_files(&["state", &sig_id]).status.success() && rt.status(&sig_id) == "running"
    });
    rt.ok(&["kill", &sig_id, "KILL"]);
    assert_eq!(runner.wait().unwrap().code(), Some(128 + 9));
    // A TERM handler in the container sees a forwarded TERM.
    b.args(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
    ]);
    let id = unique_id("fwd");
    let mut child = rt
        .command()
        .args(["run", "--bundle", b.path().to_str().unwrap(), &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(3));
    assert!(
        !rt.root().join(&id).exists(),
        "run must delete the container"
    );
}

#[test]
fn exec_joins_the_container_namespaces() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| c["hostname"] = json!("execbox"));
    b.args(&["sleep", "60"]);
    let id = unique_id("exec");
    rt.start_detached(&b, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let out = rt.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; for n in net mnt pid; do readlink /proc/self/ns/$n; done; cat /proc/1/cmdline",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "execbox");
    for (i, ns) in ["net", "mnt", "pid"].iter().enumerate() {
        let want = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_eq!(
            lines[1 + i],
            want.to_str().unwrap(),
            "{ns} namespace differs"
        );
    }
    assert!(lines[4].starts_with("sleep"), "{out}");
    // Exit codes, env and cwd of exec.
    let o = rt.exec_files(&[
        "exec",
        "--env",
        "X=42",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $X $(pwd); exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "42 /tmp\n");
    // --process with a user.
    let proc_json = b.path().join("process.json");
    std::fs::write(&proc_json, json!({"args": ["id", "-u"], "cwd": "/", "user": {"uid": 65534, "gid": 65534}, "env": ["PATH=/bin"]}).to_string()).unwrap();
    assert_eq!(
        rt.ok(&["exec", "--process", proc_json.to_str().unwrap(), &id]),
        "65534\n"
    );
    // Detached exec leaves a process in the container.
    let pidf = b.path().join("exec.pid");
    rt.ok(&[
        "exec",
        "-d",
        "--pid-file",
        pidf.to_str().unwrap(),
        &id,
        "sleep",
        "50",
    ]);
    let epid: i32 = std::fs::read_to_string(&pidf).unwrap().parse().unwrap();
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        pids.contains(&epid) && pids.contains(&(pid as i32)),
        "{pids:?}"
    );
    rt.ok(&["kill", "--all", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
}

#[test]
fn terminal_through_console_socket() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    });
    b.args(&[
        "sh",
        "-c",
        "tty; stty size; test -t 0 && echo stdin-is-tty; ls -l /dev/console | cut -c1",
    ]);
    let id = unique_id("tty");
    let console = ConsoleSocket::new();
    // Without a console socket a terminal cannot be set up by a detached create.
    let refused = rt.exec_files(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("console-socket"));
    assert!(!rt.root().join(&id).exists());

    let path = console.path().to_str().unwrap().to_owned();
    let bundle = b.path().to_str().unwrap().to_owned();
    let creator = {
        let mut c = rt.command();
        c.args([
            "create",
            "--bundle",
            &bundle,
            "--console-socket",
            &path,
            &id,
        ]);
        c.stdin(std::process::Stdio::null());
        c.spawn().unwrap()
    };
    let master = console.receive();
    let out = creator.wait_with_output().unwrap();
    assert!(out.status.success());
    rt.ok(&["start", &id]);
    let mut text = String::new();
    let mut f = std::fs::File::from(master.as_fd().try_clone_to_owned().unwrap());
    let mut buf = [0u8; 1024];
    // Read until the terminal closes (EIO once the container exits).
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    assert!(text.contains("30 100"), "{text:?}");
    assert!(text.contains("stdin-is-tty"), "{text:?}");
    assert!(
        text.contains("\nc") || text.contains("\r\nc"),
        "/dev/console should be the pty: {text:?}"
    );
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
}

#[test]
fn pause_and_resume_freeze_progress() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    let out_dir = tempfile::tempdir().unwrap();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/out", "type": "bind", "source": out_dir.path(), "options": ["rbind", "rw"]
        }));
    });
    b.args(&[
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /out/n; sleep 0.01; done",
    ]);
    let id = unique_id("pause");
    rt.start_detached(&b, &id);
    let read = || {
        std::fs::read_to_string(out_dir.path().join("n"))
            .unwrap_or_default()
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    rt.wait_until(|| read() > 3);
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    let frozen = read();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(read(), frozen, "counter moved while paused");
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    rt.wait_until(|| read() > frozen + 3);
    rt.ok(&["delete", "--force", &id]);
    assert!(!rt.root().join(&id).exists());
}

#[test]
fn hooks_run_in_order_with_state_on_stdin() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().to_str().unwrap().to_owned();
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo {name} \"$s\" >> {log_path}")]});
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    b.args(&["true"]);
    let id = unique_id("hooks");
    rt.run_ok(&b, &id);
    let text = std::fs::read_to_string(log.path()).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    for line in text.lines() {
        let state: serde_json::Value =
            serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        assert_eq!(state["id"], id.as_str());
    }
    // startContainer runs inside the container, after pivot_root, before the process.
    b.edit(|c| c["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "read s; echo \"$s\" > /tmp/started"]}]}));
    b.args(&["cat", "/tmp/started"]);
    let started: serde_json::Value =
        serde_json::from_str(&rt.run_ok(&b, &unique_id("starthook"))).unwrap();
    assert!(started["pid"].as_i64().unwrap() > 1, "{started}");

    // A failing createRuntime hook aborts create and leaves nothing behind.
    b.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]}));
    let id2 = unique_id("hookfail");
    let (code, _, err) = rt.run(&b, &id2);
    assert_ne!(code, 0);
    assert!(err.contains("hook /bin/false"), "{err}");
    assert!(!rt.root().join(&id2).exists());
    // A hook that outlives its timeout is killed and reported.
    b.edit(|c| {
        c["hooks"] =
            json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
    });
    let (code, _, err) = rt.run(&b, &unique_id("hooktimeout"));
    assert_ne!(code, 0);
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn preserve_fds_passes_descriptors() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sh", "-c", "cat <&3"]);
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "through fd 3\n").unwrap();
    let file = std::fs::File::open(f.path()).unwrap();
    let id = unique_id("fds");
    let mut cmd = rt.command();
    cmd.args([
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    // Put the file at fd 3 in the child only.
    unsafe_pre_exec_dup(&mut cmd, raw);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through fd 3\n");
}

fn unsafe_pre_exec_dup(cmd: &mut std::process::Command, fd: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: dup2 is async-signal-safe; the closure runs between fork and exec.
    #[allow(unsafe_code, reason = "placing a descriptor at fd 3 for the child")]
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn spec_and_features() {
    let rt = Rt::new();
    let dir = tempfile::tempdir().unwrap();
    rt.ok(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    assert!(
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "pid")
    );
    // Refuses to overwrite.
    assert!(
        !rt.exec_files(&["spec", "--bundle", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    let features: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(features["linux"]["cgroup"]["v2"], true);
    assert!(
        features["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("user"))
    );
}

#[test]
fn systemd_cgroup_is_refused_clearly() {
    let rt = Rt::new();
    let out = rt.exec_files(&["--systemd-cgroup", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--systemd-cgroup is not supported"));
}
