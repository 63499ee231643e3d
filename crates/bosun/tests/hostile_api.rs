//! Hostile requests on the engine's socket (root): traversal in container,
//! volume, network and image names (`../`, percent-encoded, NUL), oversized
//! and too many headers, an oversized JSON body, clients that trickle their
//! headers or say nothing, and more connections than the engine takes at once.
//! Each gets a clean 4xx (or is cut off, or waits), the data directory is
//! unchanged, and other clients are served meanwhile.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::engine::TestEngine;

/// Every path under `dir` with its size (directories as 0). Logs are left
/// out: the engine's own log may grow while the test runs.
fn tree(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.insert(rel, 0);
                walk(root, &e.path(), out);
            } else if !rel.ends_with(".log") {
                out.insert(rel, meta.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a fresh connection; returns the status and the whole answer.
fn raw(e: &TestEngine, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(&e.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let request = format!(
        "{head}\r\nHost: docker\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n",
        body.len()
    );
    // A server that refuses early may close before reading everything.
    let _ = s.write_all(request.as_bytes());
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{:.100}: no status in {text:?}", head));
    (status, text)
}

fn assert_4xx(e: &TestEngine, method: &str, path: &str, body: &str) {
    let (status, text) = raw(e, &format!("{method} {path} HTTP/1.1"), body.as_bytes());
    assert!(
        (400..500).contains(&status),
        "{method} {path} {body}: {status}\n{text}\nengine log:\n{}",
        e.log()
    );
}

#[test]
fn traversal_in_names_is_refused_and_changes_nothing() {
    let e = TestEngine::start();
    let id = e.docker_ok(&["create", "--name", "victim", "busybox", "true"]);
    let id = id.trim();
    e.docker_ok(&["volume", "create", "vol"]);
    let before = tree(&e.data);
    let names = [
        "..",
        "../x",
        "..%2Fx",
        "..%2f..%2fvictim",
        "%2e%2e",
        "%2E%2E%2F%2E%2E%2Fetc",
        "a%00b",
        "a%2F..%2F..%2Fb",
        "vol%2F..%2F..%2Fcontainers",
    ];
    for n in names {
        assert_4xx(
            &e,
            "POST",
            &format!("/containers/create?name={n}"),
            r#"{"Image":"busybox","Cmd":["true"]}"#,
        );
        assert_4xx(&e, "GET", &format!("/containers/{n}/json"), "");
        assert_4xx(&e, "POST", &format!("/containers/{n}/start"), "");
        assert_4xx(&e, "DELETE", &format!("/containers/{n}?force=1&v=1"), "");
        assert_4xx(
            &e,
            "POST",
            &format!("/containers/victim/rename?name={n}"),
            "",
        );
        assert_4xx(&e, "GET", &format!("/volumes/{n}"), "");
        assert_4xx(&e, "DELETE", &format!("/volumes/{n}?force=1"), "");
        assert_4xx(&e, "GET", &format!("/networks/{n}"), "");
        assert_4xx(&e, "DELETE", &format!("/networks/{n}"), "");
        assert_4xx(&e, "GET", &format!("/images/{n}/json"), "");
        assert_4xx(&e, "DELETE", &format!("/images/{n}?force=1"), "");
        assert_4xx(
            &e,
            "POST",
            &format!("/images/busybox/tag?repo={n}&tag=x"),
            "",
        );
        assert_4xx(
            &e,
            "POST",
            &format!("/commit?container=victim&repo={n}"),
            "",
        );
    }
    // Names in JSON bodies are not percent-decoded: the raw forms.
    for n in [
        "..",
        "../x",
        "a/../../b",
        "/etc",
        "a\\u0000b",
        ".hidden",
        "-x",
    ] {
        assert_4xx(
            &e,
            "POST",
            "/volumes/create",
            &format!(r#"{{"Name":"{n}"}}"#),
        );
        assert_4xx(
            &e,
            "POST",
            "/networks/create",
            &format!(r#"{{"Name":"{n}"}}"#),
        );
        assert_4xx(
            &e,
            "POST",
            "/networks/create",
            &format!(r#"{{"Name":"{n}","IPAM":{{"Config":[{{"Subnet":"10.250.0.0/24"}}]}}}}"#),
        );
        if !n.starts_with('/') {
            // A source that is not an absolute path names a volume.
            assert_4xx(
                &e,
                "POST",
                "/containers/create",
                &format!(
                    r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{"Binds":["{n}:/data"]}}}}"#
                ),
            );
        }
    }
    assert_eq!(
        tree(&e.data),
        before,
        "a refused request changed the data directory"
    );
    // The victim is untouched.
    let inspect = e.docker_ok(&["inspect", "--format", "{{.Name}} {{.Id}}", "victim"]);
    assert_eq!(inspect.trim(), format!("/victim {id}"));
    e.docker_ok(&["rm", "victim"]);
    e.docker_ok(&["volume", "rm", "vol"]);
}

#[test]
fn oversized_requests_and_headers_are_refused() {
    let e = TestEngine::start();
    let before = tree(&e.data);
    let many: String = (0..200).map(|i| format!("\r\nX-H{i}: v")).collect();
    let (status, _) = raw(&e, &format!("GET /_ping HTTP/1.1{many}"), b"");
    assert_eq!(status, 431, "200 headers");
    let big = format!("GET /_ping HTTP/1.1\r\nX-Big: {}", "a".repeat(1 << 20));
    assert_eq!(raw(&e, &big, b"").0, 431, "a 1 MiB header");
    // A JSON body past the 16 MiB limit: refused, nothing created.
    let body = format!(
        r#"{{"Image":"busybox","Cmd":["true"],"Labels":{{"x":"{}"}}}}"#,
        "a".repeat(17 << 20)
    );
    let (status, answer) = raw(
        &e,
        "POST /containers/create?name=big HTTP/1.1",
        body.as_bytes(),
    );
    assert_eq!(status, 413, "a 17 MiB create body: {answer:.300}");
    assert!(answer.contains("over the limit"), "{answer:.300}");
    assert_eq!(tree(&e.data), before);
    assert_eq!(e.docker_ok(&["ps", "-aq"]), "");
}

/// Reads until the server closes the connection; panics if it has not after
/// five minutes (a hang guard, not a bound on the server's timeout).
fn closed_by_server(mut s: UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("the server did not cut the slow client off")
            }
            Err(_) => return,
        }
    }
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_do_not_block_others() {
    let e = TestEngine::start();
    // Slowloris: a request line, then header bytes one at a time, forever.
    let slow = UnixStream::connect(&e.socket).unwrap();
    let mut slow_write = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        if slow_write.write_all(b"GET /_ping HTTP/1.1\r\n").is_err() {
            return;
        }
        for b in b"X-Slow: 1\r\n".iter().cycle() {
            if slow_write.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    // And a client that connects and says nothing.
    let idle = UnixStream::connect(&e.socket).unwrap();
    // Others are served meanwhile.
    for _ in 0..3 {
        assert_eq!(raw(&e, "GET /_ping HTTP/1.1", b"").0, 200);
        e.docker_ok(&["ps"]);
    }
    let idle_closed = std::thread::spawn(move || closed_by_server(idle));
    closed_by_server(slow);
    idle_closed.join().unwrap();
    trickle.join().unwrap();
    assert_eq!(raw(&e, "GET /_ping HTTP/1.1", b"").0, 200);
}

#[test]
fn connections_beyond_the_limit_wait_until_a_place_frees() {
    let e = TestEngine::start_with(&["--max-connections", "2"]);
    // Two clients that say nothing hold both places (the kernel hands
    // connections to accept in the order they came).
    let first = UnixStream::connect(&e.socket).unwrap();
    let second = UnixStream::connect(&e.socket).unwrap();
    let mut third = UnixStream::connect(&e.socket).unwrap();
    third
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .unwrap();
    // A slow machine could only make this look pass without a limit, never
    // fail with one; the answer after a place frees is the real check.
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(
        early.as_ref().is_err_and(|err| matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "a third connection was served while two held the only places: {early:?}"
    );
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let mut answer = Vec::new();
    third.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);
    assert_eq!(raw(&e, "GET /_ping HTTP/1.1", b"").0, 200);
    let bad = std::process::Command::new(common::bosun())
        .args(["engine", "--max-connections", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--max-connections"),
        "{bad:?}"
    );
}
