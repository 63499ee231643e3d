//! `bosun engine`: the Docker-compatible daemon. Parsed by hand like the other
//! verbs; it builds its tokio runtime itself.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bosun_engine::{Engine, EngineConfig, NetworkConfig, UsernsRemap};
use bosun_image::DEFAULT_DATA_DIR;
use bosun_image::snapshot::LayerMapping;

const USAGE: &str = "\
Usage: bosun engine [--data-dir DIR] [-H unix:///PATH] [--exec-root DIR]
                    [--bridge NAME] [--subnet CIDR] [--nft-table NAME]
                    [--userns-remap default|USER[:GROUP]|UID[:GID]]
                    [--userns-layers auto|idmap|copy] [--max-connections N]

Runs the engine: containers from the image store, served over the Docker
Engine API on a unix socket, so the docker CLI and SDKs work against it
(DOCKER_HOST=unix:///run/bosun/engine.sock). Containers keep running when the
engine stops or dies, and are adopted again when it starts.

Options:
  --data-dir DIR      images, containers, volumes (default /var/lib/bosun)
  -H, --host URL      where to listen (default unix:///run/bosun/engine.sock)
  --exec-root DIR     runtime state and shim sockets (default /run/bosun/engine)
  --bridge NAME       the default network's bridge (default bosun0)
  --subnet CIDR       the default network's subnet (default 10.88.0.0/16)
  --nft-table NAME    the nftables table for NAT rules (default bosun)
  --userns-remap SPEC run every container in a user namespace whose root is
                      an unprivileged host id: the first subordinate id of
                      USER in /etc/subuid and of GROUP (or USER) in
                      /etc/subgid; `default` makes the user bosunremap and
                      its ranges when missing. `--userns=host` on create opts
                      a container out (and is required for --privileged and
                      --network host). Containers and volumes are kept apart
                      per mapping, under DATA-DIR/UID.GID.
  --userns-layers HOW how remapped containers see image layers owned by the
                      mapped ids: `idmap` (idmapped mounts, no copy; Linux
                      5.19+ on a file system that supports them), `copy` (a
                      copy of each layer with shifted owners, made once per
                      mapping and shared, as Docker does), or `auto` (the
                      default: idmap, else copy)
  --max-connections N API connections served at once (default 4096); more
                      wait until one closes
";

pub(crate) fn main(args: &[OsString]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bosun engine: {e:#}");
            1
        }
    }
}

fn run(args: &[OsString]) -> Result<()> {
    let mut data_dir = PathBuf::from(DEFAULT_DATA_DIR);
    let mut host = String::from("unix:///run/bosun/engine.sock");
    let mut exec_root = PathBuf::from("/run/bosun/engine");
    let mut network = NetworkConfig::default();
    let mut userns_remap: Option<UsernsRemap> = None;
    let mut userns_layers = LayerMapping::default();
    let mut max_connections = bosun_engine::DEFAULT_MAX_CONNECTIONS;
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .with_context(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--data-dir" => data_dir = value("--data-dir")?.into(),
            "-H" | "--host" => host = value("--host")?,
            "--exec-root" => exec_root = value("--exec-root")?.into(),
            "--bridge" => network.bridge = value("--bridge")?,
            "--subnet" => {
                let v = value("--subnet")?;
                network.subnet = v.parse().with_context(|| format!("--subnet {v}"))?;
            }
            "--nft-table" => network.nft_table = value("--nft-table")?,
            "--userns-remap" => userns_remap = Some(value("--userns-remap")?.parse()?),
            "--userns-layers" => {
                let v = value("--userns-layers")?;
                userns_layers = v
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--userns-layers {e}"))?;
            }
            "--max-connections" => {
                let v = value("--max-connections")?;
                max_connections = match v.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => bail!("--max-connections {v:?}: a positive number of connections"),
                };
            }
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    let socket = match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => PathBuf::from(p),
        _ => bail!("-H {host:?}: only unix:///absolute/path sockets are served"),
    };
    let exe = std::env::current_exe().context("find this binary")?;
    let engine = Engine::open(EngineConfig {
        data_dir,
        exec_root,
        exe,
        network,
        userns_remap,
        userns_layers,
    })
    .context("open the engine")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        // A socket file left by a killed engine; a live engine would answer.
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            bail!("another engine is serving {}", socket.display());
        }
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("listen on {}", socket.display()))?;
        engine.restore().await;
        eprintln!(
            "bosun engine: serving the Docker API on unix://{}",
            socket.display()
        );
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        bosun_engine::serve(engine, listener, max_connections, shutdown).await;
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })?;
    // Hijacked streams may still hold tasks; containers keep running.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(())
}
