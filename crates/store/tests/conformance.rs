//! One suite, two backends: every check below runs against the embedded store
//! (`embedded::<check>`) and against a real etcd started for the test
//! (`etcd::<check>`). Checks read revisions from the store rather than assume
//! numbers, so they hold for any backend that keeps etcd's semantics.

mod support;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use bosun_oci::ErrorKind;
use bosun_store::{
    Compare, Deleted, Error, Key, KeyRange, KeyValue, Op, OpResult, Revision, Store, Txn,
    WatchEvent,
};
use bytes::Bytes;

use support::etcd::EtcdCluster;

/// A guard against a hung watch: a failing test ends instead of hanging. Not a
/// performance bound; nothing here should come near it.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a check runs on; dropping it removes the data dir or kills etcd.
enum Fixture {
    Embedded(
        #[allow(dead_code, reason = "held for its drop")] tempfile::TempDir,
        Store,
    ),
    Etcd(
        #[allow(dead_code, reason = "held for its drop")] EtcdCluster,
        Store,
    ),
}

impl Fixture {
    async fn embedded() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path()).await.unwrap();
        Fixture::Embedded(dir, store)
    }

    async fn etcd() -> Fixture {
        let cluster = tokio::task::spawn_blocking(|| EtcdCluster::start(1))
            .await
            .unwrap();
        let store = Store::etcd(cluster.endpoints().parse().unwrap()).unwrap();
        Fixture::Etcd(cluster, store)
    }

    fn store(&self) -> &Store {
        match self {
            Fixture::Embedded(_, s) | Fixture::Etcd(_, s) => s,
        }
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let f = super::Fixture::embedded().await;
                    super::$check(f.store()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let f = super::Fixture::etcd().await;
                    super::$check(f.store()).await;
                }
            )*
        }
    };
}

conformance!(
    revisions,
    create_update_delete,
    transactions,
    range_at_revision_and_paging,
    watch_replays_history_then_goes_live,
    watch_started_during_writes_misses_and_repeats_nothing,
    many_watchers,
    slow_watcher_gets_everything,
    compaction,
    progress,
);

fn key(s: &str) -> Key {
    Key::try_from(s).unwrap()
}

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn rev(n: i64) -> Revision {
    Revision::new(n).unwrap()
}

fn plus(r: Revision, n: i64) -> Revision {
    rev(r.get() + n)
}

async fn next(w: &mut bosun_store::Watch) -> WatchEvent {
    tokio::time::timeout(PATIENCE, w.recv())
        .await
        .expect("the watch delivered nothing")
        .expect("the watch failed")
}

/// The next event that is not a progress notification.
async fn next_change(w: &mut bosun_store::Watch) -> WatchEvent {
    loop {
        match next(w).await {
            WatchEvent::Progress { .. } => continue,
            ev => return ev,
        }
    }
}

fn put_kv(ev: &WatchEvent) -> &KeyValue {
    match ev {
        WatchEvent::Put { kv, .. } => kv,
        other => panic!("expected a put, got {other:?}"),
    }
}

