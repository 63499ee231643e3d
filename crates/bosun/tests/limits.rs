//! Resource limits, each proven by its effect on a real container.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn memory_limit_oom_kills_and_state_reports_it() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        c["linux"]["resources"]["memory"] =
            json!({"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024});
    });
    // The shell keeps the whole substitution in memory: ~256 MiB, far over the limit.
    b.args(&[
        "sh",
        "-c",
        "x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived ${#x}",
    ]);
    let id = unique_id("oom");
    rt.start_detached(&b, &id);
    rt.wait_status(&id, "stopped");
    let state = rt.state(&id);
    assert_eq!(state["oomKilled"], true, "{state}");
    rt.ok(&["delete", &id]);

    // And through `run`, the exit code says it was killed (SIGKILL).
    let (code, out, _) = rt.run(&b, &unique_id("oom-run"));
    assert_eq!(code, 128 + 9, "{out}");
    assert!(!out.contains("survived"));
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 16}));
    // A subshell forks until the kernel refuses (busybox sh then gives up); init
    // itself execs so it needs no fork once the bomb runs.
    b.args(&[
        "sh",
        "-c",
        "(while :; do sleep 300 & done) 2>/dev/null & exec sleep 300",
    ]);
    let id = unique_id("pids");
    rt.start_detached(&b, &id);
    let listed = || {
        serde_json::from_str::<Vec<i32>>(&rt.ok(&["ps", "--format", "json", &id]))
            .unwrap()
            .len()
    };
    // pids.current also counts zombies nobody reaps (init exec'd sleep), so the
    // kernel's counter, not the process list, shows the limit being hit.
    let current = || {
        let ev: serde_json::Value =
            serde_json::from_str(&rt.ok(&["events", "--stats", &id])).unwrap();
        ev["data"]["pids"]["current"].as_u64().unwrap()
    };
    rt.wait_until(|| current() >= 16);
    for _ in 0..20 {
        let (n, c) = (listed(), current());
        assert!(
            n <= 16 && c <= 16,
            "pids limit not enforced: {n} listed, {c} counted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The host stays responsive: the bomb is contained and removed promptly.
    let started = Instant::now();
    rt.ok(&["delete", "--force", &id]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!rt.root().join(&id).exists());
}

/// cpu usage of the container's cgroup (ns), from `events --stats`.
fn cpu_total(rt: &Rt, id: &str) -> u64 {
    let ev: serde_json::Value = serde_json::from_str(&rt.ok(&["events", "--stats", id])).unwrap();
    ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap()
}

#[test]
fn cpu_quota_of_half_a_cpu_is_enforced() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| c["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000}));
    // Two busy loops: unthrottled they would use two CPUs' worth.
    b.args(&["sh", "-c", "while :; do :; done & while :; do :; done"]);
    let id = unique_id("cpu");
    rt.start_detached(&b, &id);
    std::thread::sleep(Duration::from_millis(300));
    let (t0, c0) = (Instant::now(), cpu_total(&rt, &id));
    std::thread::sleep(Duration::from_secs(3));
    let (t1, c1) = (Instant::now(), cpu_total(&rt, &id));
    let cpus = (c1 - c0) as f64 / (t1 - t0).as_nanos() as f64;
    rt.ok(&["delete", "--force", &id]);
    assert!(
        (0.4..=0.6).contains(&cpus),
        "measured {cpus:.3} CPUs, want 0.5 ± 20 %"
    );
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sleep", "60"]);
    let id = unique_id("update");
    rt.start_detached(&b, &id);
    rt.ok(&["update", "--memory", "64m", "--pids-limit", "7", &id]);
    let ev: serde_json::Value = serde_json::from_str(&rt.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(
        ev["data"]["memory"]["usage"]["limit"],
        64 * 1024 * 1024,
        "{ev}"
    );
    assert_eq!(ev["data"]["pids"]["limit"], 7, "{ev}");
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    rt.ok(&["delete", "--force", &id]);
}

/// A device node outside /dev with a major/minor no driver serves (1:200): when
/// the cgroup allows it, open fails with ENXIO; when it denies it, with EPERM.
#[test]
fn device_rules_allow_and_deny() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    let node = b.rootfs().join("node");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 200),
    )
    .unwrap();
    b.args(&["sh", "-c", "cat /node 2>&1; cat /dev/null && echo null-ok"]);
    let denied = rt.run_ok(&b, &unique_id("devdeny"));
    assert!(denied.contains("Operation not permitted"), "{denied}");
    assert!(
        denied.contains("null-ok"),
        "default devices stay allowed: {denied}"
    );
    b.edit(|c| {
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "c", "major": 1, "minor": 200, "access": "rw"}));
    });
    let allowed = rt.run_ok(&b, &unique_id("devallow"));
    assert!(allowed.contains("No such device or address"), "{allowed}");
}

#[test]
fn rlimits_and_oom_score_adj_apply() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
        c["process"]["oomScoreAdj"] = json!(500);
    });
    b.args(&[
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj",
    ]);
    assert_eq!(rt.run_ok(&b, &unique_id("rlimit")), "123\n456\n500\n");
}
