//! bosun next to the peers users already run: the same bundle under runc, crun
//! and bosun gives the same results, and podman drives bosun as its runtime.
//!
//! These are root tests that drive real binaries from Debian packages
//! (`runc`, `crun`, `podman`, `util-linux`); they fail, never skip, when a
//! peer is missing.

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Bundle, bosun, cgroup_dirs, require_root, unique_id};
use serde_json::json;

/// The process of the differential test: one fact per line, each one a thing
/// a runtime decides (namespaces, identity, capabilities, mounts, devices,
/// masked and read-only paths, limits, environment, exit status).
const FACTS: &str = r#"
echo "pid $$ ppid $PPID"
echo "hostname $(hostname)"
echo "net:" $(ls /sys/class/net)
echo "user $(id -u):$(id -g) groups $(id -G)"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|SigBlk|SigIgn):' /proc/self/status
echo "uid_map" $(cat /proc/self/uid_map)
cat /proc/self/cgroup
sh -c 'exit 7'; echo "child exited $?"
echo "mount points:" $(awk '{print $2}' /proc/mounts | sort)
grep -q '^proc /proc proc ' /proc/mounts && echo "/proc is procfs"
echo "dev:" $(ls /dev)
ls -l /dev | awk '/^[cb]/ {print "node", $1, $5, $6, $NF}'
for l in fd stdin stdout stderr ptmx; do echo "/dev/$l -> $(readlink /dev/$l)"; done
echo x > /proc/sys/kernel/hostname 2>/dev/null && echo "/proc/sys writable" || echo "/proc/sys read-only"
touch /ro/x 2>/dev/null && echo "/ro writable" || echo "/ro read-only"
echo "masked: timer_list [$(cat /proc/timer_list)] acpi [$(ls /proc/acpi)] firmware [$(ls /sys/firmware)] secret [$(cat /etc/secret)]"
touch /written-by-container && echo "root writable"
echo "nofile $(ulimit -n) umask $(umask) cwd $(pwd) oom_score_adj $(cat /proc/self/oom_score_adj)"
env | sort
exit 3
"#;

/// The exit status the facts script ends with.
const FACTS_EXIT: i32 = 3;

/// What one `run` of the facts bundle produced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
}

/// An OCI runtime driven through its runc-compatible command line, with a
/// state root of its own.
struct Peer {
    name: &'static str,
    program: PathBuf,
    root: tempfile::TempDir,
}

impl Peer {
    fn new(name: &'static str, program: impl Into<PathBuf>) -> Self {
        let root = tempfile::Builder::new()
            .prefix(&format!("bosun-peers-{name}-"))
            .tempdir()
            .expect("temp state root");
        Self {
            name,
            program: program.into(),
            root,
        }
    }

    /// `run` the bundle in the foreground, in `ns` when given.
    ///
    /// Each run gets its own id and its own top-level cgroup path, so that
    /// leftovers can be told apart and looked for afterwards.
    fn run(&self, bundle: &mut Bundle, ns: Option<&MountNs>) -> Outcome {
        let id = unique_id(&format!("peers-{}", self.name));
        let cgroup = format!("/{id}");
        bundle.edit(|c| c["linux"]["cgroupsPath"] = json!(cgroup));
        let mut cmd = match ns {
            Some(ns) => ns.command(&self.program),
            None => Command::new(&self.program),
        };
        cmd.arg("--root")
            .arg(self.root.path())
            .arg("run")
            .arg("--bundle")
            .arg(bundle.path())
            .arg(&id);
        let (code, stdout, stderr) = run_to_files(&mut cmd);
        eprintln!("--- {} (exit {code:?}) stderr:\n{stderr}", self.name);
        let left: Vec<_> = cgroup_dirs(&cgroup)
            .into_iter()
            .chain(ns.into_iter().flat_map(|ns| ns.cgroup_dirs(&cgroup)))
            .collect();
        assert!(
            left.is_empty(),
            "{} left cgroups behind: {left:?}",
            self.name
        );
        let state = self.root.path().join(&id);
        assert!(
            !state.exists(),
            "{} left its state behind: {}",
            self.name,
            state.display()
        );
        assert!(
            code.is_some(),
            "{} was killed by a signal; stderr: {stderr}",
            self.name
        );
        Outcome { code, stdout }
    }
}

