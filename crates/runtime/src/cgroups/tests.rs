use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde_json::json;

use super::devices::{self, Kind, Rule};
use super::*;

/// /proc/self/mountinfo of the hybrid host this was written on.
const HYBRID_MOUNTINFO: &str = "\
22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

const V2_MOUNTINFO: &str = "\
22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const V2_CGROUP: &str = "0::/user.slice/session-1.scope\n";

fn id(s: &str) -> ContainerId {
    s.parse().unwrap()
}

/// A fake host in a temporary directory.
struct Fake {
    tmp: tempfile::TempDir,
    system: System,
}

impl Fake {
    fn hybrid() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        for c in V1_CONTROLLERS.iter().chain(&["systemd", "unified"]) {
            std::fs::create_dir_all(tmp.path().join("sys/fs/cgroup").join(c)).unwrap();
        }
        std::fs::create_dir_all(tmp.path().join("sys/fs/cgroup/memory/process_api/abc")).unwrap();
        let system = System::parse(tmp.path(), HYBRID_MOUNTINFO, HYBRID_CGROUP);
        Fake { tmp, system }
    }

    fn v2() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("sys/fs/cgroup/user.slice/session-1.scope"))
            .unwrap();
        let system = System::parse(tmp.path(), V2_MOUNTINFO, V2_CGROUP);
        Fake { tmp, system }
    }

    fn cg(&self, name: &str) -> PathBuf {
        self.tmp.path().join("sys/fs/cgroup").join(name)
    }

    fn resolve(&self, path: Option<&str>) -> Cgroup {
        Cgroup::resolve_in(&self.system, path.map(Path::new), &id("ctr")).unwrap()
    }
}

fn touch(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

fn v1_dirs(cg: &Cgroup) -> &BTreeMap<String, Dir> {
    match &cg.layout {
        Layout::V1 { controllers } => controllers,
        Layout::V2 { .. } => panic!("expected v1"),
    }
}

fn v2_dir(cg: &Cgroup) -> PathBuf {
    match &cg.layout {
        Layout::V2 { dir } => dir.path.clone(),
        Layout::V1 { .. } => panic!("expected v2"),
    }
}

fn resources(v: serde_json::Value) -> LinuxResources {
    serde_json::from_value(v).unwrap()
}

// ---- resolution ----

#[test]
fn v1_default_path_is_the_id_below_the_callers_own_cgroup() {
    let fake = Fake::hybrid();
    let cg = fake.resolve(None);
    assert!(!cg.is_v2());
    let dirs = v1_dirs(&cg);
    let names: Vec<&str> = dirs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"
        ]
    );
    assert_eq!(dirs["memory"].path, fake.cg("memory/process_api/abc/ctr"));
    assert_eq!(dirs["memory"].root, fake.cg("memory"));
    assert_eq!(dirs["cpu"].path, fake.cg("cpu/ctr"));
    assert_eq!(dirs["cpuacct"].path, fake.cg("cpuacct/ctr"));
}

#[test]
fn v1_absolute_path_is_below_each_hierarchy_root() {
    let fake = Fake::hybrid();
    let cg = fake.resolve(Some("/bosun/x"));
    assert_eq!(v1_dirs(&cg)["memory"].path, fake.cg("memory/bosun/x"));
    assert_eq!(v1_dirs(&cg)["pids"].path, fake.cg("pids/bosun/x"));
}

#[test]
fn v1_relative_path_is_below_the_callers_own_cgroup() {
    let fake = Fake::hybrid();
    let cg = fake.resolve(Some("bosun/x"));
    assert_eq!(
        v1_dirs(&cg)["memory"].path,
        fake.cg("memory/process_api/abc/bosun/x")
    );
    assert_eq!(v1_dirs(&cg)["freezer"].path, fake.cg("freezer/bosun/x"));
}

