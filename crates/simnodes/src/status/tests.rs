use super::*;

fn spec() -> NodeSpec {
    NodeSpec {
        name: "sim-3".into(),
        prefix: "sim".into(),
        pod_cidr: "10.42.3.0/24".parse().unwrap(),
        ip: "10.40.0.4".parse().unwrap(),
    }
}

fn cap() -> Capacity {
    Capacity {
        cpu: "8".into(),
        memory: "32Gi".into(),
        pods: 110,
        ephemeral_storage: "100Gi".into(),
    }
}

fn pod(containers: &[&str], inits: &[&str]) -> Value {
    let c = |names: &[&str]| -> Vec<Value> {
        names
            .iter()
            .map(|n| json!({"name": n, "image": format!("{n}:1")}))
            .collect()
    };
    json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"nodeName": "sim-3", "containers": c(containers), "initContainers": c(inits)},
        "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]},
    })
}

#[test]
fn a_node_registers_ready_with_its_capacity_cidr_and_address() {
    let n = node(&spec(), &cap(), 1_800_000_000);
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "sim-3");
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(n["metadata"]["labels"][NODE_LABEL], "sim");
    assert_eq!(n["spec"]["podCIDR"], "10.42.3.0/24");
    let s = &n["status"];
    assert_eq!(s["capacity"]["pods"], "110");
    assert_eq!(s["allocatable"]["memory"], "32Gi");
    assert_eq!(s["capacity"]["ephemeral-storage"], "100Gi");
    let conds: Vec<(&str, &str)> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conds,
        [
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
            ("Ready", "True")
        ]
    );
    assert_eq!(
        s["addresses"][0],
        json!({"type": "InternalIP", "address": "10.40.0.4"})
    );
    assert_eq!(s["nodeInfo"]["operatingSystem"], "linux");
    let later = node_status(&spec(), &cap(), 1_800_000_300, 1_800_000_000);
    assert_eq!(
        later["conditions"][3]["lastHeartbeatTime"],
        "2027-01-15T08:05:00Z"
    );
    assert_eq!(
        later["conditions"][3]["lastTransitionTime"],
        "2027-01-15T08:00:00Z"
    );
}

#[test]
fn leases_are_held_by_their_node_and_carry_micro_time() {
    assert_eq!(
        micro_time(1_800_000_000_123_456),
        "2027-01-15T08:00:00.123456Z"
    );
    assert_eq!(
        micro_time(1_800_000_000_000_001),
        "2027-01-15T08:00:00.000001Z"
    );
    let l = lease("sim-3", "uid-3", "2027-01-15T08:00:00.000000Z");
    assert_eq!(l["metadata"]["namespace"], "kube-node-lease");
    assert_eq!(l["metadata"]["ownerReferences"][0]["uid"], "uid-3");
    assert_eq!(l["spec"]["holderIdentity"], "sim-3");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 40);
}

#[test]
fn a_running_pod_is_ready_with_its_address_and_running_containers() {
    let s = running(
        &pod(&["web", "side"], &["init"]),
        "10.42.3.7".parse().unwrap(),
        "10.40.0.4".parse().unwrap(),
        1_800_000_000,
    );
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["podIP"], "10.42.3.7");
    assert_eq!(s["podIPs"], json!([{"ip": "10.42.3.7"}]));
    assert_eq!(s["hostIP"], "10.40.0.4");
    assert_eq!(s["startTime"], "2027-01-15T08:00:00Z");
    assert_eq!(s["qosClass"], "BestEffort");
    for kind in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        let c = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap();
        assert_eq!(c["status"], "True", "{kind}");
    }
    let scheduled = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled");
    assert_eq!(
        scheduled.unwrap()["lastTransitionTime"],
        "2026-01-01T00:00:00Z"
    );
    let c = &s["containerStatuses"];
    assert_eq!(c.as_array().unwrap().len(), 2);
    assert_eq!(c[0]["name"], "web");
    assert_eq!(c[0]["image"], "web:1");
    assert_eq!(c[0]["ready"], true);
    assert_eq!(c[0]["started"], true);
    assert_eq!(c[0]["restartCount"], 0);
    assert_eq!(c[0]["containerID"], "sim://u1/web/0");
    assert_eq!(
        c[0]["state"]["running"]["startedAt"],
        "2027-01-15T08:00:00Z"
    );
    assert_eq!(
        s["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
}

#[test]
fn an_exit_ends_the_pod_or_restarts_its_containers_by_restart_policy() {
    let run = running(
        &pod(&["job"], &[]),
        "10.42.3.7".parse().unwrap(),
        "10.40.0.4".parse().unwrap(),
        100,
    );
    let done = exited(&run, "u1", "Never", 0, 160);
    assert_eq!(done["phase"], "Succeeded");
    let t = &done["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0);
    assert_eq!(t["reason"], "Completed");
    assert_eq!(t["startedAt"], "1970-01-01T00:01:40Z");
    assert_eq!(t["finishedAt"], "1970-01-01T00:02:40Z");
    assert_eq!(done["containerStatuses"][0]["ready"], false);
    let ready = done["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "PodCompleted");

    let failed = exited(&run, "u1", "Never", 3, 160);
    assert_eq!(failed["phase"], "Failed");
    assert_eq!(
        failed["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(
        failed["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Error"
    );
    assert_eq!(
        exited(&run, "u1", "OnFailure", 0, 160)["phase"],
        "Succeeded"
    );

    for policy in ["OnFailure", "Always"] {
        let again = exited(&run, "u1", policy, 2, 160);
        assert_eq!(again["phase"], "Running", "{policy}");
        let c = &again["containerStatuses"][0];
        assert_eq!(c["restartCount"], 1);
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 2);
        assert_eq!(c["state"]["running"]["startedAt"], "1970-01-01T00:02:40Z");
        assert_eq!(c["containerID"], "sim://u1/job/1");
        let twice = exited(&again, "u1", policy, 2, 200);
        assert_eq!(twice["containerStatuses"][0]["restartCount"], 2);
    }
    assert!(restarts("Always", 0));
    assert!(!restarts("OnFailure", 0));
    assert!(!restarts("Never", 1));
}

#[test]
fn restarts_back_off_like_the_kubelet() {
    let secs: Vec<u64> = (0..9).map(|n| run_time(n).as_secs()).collect();
    assert_eq!(secs, [1, 10, 20, 40, 80, 160, 300, 300, 300]);
}

#[test]
fn a_pod_marked_not_ready_is_ready_again_with_everything_else_kept() {
    let mut p = pod(&["web"], &[]);
    p["status"] = running(
        &p,
        "10.42.3.7".parse().unwrap(),
        "10.40.0.4".parse().unwrap(),
        100,
    );
    assert!(is_ready(&p));
    for c in p["status"]["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Ready" {
            c["status"] = "False".into();
            c["reason"] = "NodeNotReady".into();
        }
    }
    p["status"]["containerStatuses"][0]["ready"] = false.into();
    p["status"]["containerStatuses"][0]["restartCount"] = 2.into();
    assert!(!is_ready(&p));
    let s = ready_again(&p["status"], 500);
    let ready = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    assert!(ready.get("reason").is_none());
    assert_eq!(ready["lastTransitionTime"], "1970-01-01T00:08:20Z");
    let scheduled = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled["lastTransitionTime"], "2026-01-01T00:00:00Z");
    assert_eq!(s["containerStatuses"][0]["ready"], true);
    assert_eq!(s["containerStatuses"][0]["restartCount"], 2);
    assert_eq!(s["podIP"], "10.42.3.7");
}
