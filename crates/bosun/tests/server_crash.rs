//! `bosun server` killed with SIGKILL in the middle of a burst of writes:
//! after a restart on the same data directory every write it acknowledged is
//! there, and a watch resumes from a revision before the crash with every
//! acknowledged change after it, in order.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::bosun;
use serde_json::{Value, json};

/// A running `bosun server`, killed when the test ends however it ends.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Running {
    let mut child = Command::new(bosun())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn bosun server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("bosun server did not say where it listens: {line:?}"))
        .to_owned();
    Running { child, addr }
}

fn client(dir: &Path) -> (reqwest::Client, String) {
    let ca = std::fs::read(dir.join("pki/ca.crt")).unwrap();
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    (client, token)
}

const CM: &str = "api/v1/namespaces/default/configmaps";

#[test]
fn every_acknowledged_write_survives_a_sigkill() {
    let dir = tempfile::Builder::new()
        .prefix("bosun-crash-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut server = start(&data);
    let (http, token) = client(&data);
    // (name, resourceVersion) of every create the server answered 201 to.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (http, token, acked) = (http.clone(), token.clone(), acked.clone());
            let url = format!("https://{}/{CM}", server.addr);
            rt.spawn(async move {
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    let body = json!({"metadata": {"name": name}, "data": {"i": i.to_string()}});
                    let sent = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await;
                    let Ok(resp) = sent else { return };
                    if resp.status() != 201 {
                        return;
                    }
                    let Ok(text) = resp.text().await else {
                        return;
                    };
                    let obj: Value = serde_json::from_str(&text).expect("a JSON object");
                    let rv = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .expect("a created object has a resourceVersion");
                    acked.lock().unwrap().push((name, rv));
                }
            })
        })
        .collect();
    // Kill while the writers are in full flow: after enough acknowledgements,
    // without stopping them first.
    while acked.lock().unwrap().len() < 300 {
        assert!(
            !writers.iter().all(|w| w.is_finished()),
            "the writers stopped before the crash"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for w in writers {
        rt.block_on(w).unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let server = start(&data);
    let base = format!("https://{}/{CM}", server.addr);
    rt.block_on(async {
        let list = http
            .get(&base)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let list: Value = serde_json::from_str(&list).unwrap();
        let stored: std::collections::HashMap<String, (i64, String)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                    (
                        o["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap()
                            .parse()
                            .unwrap(),
                        o["data"]["i"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect();
        for (name, rv) in &acked {
            let (got_rv, i) = stored
                .get(name)
                .unwrap_or_else(|| panic!("acknowledged write {name} lost"));
            assert_eq!(got_rv, rv, "{name}");
            assert!(name.ends_with(&format!("-{i}")), "{name}: {i}");
        }

        // A watch from before the crash replays every acknowledged write after it.
        let mut sorted = acked.clone();
        sorted.sort_by_key(|(_, rv)| *rv);
        let from = sorted[sorted.len() / 2].1;
        let stream = http
            .get(format!(
                "{base}?watch=1&resourceVersion={from}&timeoutSeconds=2"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events: Vec<(String, i64)> = stream
            .lines()
            .map(|l| {
                let e: Value = serde_json::from_str(l).unwrap();
                assert_eq!(e["type"], "ADDED", "{l}");
                let m = &e["object"]["metadata"];
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["resourceVersion"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert!(
            events.windows(2).all(|w| w[0].1 < w[1].1),
            "events in revision order"
        );
        let after: Vec<&(String, i64)> = sorted.iter().filter(|(_, rv)| *rv > from).collect();
        for want in after {
            assert!(
                events.contains(want),
                "{want:?} missing from the resumed watch"
            );
        }
        assert!(events.iter().all(|(_, rv)| *rv > from));
    });
}
