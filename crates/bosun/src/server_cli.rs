//! `bosun server`: the cluster's API server (Kubernetes-compatible, TLS, admin
//! token) over the embedded store or etcd, with the scheduler and the
//! controllers beside it, each acting only while it holds its leader Lease;
//! or (`--kubeconfig`) only those components, against a server elsewhere.
//! Parsed by hand like the other verbs; it builds its tokio runtime itself.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bosun_apiserver::{Config, Server};

const USAGE: &str = "\
Usage: bosun server [--data-dir DIR] [--listen ADDR] [--etcd-endpoints URLS]
                    [--bookmark-interval SECONDS] [--compaction-interval SECONDS]
                    [--token-auth-file FILE] [--components LIST]
                    [--default-not-ready-toleration-seconds SECONDS]
                    [--default-unreachable-toleration-seconds SECONDS]
                    [--node-monitor-grace-period DURATION]
       bosun server --kubeconfig FILE [--components LIST] [--node-monitor-grace-period DURATION]
       bosun server certs [--data-dir DIR] --user NAME [--group GROUP]... --out DIR

Serves the Kubernetes API (what kubectl and client libraries speak) over TLS
until interrupted, with the cluster's components beside it: the scheduler
(binds pending pods to nodes) and the controllers (garbage collector,
ServiceAccounts and the others). The first start makes a CA, an admin token
and DIR/admin.kubeconfig, so that `KUBECONFIG=DIR/admin.kubeconfig kubectl
get nodes` works with no other step.

Several servers may share one etcd: each component acts only while its
server holds the component's Lease in kube-system (kube-scheduler,
kube-controller-manager; 15 s, renewed every 2 s), so one scheduler and one
set of controllers act at a time; another server takes over within the
Lease's duration when the leader dies, and at once when it is stopped (SIGINT,
SIGTERM), since it then gives its Leases up. With --kubeconfig, no API server is
started: the components run as their own process against the server the
kubeconfig names, with the same leader election.

`bosun server certs` issues a client certificate from the server's CA (CN =
NAME, O = each GROUP, as Kubernetes reads them) and writes client.crt,
client.key and a kubeconfig using them into the --out directory. A user
system:node:NAME in the group system:nodes is authorized as that node.

Options:
  --data-dir DIR               store, credentials, kubeconfig (default /var/lib/bosun/server)
  --listen ADDR                where to listen (default 127.0.0.1:6443; port 0 picks one)
  --etcd-endpoints URLS        keep objects in etcd (comma-separated http:// URLs)
                               instead of the embedded store in DIR
  --bookmark-interval SECONDS  how often watches that allow bookmarks get one (default 60)
  --token-auth-file FILE       more bearer tokens, one `token,user,uid[,\"g1,g2\"]`
                               a line (kube-apiserver's format); they are authorized
                               by RBAC, or as nodes for system:node:NAME in system:nodes
  --compaction-interval SECONDS
                               history older than this is compacted away; watches and
                               lists from before it get 410 Gone (default 300)
  --components LIST            which components run: a comma-separated list of
                               `scheduler` and `controllers` (default both), or
                               `none` for the API server alone
  --kubeconfig FILE            run only the components, as clients of the API server
                               (and with the credentials) in FILE
  --default-not-ready-toleration-seconds SECONDS
  --default-unreachable-toleration-seconds SECONDS
                               how long new pods tolerate the node.kubernetes.io/not-ready
                               and unreachable NoExecute taints unless they say (default 60):
                               how long a pod outlives its node's failure
  --node-monitor-grace-period DURATION
                               a node whose Lease and status go unrenewed this long
                               (`40s`, `2m`, or seconds; default 40s) turns NotReady
                               and is tainted unreachable
";

const DEFAULT_DIR: &str = "/var/lib/bosun/server";

pub(crate) fn main(args: &[OsString]) -> i32 {
    if args.first().is_some_and(|a| a == "certs") {
        return certs(&args[1..]);
    }
    match parse(args) {
        Ok(Some((mode, options))) => match serve(mode, options) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("bosun server: {e:#}");
                1
            }
        },
        Ok(None) => {
            print!("{USAGE}");
            0
        }
        Err(msg) => {
            eprintln!("bosun server: {msg}\n\n{USAGE}");
            2
        }
    }
}