#[test]
fn dot_dot_and_root_paths_are_rejected() {
    let fake = Fake::hybrid();
    for p in ["/a/../b", "../x", "a/..", ".."] {
        let err = Cgroup::resolve_in(&fake.system, Some(Path::new(p)), &id("c")).unwrap_err();
        assert!(matches!(err, CgroupError::DotDot(_)), "{p}: {err}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains(p), "{err}");
    }
    let err = Cgroup::resolve_in(&fake.system, Some(Path::new("/")), &id("c")).unwrap_err();
    assert!(matches!(err, CgroupError::RootPath(_)), "{err}");
}

#[test]
fn v2_paths_are_in_the_unified_hierarchy() {
    let fake = Fake::v2();
    let cg = fake.resolve(None);
    assert!(cg.is_v2());
    assert_eq!(v2_dir(&cg), fake.cg("user.slice/session-1.scope/ctr"));
    assert_eq!(
        v2_dir(&fake.resolve(Some("/machine/c1"))),
        fake.cg("machine/c1")
    );
    assert_eq!(
        v2_dir(&fake.resolve(Some("sub"))),
        fake.cg("user.slice/session-1.scope/sub")
    );
    assert!(fake.system.v1_hierarchies().is_empty());
}

#[test]
fn comounted_controllers_share_a_directory_and_named_hierarchies_are_listed() {
    let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 31 0:30 / /mnt/again rw - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
    let cgroup = "3:name=systemd:/\n2:memory:/m\n1:cpu,cpuacct:/c\n0::/\n";
    let system = System::parse(Path::new("/x"), mountinfo, cgroup);
    let cg = Cgroup::resolve_in(&system, None, &id("k")).unwrap();
    let dirs = v1_dirs(&cg);
    assert_eq!(dirs.len(), 3);
    assert_eq!(
        dirs["cpu"].path,
        Path::new("/x/sys/fs/cgroup/cpu,cpuacct/c/k")
    );
    assert_eq!(dirs["cpuacct"], dirs["cpu"]);
    assert_eq!(
        dirs["memory"].path,
        Path::new("/x/sys/fs/cgroup/memory/m/k")
    );
    assert_eq!(cg.unique_dirs().len(), 2);
    let h = system.v1_hierarchies();
    let pairs: Vec<(&str, &str)> = h
        .iter()
        .map(|h| (h.dir_name.as_str(), h.options.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("cpu,cpuacct", "cpu,cpuacct"),
            ("memory", "memory"),
            ("systemd", "name=systemd")
        ]
    );
}

#[test]
fn mount_roots_and_escapes_in_mountinfo() {
    let mountinfo = "35 31 0:32 /outer /sys/fs/cgroup/my\\040mem rw - cgroup cgroup rw,memory\n";
    let system = System::parse(Path::new("/"), mountinfo, "4:memory:/outer/inner\n");
    let cg = Cgroup::resolve_in(&system, None, &id("k")).unwrap();
    assert_eq!(
        v1_dirs(&cg)["memory"].path,
        Path::new("/sys/fs/cgroup/my mem/inner/k")
    );
}

#[test]
fn no_cgroup_mounts_is_unavailable() {
    let system = System::parse(Path::new("/"), "22 1 253:0 / / rw - ext4 /dev/vda rw\n", "");
    let err = Cgroup::resolve_in(&system, None, &id("k")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[test]
fn cgroup_survives_a_round_trip_through_state_json() {
    let fake = Fake::hybrid();
    let mut cg = fake.resolve(None);
    cg.create().unwrap();
    assert!(!cg.created.is_empty());
    let json = serde_json::to_string(&cg).unwrap();
    let back: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cg);
    back.destroy().unwrap();
    let v2: Cgroup =
        serde_json::from_str(&serde_json::to_string(&Fake::v2().resolve(None)).unwrap()).unwrap();
    assert!(v2.is_v2());
}

// ---- create / destroy ----

#[test]
fn create_records_only_what_it_made_and_destroy_removes_only_that() {
    let fake = Fake::hybrid();
    std::fs::create_dir(fake.cg("pids/keep")).unwrap();
    let mut cg = fake.resolve(Some("/keep/ctr"));
    cg.create().unwrap();
    assert!(cg.created.contains(&fake.cg("pids/keep/ctr")));
    assert!(!cg.created.contains(&fake.cg("pids/keep")));
    assert!(cg.created.contains(&fake.cg("memory/keep")));
    for c in V1_CONTROLLERS {
        assert!(fake.cg(c).join("keep/ctr").is_dir(), "{c}");
    }
    // A cgroup the container made inside its own goes too.
    std::fs::create_dir(fake.cg("memory/keep/ctr/inner")).unwrap();
    cg.destroy().unwrap();
    for c in V1_CONTROLLERS {
        assert!(!fake.cg(c).join("keep/ctr").exists(), "{c}");
    }
    assert!(fake.cg("pids/keep").is_dir());
    assert!(!fake.cg("memory/keep").exists());
    cg.destroy().unwrap();
}

#[test]
fn destroy_leaves_an_ancestor_it_made_that_others_now_use() {
    let fake = Fake::hybrid();
    let mut a = fake.resolve(Some("/shared/a"));
    a.create().unwrap();
    let mut b = fake.resolve(Some("/shared/b"));
    b.create().unwrap();
    assert!(b.created.iter().all(|d| d.ends_with("shared/b")));
    a.destroy().unwrap();
    assert!(!fake.cg("memory/shared/a").exists());
    assert!(
        fake.cg("memory/shared/b").is_dir(),
        "another container's cgroup was removed"
    );
    b.destroy().unwrap();
    assert!(
        fake.cg("memory/shared").is_dir(),
        "b did not make it, so b leaves it"
    );
}

#[test]
fn failed_create_removes_what_it_made() {
    let fake = Fake::hybrid();
    // pids comes last in controller order; its hierarchy is gone, so mkdir fails there.
    std::fs::remove_dir(fake.cg("pids")).unwrap();
    let mut cg = fake.resolve(Some("/a/b"));
    let err = cg.create().unwrap_err();
    assert!(matches!(err, CgroupError::Mkdir { .. }), "{err}");
    assert!(err.to_string().contains("pids"), "{err}");
    for c in V1_CONTROLLERS.iter().filter(|c| **c != "pids") {
        assert!(!fake.cg(c).join("a").exists(), "{c} leaked");
    }
    assert!(cg.created.is_empty());
}

#[test]
fn cpuset_values_are_copied_down_when_empty() {
    let fake = Fake::hybrid();
    touch(
        &fake.cg("cpuset"),
        &[("cpuset.cpus", "0-3\n"), ("cpuset.mems", "0\n")],
    );
    std::fs::create_dir(fake.cg("cpuset/a")).unwrap();
    touch(
        &fake.cg("cpuset/a"),
        &[("cpuset.cpus", "\n"), ("cpuset.mems", "0\n")],
    );
    let mut cg = fake.resolve(Some("/a/b"));
    cg.make_dirs().unwrap();
    // What the kernel puts in a new cpuset.
    touch(
        &fake.cg("cpuset/a/b"),
        &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")],
    );
    cg.prepare().unwrap();
    assert_eq!(read(fake.cg("cpuset/a/cpuset.cpus")), "0-3");
    assert_eq!(
        read(fake.cg("cpuset/a/cpuset.mems")),
        "0\n",
        "non-empty values stay"
    );
    assert_eq!(read(fake.cg("cpuset/a/b/cpuset.cpus")), "0-3");
    assert_eq!(read(fake.cg("cpuset/a/b/cpuset.mems")), "0");
}

#[test]
fn v2_create_enables_controllers_in_every_ancestor() {
    let fake = Fake::v2();
    let root = fake.cg("");
    touch(
        &root,
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            ),
            ("cgroup.subtree_control", "memory\n"),
        ],
    );
    let scope = fake.cg("user.slice");
    touch(
        &scope,
        &[
            ("cgroup.controllers", "cpu memory pids\n"),
            ("cgroup.subtree_control", ""),
        ],
    );
    let mut cg = fake.resolve(Some("/user.slice/new/ctr"));
    cg.make_dirs().unwrap();
    touch(
        &fake.cg("user.slice/new"),
        &[
            ("cgroup.controllers", "cpu memory\n"),
            ("cgroup.subtree_control", ""),
        ],
    );
    cg.prepare().unwrap();
    assert_eq!(
        read(root.join("cgroup.subtree_control")),
        "+cpuset +cpu +io +hugetlb +pids +rdma +misc"
    );
    assert_eq!(
        read(scope.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(fake.cg("user.slice/new/cgroup.subtree_control")),
        "+cpu +memory"
    );
    assert!(
        !fake
            .cg("user.slice/new/ctr/cgroup.subtree_control")
            .exists()
    );
}

// ---- resources, v1 ----

fn full_resources() -> LinuxResources {
    resources(json!({
        "memory": {"limit": 536870912, "reservation": 268435456, "swap": 1073741824,
                   "swappiness": 10, "disableOOMKiller": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]}
    }))
}

