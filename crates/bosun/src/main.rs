//! The `bosun` binary.
//!
//! The runc-compatible runtime is dispatched first, before anything else runs:
//! it forks and changes namespaces, which needs a single-threaded process.
#![allow(clippy::print_stdout, reason = "a CLI prints its results")]

mod build_cli;
mod container_cli;
mod container_fmt;
mod engine_cli;
mod engine_client;
mod image_cli;
mod registry_cli;
mod runc_args;
mod runtime_cli;
mod server_cli;
mod sim_cli;

use std::ffi::OsString;
use std::path::Path;

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if invoked_as == "bosun-runc" || invoked_as == "runc" {
        std::process::exit(runtime_cli::main(args));
    }
    // The engine's supervisors fork containers too: single-threaded, first, and
    // (like the runtime's create/run/exec) from a binary no container can write
    // through.
    let verb = args.get(1).and_then(|a| a.to_str());
    if matches!(verb, Some("engine-shim" | "engine-exec"))
        && let Err(e) = bosun_runtime::reexec_protected()
    {
        eprintln!("bosun: {e}");
        std::process::exit(1);
    }
    match verb {
        Some("engine-shim") => {
            let config = args.get(2).map(|a| a.to_string_lossy().into_owned());
            std::process::exit(bosun_engine::shim_main(&config.unwrap_or_default()));
        }
        Some("engine-exec") => {
            let config = args.get(2).map(|a| a.to_string_lossy().into_owned());
            std::process::exit(bosun_engine::exec_main(&config.unwrap_or_default()));
        }
        _ => {}
    }
    if args.get(1).is_some_and(|a| a == "runtime") {
        args.remove(1);
        args[0] = OsString::from("bosun runtime");
        std::process::exit(runtime_cli::main(args));
    }
    std::process::exit(top_level(&args));
}

fn top_level(args: &[OsString]) -> i32 {
    match args.get(1).and_then(|a| a.to_str()) {
        Some("version" | "--version" | "-V") => {
            println!("bosun {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("image") => image_cli::main(&args[2..]),
        Some("build") => build_cli::main(&args[2..]),
        Some("registry") => registry_cli::registry(&args[2..]),
        Some("engine") => engine_cli::main(&args[2..]),
        Some("pull") => registry_cli::pull(&args[2..]),
        Some("push") => registry_cli::push(&args[2..]),
        Some("server") => server_cli::main(&args[2..]),
        Some("sim-nodes") => sim_cli::main(&args[2..]),
        Some("-H" | "--host") => container_cli::with_host(&args[1..]),
        Some(h) if h.starts_with("--host=") => container_cli::with_host(&args[1..]),
        Some(verb) if container_cli::VERBS.contains(&verb) => container_cli::main(verb, &args[2..]),
        // `bosun help VERB` is `bosun VERB --help`.
        Some("help") if args.get(2).is_some_and(|v| v != "help") => {
            top_level(&[args[0].clone(), args[2].clone(), "--help".into()])
        }
        Some("help" | "--help" | "-h") | None => {
            println!(
                "bosun {}: containers and clusters in one binary\n\n\
                 Usage:\n  bosun runtime <runc arguments>   the OCI runtime (also installed as bosun-runc)\n  \
                 bosun image <command>            images: import, ls, inspect, tag, rm, save, load, prune, unpack\n  \
                 bosun build [options] CONTEXT    build an image from a Containerfile\n  \
                 bosun pull NAME / push NAME      move images to and from registries\n  \
                 bosun registry [options]         serve images (OCI distribution API); `gc`\n  \
                 bosun engine [options]           the Docker-compatible engine daemon\n  \
                 bosun [-H URL] VERB [options]    containers through the engine (BOSUN_HOST, default\n  \
                 \x20                                unix:///run/bosun/engine.sock): run, create, start,\n  \
                 \x20                                stop, restart, kill, pause, unpause, rm, rename, ps,\n  \
                 \x20                                logs, exec, attach, wait, port, inspect, top, stats,\n  \
                 \x20                                events, images, rmi, tag, volume, network,\n  \
                 \x20                                cp, container, system, info\n  \
                 bosun server [options]           the cluster API server kubectl talks to\n  \
                 bosun sim-nodes [options]        simulated nodes for a cluster (like KWOK)\n  \
                 bosun version\n",
                env!("CARGO_PKG_VERSION")
            );
            0
        }
        Some(other) => {
            eprintln!("bosun: unknown command {other:?}; see `bosun help`");
            2
        }
    }
}
