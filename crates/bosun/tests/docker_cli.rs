//! The real docker CLI against `bosun engine` (root): each test starts an
//! engine of its own (see `common/engine.rs`) and checks what the docker
//! CLI prints and returns, and that nothing is left behind.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;

use common::engine::TestEngine;

#[test]
fn run_prints_output_and_returns_the_exit_code() {
    let e = TestEngine::start();
    assert_eq!(
        e.docker_ok(&["run", "--rm", "busybox", "echo", "hi"]),
        "hi\n"
    );
    let out = e.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // --rm removed them.
    assert_eq!(e.docker_ok(&["ps", "-aq"]), "");
    // stdin, with -i, until the client closes it.
    let mut child = e
        .docker_command()
        .args(["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\ndone\n");
}

#[test]
fn detached_web_server_with_a_published_port() {
    let e = TestEngine::start();
    // A port below the ephemeral range that nothing else here uses.
    let port = 20000 + (e.subnet_third * 37) % 9000;
    let mapping = format!("{port}:80");
    let id = e.docker_ok(&[
        "run", "-d", "--name", "web", "-p", &mapping, "busybox", "httpd", "-f", "-vv", "-p", "80",
        "-h", "/var/www",
    ]);
    assert_eq!(id.trim().len(), 64, "docker run -d prints the id: {id:?}");
    // From the host's own loopback.
    let mut page = String::new();
    e.eventually("the page over the published port", || {
        page = TestEngine::http_get(&format!("127.0.0.1:{port}"), "/").unwrap_or_default();
        page.contains("hello-from-bosun")
    });
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    // From another container, through the host (hairpin).
    let url = format!("http://{}:{port}/", e.gateway());
    let fetched = e.docker_ok(&["run", "--rm", "busybox", "wget", "-qO-", &url]);
    assert_eq!(fetched, "hello-from-bosun\n");

    let ps = e.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}} {{.Ports}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    let ip = e.docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    assert!(
        ip.trim().starts_with(&format!("10.89.{}.", e.subnet_third)),
        "{ip}"
    );
    let fields = e.docker_ok(&[
        "inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.Running}} {{.Config.Image}} {{.HostConfig.NetworkMode}}",
        "web",
    ]);
    assert_eq!(fields.trim(), "/web running true busybox default");

    // exec, without and with stdin.
    assert_eq!(
        e.docker_ok(&["exec", "web", "cat", "/var/www/index.html"]),
        "hello-from-bosun\n"
    );
    let out = e.docker(&["exec", "web", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    let mut child = e
        .docker_command()
        .args(["exec", "-i", "web", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
    let out = e.docker(&["exec", "web", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");

    // httpd -vv logs each request to stderr: logs shows it.
    let logs = e.docker(&["logs", "web"]);
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains("url:/"),
        "{logs:?}"
    );

    assert_eq!(e.owned_rules(), 2, "DNAT rules for the published port");
    e.docker_ok(&["stop", "-t", "2", "web"]);
    // httpd is PID 1 and ignores SIGTERM: SIGKILL after the timeout (137).
    let code = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.ExitCode}} {{.State.Status}}",
        "web",
    ]);
    assert_eq!(code.trim(), "137 exited");
    assert_eq!(
        e.owned_rules(),
        0,
        "the rules go with the container's process"
    );
    assert_eq!(e.veths(), 0);
    e.docker_ok(&["rm", "web"]);
    assert_eq!(e.docker_ok(&["ps", "-aq"]), "");
}

#[test]
fn logs_follow_and_filters() {
    let e = TestEngine::start();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick $i; sleep 0.3; done; echo bye >&2",
    ]);
    // Follow until the container ends.
    let out = e.docker(&["logs", "-f", "ticker"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick 1\ntick 2\ntick 3\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "bye\n");
    // The tail counts entries of both streams.
    let tail = e.docker(&["logs", "--tail", "2", "ticker"]);
    assert_eq!(String::from_utf8_lossy(&tail.stdout), "tick 3\n");
    assert_eq!(String::from_utf8_lossy(&tail.stderr), "bye\n");
    let stamped = e.docker_ok(&["logs", "-t", "--tail", "2", "ticker"]);
    assert!(
        stamped.starts_with("20") && stamped.contains("Z tick 3"),
        "{stamped}"
    );
    assert_eq!(
        e.docker_ok(&["logs", "--since", "2099-01-01T00:00:00Z", "ticker"]),
        ""
    );
    assert_eq!(e.docker_ok(&["wait", "ticker"]).trim(), "0");
}