/// Creates the cgroup in a fake host and the control files the kernel would make.
fn created_v1(fake: &Fake) -> Cgroup {
    let mut cg = fake.resolve(None);
    cg.make_dirs().unwrap();
    let files: &[(&str, &[&str])] = &[
        (
            "cpu",
            &[
                "cpu.shares",
                "cpu.cfs_quota_us",
                "cpu.cfs_period_us",
                "cpu.stat",
            ],
        ),
        ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
        (
            "memory",
            &[
                "memory.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.swappiness",
                "memory.oom_control",
            ],
        ),
        ("pids", &["pids.max"]),
        (
            "blkio",
            &[
                "blkio.weight",
                "blkio.weight_device",
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_iops_device",
            ],
        ),
        ("devices", &["devices.allow", "devices.deny"]),
        ("freezer", &["freezer.state"]),
    ];
    let dirs = v1_dirs(&cg).clone();
    for (ctrl, names) in files {
        for name in *names {
            std::fs::write(dirs[*ctrl].path.join(name), "untouched").unwrap();
        }
    }
    std::fs::write(
        dirs["memory"].path.join("memory.memsw.limit_in_bytes"),
        "9223372036854771712",
    )
    .unwrap();
    cg
}

#[test]
fn v1_apply_writes_every_resource_to_its_file() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    cg.apply(&full_resources()).unwrap();
    let d = |c: &str, f: &str| read(v1_dirs(&cg)[c].path.join(f));
    assert_eq!(d("memory", "memory.limit_in_bytes"), "536870912");
    assert_eq!(d("memory", "memory.soft_limit_in_bytes"), "268435456");
    assert_eq!(d("memory", "memory.memsw.limit_in_bytes"), "1073741824");
    assert_eq!(d("memory", "memory.swappiness"), "10");
    assert_eq!(d("memory", "memory.oom_control"), "1");
    assert_eq!(d("cpu", "cpu.shares"), "512");
    assert_eq!(d("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(d("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(d("cpuset", "cpuset.cpus"), "0-1");
    assert_eq!(d("cpuset", "cpuset.mems"), "0");
    assert_eq!(d("pids", "pids.max"), "100");
    assert_eq!(d("blkio", "blkio.weight"), "300");
    assert_eq!(d("blkio", "blkio.weight_device"), "8:0 200");
    assert_eq!(d("blkio", "blkio.throttle.read_bps_device"), "8:0 1048576");
    assert_eq!(d("blkio", "blkio.throttle.write_bps_device"), "8:0 2097152");
    assert_eq!(d("blkio", "blkio.throttle.read_iops_device"), "8:16 100");
    assert_eq!(d("blkio", "blkio.throttle.write_iops_device"), "8:16 0");
}

#[test]
fn v1_apply_writes_only_what_is_set() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    cg.apply(&resources(
        json!({"pids": {"limit": 0}, "memory": {"swappiness": 0}}),
    ))
    .unwrap();
    let d = |c: &str, f: &str| read(v1_dirs(&cg)[c].path.join(f));
    assert_eq!(d("pids", "pids.max"), "max");
    assert_eq!(d("memory", "memory.swappiness"), "0");
    assert_eq!(d("memory", "memory.limit_in_bytes"), "untouched");
    assert_eq!(d("cpu", "cpu.shares"), "untouched");
}

#[test]
fn v1_memory_without_swap_accounting_skips_swap() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    let mem = &v1_dirs(&cg)["memory"].path;
    std::fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    cg.apply(&resources(
        json!({"memory": {"limit": 1048576, "swap": 2097152}}),
    ))
    .unwrap();
    assert_eq!(read(mem.join("memory.limit_in_bytes")), "1048576");
    assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
}

#[test]
fn v1_swap_below_limit_is_invalid() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    let err = cg.apply(&resources(
        json!({"memory": {"limit": 2097152, "swap": 1048576}}),
    ));
    let err = err.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.to_string().contains("linux.resources.memory.swap"),
        "{err}"
    );
}

#[test]
fn v1_memsw_goes_first_only_when_it_grows() {
    use super::v1::memsw_first;
    assert!(memsw_first(-1, Some(100)));
    assert!(memsw_first(200, Some(100)));
    assert!(!memsw_first(50, Some(100)));
    assert!(!memsw_first(100, Some(100)));
    assert!(!memsw_first(50, Some(-1)));
    assert!(!memsw_first(50, None));
}

#[test]
fn v1_rejects_what_only_v2_or_missing_controllers_can_do() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    let cases = [
        (
            json!({"unified": {"memory.high": "1"}}),
            "linux.resources.unified",
        ),
        (
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}),
            "hugepageLimits",
        ),
        (json!({"network": {"classID": 5}}), "network.classID"),
    ];
    for (r, field) in cases {
        let err = cg.apply(&resources(r)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    // An empty unified map is what many tools send; it is not an error.
    cg.apply(&resources(json!({"unified": {}}))).unwrap();
}

#[test]
fn v1_missing_kernel_file_names_the_field() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    std::fs::remove_file(v1_dirs(&cg)["blkio"].path.join("blkio.weight")).unwrap();
    let err = cg
        .apply(&resources(json!({"blockIO": {"weight": 100}})))
        .unwrap_err();
    assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("linux.resources.blockIO.weight"),
        "{err}"
    );
    // With BFQ the weight goes to its own file.
    touch(&v1_dirs(&cg)["blkio"].path, &[("blkio.bfq.weight", "100")]);
    cg.apply(&resources(json!({"blockIO": {"weight": 100}})))
        .unwrap();
    assert_eq!(
        read(v1_dirs(&cg)["blkio"].path.join("blkio.bfq.weight")),
        "100"
    );
}