/// Which cluster components a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Components {
    scheduler: bool,
    controllers: bool,
}

impl Components {
    const ALL: Components = Components {
        scheduler: true,
        controllers: true,
    };

    fn parse(list: &str) -> Result<Components, String> {
        let mut c = Components {
            scheduler: false,
            controllers: false,
        };
        if list == "none" {
            return Ok(c);
        }
        for name in list.split(',') {
            match name.trim() {
                "scheduler" => c.scheduler = true,
                "controllers" => c.controllers = true,
                other => {
                    return Err(format!(
                        "--components {list:?}: unknown component {other:?} \
                         (want scheduler, controllers, both comma-separated, or none)"
                    ));
                }
            }
        }
        Ok(c)
    }
}

impl std::fmt::Display for Components {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.scheduler, self.controllers) {
            (true, true) => "the scheduler and the controllers",
            (true, false) => "the scheduler",
            (false, true) => "the controllers",
            (false, false) => "no components",
        })
    }
}

/// What `bosun server` was asked to do.
#[derive(Debug)]
enum Mode {
    /// The API server, with these components beside it.
    Serve(Box<Config>, Components),
    /// Only these components, against the API server a kubeconfig names.
    Components(PathBuf, Components),
}

/// The mode and the controllers' options, `None` for `--help`, or what is
/// wrong with the arguments.
fn parse(args: &[OsString]) -> Result<Option<(Mode, bosun_controllers::Options)>, String> {
    let mut dir = PathBuf::from(DEFAULT_DIR);
    let mut listen: SocketAddr = "127.0.0.1:6443".parse().expect("a valid address");
    let mut etcd = None;
    let mut bookmarks = Duration::from_secs(60);
    let mut compaction = Duration::from_secs(300);
    let mut tokens = None;
    let mut components = None;
    let mut kubeconfig = None;
    let mut options = bosun_controllers::Options::default();
    let mut tolerations = (None, None);
    // Flags that configure the API server, which --kubeconfig does not start.
    let mut server_flags = Vec::new();
    let more = each_flag(args, |flag, value| {
        if !matches!(
            flag,
            "--components" | "--kubeconfig" | "--node-monitor-grace-period"
        ) {
            server_flags.push(flag.to_owned());
        }
        match flag {
            "--node-monitor-grace-period" => {
                options.node_lifecycle.grace = duration(flag, &value()?)?;
            }
            "--default-not-ready-toleration-seconds" => {
                tolerations.0 = Some(toleration_seconds(flag, &value()?)?);
            }
            "--default-unreachable-toleration-seconds" => {
                tolerations.1 = Some(toleration_seconds(flag, &value()?)?);
            }
            "--components" => components = Some(Components::parse(&value()?)?),
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--data-dir" => dir = PathBuf::from(value()?),
            "--listen" => {
                let v = value()?;
                listen = v
                    .parse()
                    .map_err(|e| format!("--listen {v:?}: {e} (want IP:PORT)"))?;
            }
            "--etcd-endpoints" => etcd = Some(value()?),
            "--bookmark-interval" => bookmarks = seconds(flag, &value()?)?,
            "--compaction-interval" => compaction = seconds(flag, &value()?)?,
            "--token-auth-file" => tokens = Some(PathBuf::from(value()?)),
            other => return Err(format!("unexpected argument {other:?}")),
        }
        Ok(())
    })?;
    if !more {
        return Ok(None);
    }
    let components = components.unwrap_or(Components::ALL);
    if let Some(path) = kubeconfig {
        if let Some(flag) = server_flags.first() {
            return Err(format!(
                "{flag} configures the API server, which --kubeconfig says runs elsewhere"
            ));
        }
        if components == Components::parse("none")? {
            return Err("--kubeconfig with --components none would run nothing".to_owned());
        }
        return Ok(Some((Mode::Components(path, components), options)));
    }
    let mut config = Config::new(dir, listen);
    config.etcd_endpoints = etcd;
    config.bookmark_interval = bookmarks;
    config.compaction_interval = compaction;
    config.token_auth_file = tokens;
    if let Some(s) = tolerations.0 {
        config.default_not_ready_toleration_seconds = s;
    }
    if let Some(s) = tolerations.1 {
        config.default_unreachable_toleration_seconds = s;
    }
    Ok(Some((Mode::Serve(Box::new(config), components), options)))
}