impl Drop for Peer {
    /// `run` deletes its container; this only matters when a test failed half way.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.root.path()) else {
            return;
        };
        for e in entries.flatten() {
            let _ = Command::new(&self.program)
                .arg("--root")
                .arg(self.root.path())
                .args(["delete", "--force"])
                .arg(e.file_name())
                .stdin(Stdio::null())
                .output();
        }
    }
}

/// Run a command with stdin closed and stdout/stderr in temp files: a pipe would
/// stay open for as long as anything the command left behind lives, and hang
/// the test instead of failing it.
fn run_to_files(cmd: &mut Command) -> (Option<i32>, String, String) {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let read = |f: &mut File| {
        let mut s = String::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    };
    (status.code(), read(&mut out), read(&mut err))
}

/// The bosun binary under the name `bosun-runc`, as the install step links it:
/// proves that argv[0] alone selects the runc-compatible command line.
struct BosunRunc {
    dir: tempfile::TempDir,
}

impl BosunRunc {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bosun-runc-link-")
            .tempdir()
            .expect("temp dir");
        std::os::unix::fs::symlink(bosun(), dir.path().join("bosun-runc"))
            .expect("symlink bosun-runc");
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("bosun-runc")
    }
}

/// A mount namespace of our own, held open by a `sleep` this test started;
/// commands run in it through `nsenter`. Mounts made in it never reach the
/// host's namespace and go away with it.
struct MountNs {
    holder: Child,
}