#[test]
fn apply_to_a_removed_cgroup_is_not_found() {
    let fake = Fake::hybrid();
    let cg = fake.resolve(None);
    let err = cg
        .apply(&resources(json!({"pids": {"limit": 5}})))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

// ---- resources, v2 ----

fn created_v2(fake: &Fake) -> Cgroup {
    let mut cg = fake.resolve(None);
    cg.make_dirs().unwrap();
    let dir = v2_dir(&cg);
    for f in [
        "cpu.weight",
        "cpu.max",
        "cpuset.cpus",
        "cpuset.mems",
        "memory.max",
        "memory.low",
        "memory.swap.max",
        "pids.max",
        "io.weight",
        "io.max",
        "hugetlb.2MB.max",
        "memory.high",
        "cgroup.freeze",
    ] {
        std::fs::write(dir.join(f), "untouched").unwrap();
    }
    std::fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
    cg
}

#[test]
fn v2_apply_writes_every_resource_to_its_file() {
    let fake = Fake::v2();
    let cg = created_v2(&fake);
    let mut r = full_resources();
    // Only one io.max line survives in a fake file; keep a single device.
    r.block_io_mut()
        .as_mut()
        .unwrap()
        .set_throttle_read_iops_device(None);
    r.block_io_mut()
        .as_mut()
        .unwrap()
        .set_throttle_write_iops_device(None);
    r.set_hugepage_limits(Some(vec![
        serde_json::from_value(json!({"pageSize": "2MB", "limit": 4194304})).unwrap(),
    ]));
    r.set_unified(Some(
        [("memory.high".to_owned(), "400000000".to_owned())].into(),
    ));
    r.memory_mut().as_mut().unwrap().set_swappiness(None);
    cg.apply(&r).unwrap();
    let d = |f: &str| read(v2_dir(&cg).join(f));
    assert_eq!(d("cpu.weight"), "20");
    assert_eq!(d("cpu.max"), "50000 100000");
    assert_eq!(d("cpuset.cpus"), "0-1");
    assert_eq!(d("cpuset.mems"), "0");
    assert_eq!(d("memory.max"), "536870912");
    assert_eq!(d("memory.low"), "268435456");
    assert_eq!(d("memory.swap.max"), "536870912");
    assert_eq!(d("pids.max"), "100");
    assert_eq!(
        d("io.weight"),
        "8:0 1920",
        "the device weight is written after the default"
    );
    assert_eq!(d("io.max"), "8:0 rbps=1048576 wbps=2097152");
    assert_eq!(d("hugetlb.2MB.max"), "4194304");
    assert_eq!(d("memory.high"), "400000000");
    cg.apply(&resources(json!({"blockIO": {"weight": 300}})))
        .unwrap();
    assert_eq!(d("io.weight"), "2930");
    touch(&v2_dir(&cg), &[("io.bfq.weight", "")]);
    cg.apply(&resources(json!({"blockIO": {"weight": 300}})))
        .unwrap();
    assert_eq!(d("io.bfq.weight"), "300");
}

#[test]
fn v2_quota_and_period_keep_each_other() {
    let fake = Fake::v2();
    let cg = created_v2(&fake);
    let cpu_max = v2_dir(&cg).join("cpu.max");
    cg.apply(&resources(json!({"cpu": {"quota": -1}}))).unwrap();
    assert_eq!(read(&cpu_max), "max");
    std::fs::write(&cpu_max, "25000 100000\n").unwrap();
    cg.apply(&resources(json!({"cpu": {"period": 50000}})))
        .unwrap();
    assert_eq!(read(&cpu_max), "25000 50000");
}

#[test]
fn v2_unlimited_memory_and_unified_keys() {
    let fake = Fake::v2();
    let cg = created_v2(&fake);
    cg.apply(&resources(json!({"memory": {"limit": -1}})))
        .unwrap();
    assert_eq!(read(v2_dir(&cg).join("memory.max")), "max");
    assert_eq!(read(v2_dir(&cg).join("memory.swap.max")), "max");
    let err = cg
        .apply(&resources(json!({"unified": {"../x": "1"}})))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let err = cg
        .apply(&resources(json!({"unified": {"io.latency": "1"}})))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("linux.resources.unified.io.latency"),
        "{err}"
    );
    let err = cg
        .apply(&resources(json!({"network": {"classID": 1}})))
        .unwrap_err();
    assert!(err.to_string().contains("linux.resources.network"), "{err}");
}

#[test]
fn shares_map_to_weight_like_runc() {
    use super::v2::shares_to_weight;
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1), 1);
    assert_eq!(shares_to_weight(1_000_000), 10_000);
    assert_eq!(super::v2::blkio_to_io_weight(10), 1);
    assert_eq!(super::v2::blkio_to_io_weight(1000), 10_000);
}

#[test]
fn swap_is_memory_plus_swap_on_v1_and_swap_alone_on_v2() {
    use super::v2::swap_max;
    let s = |l, s| swap_max(l, s).map_err(|e| e.to_string());
    assert_eq!(s(Some(100), Some(300)), Ok(Some("200".to_owned())));
    assert_eq!(s(Some(100), Some(100)), Ok(Some("0".to_owned())));
    assert_eq!(s(Some(100), Some(-1)), Ok(Some("max".to_owned())));
    assert_eq!(s(Some(-1), None), Ok(Some("max".to_owned())));
    assert_eq!(s(Some(100), None), Ok(None));
    assert_eq!(s(None, None), Ok(None));
    assert!(s(Some(300), Some(100)).is_err());
    assert!(s(None, Some(100)).is_err());
}

