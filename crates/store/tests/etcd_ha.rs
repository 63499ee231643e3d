//! A 3-member etcd cluster on loopback: killing the member a client and its watch
//! talk to leaves writes and watches going through the other two, and two store
//! handles (two API servers) on the same cluster see each other's writes and
//! watch events.

mod support;

use std::time::Duration;

use bosun_oci::ErrorKind;
use bosun_store::{Error, Key, KeyRange, KeyValue, Store, WatchEvent};
use bytes::Bytes;

use support::etcd::EtcdCluster;

const PATIENCE: Duration = Duration::from_secs(120);

fn key(s: &str) -> Key {
    Key::try_from(s).unwrap()
}

async fn next_put(w: &mut bosun_store::Watch) -> KeyValue {
    loop {
        let ev = tokio::time::timeout(PATIENCE, w.recv())
            .await
            .expect("the watch delivered nothing")
            .expect("the watch failed");
        match ev {
            WatchEvent::Put { kv, .. } => return kv,
            WatchEvent::Progress { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Creates `k`, riding out a leader election: a create whose answer was lost may
/// have been applied, which a retry then reports as `AlreadyExists`.
async fn create_through_failover(s: &Store, k: &Key) -> KeyValue {
    for _ in 0..100 {
        match s.create(k, Bytes::from("x")).await {
            Ok(kv) => return kv,
            Err(Error::AlreadyExists { .. }) => {
                return s.get(k, None).await.unwrap().expect("it exists");
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create {k}: {e}"),
        }
    }
    panic!("create {k}: etcd stayed unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_watches_survive_a_member_kill() {
    let mut cluster = tokio::task::spawn_blocking(|| EtcdCluster::start(3))
        .await
        .unwrap();
    // Two API servers: one prefers member 0 (the one to be killed), the other
    // member 2.
    let s1 = Store::etcd(cluster.endpoints().parse().unwrap()).unwrap();
    let reversed = [
        cluster.endpoint(2),
        cluster.endpoint(1),
        cluster.endpoint(0),
    ];
    let s2 = Store::etcd(bosun_store::Endpoints::new(reversed).unwrap()).unwrap();

    let r0 = s1.current_revision().await.unwrap();
    let mut w1 = s1.watch(&KeyRange::prefix("/ha/"), r0).await.unwrap();
    let mut w2 = s2.watch(&KeyRange::prefix("/ha/"), r0).await.unwrap();

    let mut written = Vec::new();
    for i in 0..20 {
        written.push(create_through_failover(&s1, &key(&format!("/ha/{i:03}"))).await);
    }
    // Each server reads what the other wrote.
    let b = create_through_failover(&s2, &key("/ha/from-s2")).await;
    assert_eq!(s1.get(&b.key, None).await.unwrap().unwrap(), b);
    written.push(b);
    for kv in &written {
        assert_eq!(&next_put(&mut w1).await, kv);
    }

    let before_kill = written.len();
    cluster.kill(0);

    // Writes go on through the survivors (after an election if 0 led).
    for i in 20..60 {
        written.push(create_through_failover(&s1, &key(&format!("/ha/{i:03}"))).await);
    }
    let c = create_through_failover(&s2, &key("/ha/from-s2-after")).await;
    written.push(c);

    // w1's stream to member 0 broke; it resumed elsewhere from the next revision.
    for kv in &written[before_kill..] {
        assert_eq!(&next_put(&mut w1).await, kv, "w1 after the kill");
    }
    // w2 never lost its stream: it has everything, in order, once.
    for kv in &written {
        assert_eq!(&next_put(&mut w2).await, kv, "w2");
    }
    // Neither holds anything more: the next event of both is the next write.
    let last = create_through_failover(&s2, &key("/ha/last")).await;
    assert_eq!(next_put(&mut w1).await, last);
    assert_eq!(next_put(&mut w2).await, last);
    // New watches can still start, from history.
    let mut w3 = s1.watch(&KeyRange::prefix("/ha/"), r0).await.unwrap();
    assert_eq!(next_put(&mut w3).await, written[0]);
}