/// `bosun server certs`.
fn certs(args: &[OsString]) -> i32 {
    let parsed = parse_certs(args);
    let (dir, user, groups, out) = match parsed {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(msg) => {
            eprintln!("bosun server certs: {msg}\n\n{USAGE}");
            return 2;
        }
    };
    match bosun_apiserver::write_client_credentials(&dir, &user, &groups, &out) {
        Ok(path) => {
            println!("{}", path.display());
            0
        }
        Err(e) => {
            eprintln!("bosun server certs: {e}");
            1
        }
    }
}

type CertArgs = (PathBuf, String, Vec<String>, PathBuf);

fn parse_certs(args: &[OsString]) -> Result<Option<CertArgs>, String> {
    let mut dir = PathBuf::from(DEFAULT_DIR);
    let (mut user, mut groups, mut out) = (None, Vec::new(), None);
    let more = each_flag(args, |flag, value| {
        match flag {
            "--data-dir" => dir = PathBuf::from(value()?),
            "--user" => user = Some(value()?),
            "--group" => groups.push(value()?),
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unexpected argument {other:?}")),
        }
        Ok(())
    })?;
    if !more {
        return Ok(None);
    }
    let user = user.ok_or("--user is required")?;
    let out = out.ok_or("--out is required")?;
    Ok(Some((dir, user, groups, out)))
}

/// Walks `--flag value` and `--flag=value` arguments, calling `on` with each
/// flag and a function that takes its value. `Ok(false)` means `--help`.
fn each_flag(
    args: &[OsString],
    mut on: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<(), String>,
) -> Result<bool, String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        if matches!(flag, "-h" | "--help") {
            return Ok(false);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().and_then(|v| v.to_str()).map(str::to_owned))
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        on(flag, &mut value)?;
    }
    Ok(true)
}

/// A duration as Kubernetes' flags spell it (`40s`, `2m`, `1h`), or bare seconds.
fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => v.split_at(at),
        None => (v, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    num.parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && scale > 0)
        .map(|n| Duration::from_secs(n * scale))
        .ok_or_else(|| format!("{flag} {v:?}: want a duration > 0 such as 40s, 2m or 1h"))
}

/// `tolerationSeconds`: whole seconds, 0 (evict at once) or more.
fn toleration_seconds(flag: &str, v: &str) -> Result<i64, String> {
    v.parse::<u32>()
        .map(i64::from)
        .map_err(|_| format!("{flag} {v:?}: want whole seconds, 0 or more"))
}

fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{flag} {v:?}: want whole seconds > 0"))
}

