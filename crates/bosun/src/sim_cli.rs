//! `bosun sim-nodes`: simulated nodes (crates/simnodes) against a cluster
//! named by a kubeconfig, until interrupted. Parsed by hand like `server`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use bosun_simnodes::{Options, SimNodes};

const USAGE: &str = "\
Usage: bosun sim-nodes --kubeconfig FILE --count N [--prefix NAME]
                       [--cpu 8] [--memory 32Gi] [--pods 110] [--ephemeral-storage 100Gi]
                       [--pod-cidr CIDR] [--node-cidr-mask 24] [--cleanup]

Registers N simulated nodes NAME-0 … NAME-(N-1) (like KWOK) and keeps them
alive as kubelets would, without running anything: their Leases in
kube-node-lease are renewed every 10 s (spread over the interval), their status
every 5 minutes; pods bound to them go Running with an address from the node's
pod CIDR and every condition True; a pod being deleted is removed. Until
interrupted (SIGINT, SIGTERM).

  A node annotated sim.bosun.dev/heartbeat=stop stops heart-beating (and
  running pods) until the annotation is removed; it then reports Ready again.
  A pod annotated sim.bosun.dev/exit-code=N exits with N after 1 s: with
  restartPolicy Never it ends (Succeeded for 0, Failed otherwise); with
  OnFailure (N != 0) or Always its containers restart (restartCount + 1) and
  exit again after the kubelet's back-off (10 s, doubling to 5 minutes).

Options:
  --kubeconfig FILE        the cluster and credentials (its current context)
  --count N                how many nodes (at least 1)
  --prefix NAME            node names' prefix (default sim)
  --cpu, --memory, --pods, --ephemeral-storage
                           each node's capacity and allocatable
                           (default 8, 32Gi, 110, 100Gi)
  --pod-cidr CIDR          the range node pod CIDRs come from (default
                           10.42.0.0/16 up to 256 nodes, 10.128.0.0/9 beyond);
                           blocks other nodes hold are skipped
  --node-cidr-mask LEN     each node's pod CIDR prefix length (default 24)
  --cleanup                delete the nodes (and their Leases) when stopped
";

struct Args {
    kubeconfig: PathBuf,
    options: Options,
    cleanup: bool,
}

pub(crate) fn main(args: &[OsString]) -> i32 {
    match parse(args) {
        Ok(Some(a)) => match run(a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("bosun sim-nodes: {e:#}");
                1
            }
        },
        Ok(None) => {
            print!("{USAGE}");
            0
        }
        Err(msg) => {
            eprintln!("bosun sim-nodes: {msg}\n\n{USAGE}");
            2
        }
    }
}

/// The arguments, `None` for `--help`, or what is wrong with them.
fn parse(args: &[OsString]) -> Result<Option<Args>, String> {
    let mut kubeconfig = None;
    let mut count = None;
    let mut options = Options::new(0);
    let mut cleanup = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().and_then(|v| v.to_str()).map(str::to_owned))
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u32>()
                .map_err(|_| format!("{flag} {v:?}: want a whole number"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            "--count" => count = Some(number(value()?)?),
            "--prefix" => options.prefix = value()?,
            "--cpu" => options.capacity.cpu = value()?,
            "--memory" => options.capacity.memory = value()?,
            "--pods" => options.capacity.pods = number(value()?)?,
            "--ephemeral-storage" => options.capacity.ephemeral_storage = value()?,
            "--pod-cidr" => {
                let v = value()?;
                options.pod_cidr = Some(v.parse().map_err(|e| format!("--pod-cidr: {e}"))?);
            }
            "--node-cidr-mask" => {
                let v = value()?;
                options.node_cidr_mask = v
                    .parse()
                    .map_err(|_| format!("--node-cidr-mask {v:?}: want a prefix length"))?;
            }
            "--cleanup" if inline.is_none() => cleanup = true,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let kubeconfig = kubeconfig.ok_or("--kubeconfig is required")?;
    options.count = count.ok_or("--count is required")?;
    options.check().map_err(|e| e.to_string())?;
    Ok(Some(Args {
        kubeconfig,
        options,
        cleanup,
    }))
}

fn run(args: Args) -> Result<()> {
    let config = bosun_client::Config::from_kubeconfig(&args.kubeconfig)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = bosun_client::Client::new(&config)?;
        let mut sim = tokio::select! {
            sim = SimNodes::register(client, &args.options) => sim?,
            () = shutdown() => return Ok(()),
        };
        let o = &args.options;
        println!(
            "bosun sim-nodes: {} nodes {} … {} registered on {} (interrupt to stop)",
            o.count,
            o.node_name(0),
            o.node_name(o.count - 1),
            config.server
        );
        // Tests and scripts wait for this line.
        let _ = std::io::stdout().flush();
        sim.run(shutdown()).await;
        if args.cleanup {
            sim.cleanup().await?;
            println!("bosun sim-nodes: deleted {} nodes", o.count);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(a: &[&str]) -> Result<Option<Args>, String> {
        parse(&a.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn flags() {
        let a = parsed(&[
            "--kubeconfig",
            "k",
            "--count=5",
            "--prefix",
            "n",
            "--memory",
            "8Gi",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.kubeconfig, PathBuf::from("k"));
        assert_eq!(a.options.count, 5);
        assert_eq!(a.options.node_name(4), "n-4");
        assert_eq!(a.options.capacity.memory, "8Gi");
        assert!(!a.cleanup);
        assert!(parsed(&["--help"]).unwrap().is_none());
        let e = |a: &[&str]| parsed(a).err().unwrap();
        assert_eq!(e(&["--count", "5"]), "--kubeconfig is required");
        assert_eq!(e(&["--kubeconfig", "k"]), "--count is required");
        assert_eq!(
            e(&["--kubeconfig", "k", "--count", "0"]),
            "--count must be at least 1"
        );
        assert!(e(&["--kubeconfig", "k", "--count", "x"]).contains("want a whole number"));
        assert!(e(&["--kubeconfig", "k", "--count", "1", "--cpu", "lots"]).starts_with("--cpu:"));
        assert!(
            e(&[
                "--kubeconfig",
                "k",
                "--count",
                "1",
                "--pod-cidr",
                "10.1.2.3/8"
            ])
            .contains("host bits")
        );
        assert!(e(&["--kubeconfig", "k", "--count", "1", "--cleanup=yes"]).contains("unexpected"));
        assert!(e(&["--kubeconfig"]).contains("needs a value"));
    }
}