#[test]
fn exec_with_a_terminal() {
    let e = TestEngine::start();
    e.docker_ok(&["run", "-d", "--name", "box", "busybox", "sleep", "60"]);
    // A real pseudo-terminal for the docker CLI, as a user's shell has.
    let script = format!(
        "import os, pty, select, time, sys\n\
         pid, fd = pty.fork()\n\
         if pid == 0:\n\
         \x20   os.environ['DOCKER_HOST'] = 'unix://{}'\n\
         \x20   os.execvp('docker', ['docker', 'exec', '-it', 'box', 'sh'])\n\
         time.sleep(1)\n\
         os.write(fd, b'tty; echo term=$TERM; exit 3\\r')\n\
         out = b''\n\
         end = time.time() + 15\n\
         while time.time() < end:\n\
         \x20   r, _, _ = select.select([fd], [], [], 0.5)\n\
         \x20   if r:\n\
         \x20       try:\n\
         \x20           d = os.read(fd, 4096)\n\
         \x20       except OSError:\n\
         \x20           break\n\
         \x20       if not d:\n\
         \x20           break\n\
         \x20       out += d\n\
         _, st = os.waitpid(pid, 0)\n\
         sys.stdout.write(out.decode(errors='replace'))\n\
         sys.exit(os.waitstatus_to_exitcode(st))\n",
        e.socket.display()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("term=xterm"), "{text}");
    e.docker_ok(&["rm", "-f", "box"]);
}

#[test]
fn named_volumes_persist_across_containers() {
    let e = TestEngine::start();
    e.docker_ok(&["volume", "create", "data"]);
    e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        e.docker_ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    let ro = e.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "touch",
        "/data/g",
    ]);
    assert_ne!(
        ro.status.code(),
        Some(0),
        "a read-only volume refused the write"
    );
    assert!(
        e.docker_ok(&["volume", "ls", "-q"])
            .lines()
            .any(|l| l == "data")
    );
    // In use: refused.
    e.docker_ok(&[
        "create",
        "--name",
        "holder",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    let busy = e.docker(&["volume", "rm", "data"]);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use"),
        "{busy:?}"
    );
    e.docker_ok(&["rm", "holder"]);
    e.docker_ok(&["volume", "rm", "data"]);
    let gone = e.docker(&["volume", "inspect", "data"]);
    assert!(!gone.status.success());
    // Bind mounts and tmpfs.
    let host_dir = e.dir.path().join("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("in"), "from the host\n").unwrap();
    let bind = format!("{}:/mnt", host_dir.display());
    assert_eq!(
        e.docker_ok(&["run", "--rm", "-v", &bind, "busybox", "cat", "/mnt/in"]),
        "from the host\n"
    );
    let fs = e.docker_ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "grep ' /scratch ' /proc/mounts | cut -d' ' -f3",
    ]);
    assert_eq!(fs, "tmpfs\n");
}