fn serve(mode: Mode, options: bosun_controllers::Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (config, components) = match mode {
            Mode::Serve(config, components) => (config, components),
            Mode::Components(path, components) => {
                let config = bosun_client::Config::from_kubeconfig(&path)?;
                let client = bosun_client::Client::new(&config)?;
                let me = identity(&std::process::id().to_string());
                println!(
                    "bosun server: running {components} against {} as {me}",
                    config.server
                );
                let _ = std::io::stdout().flush();
                run_components(client.clone(), components, me.clone(), options, shutdown()).await;
                release_leases(&client, &me).await;
                return Ok(());
            }
        };
        let dir = config.data_dir.clone();
        let server = Server::bind(*config)
            .await
            .with_context(|| format!("data dir {}", dir.display()))?;
        println!(
            "bosun server: listening on https://{} (kubeconfig {})",
            server.local_addr(),
            server.kubeconfig().display()
        );
        // The components are clients of this server like any other, with a
        // token made for them.
        let creds = server.component_credentials();
        let client = bosun_client::Client::new(&bosun_client::Config {
            server: creds.server,
            ca_pem: creds.ca_pem,
            auth: bosun_client::Auth::Token(creds.token),
        })
        .context("the components' client")?;
        let me = identity(&server.local_addr().to_string());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(run_components(
            client.clone(),
            components,
            me.clone(),
            options,
            async {
                let _ = stopped.await;
            },
        ));
        // Tests and scripts wait for this line.
        let _ = std::io::stdout().flush();
        // On SIGTERM the components stop and give up their Leases while the
        // server still serves, so a restarted or other server takes over at once.
        server
            .run(async {
                shutdown().await;
                let _ = stop.send(());
                let _ = running.await;
                release_leases(&client, &me).await;
            })
            .await;
        Ok(())
    })
}

/// A leader-election identity unique to this process: the host, what
/// tells its servers apart (the API server's address, or the pid), and the
/// start time, so a restarted process never passes for its predecessor.
fn identity(which: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{host}_{which}_{started:x}")
}

/// The Leases the components elect their leaders with.
const SCHEDULER_LEASE: &str = "kube-scheduler";
const CONTROLLERS_LEASE: &str = "kube-controller-manager";

/// Gives up whichever of the components' Leases this process holds.
async fn release_leases(client: &bosun_client::Client, me: &str) {
    for lease in [SCHEDULER_LEASE, CONTROLLERS_LEASE] {
        if let Err(e) = bosun_client::leader::release(client, "kube-system", lease, me).await {
            eprintln!("bosun server: releasing the {lease} lease: {e}");
        }
    }
}

