//! `bosun registry`, `bosun pull` and `bosun push` end to end, with the real
//! peers: skopeo and umoci against bosun's registry, bosun's client against
//! Debian's docker-registry (distribution 2.8), and a registry killed with
//! SIGKILL in the middle of a push. Peers missing from the machine fail the
//! test (scripts/install-deps.sh installs them), they never skip it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::bosun;

/// A child process killed (and reaped) when the test ends, however it ends.
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

impl Running {
    /// SIGKILL, as a crash would.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn need(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is needed by this test: install the Debian package {package} \
         (scripts/install-deps.sh does)"
    );
}

/// Starts `bosun registry` on a free loopback port over `dir`.
fn start_bosun_registry(dir: &Path) -> Running {
    let mut child = Command::new(bosun())
        .args(["registry", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn bosun registry");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("bosun registry did not say where it listens: {line:?}"))
        .to_owned();
    Running { child, addr }
}

/// Starts Debian's docker-registry with filesystem storage under `dir`.
fn start_docker_registry(dir: &Path) -> Running {
    need("docker-registry", "docker-registry");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn docker-registry");
    let running = Running { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(&running.addr, "GET", "/v2/", &[], b"").is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    running
}

/// A minimal HTTP/1.1 exchange (one request per connection).
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in a {} response", self.status))
    }
}

fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A rootfs tarball with a few MiB of content, made by tar(1).
fn rootfs_tarball(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hostname"), "bosun\n").unwrap();
    std::fs::write(rootfs.join("etc/noise"), noise(5 << 20, 7)).unwrap();
    let tarball = dir.join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    tarball
}

/// An OCI layout with one two-layer image tagged `v1`, made by umoci.
fn umoci_layout(dir: &Path) -> PathBuf {
    need("umoci", "umoci");
    let layout = dir.join("layout");
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    let image = format!("{}:v1", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    for (i, size) in [(1, 3 << 20), (2, 1 << 20)] {
        let src = dir.join(format!("layer{i}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("data"), noise(size, i)).unwrap();
        run(Command::new("umoci")
            .args(["insert", "--image", &image])
            .arg(&src)
            .arg(format!("/opt/layer{i}")));
    }
    layout
}

/// The manifest digest an OCI layout's index.json names (the only one).
fn layout_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn skopeo_copies_into_bosun_registry_and_back_out() {
    need("skopeo", "skopeo");
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_layout(work.path());
    let digest = layout_digest(&layout);
    let registry = start_bosun_registry(&work.path().join("registry"));
    let remote = format!("docker://{}/peers/umoci:v1", registry.addr);

    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(&remote));

    let inspect = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &remote]));
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        info["Digest"],
        digest.as_str(),
        "skopeo sees the same digest"
    );
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &remote]));
    let local = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(raw.stdout, local, "the manifest is served byte for byte");

    let back = work.path().join("back");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(&remote)
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(layout_digest(&back), digest);
    // umoci reads what came back, layer digests checked on the way.
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", back.display()))
        .arg(work.path().join("bundle")));
    assert_eq!(
        std::fs::read(work.path().join("bundle/rootfs/opt/layer1/data")).unwrap(),
        noise(3 << 20, 1)
    );
}

#[test]
fn bosun_push_and_pull_against_docker_registry() {
    let work = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(work.path());
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let imported = stdout(&run(Command::new(bosun())
        .args(["image", "import", "--data-dir"])
        .arg(&a)
        .arg(&tarball)
        .arg("app:1")));

    let registry = start_docker_registry(&work.path().join("distribution"));
    let remote = format!("{}/peers/app:1", registry.addr);
    let push = run(Command::new(bosun())
        .args(["push", "--data-dir"])
        .arg(&a)
        .args(["app:1", &remote]));
    assert_eq!(stdout(&push), imported, "push prints the manifest digest");
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(
        stderr.lines().filter(|l| l.contains(": pushed")).count() == 2,
        "one line per blob (config and layer) when stderr is no terminal: {stderr}"
    );

    let pull = run(Command::new(bosun())
        .args(["pull", "--data-dir"])
        .arg(&b)
        .arg(&remote));
    assert_eq!(
        stdout(&pull),
        imported,
        "the digest survives the round trip"
    );
    let listed = stdout(&run(Command::new(bosun())
        .args(["image", "ls", "--format", "json", "--data-dir"])
        .arg(&b)));
    assert!(
        listed.contains(&format!("\"Repository\":\"{}/peers/app\"", registry.addr))
            && listed.contains("\"Tag\":\"1\""),
        "pulled image is tagged: {listed}"
    );
    let rootfs = work.path().join("unpacked");
    run(Command::new(bosun())
        .args(["image", "unpack", "--data-dir"])
        .arg(&b)
        .arg(&remote)
        .arg(&rootfs));
    assert_eq!(
        std::fs::read(rootfs.join("etc/noise")).unwrap(),
        noise(5 << 20, 7)
    );

    // docker-registry itself reports the same digest for the tag.
    let head = http(
        &registry.addr,
        "HEAD",
        "/v2/peers/app/manifests/1",
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    )
    .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Docker-Content-Digest"), imported);

    // A second push finds everything there.
    let again = run(Command::new(bosun())
        .args(["push", "--data-dir"])
        .arg(&a)
        .args(["app:1", &remote]));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.matches("already there").count(), 2, "{stderr}");
}

