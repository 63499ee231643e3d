//! What only the embedded store has: a data directory that outlives the process,
//! one process at a time, and a watcher that can fall behind its in-memory ring.

use std::time::Duration;

use bosun_oci::ErrorKind;
use bosun_store::{Error, Key, KeyRange, Revision, Store, WatchEvent};
use bytes::Bytes;

const PATIENCE: Duration = Duration::from_secs(60);

fn key(s: &str) -> Key {
    Key::try_from(s).unwrap()
}

async fn next(w: &mut bosun_store::Watch) -> Result<WatchEvent, Error> {
    tokio::time::timeout(PATIENCE, w.recv())
        .await
        .expect("the watch delivered nothing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_revisions_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let r0;
    let written;
    {
        let s = Store::open_embedded(dir.path()).await.unwrap();
        r0 = s.current_revision().await.unwrap();
        let a = s.create(&key("/a"), Bytes::from("1")).await.unwrap();
        let b = s.create(&key("/b"), Bytes::from("1")).await.unwrap();
        let a2 = s
            .update(&key("/a"), Bytes::from("2"), a.mod_revision)
            .await
            .unwrap();
        s.delete(&key("/b"), Some(b.mod_revision)).await.unwrap();
        written = (a, a2);
    }
    let s = Store::open_embedded(dir.path()).await.unwrap();
    let (a, a2) = written;
    let current = s.current_revision().await.unwrap();
    assert_eq!(current.get(), r0.get() + 4);
    assert_eq!(s.get(&key("/a"), None).await.unwrap().unwrap(), a2);
    assert_eq!(s.get(&key("/b"), None).await.unwrap(), None);
    assert_eq!(
        s.get(&key("/a"), Some(a.mod_revision))
            .await
            .unwrap()
            .unwrap(),
        a
    );
    // Revisions go on from where they were.
    let c = s.create(&key("/c"), Bytes::from("1")).await.unwrap();
    assert_eq!(c.mod_revision.get(), current.get() + 1);
    // History from before the restart replays.
    let mut w = s.watch(&KeyRange::prefix(""), r0).await.unwrap();
    let mut revs = Vec::new();
    for _ in 0..5 {
        revs.push(next(&mut w).await.unwrap().revision().get());
    }
    let want: Vec<i64> = (r0.get() + 1..=r0.get() + 5).collect();
    assert_eq!(revs, want);
}

#[tokio::test]
async fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _s = Store::open_embedded(dir.path()).await.unwrap();
    let err = Store::open_embedded(dir.path()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_overtaking_a_lagging_watcher_ends_it_with_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_embedded(dir.path()).await.unwrap();
    let r0 = s.current_revision().await.unwrap();
    let mut w = s.watch(&KeyRange::prefix("/l/"), r0).await.unwrap();
    // More revisions than the broadcast ring holds, none read yet.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..600 {
                s.create(&key(&format!("/l/{t}/{i}")), Bytes::new())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let current = s.current_revision().await.unwrap();
    s.compact(current).await.unwrap();
    // What the ring still holds cannot be delivered without the revisions before
    // it, which are gone.
    let err = match next(&mut w).await {
        Ok(ev) => panic!("delivered {ev:?} across a gap"),
        Err(e) => e,
    };
    match err {
        Error::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, r0);
            assert_eq!(compacted, current);
        }
        other => panic!("expected Compacted, got {other}"),
    }
    assert!(matches!(next(&mut w).await, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_ends_its_watches() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_embedded(dir.path()).await.unwrap();
    let mut w = s
        .watch(&KeyRange::prefix(""), Revision::ZERO)
        .await
        .unwrap();
    let kv = s.create(&key("/x"), Bytes::new()).await.unwrap();
    drop(s);
    // What was committed is still delivered, then the end.
    assert_eq!(next(&mut w).await.unwrap().revision(), kv.mod_revision);
    assert!(matches!(next(&mut w).await, Err(Error::Closed)));
}
