//! `cargo xtask layers`: enforce the dependency rule of ARCHITECTURE.md.
//! `cargo xtask openapi DEFS`: regenerate the API server's schemas (see [`openapi`]).
//!
//! Reads `cargo metadata` and fails when a crate depends on a bosun crate that is
//! not above it in the layer table, when an edge-only crate (clap, anyhow,
//! tracing-subscriber) is used outside the binary, when the runtime pulls in
//! tokio, when testkit is a normal dependency, or when `unsafe` appears outside
//! a `sys` module of the crates allowed to have one.
#![allow(clippy::print_stdout, reason = "a developer tool prints its findings")]

use std::path::Path;
use std::process::{Command, ExitCode};

use serde_json::Value;

mod openapi;

/// Layer table: crate → bosun crates it may depend on. Keep in step with
/// ARCHITECTURE.md and ../shared/DESIGN.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("bosun-oci", &[]),
    ("bosun-api", &["bosun-oci"]),
    ("bosun-runtime", &["bosun-oci"]),
    ("bosun-net", &["bosun-oci"]),
    ("bosun-image", &["bosun-oci", "bosun-runtime"]),
    ("bosun-store", &["bosun-oci", "bosun-api"]),
    ("bosun-registry", &["bosun-oci", "bosun-image"]),
    (
        "bosun-engine",
        &[
            "bosun-oci",
            "bosun-runtime",
            "bosun-image",
            "bosun-registry",
            "bosun-net",
        ],
    ),
    ("bosun-client", &["bosun-api"]),
    ("bosun-apiserver", &["bosun-api", "bosun-store"]),
    ("bosun-scheduler", &["bosun-api", "bosun-client"]),
    ("bosun-controllers", &["bosun-api", "bosun-client"]),
    ("bosun-simnodes", &["bosun-api", "bosun-client"]),
    (
        "bosun-agent",
        &["bosun-api", "bosun-client", "bosun-engine", "bosun-net"],
    ),
    ("bosun", &["*"]),
    ("bosun-testkit", &["*"]),
];

/// Crates that only the binary may use.
const EDGE_ONLY: &[&str] = &["clap", "anyhow", "tracing-subscriber"];
/// Crates that may contain `unsafe`, and only under `src/sys`.
const UNSAFE_ALLOWED: &[&str] = &["bosun-runtime", "bosun-net", "bosun-image"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "layers" => match layers() {
            Ok(()) => {
                println!("layers: ok");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("layers: {p}");
                }
                ExitCode::FAILURE
            }
        },
        "openapi" => match openapi::generate(std::env::args().nth(2).as_deref()) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("openapi: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask layers | cargo xtask openapi PATH/_definitions.json");
            ExitCode::from(2)
        }
    }
}

fn layers() -> Result<(), Vec<String>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| vec![format!("cargo metadata: {e}")])?;
    if !out.status.success() {
        return Err(vec![format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )]);
    }
    let meta: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| vec![format!("cargo metadata json: {e}")])?;
    let mut problems = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let name = pkg["name"].as_str().unwrap_or_default();
        if name == "xtask" {
            continue;
        }
        let Some((_, allowed)) = LAYERS.iter().find(|(n, _)| *n == name) else {
            problems.push(format!("{name} is not in the layer table"));
            continue;
        };
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let dev = dep["kind"].as_str() == Some("dev");
            if dep_name == "bosun-testkit" && !dev {
                problems.push(format!(
                    "{name} depends on bosun-testkit outside dev-dependencies"
                ));
            }
            if dep_name.starts_with("bosun")
                && !dev
                && !allowed.contains(&"*")
                && !allowed.contains(&dep_name)
            {
                problems.push(format!(
                    "{name} may not depend on {dep_name} (allowed: {allowed:?})"
                ));
            }
            if EDGE_ONLY.contains(&dep_name) && name != "bosun" && !dev {
                problems.push(format!(
                    "{name} uses {dep_name}, which only the bosun binary may use"
                ));
            }
            if name == "bosun-runtime" && dep_name == "tokio" {
                problems.push("bosun-runtime must stay synchronous (no tokio)".into());
            }
        }
        let manifest = Path::new(pkg["manifest_path"].as_str().unwrap_or_default());
        if let Some(dir) = manifest.parent()
            && name != "bosun-testkit"
        {
            check_unsafe(name, &dir.join("src"), &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn check_unsafe(krate: &str, dir: &Path, problems: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            check_unsafe(krate, &path, problems);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let in_sys = path.components().any(|c| c.as_os_str() == "sys");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let uses_unsafe = text.lines().any(|l| {
            let code = l.split("//").next().unwrap_or_default();
            code.contains("unsafe {") || code.contains("unsafe fn") || code.contains("unsafe impl")
        });
        if uses_unsafe && !(in_sys && UNSAFE_ALLOWED.contains(&krate)) {
            problems.push(format!(
                "{} uses unsafe outside an allowed sys module",
                path.display()
            ));
        }
    }
}