impl MountNs {
    /// `setup` is a shell script run in the new namespace before anything else.
    fn new(setup: &str) -> Self {
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!("{setup}\necho ready\nexec sleep infinity"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn unshare (util-linux)");
        // Until `ready` is printed, nsenter could still join the old namespace.
        let mut line = String::new();
        let mut stdout = BufReader::new(holder.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!(
                "mount namespace setup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self { holder }
    }

    /// A command that runs `program` inside the namespace. nsenter resets the
    /// working directory, so every path handed to it must be absolute.
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(self.holder.id().to_string())
            .args(["--mount", "--"])
            .arg(program);
        c
    }

    /// Like `common::cgroup_dirs`, for the hierarchies mounted only in here.
    fn cgroup_dirs(&self, path: &str) -> Vec<PathBuf> {
        let script = format!(
            "for h in /sys/fs/cgroup/*/; do test -e \"$h{}\" && echo \"$h{}\"; done; true",
            path.trim_start_matches('/'),
            path.trim_start_matches('/')
        );
        let out = self.command("sh").arg("-c").arg(script).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .collect()
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Serializes the tests of this file (threads under `cargo test`, processes
/// under nextest) around the host's cgroup layout, which the crun workaround
/// changes for a moment: podman's cgroupfs manager must not see hugetlb
/// half-moved. The lock is `flock` on `/sys/fs/cgroup` itself, which
/// `bench/runtime` takes too.
fn cgroup_layout_lock() -> File {
    let f = File::open("/sys/fs/cgroup").expect("open /sys/fs/cgroup");
    f.lock().expect("flock /sys/fs/cgroup");
    f
}

const UNIFIED: &str = "/sys/fs/cgroup/unified";
const HUGETLB_V1: &str = "/sys/fs/cgroup/hugetlb";

/// Whether this host has the hybrid layout crun 1.8 refuses: v1 controllers
/// plus a unified hierarchy that still holds a controller (hugetlb here), with
/// no v1 hugetlb hierarchy mounted yet.
fn crun_needs_hugetlb_on_v1() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let fields = |l: &str| -> Option<(String, String, String)> {
        let (pre, post) = l.split_once(" - ")?;
        let point = pre.split(' ').nth(4)?.to_owned();
        let mut post = post.split(' ');
        let fstype = post.next()?.to_owned();
        let opts = post.nth(1)?.to_owned();
        Some((point, fstype, opts))
    };
    let mounts: Vec<_> = mountinfo.lines().filter_map(fields).collect();
    let hybrid = mounts
        .iter()
        .any(|(p, t, _)| p == UNIFIED && t == "cgroup2");
    let hugetlb_on_v1 = mounts
        .iter()
        .any(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == "hugetlb"));
    let unified_controllers =
        std::fs::read_to_string(Path::new(UNIFIED).join("cgroup.controllers")).unwrap_or_default();
    hybrid
        && !hugetlb_on_v1
        && unified_controllers
            .split_whitespace()
            .any(|c| c == "hugetlb")
}

/// crun's workaround for this host, undone on drop: hugetlb mounted as a v1
/// hierarchy, but in a private mount namespace that only the runtimes run in.
///
/// The mount itself is the documented one (`mkdir -p /sys/fs/cgroup/hugetlb &&
/// mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb`). Made on the host
/// it would stay after the test, and every later run would exercise bosun on
/// the rearranged layout only; made in a namespace, it goes away with the
/// namespace, and the kernel gives hugetlb back to the unified hierarchy once
/// the v1 hierarchy has no mount and no cgroup left (unless someone else is
/// using it by then). Only the mount point directory, on the host's
/// /sys/fs/cgroup tmpfs, is shared; it is removed again if we made it.
struct HugetlbOnV1 {
    ns: Option<MountNs>,
    made_dir: bool,
}

impl HugetlbOnV1 {
    fn new() -> Self {
        let made_dir = !Path::new(HUGETLB_V1).exists();
        // The mount fails with EBUSY while some other test has hugetlb enabled in
        // a unified cgroup.subtree_control; that lasts a moment, so retry a while.
        let ns = MountNs::new(&format!(
            "mkdir -p {HUGETLB_V1} || exit 1\n\
             i=0\n\
             until mount -t cgroup -o hugetlb cgroup {HUGETLB_V1}; do\n\
               i=$((i+1)); [ $i -ge 100 ] && exit 1; sleep 0.1\n\
             done"
        ));
        Self {
            ns: Some(ns),
            made_dir,
        }
    }

    fn ns(&self) -> &MountNs {
        self.ns.as_ref().expect("namespace alive")
    }
}

impl Drop for HugetlbOnV1 {
    fn drop(&mut self) {
        // The kernel frees a hierarchy whose last mount goes away only if it has
        // no child cgroup at that moment, dying ones included; removed cgroups die
        // asynchronously, so let them go first (another user of the hierarchy may
        // keep it longer, which is not ours to wait for).
        for _ in 0..500 {
            if hugetlb_cgroup_count() <= Some(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(self.ns.take());
        if self.made_dir {
            // Fails harmlessly if someone mounted something there meanwhile.
            let _ = std::fs::remove_dir(HUGETLB_V1);
        }
    }
}

/// The number of cgroups in the hierarchy hugetlb is bound to, from /proc/cgroups.
fn hugetlb_cgroup_count() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cgroups").ok()?;
    let line = text.lines().find(|l| l.starts_with("hugetlb\t"))?;
    line.split('\t').nth(2)?.parse().ok()
}

/// Signals 32 and 33, glibc's internal SIGCANCEL and SIGSETXID, as bits of a
/// `SigIgn:` mask.
const GLIBC_INTERNAL_SIGNALS: u64 = 0b11 << 31;

/// Removes what must differ between runtimes from an outcome, so that
/// everything else can be compared byte for byte.
fn normalize(peer: &str, mut o: Outcome) -> Outcome {
    o.stdout = o
        .stdout
        .lines()
        .map(|l| {
            if let Some(mask) = l.strip_prefix("SigIgn:") {
                // The test harness starts runtimes with glibc's posix_spawn, which
                // leaves signals 32 and 33 ignored in the child; glibc's sigaction
                // refuses to touch them, so a C or Rust runtime cannot reset them
                // and Go's runc resets only one. Nothing a runtime decides.
                let mask = u64::from_str_radix(mask.trim(), 16).expect("SigIgn mask");
                format!("SigIgn:\t{:016x}", mask & !GLIBC_INTERNAL_SIGNALS)
            } else if let Some(rest) = l.strip_prefix("dev:").filter(|_| peer == "crun") {
                // crun adds a /dev/core -> /proc/kcore symlink, a Docker-era extra
                // that is not among the OCI spec's default devices; runc has none.
                let names: Vec<_> = rest.split_whitespace().filter(|n| *n != "core").collect();
                format!("dev: {}", names.join(" "))
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    o
}

fn facts_bundle() -> Bundle {
    let mut b = Bundle::busybox();
    std::fs::create_dir(b.rootfs().join("ro")).unwrap();
    std::fs::write(b.rootfs().join("etc/secret"), "top secret\n").unwrap();
    // No domainname: runc 1.1 ignores it (isolation.rs covers bosun's).
    b.edit(|c| {
        c["hostname"] = json!("peers");
        c["linux"]["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/ro"));
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/etc/secret"));
    });
    b.args(&["sh", "-c", FACTS]);
    b
}

/// Asserts that every outcome equals the first; on failure, shows the lines
/// each side has that the other lacks, then both outputs whole.
fn assert_same(what: &str, outcomes: &[(&str, Outcome)]) {
    let (first, reference) = &outcomes[0];
    for (name, o) in &outcomes[1..] {
        if o == reference {
            continue;
        }
        let only = |a: &str, b: &str| -> String {
            let b: Vec<&str> = b.lines().collect();
            a.lines()
                .filter(|l| !b.contains(l))
                .map(|l| format!("  {l}\n"))
                .collect()
        };
        panic!(
            "{what}: {name} differs from {first}\n\
             exit codes: {name} {:?}, {first} {:?}\n\
             only under {name}:\n{}only under {first}:\n{}\n\
             --- {name}:\n{}\n--- {first}:\n{}",
            o.code,
            reference.code,
            only(&o.stdout, &reference.stdout),
            only(&reference.stdout, &o.stdout),
            o.stdout,
            reference.stdout
        );
    }
}

#[test]
fn same_bundle_same_results_under_runc_crun_and_bosun() {
    require_root();
    let _layout = cgroup_layout_lock();
    let link = BosunRunc::new();
    let bosun = Peer::new("bosun", link.path());
    let runc = Peer::new("runc", "runc");
    let crun = Peer::new("crun", "crun");
    let mut bundle = facts_bundle();

    // The host as it is: bosun must not need crun's workaround.
    let host = [
        ("runc", normalize("runc", runc.run(&mut bundle, None))),
        ("bosun", normalize("bosun", bosun.run(&mut bundle, None))),
    ];
    assert_eq!(host[0].1.code, Some(FACTS_EXIT), "{}", host[0].1.stdout);
    assert!(
        host[0].1.stdout.starts_with("pid 1 ppid 0\n"),
        "{}",
        host[0].1.stdout
    );
    assert_same("on the host's own cgroup layout", &host);

    // With hugetlb moved to a v1 hierarchy, which crun needs here; bosun again,
    // so that it is seen on both layouts in every run whatever the test order.
    let workaround = crun_needs_hugetlb_on_v1().then(HugetlbOnV1::new);
    let ns = workaround.as_ref().map(HugetlbOnV1::ns);
    let moved = [
        ("runc", normalize("runc", runc.run(&mut bundle, ns))),
        ("crun", normalize("crun", crun.run(&mut bundle, ns))),
        ("bosun", normalize("bosun", bosun.run(&mut bundle, ns))),
    ];
    assert_same("with hugetlb on a v1 hierarchy", &moved);
    drop(workaround);
}

/// podman with everything of its own: storage, run and temp directories under
/// one temp dir, no host config files, bosun (as `bosun-runc`) as the runtime,
/// and containers under a cgroup parent of their own.
///
/// podman 4.3 also writes where no flag reaches: a blob-info cache in
/// /var/lib/containers/cache and netavark's /run/containers/networks, and
/// bosun keeps its state in its default root, /run/bosun/runtime, because
/// podman does not pass `--root` to the runtime (with `--runtime-flag root=…`
/// it still leaves it off `delete`, which would leak the container). So every
/// podman command runs in a mount namespace of its own with fresh tmpfs over
/// /run and /var/lib: what lands there goes away with the namespace.
struct Podman {
    dir: tempfile::TempDir,
    ns: Option<MountNs>,
    _link: BosunRunc,
    runtime: PathBuf,
    cgroup_parent: String,
}

/// The image `podman import` makes of the busybox rootfs.
const IMAGE: &str = "localhost/bosun-peers:busybox";

impl Podman {
    fn new() -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("bosun-podman-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("containers.conf"), "").unwrap();
        // podman insists on a driver and a runroot in storage.conf, flags or not.
        std::fs::write(
            dir.path().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/storage\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let ns = MountNs::new(
            "mount -t tmpfs -o mode=755 tmpfs /run && mount -t tmpfs -o mode=755 tmpfs /var/lib",
        );
        let link = BosunRunc::new();
        let runtime = link.path();
        Self {
            cgroup_parent: format!("/{}", unique_id("bosun-peers-podman")),
            dir,
            ns: Some(ns),
            _link: link,
            runtime,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self) -> Command {
        let ns = self.ns.as_ref().expect("namespace alive");
        let mut c = ns.command("podman");
        // Only these files, not the host's: a config of the host's must not
        // change what the test sees (podman reads no other containers.conf
        // when CONTAINERS_CONF is set).
        c.env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .arg("--root")
            .arg(self.path("storage"))
            .arg("--runroot")
            .arg(self.path("run"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .arg("--network-config-dir")
            .arg(self.path("networks"))
            // vfs: plain directories, no overlay mounts to leave behind.
            .args(["--storage-driver", "vfs"])
            .arg("--runtime")
            .arg(&self.runtime)
            // No systemd here: cgroupfs, and events in a file under --tmpdir.
            .args(["--cgroup-manager=cgroupfs", "--events-backend=file"]);
        c
    }

    fn exec(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run_to_files(self.command().args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.exec(args);
        assert_eq!(
            code,
            Some(0),
            "podman {args:?} failed: {err}\nstdout: {out}"
        );
        out
    }

    /// `podman run` flags this host needs, plus our cgroup parent: the sandbox
    /// cannot raise RLIMIT_NOFILE past 20000 (no CAP_SYS_RESOURCE), and podman's
    /// default is higher; `--network none` keeps netavark out of it.
    fn run_flags(&self) -> Vec<String> {
        [
            "--cgroup-parent",
            &self.cgroup_parent,
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=20000:20000",
            "--network",
            "none",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `podman run <flags> <extra> IMAGE <cmd>`.
    fn run(&self, extra: &[&str], cmd: &[&str]) -> (Option<i32>, String, String) {
        let flags = self.run_flags();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(extra);
        args.push(IMAGE);
        args.extend(cmd);
        self.exec(&args)
    }

    /// `podman import` a tar of the busybox rootfs, made with `tar -C rootfs -cf`.
    fn import_busybox(&self) {
        let rootfs = self.path("rootfs");
        bosun_testkit::busybox_rootfs(&rootfs).expect("busybox rootfs");
        let tar = self.path("busybox.tar");
        let (code, _, err) = run_to_files(
            Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        );
        assert_eq!(code, Some(0), "tar: {err}");
        self.ok(&["import", tar.to_str().unwrap(), IMAGE]);
    }

    /// Directories left under our cgroup parent, in every hierarchy, deepest first.
    fn cgroups_left(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in cgroup_dirs(&self.cgroup_parent) {
            collect_dirs(&dir, &mut out);
        }
        out
    }

    /// The runtime state bosun keeps for podman's containers (in our namespace).
    fn runtime_state(&self) -> String {
        let ns = self.ns.as_ref().expect("namespace alive");
        let out = ns
            .command("ls")
            .arg("-A")
            .arg("/run/bosun/runtime")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `dir` and the directories below it, children before parents.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// Whether a process other than this one has `needle` in its command line.
fn process_mentions(needle: &str) -> bool {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let name = p.file_name();
        let name = name.to_string_lossy();
        name.bytes().all(|b| b.is_ascii_digit())
            && name != me
            && std::fs::read(p.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
    })
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.exec(&["rm", "--all", "--force", "--time", "0"]);
        // conmon runs podman's exit command (`container cleanup`) on its own,
        // and it may still be working on our storage when `podman run` returns.
        let needle = self.dir.path().to_string_lossy().into_owned();
        for _ in 0..300 {
            if !process_mentions(&needle) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(self.ns.take());
        // podman's own cgroup for conmon, and our parent: bosun removes the
        // containers' cgroups (checked by the tests), podman never removes these.
        for dir in self.cgroups_left() {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[test]
fn podman_runs_with_bosun_runc_as_runtime() {
    let _layout = cgroup_layout_lock();
    let podman = Podman::new();
    podman.import_busybox();

    let (code, out, err) = podman.run(
        &["--rm"],
        &["sh", "-c", "echo hello from $(hostname); echo $$"],
    );
    assert_eq!(code, Some(0), "podman run failed: {err}\nstdout: {out}");
    // podman names the container's host after the first 12 hex digits of its id.
    let mut lines = out.lines();
    let hello = lines.next().unwrap_or_default();
    let host = hello.strip_prefix("hello from ").unwrap_or_default();
    assert!(
        host.len() == 12 && host.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );
    assert_eq!(lines.next(), Some("1"), "{out}");
    assert_eq!(lines.next(), None, "{out}");

    let (code, out, err) = podman.run(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(code, Some(3), "stdout: {out}\nstderr: {err}");

    // `--rm` had podman call `bosun-runc delete` for both.
    assert_eq!(podman.ok(&["ps", "--all", "--quiet"]), "");
    assert_eq!(
        podman.runtime_state(),
        "",
        "bosun state left for deleted containers"
    );
    let left: Vec<_> = podman
        .cgroups_left()
        .into_iter()
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libpod-"))
        })
        .collect();
    assert!(left.is_empty(), "container cgroups left: {left:?}");
}

#[test]
fn podman_execs_into_and_stops_a_bosun_container() {
    let _layout = cgroup_layout_lock();
    let podman = Podman::new();
    podman.import_busybox();

    // A service that exits 42 on SIGTERM, so that a clean stop is visible.
    let name = unique_id("svc");
    let (code, id, err) = podman.run(
        &["--detach", "--name", &name],
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    assert_eq!(code, Some(0), "podman run -d failed: {err}");
    assert_eq!(id.trim().len(), 64, "{id}");

    // `podman exec` goes through `bosun-runc exec --process FILE --detach`.
    let out = podman.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo exec in $(hostname); cat /proc/1/cmdline",
    ]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(format!("exec in {}", &id.trim()[..12]).as_str()),
        "{out}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.contains("trap 'exit 42' TERM")),
        "{out}"
    );
    let (code, _, err) = podman.exec(&["exec", &name, "sh", "-c", "exit 5"]);
    assert_eq!(code, Some(5), "{err}");

    assert_eq!(podman.ok(&["logs", &name]), "ready\n");
    // `podman stop` is `bosun-runc kill ID 15`, then `delete` once it exited.
    podman.ok(&["stop", "--time", "30", &name]);
    assert_eq!(
        podman.ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name
        ]),
        "exited 42\n"
    );
    podman.ok(&["rm", &name]);
    assert_eq!(
        podman.runtime_state(),
        "",
        "bosun state left for a removed container"
    );
}