#[test]
fn bad_input_gets_docker_errors_and_leaves_nothing() {
    let e = TestEngine::start();
    let out = e.docker(&["run", "--rm", "no-such-image"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    e.docker_ok(&["create", "--name", "taken", "busybox", "true"]);
    let out = e.docker(&["run", "--name", "taken", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{out:?}"
    );
    let out = e.docker(&["run", "--rm", "busybox", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let out = e.docker(&["run", "--rm", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    // A host port that a process holds: refused, and nothing is made.
    let holder = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = e.docker(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sleep",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already"),
        "{out:?}"
    );
    assert_eq!(e.owned_rules(), 0);
    assert_eq!(e.veths(), 0);
    let out = e.docker(&["rm", "nothing-by-this-name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such container"),
        "{out:?}"
    );
    // Invalid JSON straight at the API: 400 with a message.
    let mut s = std::os::unix::net::UnixStream::connect(&e.socket).unwrap();
    let body = "{\"Image\": ";
    write!(
        s,
        "POST /v1.47/containers/create HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 400") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(answer.contains("\"message\""), "{answer}");
    drop(holder);
}

#[test]
fn restart_policy_on_failure_retries_then_stops() {
    let e = TestEngine::start();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    e.eventually("two restarts then exited", || {
        e.docker_ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ])
        .trim()
            == "2 exited"
    });
    let runs = e.docker_ok(&["logs", "flaky"]);
    assert_eq!(runs.matches("run").count(), 3, "{runs}");
}

#[test]
fn live_restore_after_the_engine_is_killed() {
    let mut e = TestEngine::start();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "survivor",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo before; while true; do sleep 0.1; done",
    ]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 5",
    ]);
    let pid = e.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "survivor"]);
    let short_id = e.docker_ok(&["inspect", "-f", "{{.Id}}", "short"]);
    e.crash();
    // While the engine is down, one container ends: its shim records the exit.
    let exit_record = e
        .data
        .join("containers")
        .join(short_id.trim())
        .join("exit.json");
    e.eventually("the short container's exit record", || exit_record.exists());
    e.spawn();
    assert_eq!(
        e.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Pid}}",
            "survivor"
        ])
        .trim(),
        format!("running {}", pid.trim())
    );
    assert_eq!(
        e.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "short"
        ])
        .trim(),
        "exited 5"
    );
    assert!(
        e.docker_ok(&["ps", "--format", "{{.Names}}"])
            .contains("survivor")
    );
    assert_eq!(e.docker_ok(&["logs", "survivor"]), "before\n");
    assert_eq!(
        e.docker_ok(&["exec", "survivor", "echo", "still here"]),
        "still here\n"
    );
    e.docker_ok(&["stop", "survivor"]);
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "survivor"])
            .trim(),
        "0"
    );
    // A clean stop of the engine leaves containers running too.
    e.docker_ok(&["start", "survivor"]);
    e.stop();
    e.spawn();
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.State.Status}}", "survivor"])
            .trim(),
        "running"
    );
}