// ---- processes, freezer, stats ----

#[test]
fn pids_include_descendants_sorted_and_deduplicated() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    let dirs = v1_dirs(&cg);
    touch(&dirs["memory"].path, &[("cgroup.procs", "30\n10\n")]);
    std::fs::create_dir(dirs["memory"].path.join("sub")).unwrap();
    touch(
        &dirs["memory"].path.join("sub"),
        &[("cgroup.procs", "20\n")],
    );
    touch(&dirs["pids"].path, &[("cgroup.procs", "10\n20\n30\n")]);
    assert_eq!(cg.pids().unwrap(), [10, 20, 30]);
}

#[test]
fn add_pid_writes_every_hierarchy() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    for d in cg.unique_dirs() {
        touch(&d.path, &[("cgroup.procs", "")]);
    }
    cg.add_pid(4242).unwrap();
    for d in cg.unique_dirs() {
        assert_eq!(read(d.path.join("cgroup.procs")), "4242");
    }
}

#[test]
fn v1_freeze_writes_state_and_reads_it_back() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    let state = v1_dirs(&cg)["freezer"].path.join("freezer.state");
    std::fs::write(&state, "THAWED\n").unwrap();
    assert!(!cg.is_frozen().unwrap());
    cg.freeze().unwrap();
    assert_eq!(read(&state), "FROZEN");
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert_eq!(read(&state), "THAWED");
    std::fs::write(&state, "FREEZING\n").unwrap();
    assert!(!cg.is_frozen().unwrap());
}

#[test]
fn v2_freeze_writes_cgroup_freeze_and_reads_events() {
    let fake = Fake::v2();
    let cg = created_v2(&fake);
    let dir = v2_dir(&cg);
    touch(&dir, &[("cgroup.events", "populated 1\nfrozen 1\n")]);
    cg.freeze().unwrap();
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    assert!(cg.is_frozen().unwrap());
    touch(&dir, &[("cgroup.events", "populated 1\nfrozen 0\n")]);
    cg.thaw().unwrap();
    assert_eq!(read(dir.join("cgroup.freeze")), "0");
    assert!(!cg.is_frozen().unwrap());
}

#[test]
fn oom_kill_count_reads_the_counter_or_zero() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    assert_eq!(cg.oom_kill_count().unwrap(), 0);
    touch(
        &v1_dirs(&cg)["memory"].path,
        &[(
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )],
    );
    assert_eq!(cg.oom_kill_count().unwrap(), 3);

    let fake = Fake::v2();
    let cg = created_v2(&fake);
    touch(
        &v2_dir(&cg),
        &[("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")],
    );
    assert_eq!(cg.oom_kill_count().unwrap(), 2);
}

#[test]
fn v1_stats_are_read_from_the_controller_files() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    let dirs = v1_dirs(&cg);
    touch(
        &dirs["cpuacct"].path,
        &[
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.usage_percpu", "100000000 23456789 \n"),
            ("cpuacct.stat", "user 5\nsystem 3\n"),
        ],
    );
    touch(
        &dirs["cpu"].path,
        &[(
            "cpu.stat",
            "nr_periods 10\nnr_throttled 2\nthrottled_time 777\n",
        )],
    );
    touch(
        &dirs["memory"].path,
        &[
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.failcnt", "1\n"),
            ("memory.memsw.usage_in_bytes", "5000\n"),
            ("memory.stat", "cache 100\nrss 200\n"),
        ],
    );
    touch(
        &dirs["pids"].path,
        &[("pids.current", "3\n"), ("pids.max", "max\n")],
    );
    touch(
        &dirs["blkio"].path,
        &[
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 4096\n8:0 Write 512\nTotal 4608\n",
            ),
            (
                "blkio.throttle.io_serviced_recursive",
                "8:0 Read 2\n8:0 Write 1\nTotal 3\n",
            ),
        ],
    );
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 123_456_789);
    assert_eq!(s.cpu.usage.percpu, [100_000_000, 23_456_789]);
    assert_eq!(s.cpu.usage.user, 50_000_000);
    assert_eq!(s.cpu.usage.kernel, 30_000_000);
    assert_eq!(s.cpu.throttling.periods, 10);
    assert_eq!(s.cpu.throttling.throttled_periods, 2);
    assert_eq!(s.cpu.throttling.throttled_time, 777);
    assert_eq!(s.memory.usage.usage, 4096);
    assert_eq!(s.memory.usage.max, 8192);
    assert_eq!(s.memory.usage.failcnt, 1);
    assert_eq!(s.memory.usage.limit, 9_223_372_036_854_771_712);
    assert_eq!(s.memory.swap.usage, 5000);
    assert_eq!(s.memory.cache, 100);
    assert_eq!(s.memory.raw["rss"], 200);
    assert_eq!(s.pids.current, 3);
    assert_eq!(s.pids.limit, 0);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    assert_eq!(s.blkio.io_service_bytes_recursive[1].op, "Write");
    assert_eq!(s.blkio.io_service_bytes_recursive[1].value, 512);
    assert_eq!(s.blkio.io_serviced_recursive[0].value, 2);
    assert!(s.hugetlb.is_empty());

    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 2);
    assert_eq!(json["blkio"]["ioServiceBytesRecursive"][0]["major"], 8);
    assert_eq!(json["memory"]["usage"]["failcnt"], 1);
}

