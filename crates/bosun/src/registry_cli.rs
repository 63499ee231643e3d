//! `bosun registry` (serve, gc), `bosun pull` and `bosun push`. Parsed by
//! hand like the other verbs; each builds its tokio runtime itself, so
//! nothing else in the binary starts a thread.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bosun_image::{DEFAULT_DATA_DIR, ImageStore};
use bosun_oci::{Digest, ImageRef};
use bosun_registry::{
    Client, ClientError, ClientOptions, Credentials, Outcome, Platform, Progress, Server,
    ServerConfig, Storage, TlsFiles,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

const REGISTRY_USAGE: &str = "\
Usage: bosun registry [--addr ADDR] [--data-dir DIR] [--htpasswd FILE]
                      [--tls-cert FILE --tls-key FILE]
       bosun registry gc [--data-dir DIR]

Serves the OCI distribution API (what `docker push`, skopeo and bosun pull and
push speak) from DIR until interrupted; `gc` deletes blobs no manifest uses
(refused while a server runs on DIR).

Options:
  --addr ADDR          where to listen (default 127.0.0.1:5000; port 0 picks one)
  --data-dir DIR       the registry's storage (default /var/lib/bosun/registry)
  --htpasswd FILE      require basic authentication against bcrypt entries (htpasswd -B)
  --tls-cert FILE      serve HTTPS with this PEM certificate chain ...
  --tls-key FILE       ... and this PEM private key
";

const PULL_USAGE: &str = "\
Usage: bosun pull [--data-dir DIR] [--insecure] [--creds USER:PASSWORD]
                  [--platform OS/ARCH] [-q] NAME[:TAG][@DIGEST]

Fetches an image from its registry into the local store and tags it; prints
the manifest digest. Registries on loopback are spoken to over HTTP, others
over HTTPS unless --insecure.

Options:
  --data-dir DIR              the image store (default /var/lib/bosun)
  --insecure                  plain HTTP for any registry
  --creds USER:PASSWORD       credentials (default: ~/.docker/config.json `auths`)
  --platform OS/ARCH          which image of a multi-platform one (default linux/amd64)
  -q, --quiet                 no progress, only the digest
";

const PUSH_USAGE: &str = "\
Usage: bosun push [--data-dir DIR] [--insecure] [--creds USER:PASSWORD] [-q] NAME [DEST]

Sends an image of the local store to a registry (to DEST, or to where NAME
says); prints the manifest digest, which is the same on both sides.

Options:
  --data-dir DIR              the image store (default /var/lib/bosun)
  --insecure                  plain HTTP for any registry
  --creds USER:PASSWORD       credentials (default: ~/.docker/config.json `auths`)
  -q, --quiet                 no progress, only the digest
";

/// Where `bosun registry` keeps its data unless told otherwise.
const DEFAULT_REGISTRY_DIR: &str = "/var/lib/bosun/registry";

/// A mistake in the command line (exit 2), as opposed to a failure (exit 1).
#[derive(Debug)]
struct Usage(String);

#[derive(Debug, Default)]
struct Args {
    values: HashMap<&'static str, String>,
    insecure: bool,
    quiet: bool,
    help: bool,
    positionals: Vec<String>,
}

/// The flags a verb takes: those with a value, and whether the switches are allowed.
struct Spec {
    name: &'static str,
    usage: &'static str,
    valued: &'static [&'static str],
    switches: bool,
}

const REGISTRY: Spec = Spec {
    name: "registry",
    usage: REGISTRY_USAGE,
    valued: &[
        "--addr",
        "--data-dir",
        "--htpasswd",
        "--tls-cert",
        "--tls-key",
    ],
    switches: false,
};
const PULL: Spec = Spec {
    name: "pull",
    usage: PULL_USAGE,
    valued: &["--data-dir", "--creds", "--platform"],
    switches: true,
};
const PUSH: Spec = Spec {
    name: "push",
    usage: PUSH_USAGE,
    valued: &["--data-dir", "--creds"],
    switches: true,
};

pub(crate) fn registry(args: &[OsString]) -> i32 {
    run_verb(&REGISTRY, args, |a| {
        if a.positionals.first().map(String::as_str) == Some("gc") {
            if a.positionals.len() > 1 || a.values.keys().any(|k| *k != "--data-dir") {
                return Ok(Err(Usage("`gc` takes only --data-dir".into())));
            }
            return gc(a).map(Ok);
        }
        if let Some(extra) = a.positionals.first() {
            return Ok(Err(Usage(format!("unexpected argument {extra:?}"))));
        }
        serve(a)
    })
}