#[test]
fn build_push_and_pull_through_a_bosun_registry() {
    use std::io::BufRead;
    let e = TestEngine::start();
    let ctx = e.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo built > /built.txt\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/built.txt\", \"/hello.txt\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("hello.txt"), "from the context\n").unwrap();
    let out = e.docker_ok(&["build", "-t", "app:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Successfully tagged app:1"), "{out}");
    assert_eq!(
        e.docker_ok(&["run", "--rm", "app:1"]),
        "built\nfrom the context\n"
    );
    // A failing step fails the build, naming the line.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let failed = e.docker(&["build", "-t", "app:broken", ctx.to_str().unwrap()]);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("exited with code 3"),
        "{failed:?}"
    );

    // bosun's registry on a free loopback port.
    let reg_dir = e.dir.path().join("registry");
    let mut registry = std::process::Command::new(common::bosun())
        .args(["registry", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&reg_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(registry.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no registry address in {line:?}"))
        .to_owned();
    let port = addr.rsplit(':').next().unwrap();
    let remote = format!("localhost:{port}/team/app:1");
    e.docker_ok(&["tag", "app:1", &remote]);
    let pushed = e.docker_ok(&["push", &remote]);
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    e.docker_ok(&["rmi", &remote]);
    let pulled = e.docker_ok(&["pull", &remote]);
    assert!(pulled.contains("Digest: sha256:"), "{pulled}");
    assert_eq!(
        e.docker_ok(&["run", "--rm", &remote]),
        "built\nfrom the context\n"
    );
    let images = e.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images
            .lines()
            .any(|l| l == format!("localhost:{port}/team/app:1")),
        "{images}"
    );
    let missing = e.docker(&["pull", &format!("localhost:{port}/team/nothing:1")]);
    assert!(!missing.status.success());
    let _ = registry.kill();
    let _ = registry.wait();
}

#[test]
fn user_networks_resolve_containers_by_name_and_alias() {
    let e = TestEngine::start();
    let subnet = format!("10.91.{}.0/24", e.subnet_third);
    e.docker_ok(&["network", "create", "--subnet", &subnet, "appnet"]);
    assert!(
        e.docker_ok(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|l| l == "appnet")
    );
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "--network-alias",
        "database",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    for host in ["db", "database"] {
        let url = format!("http://{host}/");
        let mut page = String::new();
        e.eventually("the page by name", || {
            page = String::from_utf8_lossy(
                &e.docker(&[
                    "run",
                    "--rm",
                    "--network",
                    "appnet",
                    "busybox",
                    "wget",
                    "-qO-",
                    &url,
                ])
                .stdout,
            )
            .into_owned();
            page == "hello-from-bosun\n"
        });
    }
    // Not on the default network: its containers ask the host's resolvers.
    let other = e.docker(&["run", "--rm", "busybox", "nslookup", "db"]);
    assert!(!other.status.success());
    let inspect = e.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}}{{end}}",
        "appnet",
    ]);
    assert_eq!(inspect.trim(), "db");
    let busy = e.docker(&["network", "rm", "appnet"]);
    assert!(!busy.status.success(), "a network in use is not removed");
    e.docker_ok(&["rm", "-f", "db"]);
    e.docker_ok(&["network", "rm", "appnet"]);
    let addrs = std::process::Command::new("ip")
        .args(["-o", "addr"])
        .output()
        .unwrap();
    let gateway = format!("10.91.{}.1/", e.subnet_third);
    assert!(
        !String::from_utf8_lossy(&addrs.stdout).contains(&gateway),
        "the bridge went with the network"
    );
    let dup = e.docker(&["network", "create", "bridge"]);
    assert!(!dup.status.success());
}

#[test]
fn health_pause_top_stats_rename_and_events() {
    let e = TestEngine::start();
    let mut events = e
        .docker_command()
        .args([
            "events",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
            "--filter",
            "type=container",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "checked",
        "--health-cmd",
        "test -f /tmp/ready",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "60",
    ]);
    let health = || {
        e.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", "checked"])
            .trim()
            .to_owned()
    };
    e.eventually("unhealthy while the file is missing", || {
        health() == "unhealthy"
    });
    e.docker_ok(&["exec", "checked", "touch", "/tmp/ready"]);
    e.eventually("healthy once it exists", || health() == "healthy");
    assert!(
        e.docker_ok(&["ps", "--format", "{{.Status}}"])
            .contains("(healthy)")
    );

    let top = e.docker_ok(&["top", "checked"]);
    assert!(top.contains("sleep 60"), "{top}");
    let stats = e.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "checked",
    ]);
    assert!(stats.starts_with("checked "), "{stats}");
    e.docker_ok(&["pause", "checked"]);
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.State.Status}}", "checked"])
            .trim(),
        "paused"
    );
    e.docker_ok(&["unpause", "checked"]);
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.State.Status}}", "checked"])
            .trim(),
        "running"
    );
    e.docker_ok(&["rename", "checked", "renamed"]);
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.Name}}", "renamed"])
            .trim(),
        "/renamed"
    );
    e.docker_ok(&["rm", "-f", "renamed"]);

    // The daemon sends `destroy` after `rm` has answered, so read until it arrives
    // (bounded, so that a missing event fails instead of hanging) and only then stop
    // the reader.
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        seen.push_str(&line);
        seen.push('\n');
        if line == "destroy renamed" {
            break;
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    for want in [
        "create checked",
        "start checked",
        "health_status: healthy checked",
        "pause checked",
        "rename renamed",
        "destroy renamed",
    ] {
        assert!(
            seen.lines().any(|l| l == want),
            "no {want:?} event in:\n{seen}"
        );
    }
}