#[test]
fn v2_stats_are_read_from_the_unified_files() {
    let fake = Fake::v2();
    let cg = created_v2(&fake);
    let dir = v2_dir(&cg);
    touch(
        &dir,
        &[
            (
                "cpu.stat",
                "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 20\n",
            ),
            ("memory.current", "65536\n"),
            ("memory.max", "max\n"),
            ("memory.peak", "131072\n"),
            ("memory.events", "low 0\nmax 7\noom 0\noom_kill 0\n"),
            ("memory.swap.current", "100\n"),
            ("memory.swap.max", "max\n"),
            ("memory.stat", "anon 10\nfile 20\n"),
            ("pids.current", "2\n"),
            ("pids.max", "50\n"),
            (
                "io.stat",
                "8:0 rbytes=1024 wbytes=2048 rios=3 wios=4 dbytes=0 dios=0\n",
            ),
            ("hugetlb.2MB.current", "2097152\n"),
            ("hugetlb.2MB.events", "max 1\n"),
        ],
    );
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 1_500_000);
    assert_eq!(s.cpu.usage.user, 1_000_000);
    assert_eq!(s.cpu.usage.kernel, 500_000);
    assert_eq!(s.cpu.throttling.throttled_time, 20_000);
    assert_eq!(s.memory.usage.usage, 65536);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.usage.max, 131_072);
    assert_eq!(s.memory.usage.failcnt, 7);
    assert_eq!(s.memory.swap.usage, 65636);
    assert_eq!(s.memory.swap.limit, u64::MAX);
    assert_eq!(s.memory.cache, 20);
    assert_eq!(s.pids.current, 2);
    assert_eq!(s.pids.limit, 50);
    let ops: Vec<(&str, u64)> = s
        .blkio
        .io_service_bytes_recursive
        .iter()
        .map(|e| (e.op.as_str(), e.value))
        .collect();
    assert_eq!(ops, [("Read", 1024), ("Write", 2048)]);
    let ops: Vec<(&str, u64)> = s
        .blkio
        .io_serviced_recursive
        .iter()
        .map(|e| (e.op.as_str(), e.value))
        .collect();
    assert_eq!(ops, [("Read", 3), ("Write", 4)]);
    assert_eq!(s.hugetlb["2MB"].usage, 2_097_152);
    assert_eq!(s.hugetlb["2MB"].failcnt, 1);
}

#[test]
fn stats_of_missing_files_are_zero_but_of_a_missing_cgroup_not_found() {
    let fake = Fake::v2();
    let mut cg = fake.resolve(None);
    let err = cg.stats().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(cg.pids().unwrap_err().kind(), ErrorKind::NotFound);
    cg.make_dirs().unwrap();
    assert_eq!(cg.stats().unwrap(), Stats::default());
}

// ---- devices ----

fn rule(v: serde_json::Value) -> LinuxDeviceCgroup {
    serde_json::from_value(v).unwrap()
}

