//! bosun's own container verbs (`bosun run`, `ps`, `logs`, …) against a
//! `bosun engine` of each test's own (root; see `common/engine.rs`): what they
//! print and the exit codes they return.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bosun;
use common::engine::TestEngine;
use serde_json::Value;

fn host(e: &TestEngine) -> String {
    format!("unix://{}", e.socket.display())
}

/// `bosun VERB …` aimed at the test engine through `BOSUN_HOST`.
fn cmd(e: &TestEngine) -> Command {
    let mut c = Command::new(bosun());
    c.env("BOSUN_HOST", host(e));
    c
}

/// Wait for a child, killing it if it hangs: a stuck CLI must fail the
/// test, not hang the suite.
fn finish(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output().expect("wait for bosun");
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(Duration::from_secs(90)).is_err() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let out = waiter.join().unwrap();
        panic!("{what} hung: {out:?}");
    }
    waiter.join().unwrap()
}

fn run(e: &TestEngine, args: &[&str]) -> Output {
    let child = cmd(e)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bosun");
    finish(child, &format!("bosun {args:?}"))
}

fn ok(e: &TestEngine, args: &[&str]) -> String {
    let out = run(e, args);
    assert!(
        out.status.success(),
        "bosun {args:?} failed ({}): {}\nengine log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        e.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A raw HTTP/1.0 POST on the engine's socket; the whole answer.
fn raw_post(e: &TestEngine, path: &str, body: &str) -> String {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(&e.socket).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_prints_output_and_returns_exit_codes() {
    let e = TestEngine::start();
    assert_eq!(ok(&e, &["run", "--rm", "busybox", "echo", "hi"]), "hi\n");

    // stdout and stderr stay apart; the container's code is ours.
    let out = run(
        &e,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    // -i: our stdin until we close it.
    let mut child = cmd(&e)
        .args(["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = finish(child, "run -i");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "piped\ndone\n");

    // -t: raw terminal bytes, stderr merged, \r\n from the pty.
    let out = run(
        &e,
        &[
            "run",
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "tty; echo e >&2",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "/dev/pts/0\r\ne\r\n");

    // Environment from a file and flags, flags last.
    let env_file = e.dir.path().join("env");
    std::fs::write(&env_file, "# comment\nA=1\nB=from-file\n\n").unwrap();
    assert_eq!(
        ok(
            &e,
            &[
                "run",
                "--rm",
                "--env-file",
                env_file.to_str().unwrap(),
                "-e",
                "B=2",
                "busybox",
                "sh",
                "-c",
                "echo $A$B",
            ]
        ),
        "12\n"
    );

    // A missing command: 127, as Docker.
    let out = run(&e, &["run", "--rm", "busybox", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let out = run(&e, &["run", "-d", "--rm", "busybox", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        text(&out.stderr).contains("executable file not found"),
        "{out:?}"
    );

    // Everything ran with --rm: nothing left.
    assert_eq!(ok(&e, &["ps", "-aq"]), "");

    // An image the engine lacks and cannot pull: it tries, then 125 with the
    // daemon's message, and no container is left behind.
    let out = run(&e, &["run", "--rm", "127.0.0.1:1/nosuch:v1", "true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("Unable to find image '127.0.0.1:1/nosuch:v1' locally"),
        "{err}"
    );
    // --pull never: no attempt, the daemon's 404.
    let out = run(
        &e,
        &["run", "--pull", "never", "127.0.0.1:1/nosuch:v1", "true"],
    );
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        !text(&out.stderr).contains("Unable to find image"),
        "{out:?}"
    );
    assert!(text(&out.stderr).contains("No such image"), "{out:?}");
    assert!(err.contains("Error response from daemon: "), "{err}");
    // A daemon error on create (an unknown network): exit 125 with the
    // message the API itself answers for the same request.
    let ours = run(&e, &["run", "--network", "nonet", "busybox", "true"]);
    assert_eq!(ours.status.code(), Some(125), "{ours:?}");
    let answer = raw_post(
        &e,
        "/containers/create",
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"nonet"}}"#,
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{answer}"));
    let message = v["message"].as_str().expect("an error message");
    assert!(
        text(&ours.stderr).contains(&format!("Error response from daemon: {message}")),
        "ours: {}\nthe API: {message}",
        text(&ours.stderr)
    );
    assert_eq!(ok(&e, &["ps", "-aq"]), "");
}

#[test]
fn detached_server_ps_exec_logs_inspect_stop_rm() {
    let e = TestEngine::start();
    let port = 30000 + (e.subnet_third * 37) % 9000;
    let mapping = format!("{port}:80");
    let id = ok(
        &e,
        &[
            "run", "-d", "--name", "web", "-p", &mapping, "busybox", "httpd", "-f", "-vv", "-p",
            "80", "-h", "/var/www",
        ],
    );
    let id = id.trim().to_owned();
    assert_eq!(id.len(), 64, "run -d prints the id: {id:?}");
    let mut page = String::new();
    e.eventually("the page over the published port", || {
        page = TestEngine::http_get(&format!("127.0.0.1:{port}"), "/").unwrap_or_default();
        page.contains("hello-from-bosun")
    });

    // ps: Docker's table, templates, ids.
    let table = ok(&e, &["ps"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().expect("one row");
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(
        row.contains("busybox") && row.trim_end().ends_with("web"),
        "{row}"
    );
    assert!(row.contains(&format!("0.0.0.0:{port}->80/tcp")), "{row}");
    assert!(row.contains("\"httpd -f -vv -p 80 …\""), "{row}");
    let formatted = ok(
        &e,
        &[
            "ps",
            "--format",
            "{{.Names}} {{.Status}} {{.Ports}} {{.Image}}",
        ],
    );
    assert!(formatted.starts_with("web Up"), "{formatted}");
    assert!(
        formatted
            .trim_end()
            .ends_with(&format!("0.0.0.0:{port}->80/tcp busybox")),
        "{formatted}"
    );
    assert_eq!(
        ok(&e, &["ps", "--format", "table {{.Names}}\\t{{.Status}}"])
            .lines()
            .next(),
        Some("NAMES     STATUS")
    );
    assert_eq!(ok(&e, &["ps", "-q"]), format!("{}\n", &id[..12]));
    assert_eq!(ok(&e, &["ps", "-q", "--no-trunc"]), format!("{id}\n"));
    assert_eq!(
        ok(&e, &["ps", "-q", "--filter", "name=nothing-like-it"]),
        ""
    );

    // exec: output, exit codes, stdin, a missing program.
    assert_eq!(
        ok(&e, &["exec", "web", "cat", "/var/www/index.html"]),
        "hello-from-bosun\n"
    );
    let out = run(
        &e,
        &["exec", "web", "sh", "-c", "echo o; echo e >&2; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("o\n".into(), "e\n".into())
    );
    let mut child = cmd(&e)
        .args(["exec", "-i", "web", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    assert_eq!(text(&finish(child, "exec -i").stdout), "SHOUT\n");
    let out = run(&e, &["exec", "web", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let out = run(&e, &["exec", "-t", "web", "tty"]);
    assert_eq!(text(&out.stdout), "/dev/pts/0\r\n", "{out:?}");

    // logs: httpd -vv logs each request to stderr.
    e.eventually("httpd's request in the logs", || {
        let logs = run(&e, &["logs", "web"]);
        logs.status.success() && text(&logs.stderr).contains("url:/")
    });

    // inspect: Docker's JSON, and templates over it.
    let json: Value = serde_json::from_str(&ok(&e, &["inspect", "web"])).unwrap();
    assert_eq!(json[0]["Id"], id.as_str());
    assert_eq!(json[0]["Name"], "/web");
    assert_eq!(json[0]["State"]["Running"], true);
    assert_eq!(
        ok(
            &e,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.Config.Image}}",
                "web"
            ]
        ),
        "running busybox\n"
    );
    let missing = run(&e, &["inspect", "nothing-like-it"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("No such object: nothing-like-it"));

    // top and stats see httpd.
    let top = ok(&e, &["top", "web"]);
    assert!(top.starts_with("UID") && top.contains("httpd -f"), "{top}");
    let stats = ok(&e, &["stats", "--no-stream", "web"]);
    assert!(stats.starts_with("CONTAINER ID"), "{stats}");
    assert!(
        stats.lines().nth(1).is_some_and(|l| l.contains(" web ")),
        "{stats}"
    );

    // stop: httpd ignores SIGTERM, so SIGKILL after the timeout.
    assert_eq!(ok(&e, &["stop", "-t", "1", "web"]), "web\n");
    assert_eq!(
        ok(
            &e,
            &[
                "inspect",
                "-f",
                "{{.State.ExitCode}} {{.State.Status}}",
                "web"
            ]
        ),
        "137 exited\n"
    );
    assert_eq!(ok(&e, &["ps", "-q"]), "");
    let all = ok(&e, &["ps", "-a", "--format", "{{.Names}}: {{.Status}}"]);
    assert!(all.starts_with("web: Exited (137)"), "{all}");
    // rm of a missing one fails, the others still go.
    let out = run(&e, &["rm", "nothing-like-it", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "web\n");
    assert!(text(&out.stderr).contains("No such container: nothing-like-it"));
    assert_eq!(ok(&e, &["ps", "-aq"]), "");

    // rm -f of a running one; kill.
    ok(&e, &["run", "-d", "--name", "aa", "busybox", "sleep", "60"]);
    let trap = "trap 'exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    let bb = ok(&e, &["create", "--name", "bb", "busybox", "sh", "-c", trap]);
    assert_eq!(bb.trim().len(), 64, "create prints the id: {bb}");
    assert_eq!(ok(&e, &["start", "bb"]), "bb\n");
    // PID 1 ignores SIGTERM until its handler is in place.
    e.eventually("bb traps SIGTERM", || ok(&e, &["logs", "bb"]) == "ready\n");
    assert_eq!(ok(&e, &["kill", "-s", "TERM", "bb"]), "bb\n");
    e.eventually("bb exits 3 on SIGTERM", || {
        ok(
            &e,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                "bb",
            ],
        ) == "exited 3\n"
    });
    assert!(run(&e, &["rm", "aa"]).status.code() == Some(1), "aa runs");
    assert_eq!(ok(&e, &["rm", "-f", "aa", "bb"]), "aa\nbb\n");
    assert_eq!(ok(&e, &["ps", "-aq"]), "");
}

#[test]
fn logs_follow_until_the_container_ends() {
    let e = TestEngine::start();
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3; do echo tick $i; sleep 0.3; done; echo bye >&2",
        ],
    );
    let out = run(&e, &["logs", "-f", "ticker"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "tick 1\ntick 2\ntick 3\n");
    assert_eq!(text(&out.stderr), "bye\n");
    let tail = run(&e, &["logs", "--tail", "2", "ticker"]);
    assert_eq!(text(&tail.stdout), "tick 3\n");
    assert_eq!(text(&tail.stderr), "bye\n");
    let stamped = ok(&e, &["logs", "-t", "--tail", "2", "ticker"]);
    assert!(
        stamped.starts_with("20") && stamped.contains("Z tick 3"),
        "{stamped}"
    );
    // Relative times, converted as the docker CLI does.
    let recent = run(&e, &["logs", "--since", "1h", "ticker"]);
    assert_eq!(
        text(&recent.stdout),
        "tick 1\ntick 2\ntick 3\n",
        "{recent:?}"
    );
    assert_eq!(ok(&e, &["logs", "--until", "1h", "ticker"]), "");
    let missing = run(&e, &["logs", "nothing-like-it"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("Error response from daemon: No such container"),
        "{missing:?}"
    );
}

#[test]
fn volumes_and_networks() {
    let e = TestEngine::start();
    assert_eq!(ok(&e, &["volume", "create", "data"]), "data\n");
    let ls = ok(&e, &["volume", "ls"]);
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     data\n"), "{ls}");
    assert_eq!(ok(&e, &["volume", "ls", "-q"]), "data\n");
    ok(
        &e,
        &[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    );
    assert_eq!(
        ok(
            &e,
            &[
                "run",
                "--rm",
                "-v",
                "data:/data",
                "busybox",
                "cat",
                "/data/f"
            ]
        ),
        "kept\n"
    );
    // --mount, read-only.
    let mount = "type=volume,source=data,target=/data,readonly";
    assert_eq!(
        ok(
            &e,
            &["run", "--rm", "--mount", mount, "busybox", "cat", "/data/f"]
        ),
        "kept\n"
    );
    let ro = run(
        &e,
        &[
            "run", "--rm", "--mount", mount, "busybox", "touch", "/data/g",
        ],
    );
    assert_ne!(ro.status.code(), Some(0), "read-only: {ro:?}");
    let v: Value = serde_json::from_str(&ok(&e, &["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Name"], "data");
    assert_eq!(
        ok(&e, &["volume", "inspect", "-f", "{{.Driver}}", "data"]),
        "local\n"
    );

    let subnet = format!("10.90.{}.0/24", e.subnet_third);
    let net_id = ok(&e, &["network", "create", "--subnet", &subnet, "appnet"]);
    assert_eq!(net_id.trim().len(), 64, "{net_id}");
    let ls = ok(&e, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(ls.lines().any(|l| l == "appnet bridge"), "{ls}");
    let table = ok(&e, &["network", "ls"]);
    assert!(table.starts_with("NETWORK ID"), "{table}");
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "appnet",
            "--network-alias",
            "db",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/var/www",
        ],
    );
    for name in ["srv", "db"] {
        let url = format!("http://{name}/");
        let mut got = String::new();
        e.eventually(&format!("{name} resolves and answers"), || {
            let out = run(
                &e,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "appnet",
                    "busybox",
                    "wget",
                    "-qO-",
                    &url,
                ],
            );
            got = text(&out.stdout);
            out.status.success()
        });
        assert_eq!(got, "hello-from-bosun\n");
    }
    let n: Value = serde_json::from_str(&ok(&e, &["network", "inspect", "appnet"])).unwrap();
    assert_eq!(n[0]["Name"], "appnet");
    assert_eq!(n[0]["IPAM"]["Config"][0]["Subnet"], subnet.as_str());
    // The containers that used it are gone (--rm): it can go.
    assert_eq!(ok(&e, &["volume", "rm", "data"]), "data\n");
    ok(&e, &["rm", "-f", "srv"]);
    assert_eq!(ok(&e, &["network", "rm", "appnet"]), "appnet\n");
    let gone = run(&e, &["network", "inspect", "appnet"]);
    assert_eq!(gone.status.code(), Some(1));
}

#[test]
fn images_tags_events_and_the_host_flag() {
    let e = TestEngine::start();
    let images = ok(&e, &["images"]);
    let mut lines = images.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        lines.any(|l| l.starts_with("busybox ") && l.contains(" latest ")),
        "{images}"
    );

    // Events: watch until our own probe shows up, then the real action.
    let mut events = cmd(&e)
        .args([
            "events",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut n = 0;
    e.eventually("events are being watched", || {
        n += 1;
        ok(&e, &["tag", "busybox", &format!("probe:{n}")]);
        rx.recv_timeout(Duration::from_millis(200)).is_ok()
    });
    assert_eq!(
        ok(&e, &["run", "--rm", "--name", "evt", "busybox", "true"]),
        ""
    );
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|l: &String| l == "container destroy evt") && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    for want in [
        "container create evt",
        "container start evt",
        "container die evt",
    ] {
        assert!(seen.iter().any(|l| l == want), "{want} not in {seen:?}");
    }

    // inspect finds images too, by name or with --type.
    let image_id = ok(&e, &["inspect", "-f", "{{.Id}}", "busybox"]);
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    assert_eq!(
        ok(
            &e,
            &["inspect", "--type", "image", "-f", "{{.Id}}", "busybox"]
        ),
        image_id
    );
    assert_eq!(
        run(&e, &["inspect", "--type", "container", "busybox"])
            .status
            .code(),
        Some(1)
    );

    // tag and rmi go through the daemon.
    assert_eq!(ok(&e, &["tag", "busybox", "mybox:v1"]), "");
    let tags = ok(&e, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(tags.lines().any(|l| l == "mybox:v1"), "{tags}");
    let ids = ok(&e, &["images", "-q"]);
    assert_eq!(ids.lines().count(), 1, "one image under many tags: {ids}");
    assert_eq!(ok(&e, &["rmi", "mybox:v1"]), "Untagged: mybox:v1\n");
    let missing = run(&e, &["rmi", "mybox:v1"]);
    assert_eq!(missing.status.code(), Some(1));

    // -H before the verb, -H after it, and BOSUN_HOST, each without the others.
    let plain = || {
        let mut c = Command::new(bosun());
        c.env_remove("BOSUN_HOST").stdin(Stdio::null());
        c
    };
    let out = plain()
        .args(["-H", &host(&e), "run", "--rm", "busybox", "echo", "global"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "global\n", "{out:?}");
    let out = plain()
        .args(["ps", "-a", "-H", &host(&e), "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = plain()
        .args(["--host", &host(&e), "images", "-q"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), ids);
    // A socket nobody serves: the daemon cannot be reached.
    let nowhere = format!("unix://{}/nobody.sock", e.dir.path().display());
    let out = Command::new(bosun())
        .env("BOSUN_HOST", &nowhere)
        .args(["run", "--rm", "busybox", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        text(&out.stderr).contains("Cannot connect to the bosun engine"),
        "{out:?}"
    );
    let out = Command::new(bosun())
        .env("BOSUN_HOST", &nowhere)
        .args(["ps"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A bad flag: Docker's 125.
    let out = run(&e, &["run", "--no-such-flag", "busybox"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(text(&out.stderr).contains("unknown flag: --no-such-flag"));
}

/// `bosun ARGS` in a pseudo-terminal of 33 rows × 111 columns, as a user's
/// shell has, typing `input`; returns (exit code, output, whether the
/// terminal echoes again afterwards).
fn in_terminal(e: &TestEngine, args: &[&str], input: &str) -> (i32, String, bool) {
    let argv: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let hex: String = input.bytes().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import os, pty, select, struct, sys, termios, fcntl, time\n\
         pid, fd = pty.fork()\n\
         if pid == 0:\n\
         \x20   fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 33, 111, 0, 0))\n\
         \x20   os.environ['BOSUN_HOST'] = 'unix://{}'\n\
         \x20   os.execv({:?}, [{:?}, {}])\n\
         time.sleep(0.5)\n\
         os.write(fd, bytes.fromhex('{hex}'))\n\
         out = b''\n\
         end = time.time() + 60\n\
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
         if time.time() >= end:\n\
         \x20   os.kill(pid, 9)\n\
         _, st = os.waitpid(pid, 0)\n\
         echo = termios.tcgetattr(fd)[3] & termios.ECHO\n\
         sys.stdout.write(out.decode(errors='replace'))\n\
         sys.stdout.write('\\n[echo=%d]' % (1 if echo else 0))\n\
         sys.exit(os.waitstatus_to_exitcode(st))\n",
        e.socket.display(),
        bosun().display().to_string(),
        bosun().display().to_string(),
        argv.join(", "),
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let all = text(&out.stdout);
    let (output, echo) = all
        .rsplit_once("\n[echo=")
        .unwrap_or_else(|| panic!("the script's report: {out:?}"));
    (
        out.status.code().unwrap_or(-1),
        output.to_owned(),
        echo.starts_with('1'),
    )
}

/// Typed first: the size arrives by a resize request after the start, as
/// with the docker CLI; the numbers are spelled so that the echo of this
/// line never reads "33 111".
const WAIT_SIZE: &str =
    "while [ \"$(stty size)\" != \"$((30+3)) $((100+11))\" ]; do sleep 0.1; done; ";

#[test]
fn interactive_terminals() {
    let e = TestEngine::start();
    let (code, out, echo) = in_terminal(
        &e,
        &["run", "-it", "--rm", "busybox", "sh"],
        &format!("{WAIT_SIZE}stty size; tty; echo term=$TERM; exit 3\r"),
    );
    assert_eq!(code, 3, "{out}\nengine log:\n{}", e.log());
    assert!(
        out.contains("33 111"),
        "the container's terminal has our size: {out}"
    );
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("term=xterm"), "{out}");
    assert!(echo, "our terminal is restored (cooked) after the run");

    // ctrl-p ctrl-q detaches and leaves the container running.
    let (code, out, echo) = in_terminal(
        &e,
        &["run", "-it", "--name", "stay", "busybox", "sh"],
        &format!("{WAIT_SIZE}echo $((6*7)) > /tmp/typed\r\x10\x11"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("read escape sequence"), "{out}");
    assert!(echo);
    assert_eq!(
        ok(&e, &["inspect", "-f", "{{.State.Status}}", "stay"]),
        "running\n"
    );
    // What was typed before the keys reached the shell, which runs on.
    e.eventually("the typed line ran", || {
        text(&run(&e, &["exec", "stay", "cat", "/tmp/typed"]).stdout) == "42\n"
    });
    ok(&e, &["rm", "-f", "stay"]);

    ok(
        &e,
        &["run", "-d", "--name", "box", "busybox", "sleep", "600"],
    );
    let (code, out, echo) = in_terminal(
        &e,
        &["exec", "-it", "box", "sh"],
        &format!("{WAIT_SIZE}stty size; tty; exit 5\r"),
    );
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("33 111"), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(echo);
    ok(&e, &["rm", "-f", "box"]);
}

#[test]
fn attach_start_a_rename_pause_restart_wait_port() {
    let e = TestEngine::start();
    // start -a -i: attached like run, with our stdin.
    ok(
        &e,
        &[
            "create",
            "-i",
            "--name",
            "cat1",
            "busybox",
            "sh",
            "-c",
            "cat; exit 2",
        ],
    );
    let mut child = cmd(&e)
        .args(["start", "-a", "-i", "cat1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"through\n").unwrap();
    let out = finish(child, "start -a -i");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(text(&out.stdout), "through\n");
    assert_eq!(ok(&e, &["wait", "cat1"]), "2\n");

    // attach: output from when we attach until the container exits, and its code.
    let script = "while [ ! -f /tmp/go ]; do echo tick; sleep 0.1; done; echo done; exit 6";
    ok(
        &e,
        &["run", "-d", "--name", "att", "busybox", "sh", "-c", script],
    );
    let mut child = cmd(&e)
        .args(["attach", "att"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let first = rx.recv_timeout(Duration::from_secs(60));
    assert_eq!(first.as_deref(), Ok("tick"), "attached output");
    ok(&e, &["exec", "att", "touch", "/tmp/go"]);
    let status = finish(child, "attach");
    let lines = reader.join().unwrap();
    assert_eq!(status.status.code(), Some(6), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("done"), "{lines:?}");
    let stopped = run(&e, &["attach", "att"]);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        text(&stopped.stderr).contains("start it first"),
        "{stopped:?}"
    );

    // rename, pause/unpause, restart, port.
    let port = 31000 + (e.subnet_third * 37) % 9000;
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "one",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "busybox",
            "sleep",
            "600",
        ],
    );
    assert_eq!(ok(&e, &["rename", "one", "two"]), "");
    assert_eq!(
        ok(&e, &["ps", "--format", "{{.Names}}"]),
        "two\n",
        "renamed"
    );
    assert_eq!(
        ok(&e, &["port", "two"]),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    assert_eq!(
        ok(&e, &["port", "two", "80"]),
        format!("127.0.0.1:{port}\n")
    );
    assert_eq!(run(&e, &["port", "two", "81"]).status.code(), Some(1));
    assert_eq!(ok(&e, &["pause", "two"]), "two\n");
    assert_eq!(
        ok(&e, &["inspect", "-f", "{{.State.Status}}", "two"]),
        "paused\n"
    );
    let status = ok(&e, &["ps", "--format", "{{.Status}}"]);
    assert!(status.contains("(Paused)"), "{status}");
    assert_eq!(ok(&e, &["unpause", "two"]), "two\n");
    let before = ok(&e, &["inspect", "-f", "{{.State.StartedAt}}", "two"]);
    assert_eq!(ok(&e, &["restart", "-t", "0", "two"]), "two\n");
    let after = ok(
        &e,
        &[
            "inspect",
            "-f",
            "{{.State.StartedAt}} {{.State.Status}}",
            "two",
        ],
    );
    assert!(after.trim_end().ends_with(" running"), "{after}");
    assert_ne!(before.trim(), after.split(' ').next().unwrap(), "restarted");
    // A healthcheck from flags.
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "hc",
            "--health-cmd",
            "test -e /tmp/ok",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            "busybox",
            "sh",
            "-c",
            "touch /tmp/ok; sleep 600",
        ],
    );
    e.eventually("hc becomes healthy", || {
        ok(&e, &["inspect", "-f", "{{.State.Health.Status}}", "hc"]) == "healthy\n"
    });
    let status = ok(
        &e,
        &["ps", "--filter", "name=hc", "--format", "{{.Status}}"],
    );
    assert!(status.contains("(healthy)"), "{status}");
    ok(&e, &["rm", "-f", "two", "att", "cat1", "hc"]);
}

#[test]
fn system_info_df_and_prune() {
    let e = TestEngine::start();
    ok(
        &e,
        &["run", "-d", "--name", "up", "busybox", "sleep", "600"],
    );
    ok(&e, &["create", "--name", "idle", "busybox", "true"]);
    ok(&e, &["volume", "create", "spare"]);
    ok(&e, &["network", "create", "unused"]);

    let info = ok(&e, &["info"]);
    for line in [
        " Containers: 2\n",
        "  Running: 1\n",
        "  Stopped: 1\n",
        " Images: 1\n",
    ] {
        assert!(info.contains(line), "{line:?} in {info}");
    }
    assert_eq!(
        ok(
            &e,
            &[
                "system",
                "info",
                "--format",
                "{{.ContainersRunning}} {{.Driver}}"
            ]
        ),
        "1 overlay\n"
    );
    let df = ok(&e, &["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert!(
        lines[0].starts_with("TYPE") && lines[0].contains("RECLAIMABLE"),
        "{df}"
    );
    let cells = |l: &str| {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(cells(lines[1])[..3], ["Images", "1", "1"], "{df}");
    assert_eq!(cells(lines[2])[..3], ["Containers", "2", "1"], "{df}");
    assert_eq!(cells(lines[3])[..3], ["Local Volumes", "1", "0"], "{df}");

    // Without -f it asks; "n" cancels and nothing goes.
    let mut child = cmd(&e)
        .args(["system", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = finish(child, "system prune");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("Are you sure you want to continue?"));
    assert_eq!(ok(&e, &["ps", "-aq"]).lines().count(), 2);

    let pruned = ok(&e, &["system", "prune", "-f"]);
    let idle = ok(&e, &["ps", "-aq", "--no-trunc", "--filter", "name=idle"]);
    assert!(
        pruned.contains(&format!("Deleted Containers:\n{}", idle)),
        "{pruned}"
    );
    assert!(pruned.contains("Deleted Networks:\nunused\n"), "{pruned}");
    assert_eq!(ok(&e, &["ps", "-a", "--format", "{{.Names}}"]), "up\n");
    // A named volume goes only with volume prune --all.
    assert!(!ok(&e, &["volume", "prune", "-f"]).contains("spare"));
    assert!(ok(&e, &["volume", "prune", "-f", "-a"]).contains("Deleted Volumes:\nspare\n"));
    assert_eq!(ok(&e, &["volume", "ls", "-q"]), "");
    ok(&e, &["network", "create", "other"]);
    assert_eq!(
        ok(&e, &["network", "prune", "-f"]),
        "Deleted Networks:\nother\n\n"
    );
    // Docker's management-command spellings.
    let gone = ok(&e, &["container", "create", "busybox", "true"]);
    assert_eq!(
        ok(&e, &["container", "ls", "-a", "--format", "{{.State}}"]),
        "created\nrunning\n"
    );
    let pruned = ok(&e, &["container", "prune", "-f"]);
    assert!(
        pruned.starts_with(&format!("Deleted Containers:\n{gone}")),
        "{pruned}"
    );
    assert_eq!(ok(&e, &["container", "rm", "-f", "up"]), "up\n");
    assert_eq!(ok(&e, &["container", "ls", "-aq"]), "");
}

#[test]
fn process_resource_and_restart_flags() {
    let e = TestEngine::start();
    // -w, -u, --hostname, --entrypoint.
    assert_eq!(
        ok(
            &e,
            &[
                "run",
                "--rm",
                "-w",
                "/tmp",
                "-u",
                "1000:1000",
                "--hostname",
                "hh",
                "--entrypoint",
                "sh",
                "busybox",
                "-c",
                "pwd; id -u; id -g; hostname",
            ]
        ),
        "/tmp\n1000\n1000\nhh\n"
    );
    // -m, --cpus, --restart, -l, -e reach the daemon as Docker's fields.
    ok(
        &e,
        &[
            "create",
            "--name",
            "lim",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--restart",
            "on-failure:2",
            "-l",
            "tier=web",
            "-e",
            "X=1",
            "busybox",
            "true",
        ],
    );
    assert_eq!(
        ok(
            &e,
            &[
                "inspect",
                "-f",
                "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}} \
                 {{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.Config.Labels.tier}} {{json .Config.Env}}",
                "lim",
            ]
        ),
        "67108864 500000000 on-failure 2 web [\"X=1\"]\n"
    );
    assert_eq!(
        ok(&e, &["ps", "-a", "-q", "--filter", "label=tier=web"])
            .trim()
            .len(),
        12
    );
    // on-failure:2 restarts a failing container twice, then leaves it exited.
    ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "failing",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ],
    );
    e.eventually("two restarts, then exited", || {
        ok(
            &e,
            &[
                "inspect",
                "-f",
                "{{.RestartCount}} {{.State.Status}}",
                "failing",
            ],
        ) == "2 exited\n"
    });
    // exec -d runs in the background.
    ok(
        &e,
        &["run", "-d", "--name", "bg", "busybox", "sleep", "600"],
    );
    assert_eq!(ok(&e, &["exec", "-d", "bg", "touch", "/tmp/from-exec"]), "");
    e.eventually("exec -d ran", || {
        run(&e, &["exec", "bg", "test", "-e", "/tmp/from-exec"])
            .status
            .success()
    });
    // stats without --no-stream ends when its container does.
    ok(
        &e,
        &["run", "-d", "--name", "short", "busybox", "sleep", "1"],
    );
    let stats = ok(&e, &["stats", "short"]);
    assert!(stats.starts_with("CONTAINER ID"), "{stats}");
    ok(&e, &["rm", "-f", "lim", "failing", "bg", "short"]);
}

/// A `bosun registry` on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    port: String,
}

impl Registry {
    fn start(dir: &std::path::Path) -> Self {
        let mut child = Command::new(bosun())
            .args(["registry", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or_else(|| panic!("no registry address in {line:?}"))
            .to_owned();
        Self { child, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn run_pulls_a_missing_image_and_retries() {
    let e = TestEngine::start();
    let registry = Registry::start(&e.dir.path().join("registry"));
    let remote = format!("127.0.0.1:{}/lib/box:1", registry.port);
    // Straight from the store to the registry: the engine has no such tag.
    let pushed = Command::new(bosun())
        .args(["push", "-q", "--data-dir"])
        .arg(&e.data)
        .args(["busybox", &remote])
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{pushed:?}");
    assert_eq!(
        run(&e, &["inspect", "--type", "image", &remote])
            .status
            .code(),
        Some(1)
    );

    let out = run(&e, &["run", "--rm", &remote, "echo", "pulled"]);
    assert!(out.status.success(), "{out:?}\nengine log:\n{}", e.log());
    assert_eq!(text(&out.stdout), "pulled\n");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("Unable to find image '{remote}' locally")),
        "{err}"
    );
    // The blobs are in the engine's store already (it pushed them): only the tag is new.
    assert!(err.contains("1: Pulling from lib/box"), "{err}");
    assert!(err.contains(": Already exists"), "{err}");
    assert!(err.contains("Status: Downloaded newer image"), "{err}");
    let tags = ok(&e, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(tags.lines().any(|l| l == remote), "{tags}");
    // Now present: no pull.
    let again = run(&e, &["run", "--rm", &remote, "true"]);
    assert!(
        again.status.success() && again.stderr.is_empty(),
        "{again:?}"
    );
}

#[test]
fn cp_between_a_container_and_the_host() {
    let e = TestEngine::start();
    ok(
        &e,
        &["run", "-d", "--name", "box", "busybox", "sleep", "600"],
    );
    let local = e.dir.path().join("cp");
    std::fs::create_dir_all(local.join("src/sub")).unwrap();
    std::fs::write(local.join("src/a.txt"), "A").unwrap();
    std::fs::write(local.join("src/sub/b.txt"), "B").unwrap();
    std::fs::write(local.join("single.txt"), "S").unwrap();
    let path = |p: &str| local.join(p).to_str().unwrap().to_owned();
    let cat = |p: &str| ok(&e, &["exec", "box", "cat", p]);

    // In: into a directory, under a new name, a whole tree.
    ok(&e, &["cp", &path("single.txt"), "box:/tmp"]);
    assert_eq!(cat("/tmp/single.txt"), "S");
    ok(&e, &["cp", &path("single.txt"), "box:/tmp/renamed.txt"]);
    assert_eq!(cat("/tmp/renamed.txt"), "S");
    ok(&e, &["cp", &path("src"), "box:/tmp"]);
    assert_eq!(cat("/tmp/src/sub/b.txt"), "B");

    // Out: into an existing directory, as a new name, a file, a tar stream.
    std::fs::create_dir(local.join("out")).unwrap();
    ok(&e, &["cp", "box:/tmp/src", &path("out")]);
    assert_eq!(
        std::fs::read_to_string(local.join("out/src/sub/b.txt")).unwrap(),
        "B"
    );
    ok(&e, &["cp", "box:/tmp/src", &path("copy")]);
    assert_eq!(
        std::fs::read_to_string(local.join("copy/a.txt")).unwrap(),
        "A"
    );
    ok(&e, &["cp", "box:/tmp/renamed.txt", &path("back.txt")]);
    assert_eq!(
        std::fs::read_to_string(local.join("back.txt")).unwrap(),
        "S"
    );
    let tar = run(&e, &["cp", "box:/tmp/single.txt", "-"]);
    assert!(tar.status.success(), "{tar:?}");
    assert!(
        tar.stdout.len() >= 1024 && tar.stdout.starts_with(b"single.txt"),
        "a tar stream"
    );

    // Mistakes.
    let missing = run(&e, &["cp", "box:/nope", &path("x")]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("Could not find the file /nope"),
        "{missing:?}"
    );
    assert_eq!(
        run(&e, &["cp", &path("a"), &path("b")]).status.code(),
        Some(125)
    );
    ok(&e, &["rm", "-f", "box"]);
}
