//! Bad input gets a one-line error naming the field and value, and leaves nothing
//! behind: no state directory, no cgroup, no mount, no process.

mod common;

use common::*;
use serde_json::json;

/// Everything a failed create might leak, checked after the fact.
fn assert_nothing_left(rt: &Rt, id: &str, cgroup: &str, bundle: &Bundle, mounts_before: &str) {
    assert!(
        !rt.root().join(id).exists(),
        "state dir of {id} left behind"
    );
    assert_eq!(
        cgroup_dirs(cgroup),
        Vec::<std::path::PathBuf>::new(),
        "cgroup of {id} left behind"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundle_path = bundle.path().to_str().unwrap();
    assert!(
        !mounts.contains(bundle_path),
        "mount under {bundle_path} left behind"
    );
    assert_eq!(
        mounts.lines().filter(|l| l.contains("bosun")).count(),
        mounts_before
            .lines()
            .filter(|l| l.contains("bosun"))
            .count()
    );
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains(id),
            "process {} of {id} left behind: {cmdline}",
            entry.file_name().to_string_lossy()
        );
    }
}

/// Create with a broken config; returns stderr after checking it failed and
/// that nothing is left.
fn create_fails(edit: impl FnOnce(&mut serde_json::Value, &Bundle)) -> String {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sleep", "60"]);
    let id = unique_id("bad");
    let cgroup = own_cgroup(&mut b, &id);
    let mut config = b.config.clone();
    edit(&mut config, &b);
    b.config = config;
    b.save();
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let out = rt.exec_files(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success(), "create succeeded with a bad config");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line: {err}"
    );
    assert_nothing_left(&rt, &id, &cgroup, &b, &before);
    err
}

#[test]
fn unknown_namespace_type() {
    let err = create_fails(|c, _| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "bogus"}))
    });
    assert!(
        err.contains("linux.namespaces[") && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn duplicate_namespace() {
    let err = create_fails(|c, _| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "pid"}))
    });
    assert!(
        err.contains("linux.namespaces[") && err.contains("listed twice"),
        "{err}"
    );
}

#[test]
fn namespace_path_that_does_not_exist() {
    let err = create_fails(|c, _| {
        c["linux"]["namespaces"].as_array_mut().unwrap()[0]["path"] =
            json!("/proc/999999999/ns/pid")
    });
    assert!(
        err.contains("linux.namespaces[0].path") && err.contains("/proc/999999999/ns/pid"),
        "{err}"
    );
}

#[test]
fn user_namespace_without_mappings() {
    let err = create_fails(|c, _| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}))
    });
    assert!(err.contains("linux.uidMappings"), "{err}");
}

#[test]
fn bad_mapping_size() {
    let err = create_fails(|c, _| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 0}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    assert!(err.contains("linux.uidMappings[0].size"), "{err}");
}

#[test]
fn mapping_the_kernel_refuses_rolls_back() {
    // Overlapping ranges pass our checks but the kernel refuses the map: the
    // failure happens after the cgroup and processes exist.
    let err = create_fails(|c, _| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": 100000, "size": 100},
            {"containerID": 50, "hostID": 200000, "size": 100}
        ]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    assert!(err.contains("linux.uidMappings"), "{err}");
}

#[test]
fn relative_mount_destination() {
    let err = create_fails(|c, _| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "data", "type": "tmpfs", "source": "tmpfs"}))
    });
    assert!(
        err.contains("mounts[") && err.contains("destination") && err.contains("\"data\""),
        "{err}"
    );
}

#[test]
fn bind_mount_of_missing_source() {
    let err = create_fails(|c, _| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": "/nonexistent/x", "options": ["rbind"]}))
    });
    assert!(
        err.contains(".source") && err.contains("/nonexistent/x"),
        "{err}"
    );
}

#[test]
fn mount_of_unknown_filesystem_fails_in_init_and_rolls_back() {
    let err = create_fails(|c, _| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/data", "type": "nosuchfs", "source": "none"}))
    });
    assert!(err.contains("mounts[") && err.contains("nosuchfs"), "{err}");
}

#[test]
fn missing_rootfs() {
    let err = create_fails(|c, _| c["root"]["path"] = json!("no-such-rootfs"));
    assert!(
        err.contains("root.path") && err.contains("no-such-rootfs"),
        "{err}"
    );
}

#[test]
fn executable_not_found() {
    let err = create_fails(|c, _| c["process"]["args"] = json!(["/bin/nope"]));
    assert!(
        err.contains("process.args[0]") && err.contains("/bin/nope"),
        "{err}"
    );
}

#[test]
fn bad_sysctl_fails_in_init_and_rolls_back() {
    let err = create_fails(|c, _| c["linux"]["sysctl"] = json!({"kernel.no_such_knob": "1"}));
    assert!(
        err.contains("linux.sysctl") && err.contains("kernel.no_such_knob"),
        "{err}"
    );
}

#[test]
fn hostname_without_uts_namespace() {
    let err = create_fails(|c, _| {
        c["hostname"] = json!("x");
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "uts");
    });
    assert!(err.contains("hostname"), "{err}");
}

#[test]
fn malformed_json() {
    let rt = Rt::new();
    let b = Bundle::busybox();
    std::fs::write(b.path().join("config.json"), "{ \"ociVersion\": ").unwrap();
    let out = rt.exec_files(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "malformed",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("line 1"),
        "{err}"
    );
    assert!(!rt.root().join("malformed").exists());
}

#[test]
fn unknown_rlimit_type() {
    let err = create_fails(|c, _| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}])
    });
    assert!(
        err.contains("process.rlimits[0].type") && err.contains("RLIMIT_BOGUS"),
        "{err}"
    );
}

#[test]
fn unknown_capability() {
    let err = create_fails(|c, _| {
        c["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_BOGUS"))
    });
    assert!(
        err.contains("process.capabilities.bounding") && err.contains("CAP_BOGUS"),
        "{err}"
    );
}

#[test]
fn duplicate_id_is_refused_and_the_first_is_untouched() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sleep", "60"]);
    let id = unique_id("dup");
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = rt.state(&id)["pid"].clone();
    let out = rt.exec_files(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(rt.status(&id), "created");
    assert_eq!(rt.state(&id)["pid"], pid);
    rt.ok(&["delete", &id]);
}

#[test]
fn invalid_signal_is_refused() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sleep", "60"]);
    let id = unique_id("sig");
    rt.start_detached(&b, &id);
    for bad in ["BOGUS", "0", "99", "SIGNOPE"] {
        let out = rt.exec_files(&["kill", &id, bad]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid signal") && err.contains(bad), "{err}");
    }
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn ids_that_could_escape_the_root_are_refused() {
    let rt = Rt::new();
    let b = Bundle::busybox();
    for bad in ["../escape", "a/b", "..", ".", ""] {
        let out = rt.exec_files(&["create", "--bundle", b.path().to_str().unwrap(), bad]);
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid container id"), "{err}");
    }
    assert_eq!(std::fs::read_dir(rt.root()).unwrap().count(), 0);
    assert!(!rt.root().parent().unwrap().join("escape").exists());
}

#[test]
fn operations_on_unknown_containers_say_so() {
    let rt = Rt::new();
    for args in [
        vec!["state", "ghost"],
        vec!["start", "ghost"],
        vec!["kill", "ghost"],
        vec!["delete", "ghost"],
        vec!["exec", "ghost", "true"],
    ] {
        let out = rt.exec_files(&args);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("\"ghost\" does not exist"),
            "{args:?}"
        );
    }
    // delete --force of a missing container succeeds, like runc.
    rt.ok(&["delete", "--force", "ghost"]);
}