#[test]
fn update_limits_and_export_the_file_system() {
    let e = TestEngine::start();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "lim",
        "busybox",
        "sh",
        "-c",
        "echo data > /made-here; sleep 60",
    ]);
    e.docker_ok(&[
        "update",
        "--memory",
        "64m",
        "--pids-limit",
        "40",
        "--restart",
        "on-failure:3",
        "lim",
    ]);
    let limits = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}",
        "lim",
    ]);
    assert_eq!(limits.trim(), "67108864 40 on-failure");
    let id = e.docker_ok(&["inspect", "-f", "{{.Id}}", "lim"]);
    let cgroup = format!(
        "/sys/fs/cgroup/memory/bosun-{}/memory.limit_in_bytes",
        id.trim()
    );
    assert_eq!(
        std::fs::read_to_string(&cgroup).unwrap().trim(),
        "67108864",
        "applied to the running container"
    );
    let bad = e.docker(&["update", "--memory", "1k", "lim"]);
    assert!(!bad.status.success());
    e.docker_ok(&["stop", "-t", "0", "lim"]);
    // Exported while stopped: the writable layer over the image.
    let out = e
        .docker_command()
        .args(["export", "lim"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let tarball = e.dir.path().join("lim.tar");
    std::fs::write(&tarball, &out.stdout).unwrap();
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tarball)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "made-here"),
        "{names}"
    );
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox")
    );
    assert!(
        !e.docker_ok(&["inspect", "-f", "{{.State.Running}}", "lim"])
            .contains("true")
    );
    // Commit: the writable layer as a new image, with the container's command.
    let id = e.docker_ok(&["commit", "-m", "made in a test", "lim", "committed:1"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(
        e.docker_ok(&["run", "--rm", "committed:1", "cat", "/made-here"]),
        "data\n"
    );
    let history = e.docker_ok(&["history", "--format", "{{.Comment}}", "committed:1"]);
    assert!(history.contains("made in a test"), "{history}");
}

#[test]
fn init_reaps_and_forwards_signals() {
    let e = TestEngine::start();
    // The program is not PID 1 under --init; PID 1 is the runtime's reaper.
    let pid = e.docker_ok(&["run", "--rm", "--init", "busybox", "sh", "-c", "echo $$"]);
    assert_ne!(pid.trim(), "1");
    assert_eq!(
        e.docker_ok(&["run", "--rm", "busybox", "sh", "-c", "echo $$"])
            .trim(),
        "1"
    );
    let out = e.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 6"]);
    assert_eq!(out.status.code(), Some(6));
    // sleep as PID 1 ignores SIGTERM; under the init it gets it and dies at once.
    e.docker_ok(&[
        "run", "-d", "--init", "--name", "sleeper", "busybox", "sleep", "60",
    ]);
    e.docker_ok(&["stop", "-t", "20", "sleeper"]);
    // 143: SIGTERM reached the program (137 would be the SIGKILL after the timeout).
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "sleeper"])
            .trim(),
        "143"
    );
    // Orphans are reaped: no zombie is left under the init.
    e.docker_ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "parent",
        "busybox",
        "sh",
        "-c",
        "(sleep 0.1 &) ; sleep 60",
    ]);
    // The orphan ends after 0.1 s; reaped, it leaves no zombie behind.
    e.eventually("the orphan reaped", || {
        let ps = e.docker_ok(&["exec", "parent", "ps", "-o", "stat,comm"]);
        let sleeps = ps.lines().filter(|l| l.ends_with("sleep")).count();
        let zombies = ps
            .lines()
            .filter(|l| l.trim_start().starts_with('Z'))
            .count();
        sleeps == 1 && zombies == 0
    });
    e.docker_ok(&["rm", "-f", "parent", "sleeper"]);
}