#[test]
fn device_rules_convert_and_reject_nonsense() {
    let rules = devices::with_defaults(&[
        rule(json!({"allow": false, "access": "rwm"})),
        rule(json!({"allow": true, "type": "c", "major": 10, "minor": -1, "access": "r"})),
    ])
    .unwrap();
    assert_eq!(rules.len(), 11);
    let fifo = rule(json!({"allow": true, "type": "p", "major": 1, "minor": 1}));
    assert_eq!(
        devices::with_defaults(&[fifo]).unwrap().len(),
        9,
        "fifo rules are dropped"
    );
    assert_eq!(
        rules[0],
        Rule {
            allow: false,
            kind: Kind::All,
            major: None,
            minor: None,
            access: 7
        }
    );
    assert_eq!(rules[1].minor, None);
    assert_eq!(rules.last().unwrap().major, Some(136));
    for bad in [
        json!({"allow": true, "type": "c", "major": 1, "minor": 1, "access": "rx"}),
        json!({"allow": true, "type": "c", "major": 4_294_967_296_i64}),
    ] {
        let err = devices::with_defaults(&[rule(bad.clone())]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{bad}: {err}");
    }
}

#[test]
fn v1_devices_deny_all_then_write_each_rule() {
    let fake = Fake::hybrid();
    let cg = created_v1(&fake);
    cg.apply_devices(&[rule(
        json!({"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}),
    )])
    .unwrap();
    let dir = &v1_dirs(&cg)["devices"].path;
    // A fake file keeps only the last write of each kind.
    assert_eq!(read(dir.join("devices.deny")), "c 1:3 w");
    assert_eq!(read(dir.join("devices.allow")), "c 136:* rwm");
}

/// Runs a device program the way the kernel would for one request.
fn run(prog: &[crate::sys::bpf::Insn], kind: u32, access: u32, major: u32, minor: u32) -> u32 {
    let ctx = [kind | (access << 16), major, minor];
    let mut reg = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm = i64::from(i.imm) as u64;
        let mut next = pc + 1;
        let jump = |cond: bool| {
            if cond {
                (pc as i64 + 1 + i64::from(i.off)) as usize
            } else {
                pc + 1
            }
        };
        match i.code {
            0x61 => {
                assert_eq!(src, 1, "loads only from the context");
                reg[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            0x54 => reg[dst] = (reg[dst] as u32 & i.imm as u32) as u64,
            0x74 => reg[dst] = ((reg[dst] as u32) >> i.imm) as u64,
            0xb4 => reg[dst] = u64::from(i.imm as u32),
            0xbc => reg[dst] = u64::from(reg[src] as u32),
            0x15 => next = jump(reg[dst] == imm),
            0x55 => next = jump(reg[dst] != imm),
            0x5d => next = jump(reg[dst] != reg[src]),
            0x95 => return reg[0] as u32,
            other => panic!("unexpected opcode {other:#x}"),
        }
        assert!(next < prog.len(), "jump out of the program at {pc}");
        pc = next;
    }
    panic!("program does not terminate");
}

const CHR: u32 = 2;
const BLK: u32 = 1;
const R: u32 = 2;
const W: u32 = 4;
const M: u32 = 1;

fn verdicts(user: &[serde_json::Value], requests: &[(u32, u32, u32, u32)]) -> Vec<u32> {
    let user: Vec<LinuxDeviceCgroup> = user.iter().cloned().map(rule).collect();
    let prog = devices::program(&devices::with_defaults(&user).unwrap());
    requests
        .iter()
        .map(|&(k, a, ma, mi)| run(&prog, k, a, ma, mi))
        .collect()
}

#[test]
fn device_program_allows_only_the_defaults_by_default() {
    let v = verdicts(
        &[],
        &[
            (CHR, R | W, 1, 3),
            (CHR, R, 1, 9),
            (CHR, R | W, 136, 4),
            (CHR, M, 5, 2),
            (CHR, R, 1, 11),
            (BLK, R, 1, 3),
            (BLK, R, 8, 0),
            (CHR, R, 4, 0),
        ],
    );
    assert_eq!(v, [1, 1, 1, 1, 0, 0, 0, 0]);
}

#[test]
fn device_program_last_matching_rule_wins() {
    let v = verdicts(
        &[
            json!({"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}),
            json!({"allow": false, "type": "c", "major": 10, "minor": 200, "access": "w"}),
            json!({"allow": true, "type": "b", "major": 8, "access": "r"}),
            json!({"allow": true, "type": "c", "access": "m"}),
        ],
        &[
            (CHR, R, 10, 200),
            (CHR, W, 10, 200),
            (CHR, R | W, 10, 200),
            (BLK, R, 8, 16),
            (BLK, R | W, 8, 16),
            (CHR, M, 99, 1),
            (CHR, R, 99, 1),
        ],
    );
    assert_eq!(v, [1, 0, 0, 1, 0, 1, 0]);
}

#[test]
fn device_program_a_rules_reset_the_default() {
    let all = verdicts(
        &[json!({"allow": true, "access": "rwm"})],
        &[(BLK, R | W, 8, 0), (CHR, R, 1, 11)],
    );
    assert_eq!(all, [1, 1]);
    let v = verdicts(
        &[
            json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}),
            json!({"allow": false, "type": "a"}),
            json!({"allow": true, "type": "c", "major": 4, "minor": 1, "access": "rw"}),
        ],
        &[(CHR, R, 1, 11), (CHR, R | W, 4, 1), (CHR, R, 1, 3)],
    );
    assert_eq!(v, [0, 1, 1]);
    let v = verdicts(
        &[
            json!({"allow": true, "type": "a"}),
            json!({"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"}),
        ],
        &[(CHR, R, 1, 11), (CHR, R | W, 1, 11), (BLK, W, 8, 0)],
    );
    assert_eq!(v, [1, 0, 1]);
}

#[test]
fn errors_are_single_lower_case_lines() {
    let errs = [
        CgroupError::DotDot(PathBuf::from("../x")),
        CgroupError::unsupported("linux.resources.unified", "needs cgroup v2"),
        CgroupError::invalid("linux.resources.memory.swap", 5, "too small"),
        CgroupError::Timeout {
            path: PathBuf::from("/x/freezer.state"),
            wanted: "FROZEN",
            attempts: 5,
        },
    ];
    for e in errs {
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(!s.chars().next().unwrap().is_uppercase(), "{s}");
    }
}

// ---- root tests against the real host ----

mod root {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

    use super::*;

    /// Kills the children and removes the cgroup even when an assertion fails.
    struct Guard {
        cgroup: Cgroup,
        children: Vec<Child>,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            if let Layout::V1 { controllers } = &self.cgroup.layout
                && let Some(f) = controllers.get("freezer")
            {
                let _ = std::fs::write(f.path.join("freezer.state"), "THAWED");
            }
            let _ = self.cgroup.destroy();
        }
    }

    fn unique(what: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("bosun-test-{what}-{}-{n}", std::process::id())
    }

    /// A shell that waits for a line on stdin before running `script`, so that
    /// it can be moved into the cgroup first.
    fn held_shell(script: &str) -> (Child, ChildStdin, BufReader<ChildStdout>) {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        (child, stdin, stdout)
    }

    fn line(out: &mut BufReader<ChildStdout>) -> String {
        let mut s = String::new();
        out.read_line(&mut s).unwrap();
        s.trim().to_owned()
    }

    #[test]
    fn root_cgroup_life_cycle_on_this_host() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test needs root"
        );
        let name = unique("life");
        let mut cgroup = Cgroup::resolve(Some(Path::new(&name)), &id("ignored")).unwrap();
        cgroup.create().unwrap();
        let mut g = Guard {
            cgroup: cgroup.clone(),
            children: Vec::new(),
        };
        let dirs = cgroup.unique_dirs();
        assert!(dirs.iter().all(|d| d.path.is_dir()));

        cgroup
            .apply(&resources(
                json!({"memory": {"limit": 67_108_864}, "pids": {"limit": 50}}),
            ))
            .unwrap();
        match &cgroup.layout {
            Layout::V1 { controllers } => {
                let mem = &controllers["memory"].path;
                assert_eq!(read(mem.join("memory.limit_in_bytes")).trim(), "67108864");
                assert_eq!(read(controllers["pids"].path.join("pids.max")).trim(), "50");
                let cpus = read(controllers["cpuset"].path.join("cpuset.cpus"));
                assert!(!cpus.trim().is_empty(), "cpuset.cpus was not copied down");
            }
            Layout::V2 { dir } => {
                assert_eq!(read(dir.path.join("memory.max")).trim(), "67108864");
                assert_eq!(read(dir.path.join("pids.max")).trim(), "50");
            }
        }
        cgroup.apply_devices(&[]).unwrap();

        let (child, mut stdin, mut stdout) = held_shell(
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo burnt; exec sleep 60",
        );
        let pid = i32::try_from(child.id()).unwrap();
        g.children.push(child);
        cgroup.add_pid(pid).unwrap();
        assert!(cgroup.pids().unwrap().contains(&pid));
        writeln!(stdin, "go").unwrap();
        assert_eq!(line(&mut stdout), "burnt");

        let stats = cgroup.stats().unwrap();
        assert!(stats.cpu.usage.total > 0, "{stats:?}");
        assert!(stats.pids.current >= 1, "{stats:?}");
        assert_eq!(stats.pids.limit, 50);
        assert!(stats.memory.usage.usage > 0, "{stats:?}");
        assert_eq!(stats.memory.usage.limit, 67_108_864);
        assert_eq!(cgroup.oom_kill_count().unwrap(), 0);

        assert!(!cgroup.is_frozen().unwrap());
        cgroup.freeze().unwrap();
        assert!(cgroup.is_frozen().unwrap());
        cgroup.thaw().unwrap();
        assert!(!cgroup.is_frozen().unwrap());

        // A reopened copy (as from state.json) sees the same cgroup.
        let reopened: Cgroup =
            serde_json::from_str(&serde_json::to_string(&cgroup).unwrap()).unwrap();
        assert_eq!(reopened.pids().unwrap(), cgroup.pids().unwrap());

        for mut c in g.children.drain(..) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        assert!(cgroup.pids().unwrap().is_empty());
        reopened.destroy().unwrap();
        for d in &dirs {
            assert!(!d.path.exists(), "{} is left behind", d.path.display());
        }
    }

    /// Any cgroup2 mount: /sys/fs/cgroup on a v2 host, the unified mount on a hybrid one.
    fn cgroup2_mount() -> PathBuf {
        let mountinfo = read("/proc/self/mountinfo");
        let line = mountinfo
            .lines()
            .find(|l| l.contains(" - cgroup2 "))
            .expect("no cgroup2 mount on this host");
        PathBuf::from(line.split(' ').nth(4).unwrap())
    }

    /// The v2 code path on a real kernel: on a hybrid host in the unified
    /// hierarchy (which the host view treats as v2 when it sees no v1 mount).
    #[test]
    fn root_v2_life_cycle_in_the_unified_hierarchy() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test needs root"
        );
        let mount = cgroup2_mount();
        let mountinfo = format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", mount.display());
        let system = System::parse(Path::new("/"), &mountinfo, "0::/\n");
        let name = unique("v2");
        let mut cgroup =
            Cgroup::resolve_in(&system, Some(Path::new(&format!("/{name}/ctr"))), &id("x"))
                .unwrap();
        assert!(cgroup.is_v2());
        let subtree = mount.join("cgroup.subtree_control");
        let before = read(&subtree);
        let restore = RestoreSubtree {
            file: subtree,
            before,
        };
        cgroup.create().unwrap();
        let mut g = Guard {
            cgroup: cgroup.clone(),
            children: Vec::new(),
        };
        let dir = v2_dir(&cgroup);
        assert!(dir.is_dir());
        assert_eq!(cgroup.created, [mount.join(&name), dir.clone()]);

        let (child, mut stdin, mut stdout) = held_shell(
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo burnt; exec sleep 60",
        );
        let pid = i32::try_from(child.id()).unwrap();
        g.children.push(child);
        cgroup.add_pid(pid).unwrap();
        assert_eq!(cgroup.pids().unwrap(), [pid]);
        writeln!(stdin, "go").unwrap();
        assert_eq!(line(&mut stdout), "burnt");
        let stats = cgroup.stats().unwrap();
        assert!(stats.cpu.usage.total > 0, "{stats:?}");

        assert!(!cgroup.is_frozen().unwrap());
        cgroup.freeze().unwrap();
        assert!(cgroup.is_frozen().unwrap());
        cgroup.thaw().unwrap();
        assert!(!cgroup.is_frozen().unwrap());

        for mut c in g.children.drain(..) {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        cgroup.destroy().unwrap();
        assert!(!mount.join(&name).exists());
        drop(restore);
    }

    /// Takes back the controllers `create` enabled in a cgroup the test does not own.
    struct RestoreSubtree {
        file: PathBuf,
        before: String,
    }

    impl Drop for RestoreSubtree {
        fn drop(&mut self) {
            let now = std::fs::read_to_string(&self.file).unwrap_or_default();
            for c in now.split_whitespace() {
                if !self.before.split_whitespace().any(|b| b == c) {
                    let _ = std::fs::write(&self.file, format!("-{c}"));
                }
            }
        }
    }

    fn probe(cgroup: &Cgroup, g: &mut Guard) -> String {
        let (child, mut stdin, mut stdout) = held_shell(
            "for t in '< /dev/null' '< /dev/kmsg' '> /dev/kmsg'; do \
               if eval \"true $t\" 2>/dev/null; then echo \"$t ok\"; else echo \"$t denied\"; fi; \
             done; echo end",
        );
        let pid = i32::try_from(child.id()).unwrap();
        g.children.push(child);
        cgroup.add_pid(pid).unwrap();
        writeln!(stdin, "go").unwrap();
        let mut out = Vec::new();
        loop {
            let l = line(&mut stdout);
            if l == "end" || l.is_empty() {
                break;
            }
            out.push(l);
        }
        out.join(", ")
    }

    #[test]
    fn root_v2_device_filter_denies_unlisted_devices() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test needs root"
        );
        std::fs::File::open("/dev/kmsg").expect("the test needs /dev/kmsg to be readable");
        let root = cgroup2_mount();
        let path = root.join(unique("devices"));
        std::fs::create_dir(&path).unwrap();
        let cgroup = Cgroup {
            layout: Layout::V2 {
                dir: Dir {
                    root,
                    path: path.clone(),
                },
            },
            created: vec![path],
        };
        let mut g = Guard {
            cgroup: cgroup.clone(),
            children: Vec::new(),
        };

        cgroup
            .apply_devices(&[rule(
                json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}),
            )])
            .unwrap();
        assert_eq!(
            probe(&cgroup, &mut g),
            "< /dev/null ok, < /dev/kmsg ok, > /dev/kmsg denied"
        );

        // Applying again replaces the rules rather than adding to them.
        cgroup.apply_devices(&[]).unwrap();
        assert_eq!(
            probe(&cgroup, &mut g),
            "< /dev/null ok, < /dev/kmsg denied, > /dev/kmsg denied"
        );
        cgroup
            .apply_devices(&[rule(
                json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"}),
            )])
            .unwrap();
        assert_eq!(
            probe(&cgroup, &mut g),
            "< /dev/null ok, < /dev/kmsg ok, > /dev/kmsg ok"
        );
    }
}