#[test]
fn bosun_pull_push_and_gc_against_bosun_registry() {
    let work = tempfile::tempdir().unwrap();
    let tarball = rootfs_tarball(work.path());
    let (a, b, data) = (
        work.path().join("a"),
        work.path().join("b"),
        work.path().join("registry"),
    );
    let imported = stdout(&run(Command::new(bosun())
        .args(["image", "import", "--data-dir"])
        .arg(&a)
        .arg(&tarball)
        .arg("app:1")));
    let registry = start_bosun_registry(&data);
    let remote = format!("{}/team/app:1", registry.addr);
    assert_eq!(
        stdout(&run(Command::new(bosun())
            .args(["push", "-q", "--data-dir"])
            .arg(&a)
            .args(["app:1", &remote]))),
        imported
    );
    assert_eq!(
        stdout(&run(Command::new(bosun())
            .args(["pull", "--quiet", "--data-dir"])
            .arg(&b)
            .arg(&remote))),
        imported
    );
    // skopeo reads the image from bosun's registry too.
    need("skopeo", "skopeo");
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{remote}"),
    ]));
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["Digest"], imported.as_str());

    // gc refuses while the server runs; after it stops, an orphan blob goes
    // and the image stays.
    let gc = Command::new(bosun())
        .args(["registry", "gc", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(gc.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gc.stderr).contains("running registry server"),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let orphan = noise(1000, 99);
    let orphan_digest = bosun_image::sha256_of(&orphan).to_string();
    let put = http(
        &registry.addr,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={orphan_digest}"),
        &[],
        &orphan,
    )
    .unwrap();
    assert_eq!(put.status, 201);
    drop(registry);
    let gc = run(Command::new(bosun())
        .args(["registry", "gc", "--data-dir"])
        .arg(&data));
    assert_eq!(stdout(&gc), format!("Deleted: {orphan_digest}"));
    let registry = start_bosun_registry(&data);
    assert_eq!(
        stdout(&run(Command::new(bosun())
            .args(["pull", "-q", "--data-dir"])
            .arg(work.path().join("c"))
            .arg(format!("{}/team/app:1", registry.addr)))),
        imported
    );
}

/// SIGKILL the registry while a chunk is arriving; restart it on the same
/// directory; the upload resumes from what reached the disk, completes, and
/// what is served verifies. Nothing half-written is ever visible as a blob.
#[test]
fn registry_killed_in_the_middle_of_a_push_recovers() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("registry");
    let blob = noise(24 << 20, 3);
    let digest = bosun_image::sha256_of(&blob).to_string();
    let first_chunk = 8 << 20;

    let registry = start_bosun_registry(&data_dir);
    let start = http(
        &registry.addr,
        "POST",
        "/v2/crash/test/blobs/uploads/",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(start.status, 202);
    let location = start.header("Location").to_owned();
    let upload_id = location.rsplit('/').next().unwrap().to_owned();
    let range = format!("0-{}", first_chunk - 1);
    let resp = http(
        &registry.addr,
        "PATCH",
        &location,
        &[("Content-Range", &range)],
        &blob[..first_chunk],
    )
    .unwrap();
    assert_eq!(resp.status, 202);

    // The second chunk: announced whole, sent in part, and the server dies
    // while it waits for the rest.
    let mut s = TcpStream::connect(&registry.addr).unwrap();
    let rest = blob.len() - first_chunk;
    write!(
        s,
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Range: {first_chunk}-{}\r\n\
         Content-Length: {rest}\r\n\r\n",
        registry.addr,
        blob.len() - 1
    )
    .unwrap();
    let sent = first_chunk + (5 << 20) + 12345;
    s.write_all(&blob[first_chunk..sent]).unwrap();
    s.flush().unwrap();
    let data_file = data_dir.join("uploads").join(&upload_id).join("data");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&data_file).map_or(0, |m| m.len()) < (first_chunk + (4 << 20)) as u64 {
        assert!(
            Instant::now() < deadline,
            "the server never wrote the chunk"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    registry.crash();
    drop(s);

    let registry = start_bosun_registry(&data_dir);
    // Not a blob yet: nothing of it is served.
    let get = http(
        &registry.addr,
        "GET",
        &format!("/v2/crash/test/blobs/{digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(get.status, 404);
    let status = http(&registry.addr, "GET", &location, &[], b"").unwrap();
    assert_eq!(status.status, 204, "the upload survived the crash");
    let have: usize = status
        .header("Range")
        .trim_start_matches("0-")
        .parse::<usize>()
        .unwrap()
        + 1;
    assert!(
        (first_chunk + (4 << 20)..=sent).contains(&have),
        "resumes from what reached the disk: {have}"
    );
    let range = format!("{have}-{}", blob.len() - 1);
    let resp = http(
        &registry.addr,
        "PATCH",
        &location,
        &[("Content-Range", &range)],
        &blob[have..],
    )
    .unwrap();
    assert_eq!(resp.status, 202);
    let done = http(
        &registry.addr,
        "PUT",
        &format!("{location}?digest={digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(done.status, 201, "{}", String::from_utf8_lossy(&done.body));
    let get = http(
        &registry.addr,
        "GET",
        &format!("/v2/crash/test/blobs/{digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(get.status, 200);
    assert_eq!(bosun_image::sha256_of(&get.body).to_string(), digest);
    assert_eq!(get.body.len(), blob.len());
}

#[test]
fn command_line_mistakes_exit_2_with_usage() {
    for args in [
        &["pull"][..],
        &["pull", "--platform", "linux", "x"],
        &["pull", "--bogus", "x"],
        &["push"],
        &["push", "a", "b", "c"],
        &["registry", "--addr", "nonsense"],
        &["registry", "--tls-cert", "only-cert"],
        &["registry", "gc", "--addr", "127.0.0.1:1"],
        &["registry", "--insecure"],
    ] {
        let out = Command::new(bosun())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Usage: bosun"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(bosun())
        .args(["pull", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--platform"));
}