pub(crate) fn pull(args: &[OsString]) -> i32 {
    run_verb(&PULL, args, |a| {
        let [name] = a.positionals.as_slice() else {
            return Ok(Err(Usage("give one image name".into())));
        };
        let reference = match name.parse::<ImageRef>() {
            Ok(r) => r,
            Err(e) => return Ok(Err(Usage(e.to_string()))),
        };
        let platform = match a.values.get("--platform").map(|p| p.parse::<Platform>()) {
            None => Platform::default(),
            Some(Ok(p)) => p,
            Some(Err(e)) => return Ok(Err(Usage(e.to_string()))),
        };
        let store = open_store(a)?;
        let client = client(a, reference.registry())?;
        let progress = Bars::new("pulled", a.quiet);
        let digest =
            runtime()?.block_on(client.pull(&store, &reference, &platform, progress.clone()))?;
        progress.done();
        println!("{digest}");
        Ok(Ok(0))
    })
}

pub(crate) fn push(args: &[OsString]) -> i32 {
    run_verb(&PUSH, args, |a| {
        let (source, dest) = match a.positionals.as_slice() {
            [name] => (name, name),
            [name, dest] => (name, dest),
            _ => return Ok(Err(Usage("give NAME and, optionally, DEST".into()))),
        };
        let dest = match dest.parse::<ImageRef>() {
            Ok(r) => r,
            Err(e) => return Ok(Err(Usage(e.to_string()))),
        };
        let store = open_store(a)?;
        let client = client(a, dest.registry())?;
        let progress = Bars::new("pushed", a.quiet);
        let digest = runtime()?.block_on(client.push(&store, source, &dest, progress.clone()))?;
        progress.done();
        println!("{digest}");
        Ok(Ok(0))
    })
}

/// Parses, prints usage or help, runs, and maps the outcome to an exit code.
fn run_verb(
    spec: &Spec,
    raw: &[OsString],
    run: impl FnOnce(&Args) -> Result<Result<i32, Usage>>,
) -> i32 {
    let usage = |msg: &str| {
        eprintln!("bosun {}: {msg}\n\n{}", spec.name, spec.usage);
        2
    };
    let args = match parse(spec, raw) {
        Ok(a) => a,
        Err(Usage(msg)) => return usage(&msg),
    };
    if args.help {
        print!("{}", spec.usage);
        return 0;
    }
    match run(&args) {
        Ok(Ok(code)) => code,
        Ok(Err(Usage(msg))) => usage(&msg),
        Err(e) => {
            eprintln!("bosun {}: {e:#}", spec.name);
            1
        }
    }
}