/// Runs the chosen components, each only while this process leads it,
/// until `stop` completes; then stops them and waits until they have, so
/// that none renews a Lease after this returns.
async fn run_components(
    client: bosun_client::Client,
    which: Components,
    me: String,
    options: bosun_controllers::Options,
    stop: impl Future<Output = ()>,
) {
    use bosun_client::leader::run_while_leader;
    // Tasks of their own, so the scheduler and the controllers work on
    // different threads at once; dropping this future aborts both.
    let mut parts = tokio::task::JoinSet::new();
    if which.scheduler {
        let (client, me) = (client.clone(), me.clone());
        parts.spawn(async move {
            run_while_leader(client.clone(), "kube-system", SCHEDULER_LEASE, &me, || {
                bosun_scheduler::run(client.clone(), bosun_scheduler::Options::default())
            })
            .await;
        });
    }
    if which.controllers {
        parts.spawn(async move {
            run_while_leader(
                client.clone(),
                "kube-system",
                CONTROLLERS_LEASE,
                &me,
                || bosun_controllers::run_with(client.clone(), options.clone()),
            )
            .await;
        });
    }
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            done = parts.join_next() => if done.is_none() {
                // Neither chosen (or both ended): nothing to do but wait.
                (&mut stop).await;
                break;
            },
        }
    }
    parts.shutdown().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn components() {
        let which = |a: &[&str]| match parse(&args(a)).unwrap().unwrap().0 {
            Mode::Serve(_, w) => (None, w),
            Mode::Components(p, w) => (Some(p), w),
        };
        let only = |scheduler, controllers| Components {
            scheduler,
            controllers,
        };
        assert_eq!(
            which(&["--components", "controllers"]),
            (None, only(false, true))
        );
        assert_eq!(
            which(&["--components=scheduler,controllers"]),
            (None, Components::ALL)
        );
        assert_eq!(which(&["--components", "none"]), (None, only(false, false)));
        assert_eq!(
            which(&["--kubeconfig", "k", "--components", "scheduler"]),
            (Some(PathBuf::from("k")), only(true, false))
        );
        assert_eq!(
            which(&["--kubeconfig", "k"]),
            (Some(PathBuf::from("k")), Components::ALL)
        );
        let err = |a: &[&str]| parse(&args(a)).unwrap_err();
        assert!(
            err(&["--components", "scheduler,kubelet"]).contains("unknown component \"kubelet\""),
            "{}",
            err(&["--components", "scheduler,kubelet"])
        );
        assert!(err(&["--components", ""]).contains("unknown component"));
        assert!(
            err(&["--kubeconfig", "k", "--listen", "127.0.0.1:1"])
                .contains("--listen configures the API server")
        );
        assert!(err(&["--kubeconfig", "k", "--components", "none"]).contains("run nothing"));
    }

    #[test]
    fn node_lifecycle_flags() {
        let (mode, options) = parse(&args(&[
            "--node-monitor-grace-period",
            "5s",
            "--default-unreachable-toleration-seconds=10",
            "--default-not-ready-toleration-seconds",
            "0",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(options.node_lifecycle.grace, Duration::from_secs(5));
        let Mode::Serve(c, _) = mode else {
            panic!("not serving")
        };
        assert_eq!(c.default_unreachable_toleration_seconds, 10);
        assert_eq!(c.default_not_ready_toleration_seconds, 0);
        let (_, options) = parse(&args(&["--node-monitor-grace-period=2m"]))
            .unwrap()
            .unwrap();
        assert_eq!(options.node_lifecycle.grace, Duration::from_secs(120));
        // The grace period is the controllers': it goes with --kubeconfig.
        let (mode, options) = parse(&args(&[
            "--kubeconfig",
            "k",
            "--node-monitor-grace-period",
            "7",
        ]))
        .unwrap()
        .unwrap();
        assert!(matches!(mode, Mode::Components(..)));
        assert_eq!(options.node_lifecycle.grace, Duration::from_secs(7));
        for bad in [
            ["--node-monitor-grace-period", "0s"],
            ["--node-monitor-grace-period", "5x"],
            ["--default-unreachable-toleration-seconds", "-1"],
        ] {
            let err = parse(&args(&bad)).unwrap_err();
            assert!(err.contains(bad[0]), "{err}");
        }
        assert!(
            parse(&args(&[
                "--kubeconfig",
                "k",
                "--default-unreachable-toleration-seconds",
                "1"
            ]))
            .unwrap_err()
            .contains("configures the API server")
        );
    }

    #[test]
    fn flags() {
        let serve = |a: &[&str]| match parse(&args(a)).unwrap().unwrap().0 {
            Mode::Serve(c, which) => (c, which),
            Mode::Components(..) => panic!("not serving"),
        };
        let (c, which) = serve(&["--data-dir", "/tmp/x", "--listen=127.0.0.1:0"]);
        assert_eq!(which, Components::ALL);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.listen.port(), 0);
        assert!(parse(&args(&["--help"])).unwrap().is_none());
        assert!(parse(&args(&["--listen", "nope"])).is_err());
        assert!(parse(&args(&["--bookmark-interval", "0"])).is_err());
        let (c, _) = serve(&["--compaction-interval=7"]);
        assert_eq!(c.compaction_interval, Duration::from_secs(7));
        assert!(parse(&args(&["--data-dir"])).is_err());
        assert!(parse(&args(&["extra"])).is_err());
        let (_, user, groups, out) = parse_certs(&args(&[
            "--user",
            "jane",
            "--group=dev",
            "--group",
            "ops",
            "--out",
            "/tmp/o",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((user.as_str(), out), ("jane", PathBuf::from("/tmp/o")));
        assert_eq!(groups, ["dev", "ops"]);
        assert!(parse_certs(&args(&["--user", "jane"])).is_err());
        assert!(parse_certs(&args(&["--out", "x"])).is_err());
    }
}