#[test]
fn save_load_and_prune_images() {
    let e = TestEngine::start();
    e.docker_ok(&["tag", "busybox", "keepme:1"]);
    let archive = e.dir.path().join("saved.tar");
    e.docker_ok(&["save", "-o", archive.to_str().unwrap(), "keepme:1"]);
    assert!(std::fs::metadata(&archive).unwrap().len() > 100_000);
    e.docker_ok(&["rmi", "keepme:1"]);
    let gone = e.docker(&["image", "inspect", "keepme:1"]);
    assert!(!gone.status.success());
    let loaded = e.docker_ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("keepme:1"), "{loaded}");
    assert_eq!(
        e.docker_ok(&["run", "--rm", "keepme:1", "echo", "back"]),
        "back\n"
    );
    e.docker_ok(&["image", "prune", "-f"]);
    // Tagged images survive a prune.
    assert_eq!(
        e.docker_ok(&["run", "--rm", "busybox", "echo", "still"]),
        "still\n"
    );
    let bad = e
        .docker_command()
        .args(["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = {
        let mut bad = bad;
        bad.stdin
            .take()
            .unwrap()
            .write_all(b"this is not a tar archive")
            .unwrap();
        bad.wait_with_output().unwrap()
    };
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn cp_in_and_out_of_containers() {
    let e = TestEngine::start();
    e.docker_ok(&["volume", "create", "cpvol"]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "-v",
        "cpvol:/vol",
        "busybox",
        "sh",
        "-c",
        "echo inside > /etc/motd; echo onvol > /vol/f; ln -s /etc /link; sleep 60",
    ]);
    e.eventually("the files exist", || {
        e.docker(&["exec", "box", "test", "-f", "/vol/f"])
            .status
            .success()
    });
    let out = e.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    e.docker_ok(&["cp", "box:/etc/motd", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("motd")).unwrap(),
        "inside\n"
    );
    e.docker_ok(&[
        "cp",
        "box:/vol/f",
        out.join("from-volume").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("from-volume")).unwrap(),
        "onvol\n"
    );
    // A link inside the container resolves inside it, never to the host's /etc.
    e.docker_ok(&[
        "cp",
        "box:/link/motd",
        out.join("via-link").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("via-link")).unwrap(),
        "inside\n"
    );
    // Into the container: a file and a directory.
    let src = e.dir.path().join("src");
    std::fs::create_dir_all(src.join("tree")).unwrap();
    std::fs::write(src.join("tree/a"), "A\n").unwrap();
    std::fs::write(src.join("one"), "1\n").unwrap();
    e.docker_ok(&["cp", src.join("one").to_str().unwrap(), "box:/tmp/"]);
    e.docker_ok(&["cp", src.join("tree").to_str().unwrap(), "box:/tmp/"]);
    assert_eq!(
        e.docker_ok(&["exec", "box", "cat", "/tmp/one", "/tmp/tree/a"]),
        "1\nA\n"
    );
    let missing = e.docker(&["cp", "box:/no/such/file", out.to_str().unwrap()]);
    assert!(!missing.status.success());
    // A stopped container: its layer is mounted for the copy and unmounted after.
    e.docker_ok(&["stop", "-t", "0", "box"]);
    e.docker_ok(&[
        "cp",
        "box:/tmp/one",
        out.join("after-stop").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("after-stop")).unwrap(),
        "1\n"
    );
    e.docker_ok(&["rm", "box"]);
}