fn parse(spec: &Spec, raw: &[OsString]) -> Result<Args, Usage> {
    let mut args = Args::default();
    let mut it = raw.iter();
    let mut only_positionals = false;
    while let Some(arg) = it.next() {
        let Some(arg) = arg.to_str() else {
            return Err(Usage(format!("argument {arg:?} is not UTF-8")));
        };
        if only_positionals || !arg.starts_with('-') {
            args.positionals.push(arg.to_owned());
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        if let Some(name) = spec.valued.iter().find(|v| **v == flag) {
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .and_then(|v| v.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| Usage(format!("{flag} needs a value")))?,
            };
            args.values.insert(name, value);
            continue;
        }
        match flag {
            "--" => only_positionals = true,
            "-h" | "--help" => args.help = true,
            "--insecure" if spec.switches => args.insecure = true,
            "-q" | "--quiet" if spec.switches => args.quiet = true,
            other => return Err(Usage(format!("unknown flag {other:?}"))),
        }
    }
    Ok(args)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(a: &Args) -> Result<Result<i32, Usage>> {
    let addr: SocketAddr = match a
        .values
        .get("--addr")
        .map_or("127.0.0.1:5000", String::as_str)
        .parse()
    {
        Ok(addr) => addr,
        Err(e) => return Ok(Err(Usage(format!("--addr: {e} (want IP:PORT)")))),
    };
    let tls = match (a.values.get("--tls-cert"), a.values.get("--tls-key")) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        _ => return Ok(Err(Usage("--tls-cert and --tls-key go together".into()))),
    };
    let data_dir = registry_dir(a);
    let config = ServerConfig {
        addr,
        data_dir: data_dir.clone(),
        htpasswd: a.values.get("--htpasswd").map(PathBuf::from),
        tls,
        max_connections: bosun_registry::DEFAULT_MAX_CONNECTIONS,
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    runtime()?.block_on(async {
        let server = Server::bind(config).await?;
        println!(
            "bosun registry: listening on {scheme}://{} (data in {})",
            server.local_addr(),
            data_dir.display()
        );
        // Tests and scripts wait for this line.
        let _ = std::io::stdout().flush();
        server.run(shutdown()).await;
        Ok(Ok(0))
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn gc(a: &Args) -> Result<i32> {
    let dir = registry_dir(a);
    let storage = Storage::open(&dir).with_context(|| format!("data dir {}", dir.display()))?;
    // Uploads untouched for a day are abandoned; younger ones may still resume.
    let report = storage.gc(Duration::from_secs(24 * 3600))?;
    for d in &report.blobs_deleted {
        println!("Deleted: {d}");
    }
    eprintln!(
        "bosun registry gc: {} blobs deleted ({}), {} repository links, {} stale uploads, {} temp files removed",
        report.blobs_deleted.len(),
        human_bytes(report.bytes_freed),
        report.links_removed,
        report.uploads_removed,
        report.temp_files_removed
    );
    Ok(0)
}

fn registry_dir(a: &Args) -> PathBuf {
    a.values
        .get("--data-dir")
        .map_or_else(|| PathBuf::from(DEFAULT_REGISTRY_DIR), PathBuf::from)
}

fn open_store(a: &Args) -> Result<ImageStore> {
    let dir = a
        .values
        .get("--data-dir")
        .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from);
    ImageStore::open(&dir).with_context(|| format!("data dir {}", dir.display()))
}

/// Credentials from `--creds`, else from Docker's config file for `registry`.
fn client(a: &Args, registry: &str) -> Result<Client> {
    let credentials = match a.values.get("--creds") {
        Some(c) => Some(Credentials::parse(c).context("--creds: want USER:PASSWORD")?),
        None => docker_config()
            .map(|path| Credentials::from_docker_config(&path, registry))
            .transpose()
            .map_err(anyhow::Error::msg)?
            .flatten(),
    };
    Ok(Client::new(ClientOptions {
        insecure: a.insecure,
        credentials,
        retry_delay: None,
    })?)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Progress on stderr: a bar per blob on a terminal, else one line per blob
/// when it is done (and one per retry).
struct Bars {
    verb: &'static str,
    multi: Option<MultiProgress>,
    quiet: bool,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    sizes: Mutex<HashMap<Digest, u64>>,
}

impl Bars {
    fn new(verb: &'static str, quiet: bool) -> Arc<Self> {
        let terminal = !quiet && std::io::stderr().is_terminal();
        Arc::new(Self {
            verb,
            multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            quiet,
            bars: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
        })
    }

    fn say(&self, line: String) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn done(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

impl Progress for Bars {
    fn start(&self, digest: &Digest, size: u64) {
        self.sizes
            .lock()
            .expect("progress sizes")
            .insert(digest.clone(), size);
        let Some(multi) = &self.multi else { return };
        let mut bars = self.bars.lock().expect("progress bars");
        if let Some(bar) = bars.get(digest) {
            bar.set_position(0);
            return;
        }
        let bar = multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(short(digest).to_owned());
        bars.insert(digest.clone(), bar);
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        if let Some(bar) = self.bars.lock().expect("progress bars").get(digest) {
            bar.inc(bytes);
        }
    }

    fn finish(&self, digest: &Digest, outcome: &Outcome) {
        let size = self.sizes.lock().expect("progress sizes").remove(digest);
        if let Some(bar) = self.bars.lock().expect("progress bars").remove(digest) {
            bar.finish_and_clear();
        }
        let what = match outcome {
            Outcome::Transferred => match size {
                Some(n) => format!("{} {}", self.verb, human_bytes(n)),
                None => self.verb.to_owned(),
            },
            Outcome::Present => "already there".to_owned(),
            Outcome::Mounted(from) => format!("mounted from {from}"),
        };
        self.say(format!("{}: {what}", short(digest)));
    }

    fn retry(&self, digest: &Digest, attempt: u32, error: &ClientError) {
        self.say(format!(
            "{}: attempt {attempt} failed, retrying: {error}",
            short(digest)
        ));
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