async fn revisions(s: &Store) {
    let r0 = s.current_revision().await.unwrap();
    let a = s.create(&key("/r/a"), val("1")).await.unwrap();
    assert_eq!(
        a.mod_revision,
        plus(r0, 1),
        "a write bumps the revision by one"
    );
    assert_eq!(a.create_revision, a.mod_revision);
    assert_eq!(a.version, 1);
    assert_eq!(a.value, val("1"));

    let a2 = s
        .update(&key("/r/a"), val("2"), a.mod_revision)
        .await
        .unwrap();
    assert_eq!(a2.mod_revision, plus(r0, 2));
    assert_eq!(a2.create_revision, a.create_revision);
    assert_eq!(a2.version, 2);

    // One transaction, three keys: one revision.
    let t = s
        .txn(Txn {
            compares: vec![],
            success: vec![
                Op::Put(key("/r/b"), val("b")),
                Op::Put(key("/r/c"), val("c")),
                Op::Delete(key("/r/a")),
            ],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, plus(r0, 3));
    match &t.results[..] {
        [
            OpResult::Put(b),
            OpResult::Put(c),
            OpResult::Delete(Some(prev)),
        ] => {
            assert_eq!(b.mod_revision, t.revision);
            assert_eq!(c.mod_revision, t.revision);
            assert_eq!(b.version, 1);
            assert_eq!(prev, &a2);
        }
        other => panic!("unexpected results {other:?}"),
    }
    assert_eq!(s.current_revision().await.unwrap(), t.revision);

    // Writes that change nothing leave the revision alone.
    let err = s.update(&key("/r/b"), val("x"), rev(1)).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let err = s.delete(&key("/r/missing"), None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let read = s
        .txn(Txn {
            success: vec![Op::Get(key("/r/b"))],
            ..Txn::default()
        })
        .await
        .unwrap();
    assert_eq!(read.revision, t.revision);
    assert_eq!(s.current_revision().await.unwrap(), t.revision);
    let got = s.get(&key("/r/b"), None).await.unwrap().unwrap();
    assert_eq!(got.value, val("b"));
    assert_eq!(got.mod_revision, t.revision);
}

async fn create_update_delete(s: &Store) {
    let k = key("/cud/obj");
    let a = s.create(&k, val("v1")).await.unwrap();

    let err = s.create(&k, val("again")).await.unwrap_err();
    match &err {
        Error::AlreadyExists { key, mod_revision } => {
            assert_eq!(key, &k);
            assert_eq!(*mod_revision, a.mod_revision);
        }
        other => panic!("expected AlreadyExists, got {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Conflict);

    let stale = rev(a.mod_revision.get() - 1);
    let err = s.update(&k, val("v2"), stale).await.unwrap_err();
    match &err {
        Error::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(*expected, stale);
            assert_eq!(
                *actual, a.mod_revision,
                "the conflict names the actual revision"
            );
        }
        other => panic!("expected Conflict, got {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Conflict);

    let b = s.update(&k, val("v2"), a.mod_revision).await.unwrap();
    assert_eq!(s.get(&k, None).await.unwrap().unwrap(), b);

    let err = s.delete(&k, Some(a.mod_revision)).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { actual, .. } if actual == b.mod_revision),
        "{err}"
    );
    let Deleted { prev, revision } = s.delete(&k, Some(b.mod_revision)).await.unwrap();
    assert_eq!(prev, b);
    assert_eq!(revision, plus(b.mod_revision, 1));
    assert_eq!(s.get(&k, None).await.unwrap(), None);

    let err = s.delete(&k, None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = s.update(&k, val("v3"), b.mod_revision).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");

    // A new generation: version and create revision start over.
    let c = s.create(&k, val("again")).await.unwrap();
    assert_eq!(c.version, 1);
    assert_eq!(c.create_revision, c.mod_revision);
    assert_eq!(c.mod_revision, plus(revision, 1));
}

async fn transactions(s: &Store) {
    let a = s.create(&key("/t/a"), val("a")).await.unwrap();
    let b = s.create(&key("/t/b"), val("b")).await.unwrap();
    let both = |ra: Revision, rb: Revision| Txn {
        compares: vec![
            Compare {
                key: key("/t/a"),
                mod_revision: ra,
            },
            Compare {
                key: key("/t/b"),
                mod_revision: rb,
            },
            Compare {
                key: key("/t/none"),
                mod_revision: Revision::ZERO,
            },
        ],
        success: vec![
            Op::Put(key("/t/a"), val("a2")),
            Op::Get(key("/t/a")),
            Op::Delete(key("/t/b")),
        ],
        failure: vec![Op::Get(key("/t/a")), Op::Get(key("/t/none"))],
    };

    let failed = s.txn(both(a.mod_revision, a.mod_revision)).await.unwrap();
    assert!(!failed.succeeded);
    assert_eq!(
        failed.revision, b.mod_revision,
        "a failed txn writes nothing"
    );
    match &failed.results[..] {
        [OpResult::Get(Some(got)), OpResult::Get(None)] => assert_eq!(got, &a),
        other => panic!("unexpected failure results {other:?}"),
    }

    let done = s.txn(both(a.mod_revision, b.mod_revision)).await.unwrap();
    assert!(done.succeeded);
    assert_eq!(done.revision, plus(b.mod_revision, 1));
    match &done.results[..] {
        [
            OpResult::Put(put),
            OpResult::Get(Some(read)),
            OpResult::Delete(Some(deleted)),
        ] => {
            assert_eq!(put.version, 2);
            // A read after a write in the same transaction sees the write.
            assert_eq!(read, put);
            assert_eq!(deleted, &b);
        }
        other => panic!("unexpected success results {other:?}"),
    }

    let dup = Txn {
        success: vec![Op::Put(key("/t/x"), val("1")), Op::Delete(key("/t/x"))],
        ..Txn::default()
    };
    let err = s.txn(dup).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateKeyInTxn { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

async fn range_at_revision_and_paging(s: &Store) {
    let names: Vec<String> = (0..10).map(|i| format!("/p/{i:02}")).collect();
    for n in &names {
        s.create(&key(n), val("v1")).await.unwrap();
    }
    s.create(&key("/o/outside"), val("x")).await.unwrap();
    s.create(&key("/q/outside"), val("x")).await.unwrap();
    s.create(&key("/p"), val("x")).await.unwrap();

    let prefix = KeyRange::prefix("/p/");
    let all = s.range(&prefix, None, None).await.unwrap();
    let got: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_bytes()).collect();
    let want: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    assert_eq!(got, want, "keys in order, only the prefix");
    assert!(!all.more);
    let mid = s.current_revision().await.unwrap();
    assert_eq!(all.revision, mid);

    // Changes after `mid`.
    for n in &names[0..5] {
        let kv = s.get(&key(n), None).await.unwrap().unwrap();
        s.update(&key(n), val("v2"), kv.mod_revision).await.unwrap();
    }
    for n in &names[5..8] {
        s.delete(&key(n), None).await.unwrap();
    }
    s.create(&key("/p/10"), val("v1")).await.unwrap();

    // Paging at the first page's revision sees the list as it was.
    let mut pages = Vec::new();
    let mut range = prefix.clone();
    let mut at = Some(mid);
    loop {
        let page = s.range(&range, at, NonZeroUsize::new(3)).await.unwrap();
        assert_eq!(page.revision, mid);
        at = Some(page.revision);
        let last = page.kvs.last().map(|kv| kv.key.clone());
        pages.push(page);
        if !pages.last().unwrap().more {
            break;
        }
        range = prefix.continue_after(&last.expect("a page with more has keys"));
    }
    assert_eq!(
        pages.iter().map(|p| p.kvs.len()).collect::<Vec<_>>(),
        [3, 3, 3, 1]
    );
    let paged: Vec<&KeyValue> = pages.iter().flat_map(|p| &p.kvs).collect();
    assert_eq!(paged.len(), 10);
    for (kv, n) in paged.iter().zip(&names) {
        assert_eq!(kv.key.as_bytes(), n.as_bytes());
        assert_eq!(kv.value, val("v1"), "{n} as it was at {mid}");
        assert_eq!(kv.version, 1);
    }

    // The current state.
    let now = s.range(&prefix, None, None).await.unwrap();
    let now: BTreeMap<String, String> = now
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key.as_bytes()).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect();
    let mut want = BTreeMap::new();
    for n in &names[0..5] {
        want.insert(n.clone(), "v2".to_owned());
    }
    for n in &names[8..10] {
        want.insert(n.clone(), "v1".to_owned());
    }
    want.insert("/p/10".to_owned(), "v1".to_owned());
    assert_eq!(now, want);

    // Paging at the current revision, with a limit that ends exactly on the last key.
    let first = s.range(&prefix, None, NonZeroUsize::new(4)).await.unwrap();
    assert!(first.more);
    let rest = s
        .range(
            &prefix.continue_after(&first.kvs[3].key),
            Some(first.revision),
            NonZeroUsize::new(4),
        )
        .await
        .unwrap();
    assert_eq!(rest.kvs.len(), 4);
    assert!(!rest.more);

    // Single keys at a past revision.
    let old = s.get(&key("/p/05"), Some(mid)).await.unwrap().unwrap();
    assert_eq!(old.value, val("v1"));
    assert_eq!(s.get(&key("/p/05"), None).await.unwrap(), None);
    assert_eq!(s.get(&key("/p/10"), Some(mid)).await.unwrap(), None);
    let r = s.get(&key("/p/00"), Some(mid)).await.unwrap().unwrap();
    assert_eq!(r.value, val("v1"));

    // A bounded range.
    let between = KeyRange::between(&key("/p/02"), Some(&key("/p/04")));
    let b = s.range(&between, Some(mid), None).await.unwrap();
    assert_eq!(b.kvs.len(), 2);

    // The future is not readable yet.
    let current = s.current_revision().await.unwrap();
    let err = s
        .range(&prefix, Some(plus(current, 5)), None)
        .await
        .unwrap_err();
    match err {
        Error::FutureRevision {
            requested,
            current: c,
        } => {
            assert_eq!(requested, plus(current, 5));
            assert_eq!(c, current);
        }
        other => panic!("expected FutureRevision, got {other}"),
    }
}

async fn watch_replays_history_then_goes_live(s: &Store) {
    let r0 = s.current_revision().await.unwrap();
    let a1 = s.create(&key("/w/a"), val("1")).await.unwrap();
    let a2 = s
        .update(&key("/w/a"), val("2"), a1.mod_revision)
        .await
        .unwrap();
    s.create(&key("/x/other"), val("x")).await.unwrap();
    let del = s.delete(&key("/w/a"), None).await.unwrap();
    let b1 = s.create(&key("/w/b"), val("1")).await.unwrap();

    // From a1: everything after it, from history.
    let mut w = s
        .watch(&KeyRange::prefix("/w/"), a1.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut w).await,
        WatchEvent::Put {
            kv: a2.clone(),
            prev: Some(a1.clone())
        }
    );
    assert_eq!(
        next_change(&mut w).await,
        WatchEvent::Delete {
            key: key("/w/a"),
            revision: del.revision,
            prev: Some(a2.clone())
        }
    );
    assert_eq!(
        next_change(&mut w).await,
        WatchEvent::Put {
            kv: b1.clone(),
            prev: None
        }
    );

    // Then live.
    let b2 = s
        .update(&key("/w/b"), val("2"), b1.mod_revision)
        .await
        .unwrap();
    s.create(&key("/x/other2"), val("x")).await.unwrap();
    let bdel = s.delete(&key("/w/b"), None).await.unwrap();
    assert_eq!(
        next_change(&mut w).await,
        WatchEvent::Put {
            kv: b2.clone(),
            prev: Some(b1.clone())
        }
    );
    let ev = next_change(&mut w).await;
    assert_eq!(ev.revision(), bdel.revision);
    assert!(matches!(ev, WatchEvent::Delete { .. }));

    // From before the first write: the creation comes first, without a prev.
    let mut w0 = s.watch(&KeyRange::prefix("/w/"), r0).await.unwrap();
    assert_eq!(
        next_change(&mut w0).await,
        WatchEvent::Put { kv: a1, prev: None }
    );
    let mut revs = vec![];
    for _ in 0..5 {
        revs.push(next_change(&mut w0).await.revision());
    }
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
    assert_eq!(*revs.last().unwrap(), bdel.revision);
}

async fn watch_started_during_writes_misses_and_repeats_nothing(s: &Store) {
    const WRITES: usize = 300;
    const WATCHERS: usize = 6;
    let r0 = s.current_revision().await.unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..WRITES {
                let kv = s
                    .create(&key(&format!("/c/{i:04}")), val("x"))
                    .await
                    .unwrap();
                // Noise outside the range, in between.
                if i % 10 == 0 {
                    s.create(&key(&format!("/d/{i:04}")), val("x"))
                        .await
                        .unwrap();
                }
                revs.push(kv.mod_revision);
            }
            revs
        })
    };
    // Watches from r0 opened while the writes go on: each one's history replay
    // meets its live stream at a different point.
    let mut watches = Vec::new();
    for _ in 0..WATCHERS {
        watches.push(s.watch(&KeyRange::prefix("/c/"), r0).await.unwrap());
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let written = writer.await.unwrap();
    for (i, w) in watches.iter_mut().enumerate() {
        let mut seen = Vec::new();
        for _ in 0..WRITES {
            seen.push(next_change(w).await.revision());
        }
        assert_eq!(seen, written, "watch {i}: every write once, in order");
    }
    // And nothing more afterwards: the next event is the next write.
    let last = s.create(&key("/c/last"), val("x")).await.unwrap();
    for w in &mut watches {
        assert_eq!(next_change(w).await.revision(), last.mod_revision);
    }
}

async fn many_watchers(s: &Store) {
    const WATCHERS: usize = 200;
    const WRITES: usize = 20;
    let r0 = s.current_revision().await.unwrap();
    let mut watches = Vec::new();
    for i in 0..WATCHERS {
        // Half on the whole prefix, half on one key.
        let range = if i % 2 == 0 {
            KeyRange::prefix("/m/")
        } else {
            KeyRange::single(&key("/m/0003"))
        };
        watches.push((i, s.watch(&range, r0).await.unwrap()));
    }
    let mut written = Vec::new();
    for i in 0..WRITES {
        written.push(
            s.create(&key(&format!("/m/{i:04}")), val("x"))
                .await
                .unwrap(),
        );
    }
    for (i, w) in &mut watches {
        if *i % 2 == 0 {
            for kv in &written {
                assert_eq!(put_kv(&next_change(w).await), kv, "watcher {i}");
            }
        } else {
            assert_eq!(put_kv(&next_change(w).await), &written[3], "watcher {i}");
        }
    }
}

async fn slow_watcher_gets_everything(s: &Store) {
    // More revisions than the embedded store's broadcast ring holds (4096), written
    // while the watcher reads nothing: it must catch up from the log.
    const WRITERS: usize = 16;
    const PER_WRITER: usize = 320;
    let r0 = s.current_revision().await.unwrap();
    let mut w = s.watch(&KeyRange::prefix("/s/"), r0).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                s.create(&key(&format!("/s/{t:02}/{i:04}")), val("x"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = s.current_revision().await.unwrap();
    let mut last = r0;
    let mut count = 0;
    while last < end {
        let ev = next_change(&mut w).await;
        assert_eq!(ev.revision(), plus(last, 1), "revisions follow each other");
        last = ev.revision();
        count += 1;
    }
    assert_eq!(count, WRITERS * PER_WRITER);
}

async fn compaction(s: &Store) {
    let a1 = s.create(&key("/k/a"), val("1")).await.unwrap();
    let a2 = s
        .update(&key("/k/a"), val("2"), a1.mod_revision)
        .await
        .unwrap();
    s.create(&key("/k/b"), val("1")).await.unwrap();
    s.delete(&key("/k/b"), None).await.unwrap();
    s.create(&key("/k/c"), val("1")).await.unwrap();
    let rc = s.current_revision().await.unwrap();
    let a3 = s
        .update(&key("/k/a"), val("3"), a2.mod_revision)
        .await
        .unwrap();
    let d = s.create(&key("/k/d"), val("1")).await.unwrap();

    s.compact(rc).await.unwrap();

    let err = s
        .get(&key("/k/a"), Some(a1.mod_revision))
        .await
        .unwrap_err();
    match &err {
        Error::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(*requested, a1.mod_revision);
            assert_eq!(*compacted, rc);
        }
        other => panic!("expected Compacted, got {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let err = s
        .range(&KeyRange::prefix("/k/"), Some(plus(rc, -1)), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Compacted { .. }), "{err}");

    // The state at the compact revision is kept whole.
    let at_rc = s
        .range(&KeyRange::prefix("/k/"), Some(rc), None)
        .await
        .unwrap();
    let keys: Vec<(&[u8], &[u8])> = at_rc
        .kvs
        .iter()
        .map(|kv| (kv.key.as_bytes(), kv.value.as_ref()))
        .collect();
    assert_eq!(keys, [(&b"/k/a"[..], &b"2"[..]), (b"/k/c", b"1")]);
    assert_eq!(s.get(&key("/k/a"), Some(rc)).await.unwrap().unwrap(), a2);
    assert_eq!(s.get(&key("/k/b"), Some(rc)).await.unwrap(), None);
    let now = s.range(&KeyRange::prefix("/k/"), None, None).await.unwrap();
    assert_eq!(now.kvs.len(), 3);

    // Watches: from before the compact revision is too old; from it, fine.
    let err = s
        .watch(&KeyRange::prefix("/k/"), plus(rc, -1))
        .await
        .unwrap_err();
    match err {
        Error::Compacted { compacted, .. } => assert_eq!(compacted, rc),
        other => panic!("expected Compacted, got {other}"),
    }
    let mut w = s.watch(&KeyRange::prefix("/k/"), rc).await.unwrap();
    assert_eq!(
        next_change(&mut w).await,
        WatchEvent::Put {
            kv: a3,
            prev: Some(a2)
        }
    );
    assert_eq!(
        next_change(&mut w).await,
        WatchEvent::Put { kv: d, prev: None }
    );

    // Compacting again at or below, or into the future, is refused.
    let err = s.compact(rc).await.unwrap_err();
    assert!(matches!(err, Error::Compacted { .. }), "{err}");
    let err = s.compact(plus(rc, -1)).await.unwrap_err();
    assert!(matches!(err, Error::Compacted { .. }), "{err}");
    let current = s.current_revision().await.unwrap();
    let err = s.compact(plus(current, 10)).await.unwrap_err();
    assert!(matches!(err, Error::FutureRevision { .. }), "{err}");

    // Writes go on after a compaction, and a second one works.
    let e = s.create(&key("/k/e"), val("1")).await.unwrap();
    s.compact(e.mod_revision).await.unwrap();
    assert_eq!(
        s.get(&key("/k/a"), Some(e.mod_revision))
            .await
            .unwrap()
            .unwrap()
            .value,
        val("3")
    );
}

async fn progress(s: &Store) {
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch(&KeyRange::prefix("/pg/"), start).await.unwrap();
    // Nothing in range changes, the store moves on.
    s.create(&key("/elsewhere/1"), val("x")).await.unwrap();
    s.create(&key("/elsewhere/2"), val("x")).await.unwrap();
    let current = s.current_revision().await.unwrap();
    w.request_progress();
    assert_eq!(
        next(&mut w).await,
        WatchEvent::Progress { revision: current },
        "a quiet watch learns the current revision"
    );

    // Events come before the progress that covers them.
    let kv = s.create(&key("/pg/a"), val("x")).await.unwrap();
    s.create(&key("/elsewhere/3"), val("x")).await.unwrap();
    let current = s.current_revision().await.unwrap();
    w.request_progress();
    assert_eq!(put_kv(&next(&mut w).await), &kv);
    assert_eq!(
        next(&mut w).await,
        WatchEvent::Progress { revision: current }
    );
}
