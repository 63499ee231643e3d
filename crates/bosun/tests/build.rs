//! `bosun build` end to end through the real binary: a multi-stage build that
//! compiles a static program and ships it `FROM scratch`, the layer cache,
//! `.dockerignore`, a failing RUN, and bad Containerfiles. Needs root (RUN
//! steps are containers on overlay snapshots).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Bundle, Rt, bosun, require_root, unique_id};

/// A data dir with `bb` (busybox) and `cc` (busybox + the host's gcc) imported.
struct Store {
    data: tempfile::TempDir,
}

impl Store {
    fn new() -> Self {
        require_root();
        let me = Self {
            data: tempfile::Builder::new()
                .prefix("bosun-build-")
                .tempdir()
                .unwrap(),
        };
        let work = tempfile::tempdir().unwrap();
        for (name, toolchain) in [("bb", false), ("cc", true)] {
            let rootfs = work.path().join(name);
            if toolchain {
                bosun_testkit::toolchain_rootfs(&rootfs).unwrap();
            } else {
                bosun_testkit::busybox_rootfs(&rootfs).unwrap();
            }
            let tarball = work.path().join(format!("{name}.tar"));
            let ok = Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tarball)
                .arg(".")
                .status()
                .unwrap();
            assert!(ok.success());
            me.image(&["import", tarball.to_str().unwrap(), name]);
        }
        me
    }

    fn dir(&self) -> &Path {
        self.data.path()
    }

    fn image(&self, args: &[&str]) -> String {
        let out = Command::new(bosun())
            .arg("image")
            .args(args)
            .arg("--data-dir")
            .arg(self.dir())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bosun image {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn build(&self, context: &Path, args: &[&str]) -> Output {
        Command::new(bosun())
            .arg("build")
            .arg("--data-dir")
            .arg(self.dir())
            .args(args)
            .arg(context)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn build_ok(&self, context: &Path, args: &[&str]) -> (String, String) {
        let out = self.build(context, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "bosun build failed:\n{stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    /// Runs `args` in the image `name` with the runtime; returns its stdout.
    fn run(&self, name: &str, args: &[&str]) -> String {
        let mut bundle = Bundle::busybox();
        let rootfs = bundle.rootfs();
        fs::remove_dir_all(&rootfs).unwrap();
        self.image(&["unpack", name, rootfs.to_str().unwrap()]);
        bundle.args(args);
        let rt = Rt::new();
        let (code, out, err) = rt.run(&bundle, &unique_id("built"));
        assert_eq!(code, 0, "{err}");
        out
    }

    /// Nothing of a build may stay behind: no mount under the data dir, no
    /// active snapshot, no work directory.
    fn assert_clean(&self) {
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir().to_string_lossy().into_owned();
        assert!(
            !mounts.contains(&dir),
            "mounts left under {dir}:\n{}",
            mounts
                .lines()
                .filter(|l| l.contains(&dir))
                .collect::<Vec<_>>()
                .join("\n")
        );
        for sub in ["build-work", "snapshots/active"] {
            let path = self.dir().join(sub);
            if let Ok(entries) = fs::read_dir(&path) {
                let left: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
                assert!(left.is_empty(), "{} holds {left:?}", path.display());
            }
        }
    }
}

fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
    dir
}

const HELLO_C: &str = "int write(int, const void *, unsigned long);\n\
int main(void) { write(1, \"built by bosun\\n\", 15); return 0; }\n";

const MULTI_STAGE: &str = "\
# syntax=docker/dockerfile:1
ARG TOOLCHAIN=cc
ARG PROGRAM_FROM=compile
FROM ${TOOLCHAIN} AS compile
WORKDIR /src
COPY hello.c .
RUN gcc -static -O2 -o /hello hello.c \\
 && test -x /hello

FROM scratch
ARG PROGRAM_FROM
COPY --from=${PROGRAM_FROM} /hello /hello
LABEL org.example.kind=static
CMD [\"/hello\"]
";

#[test]
fn multi_stage_static_program_from_scratch_and_the_cache() {
    let store = Store::new();
    let ctx = context(&[("Containerfile", MULTI_STAGE), ("hello.c", HELLO_C)]);
    let (id, log) = store.build_ok(ctx.path(), &["-t", "hello:1"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert!(log.contains("STEP 1/"), "{log}");
    assert!(!log.contains("Using cache"), "{log}");

    let inspect: serde_json::Value =
        serde_json::from_str(&store.image(&["inspect", "hello:1"])).unwrap();
    let image = &inspect[0];
    assert_eq!(image["Id"], id.trim());
    assert_eq!(image["Config"]["Cmd"][0], "/hello");
    assert_eq!(image["Config"]["Labels"]["org.example.kind"], "static");
    // FROM scratch + one COPY: exactly one layer, holding just the program.
    assert_eq!(image["RootFS"]["diff_ids"].as_array().unwrap().len(), 1);
    let out = store.run("hello:1", &["/hello"]);
    assert_eq!(out, "built by bosun\n");

    // Nothing changed: every step from the cache, and the same image id even
    // a second later (times come from the cached layers, not the clock).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (again, log) = store.build_ok(ctx.path(), &["-t", "hello:1"]);
    assert_eq!(again, id, "{log}");
    assert_eq!(log.matches("Using cache").count(), 3, "{log}");

    // One COPYed file changed: the compile stage re-runs from that COPY on.
    fs::write(
        ctx.path().join("hello.c"),
        HELLO_C.replace("built by bosun", "built by BOSUN"),
    )
    .unwrap();
    let (changed, log) = store.build_ok(ctx.path(), &["-t", "hello:2"]);
    assert_ne!(changed, id);
    assert_eq!(log.matches("Using cache").count(), 0, "{log}");
    assert_eq!(store.run("hello:2", &["/hello"]), "built by BOSUN\n");

    // --no-cache runs everything again; --target stops at a stage.
    let (_, log) = store.build_ok(
        ctx.path(),
        &["--no-cache", "--target", "compile", "-t", "compile:1"],
    );
    assert!(!log.contains("Using cache"), "{log}");
    assert!(!log.contains("FROM scratch"), "{log}");
    store.assert_clean();

    // Without tags, prune leaves no blob and no snapshot behind.
    for tag in ["hello:1", "hello:2", "compile:1", "bb", "cc"] {
        store.image(&["rm", tag]);
    }
    let pruned = store.image(&["prune"]);
    assert!(pruned.contains("Deleted snapshot"), "{pruned}");
    for sub in ["content/blobs/sha256", "snapshots/chains"] {
        let left: Vec<_> = fs::read_dir(store.dir().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{sub} holds {left:?}");
    }
}

#[test]
fn dockerignore_keeps_files_out_and_metadata_lands_in_the_config() {
    let store = Store::new();
    let containerfile = "\
FROM bb
ENV GREETING=hi PLACE=\"the world\"
ARG WHO=nobody
WORKDIR /app
COPY . ./
RUN echo \"$GREETING $PLACE from $WHO\" > /said && ls /app > /listing
USER nobody
EXPOSE 8080/tcp 53/udp
ENTRYPOINT [\"/bin/cat\"]
HEALTHCHECK --interval=5s CMD true
STOPSIGNAL SIGTERM
";
    let ctx = context(&[
        ("Containerfile", containerfile),
        (".dockerignore", "secret*\n*.log\n!keep.log\n"),
        ("app.txt", "app\n"),
        ("secret.key", "nope\n"),
        ("debug.log", "nope\n"),
        ("keep.log", "kept\n"),
    ]);
    store.build_ok(ctx.path(), &["-t", "meta", "--build-arg", "WHO=bosun"]);
    assert_eq!(
        store.run("meta", &["cat", "/said"]),
        "hi the world from bosun\n"
    );
    let listing = store.run("meta", &["cat", "/listing"]);
    assert_eq!(listing, "Containerfile\napp.txt\nkeep.log\n");

    let inspect: serde_json::Value =
        serde_json::from_str(&store.image(&["inspect", "meta"])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "nobody");
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["Entrypoint"][0], "/bin/cat");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{config}");
    assert!(config["ExposedPorts"]["53/udp"].is_object(), "{config}");
    assert_eq!(config["StopSignal"], "SIGTERM");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"PLACE=the world"), "{env:?}");
    // Build args are not kept in the image.
    assert!(!env.iter().any(|e| e.starts_with("WHO=")), "{env:?}");
    store.assert_clean();
}

#[test]
fn a_failing_run_shows_its_output_and_exit_code_and_leaves_nothing() {
    let store = Store::new();
    let ctx = context(&[(
        "Containerfile",
        "FROM bb\nRUN echo before > /f\nRUN echo boom >&2; exit 3\n",
    )]);
    let out = store.build(ctx.path(), &["-t", "fails"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("boom"), "{stderr}");
    assert!(
        stderr.contains("line 3: RUN echo boom >&2; exit 3: the command exited with code 3"),
        "{stderr}"
    );
    assert!(!store.image(&["ls", "-q"]).contains("fails"));
    store.assert_clean();
}

#[test]
fn bad_containerfiles_name_the_line() {
    let store = Store::new();
    for (text, want) in [
        ("FROM bb\nRUNN echo\n", "line 2"),
        ("FROM bb\nCOPY missing.txt /x\n", "missing.txt"),
        ("FROM bb\nCOPY --from=nowhere /a /b\n", "nowhere"),
        ("FROM nosuchimage\n", "nosuchimage"),
        ("RUN echo no from\n", "line 1"),
        (
            "FROM --platform=linux/arm64 bb\n",
            "only linux/amd64 images are built here",
        ),
    ] {
        let ctx = context(&[("Containerfile", text)]);
        let out = store.build(ctx.path(), &["-t", "bad"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.contains(want), "{text}: {stderr}");
    }
    let empty = tempfile::tempdir().unwrap();
    let out = store.build(empty.path(), &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Containerfile"));
    store.assert_clean();
}

#[test]
fn heredocs_and_add_of_a_local_tar() {
    let store = Store::new();
    let work = tempfile::tempdir().unwrap();
    let payload = work.path().join("payload");
    fs::create_dir_all(payload.join("d")).unwrap();
    fs::write(payload.join("d/inner.txt"), "inside the tar\n").unwrap();
    let ctx = context(&[(
        "Containerfile",
        "FROM --platform=$BUILDPLATFORM bb\n\
         ARG TARGETARCH\n\
         ADD payload.tar.gz /opt/\n\
         RUN <<EOF\n\
         set -e\n\
         echo from heredoc on $TARGETARCH > /heredoc.txt\n\
         EOF\n\
         COPY <<-EOT /etc/motd\n\
         \thello motd\n\
         EOT\n",
    )]);
    let status = Command::new("tar")
        .arg("-C")
        .arg(&payload)
        .arg("-czf")
        .arg(ctx.path().join("payload.tar.gz"))
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    store.build_ok(ctx.path(), &["-t", "docs"]);
    assert_eq!(
        store.run(
            "docs",
            &["cat", "/opt/d/inner.txt", "/heredoc.txt", "/etc/motd"]
        ),
        "inside the tar\nfrom heredoc on amd64\nhello motd\n"
    );
    store.assert_clean();
}

/// `ADD URL` downloads (here from a server the test starts on loopback), keeps
/// the file packed with mode 0600, and an unreachable URL is a clear error.
#[test]
fn add_of_a_url_downloads_and_an_unreachable_one_is_a_clear_error() {
    let store = Store::new();
    let served = tempfile::tempdir().unwrap();
    fs::write(served.path().join("remote.txt"), "over http\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut server = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(served.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be installed");
    // Wait until it accepts connections.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ctx = context(&[(
        "Containerfile",
        &format!(
            "FROM bb\nADD http://127.0.0.1:{port}/remote.txt /opt/\nRUN stat -c %a /opt/remote.txt > /mode\n"
        ),
    )]);
    let result = store.build(ctx.path(), &["-t", "fetched"]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(
        store.run("fetched", &["cat", "/opt/remote.txt", "/mode"]),
        "over http\n600\n"
    );

    // The server is gone now: the same URL is unreachable.
    let ctx = context(&[(
        "Containerfile",
        &format!("FROM bb\nADD http://127.0.0.1:{port}/remote.txt /opt/\n"),
    )]);
    let out = store.build(ctx.path(), &["-t", "unfetched"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("line 2: ADD http://127.0.0.1:{port}/remote.txt /opt/: ADD http://127.0.0.1:{port}/remote.txt: unreachable")),
        "{stderr}"
    );
    store.assert_clean();
}

/// Stages that do not depend on each other build at the same time: here one
/// stage's RUN waits for a connection that only the other stage's RUN makes
/// (both on the host network), so built one after the other the first would
/// time out. (`nc` runs in a subshell: as the container's PID 1 it would
/// ignore the timeout's SIGTERM. The listening `nc` reads an empty stdin and
/// half-closes at once; the talking one sends from a file, not a pipe, so its
/// message is read before that FIN, not raced by `echo`. The listener takes
/// up to three connections, in case something else connects first.)
#[test]
fn independent_stages_build_at_the_same_time() {
    let store = Store::new();
    // Below the ephemeral range, so that tests binding port 0 at the same
    // time cannot be handed it; free when the test starts.
    let pid = std::process::id();
    let port = (0..10_000u32)
        .map(|i| 20_000 + ((pid + i) % 10_000) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below the ephemeral range");
    let containerfile = format!(
        "FROM bb AS listener\n\
         RUN for i in 1 2 3; do (timeout 30 nc -l -p {port} > /got); test -s /got && exit 0; done; exit 1\n\
         FROM bb AS talker\n\
         RUN echo hello > /msg && for i in $(seq 150); do nc 127.0.0.1 {port} < /msg && exit 0; sleep 0.2; done; exit 1\n\
         FROM bb\n\
         COPY --from=listener /got /got\n\
         COPY --from=talker /etc/passwd /talker-passwd\n"
    );
    let ctx = context(&[("Containerfile", &containerfile)]);
    let (_, log) = store.build_ok(ctx.path(), &["-t", "both"]);
    // Each stage's lines stay together, in file order.
    let listener = log.find("STEP 2/7").unwrap();
    let talker = log.find("STEP 3/7").unwrap();
    let talker_run = log.find("STEP 4/7").unwrap();
    assert!(listener < talker && talker < talker_run, "{log}");
    assert_eq!(store.run("both", &["cat", "/got"]), "hello\n");
    store.assert_clean();
}

/// A builder killed with SIGKILL in the middle of a RUN leaves a running
/// container, a mount and an active snapshot; the next `image prune` (or
/// build) undoes all of it.
#[test]
fn a_killed_build_is_swept_by_the_next_prune() {
    let store = Store::new();
    let ctx = context(&[("Containerfile", "FROM bb\nRUN sleep 300\n")]);
    let mut child = Command::new(bosun())
        .arg("build")
        .arg("--data-dir")
        .arg(store.dir())
        .args(["-t", "killed"])
        .arg(ctx.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let work = store.dir().join("build-work");
    let running = || {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&work.to_string_lossy().into_owned())
            && runtime_processes(&work) > 0
    };
    let mut waited = 0;
    while !running() {
        assert!(waited < 600, "the RUN step never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(
        runtime_processes(&work) > 0,
        "the step outlives its builder"
    );

    store.image(&["prune"]);
    // The container is killed by the prune; the orphaned `bosun runtime run`
    // that waited on it exits when it sees that, which a loaded machine may
    // take a moment to schedule.
    let mut waited = 0;
    while runtime_processes(&work) != 0 {
        assert!(waited < 300, "the step's container is stopped");
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    store.assert_clean();
}

/// Processes whose command line names `dir` (the RUN step's runtime).
fn runtime_processes(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&needle))
        .count()
}

/// Build contexts that reach for the host: `..`, links out of the context
/// (directly, through a chain, or relative), for COPY and ADD alike. Each is
/// refused; an absolute source names the context's own file; a source that is
/// a link is copied as the link. Nothing of the host lands in the image.
#[test]
fn build_contexts_do_not_reach_outside() {
    let store = Store::new();
    let secret = tempfile::tempdir().unwrap();
    fs::write(secret.path().join("passwd"), "host secret\n").unwrap();
    let ctx = context(&[("etc/passwd", "context passwd\n")]);
    let link = |target: String, name: &str| {
        std::os::unix::fs::symlink(target, ctx.path().join(name)).unwrap()
    };
    link(secret.path().display().to_string(), "out");
    link("chain2".into(), "chain1");
    link("out".into(), "chain2");
    link(
        format!("{}{}", "../".repeat(16), secret.path().display()),
        "up",
    );
    // Guard absent: on the host these links do reach the secret.
    assert_eq!(
        fs::read_to_string(ctx.path().join("chain1/passwd")).unwrap(),
        "host secret\n"
    );
    for (line, want) in [
        ("COPY ../x /x", "outside the build context"),
        ("COPY out/passwd /x", "no such file"),
        ("COPY chain1/passwd /x", "no such file"),
        ("ADD up/passwd /x", "no such file"),
        ("COPY out/* /x/", "no such file"),
        ("ADD chain1/pass* /x/", "no such file"),
    ] {
        fs::write(
            ctx.path().join("Containerfile"),
            format!("FROM bb\n{line}\n"),
        )
        .unwrap();
        let out = store.build(ctx.path(), &["-t", "escape"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {stderr}");
        assert!(stderr.contains(want), "{line}: {stderr}");
    }
    fs::write(
        ctx.path().join("Containerfile"),
        "FROM bb\nCOPY /etc/passwd /from-abs\nCOPY out /link\n",
    )
    .unwrap();
    store.build_ok(ctx.path(), &["-t", "confined"]);
    assert_eq!(
        store
            .run(
                "confined",
                &[
                    "sh",
                    "-c",
                    "cat /from-abs; readlink /link; cat /link/passwd 2>&1 || true"
                ]
            )
            .lines()
            .take(2)
            .collect::<Vec<_>>(),
        ["context passwd", secret.path().to_str().unwrap()]
    );
    store.assert_clean();
}
