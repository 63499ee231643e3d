//! kill -9 at any moment loses no acknowledged write.
//!
//! A child process (this test binary, running the ignored `child_writer`) writes in
//! a loop from several tasks and prints each write's key and revision as soon as
//! the store acknowledges it; the parent SIGKILLs it somewhere in the middle of
//! the stream, reads what was printed (everything in the pipe was acknowledged),
//! reopens the store and checks every acknowledged write is there, then lets a new
//! child go on in the same directory. (A SIGKILL keeps the page cache: this proves
//! that acknowledgements follow commits and that redb recovers from a torn
//! process, not what a power cut would do to the disk.)

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use bosun_store::{Key, KeyRange, Revision, Store};
use bytes::Bytes;

const DIR_ENV: &str = "BOSUN_STORE_CRASH_DIR";
const ROUND_ENV: &str = "BOSUN_STORE_CRASH_ROUND";
const WRITERS: usize = 8;

/// The child: writes until killed. Does nothing unless started by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of kill_9_loses_no_acknowledged_write"]
async fn child_writer() {
    let (Ok(dir), Ok(round)) = (std::env::var(DIR_ENV), std::env::var(ROUND_ENV)) else {
        return;
    };
    let store = Store::open_embedded(dir.as_ref()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let store = store.clone();
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let name = format!("/crash/{round}/{t}/{i:08}");
                let kv = store
                    .create(
                        &Key::try_from(name.as_str()).unwrap(),
                        Bytes::from(name.clone()),
                    )
                    .await
                    .unwrap();
                // One write call per line, so lines from several tasks never mix.
                let line = format!("ack {name} {}\n", kv.mod_revision);
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    // Kill points differ per round so that the kill lands in different places
    // of the write/commit/acknowledge cycle.
    for (round, kill_after) in [(0, 150), (1, 1009), (2, 37), (3, 2503)] {
        let mut child = Command::new(&exe)
            .args(["child_writer", "--exact", "--ignored", "--nocapture"])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        for line in out.lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let (name, rev) = rest.split_once(' ').unwrap();
            acked.insert(name.to_owned(), rev.parse().unwrap());
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap(); // SIGKILL
            }
        }
        // The pipe is drained: every write the child acknowledged is in `acked`.
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child must have been killed"
        );
        assert!(
            seen >= kill_after,
            "round {round}: the child died on its own"
        );

        let store = Store::open_embedded(dir.path()).await.unwrap();
        for (name, rev) in &acked {
            let kv = store
                .get(&Key::try_from(name.as_str()).unwrap(), None)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged {name} is lost"));
            assert_eq!(kv.mod_revision.get(), *rev, "{name}");
            assert_eq!(kv.value, Bytes::from(name.clone()));
        }
        // The log agrees: history replays without a gap up to the current revision.
        let current = store.current_revision().await.unwrap();
        let all = store
            .range(&KeyRange::prefix("/crash/"), None, None)
            .await
            .unwrap();
        assert!(all.kvs.len() >= acked.len());
        let mut w = store
            .watch(&KeyRange::prefix(""), Revision::ZERO)
            .await
            .unwrap();
        for r in 2..=current.get() {
            assert_eq!(w.recv().await.unwrap().revision().get(), r);
        }
        drop(w);
        // And the store takes writes again.
        let kv = store
            .create(
                &Key::try_from(format!("/after/{round}")).unwrap(),
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(kv.mod_revision.get(), current.get() + 1);
        store.delete(&kv.key, None).await.unwrap();
    }
}
