//! `bosun image …`: the image verbs, working directly on the store in
//! `--data-dir` like podman (no daemon). Parsed by hand, as the runtime's
//! arguments are: flags may come before or after the positionals.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bosun_image::{DEFAULT_DATA_DIR, ImageStore, ImageSummary, LoadSource, SaveDest};
use bosun_oci::ImageRef;
use serde_json::json;

const USAGE: &str = "\
Usage: bosun image [--data-dir DIR] COMMAND [ARGS]

Commands:
  import TARBALL NAME[:TAG]   make a one-layer image from a root file system tarball
                              (plain or gzip; `-` reads stdin); prints the manifest digest
  ls [-q|--quiet] [--format table|json]
                              list images
  inspect NAME|ID...          show images as JSON
  tag SRC DST                 give an image another name
  rm NAME|ID...               remove tags; blobs no image uses any more are deleted
  unpack NAME|ID DIR          (bosun-specific) apply the image's layers into DIR
  save [-o PATH] [--format oci-archive|oci-dir] NAME...
                              write images as an OCI layout: a tar (default; stdout
                              without -o) or a directory; `docker load` reads the tar
  load [-i PATH] [--name NAME]
                              read images from an OCI layout (directory or tar, plain
                              or gzip) or a `docker save` archive (stdin without -i);
                              --name names images the archive tags only by a bare tag
  prune                       delete blobs and snapshots no image uses, and leftovers
                              of crashed writers (waits for pulls and builds)

Options:
  --data-dir DIR              the store (default /var/lib/bosun)
";

/// A mistake in the command line (exit 2), as opposed to a failure (exit 1).
#[derive(Debug)]
struct Usage(String);

#[derive(Debug, Default)]
struct Args {
    data_dir: Option<PathBuf>,
    quiet: bool,
    format: Option<String>,
    output: Option<PathBuf>,
    input: Option<PathBuf>,
    name: Option<String>,
    help: bool,
    positionals: Vec<String>,
}

pub(crate) fn main(args: &[OsString]) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(Usage(msg)) => {
            eprintln!("bosun image: {msg}\n\n{USAGE}");
            return 2;
        }
    };
    if args.help {
        print!("{USAGE}");
        return 0;
    }
    match run(&args) {
        Ok(Ok(code)) => code,
        Ok(Err(Usage(msg))) => {
            eprintln!("bosun image: {msg}\n\n{USAGE}");
            2
        }
        Err(e) => {
            eprintln!("bosun image: {e:#}");
            1
        }
    }
}

fn parse(raw: &[OsString]) -> Result<Args, Usage> {
    let mut args = Args::default();
    let mut it = raw.iter();
    let mut only_positionals = false;
    while let Some(arg) = it.next() {
        let Some(arg) = arg.to_str() else {
            // Paths may be any bytes, but names and flags are UTF-8; keep it simple.
            return Err(Usage(format!("argument {arg:?} is not UTF-8")));
        };
        if only_positionals || arg == "-" || !arg.starts_with('-') {
            args.positionals.push(arg.to_owned());
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, Usage> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .and_then(|v| v.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| Usage(format!("{name} needs a value"))),
            }
        };
        match flag {
            "--" => only_positionals = true,
            "--data-dir" => args.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--format" => args.format = Some(value("--format")?),
            "-o" | "--output" => args.output = Some(PathBuf::from(value("--output")?)),
            "-i" | "--input" => args.input = Some(PathBuf::from(value("--input")?)),
            "--name" => args.name = Some(value("--name")?),
            "-q" | "--quiet" => args.quiet = true,
            "-h" | "--help" => args.help = true,
            other => return Err(Usage(format!("unknown flag {other:?}"))),
        }
    }
    Ok(args)
}

fn run(args: &Args) -> Result<Result<i32, Usage>> {
    let Some((verb, rest)) = args.positionals.split_first() else {
        return Ok(Err(Usage("missing command".to_owned())));
    };
    if args.quiet && verb != "ls"
        || args.format.is_some() && !matches!(verb.as_str(), "ls" | "save")
    {
        return Ok(Err(Usage(format!(
            "--quiet and --format belong to `ls` (and --format to `save`), not `{verb}`"
        ))));
    }
    if args.output.is_some() && verb != "save"
        || (args.input.is_some() || args.name.is_some()) && verb != "load"
    {
        return Ok(Err(Usage(format!(
            "--output belongs to `save`, --input and --name to `load`, not `{verb}`"
        ))));
    }
    let want = |n: usize, what: &str| -> Result<(), Usage> {
        if rest.len() == n {
            Ok(())
        } else {
            Err(Usage(format!("`{verb}` takes {what}")))
        }
    };
    let checked = match verb.as_str() {
        "import" => want(2, "TARBALL NAME[:TAG]"),
        "ls" | "list" | "load" | "prune" => want(0, "no arguments"),
        "tag" => want(2, "SRC DST"),
        "unpack" => want(2, "NAME DIR"),
        "inspect" | "rm" | "save" if rest.is_empty() => {
            Err(Usage(format!("`{verb}` needs a name")))
        }
        "inspect" | "rm" | "save" => Ok(()),
        other => Err(Usage(format!("unknown command {other:?}"))),
    };
    if let Err(u) = checked {
        return Ok(Err(u));
    }
    let format = args.format.as_deref().unwrap_or(if verb == "save" {
        "oci-archive"
    } else {
        "table"
    });
    if verb == "save" && !matches!(format, "oci-archive" | "oci-dir") {
        return Ok(Err(Usage(format!(
            "--format {format:?}: use oci-archive or oci-dir"
        ))));
    }
    if verb == "ls" && !matches!(format, "table" | "json") {
        return Ok(Err(Usage(format!(
            "--format {format:?}: use table or json"
        ))));
    }
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let store = ImageStore::open(&dir).with_context(|| format!("data dir {}", dir.display()))?;
    let code = match verb.as_str() {
        "import" => import(&store, &rest[0], &rest[1])?,
        "ls" | "list" => ls(&store, args.quiet, format == "json")?,
        "inspect" => inspect(&store, rest)?,
        "tag" => {
            store.tag(&rest[0], &parse_ref(&rest[1])?)?;
            0
        }
        "rm" => rm(&store, rest),
        "save" => save(&store, rest, args.output.as_deref(), format == "oci-dir")?,
        "load" => load(&store, args.input.as_deref(), args.name.as_deref())?,
        "prune" => {
            let snapshots = bosun_image::snapshot::Snapshotter::open(&dir)?;
            // Builders that died leave RUN containers, mounts and active
            // snapshots behind; the snapshots they hold would survive the prune.
            let runner = bosun_engine::ChildRuntime::new(
                std::env::current_exe().context("find this binary")?,
            );
            bosun_image::build::sweep_stale_work(&store, &snapshots, &runner);
            let pruned = bosun_image::snapshot::prune(&store, &snapshots)?;
            for d in &pruned.blobs {
                println!("Deleted: {d}");
            }
            for chain in &pruned.snapshots.removed {
                println!("Deleted snapshot: {chain}");
            }
            0
        }
        _ => {
            store.unpack(&rest[0], &PathBuf::from(&rest[1]))?;
            0
        }
    };
    Ok(Ok(code))
}

fn save(store: &ImageStore, names: &[String], output: Option<&Path>, dir: bool) -> Result<i32> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match (output, dir) {
        (Some(path), true) => store.save(&names, SaveDest::Dir(path))?,
        (None, true) => anyhow::bail!("--format oci-dir needs --output DIR"),
        (Some(path), false) => {
            // Written beside the target and renamed, so a failed save leaves
            // no half archive under the name asked for.
            let mut temp_name = path.as_os_str().to_owned();
            temp_name.push(format!(".tmp-{}", std::process::id()));
            let temp = PathBuf::from(temp_name);
            let write = || -> Result<()> {
                let file =
                    File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
                let mut out = io::BufWriter::with_capacity(1 << 20, file);
                store.save(&names, SaveDest::Stream(&mut out))?;
                out.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .context("write the archive")?;
                std::fs::rename(&temp, path).with_context(|| format!("write {}", path.display()))
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        }
        (None, false) => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!(
                    "refusing to write an archive to a terminal; use -o FILE or redirect"
                );
            }
            let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
            store.save(&names, SaveDest::Stream(&mut out))?;
            out.flush().context("write the archive")?;
        }
    }
    Ok(0)
}

fn load(store: &ImageStore, input: Option<&Path>, name: Option<&str>) -> Result<i32> {
    let fallback = name.map(parse_ref).transpose()?;
    let loaded = match input {
        Some(path) if path.is_dir() => store.load(LoadSource::Dir(path), fallback.as_ref()),
        Some(path) => {
            let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
            store.load(LoadSource::Stream(&mut f), fallback.as_ref())
        }
        None => store.load(
            LoadSource::Stream(&mut io::stdin().lock()),
            fallback.as_ref(),
        ),
    }
    .context("load")?;
    for name in loaded {
        println!("Loaded image: {name}");
    }
    Ok(0)
}

fn parse_ref(s: &str) -> Result<ImageRef> {
    s.parse().with_context(|| format!("image name {s:?}"))
}

fn import(store: &ImageStore, tarball: &str, name: &str) -> Result<i32> {
    let name = parse_ref(name)?;
    let input: Box<dyn Read> = if tarball == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(tarball).with_context(|| format!("open {tarball}"))?)
    };
    let digest = store
        .import(input, None, &name)
        .with_context(|| format!("import {tarball}"))?;
    println!("{digest}");
    Ok(0)
}

fn ls(store: &ImageStore, quiet: bool, json: bool) -> Result<i32> {
    let images = store.list()?;
    if quiet {
        for i in &images {
            println!("{}", short_id(i));
        }
    } else if json {
        // One object per line, as `docker images --format json` prints.
        for i in &images {
            let line = json!({
                "Repository": i.name.name(),
                "Tag": i.name.tag().unwrap_or(""),
                "ID": short_id(i),
                "Digest": i.digest.to_string(),
                "Size": i.size,
                "CreatedAt": i.created,
            });
            println!("{line}");
        }
    } else {
        let repo_width = images
            .iter()
            .map(|i| i.name.name().len())
            .chain([10])
            .max()
            .unwrap_or(10);
        let tag_width = images
            .iter()
            .map(|i| i.name.tag().unwrap_or("").len())
            .chain([3])
            .max()
            .unwrap_or(3);
        println!(
            "{:repo_width$}   {:tag_width$}   {:12}   SIZE",
            "REPOSITORY", "TAG", "IMAGE ID"
        );
        for i in &images {
            println!(
                "{:repo_width$}   {:tag_width$}   {:12}   {}",
                i.name.name(),
                i.name.tag().unwrap_or(""),
                short_id(i),
                human_size(i.size)
            );
        }
    }
    Ok(0)
}

fn short_id(i: &ImageSummary) -> &str {
    &i.id.hex()[..12.min(i.id.hex().len())]
}

/// Docker's style: decimal units, three significant digits.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + UNITS[unit]
    }
}

fn inspect(store: &ImageStore, names: &[String]) -> Result<i32> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let d = store.inspect(name)?;
        let config = &d.config;
        out.push(json!({
            "Id": d.id.to_string(),
            "RepoTags": d.tags.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "RepoDigests": d.tags.iter().map(|t| format!("{}@{}", t.name(), d.digest)).collect::<Vec<_>>(),
            "Created": config.created(),
            "Architecture": config.architecture().to_string(),
            "Os": config.os().to_string(),
            "Config": serde_json::to_value(config.config())?,
            "RootFS": serde_json::to_value(config.rootfs())?,
            "History": serde_json::to_value(config.history())?,
            "Size": d.size,
            "Manifest": serde_json::to_value(&d.manifest)?,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// Like `docker rmi`: goes on past a failing name, and fails at the end.
fn rm(store: &ImageStore, names: &[String]) -> i32 {
    let mut code = 0;
    for name in names {
        match store.remove(name) {
            Ok(removed) => {
                for t in &removed.untagged {
                    println!("Untagged: {t}");
                }
                for d in &removed.deleted {
                    println!("Deleted: {d}");
                }
            }
            Err(e) => {
                eprintln!("bosun image: rm {name}: {e}");
                code = 1;
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_anywhere() {
        let a = parse(&args(&["ls", "--data-dir", "/x", "-q"])).unwrap();
        assert_eq!(a.data_dir, Some(PathBuf::from("/x")));
        assert!(a.quiet);
        assert_eq!(a.positionals, ["ls"]);
        let a = parse(&args(&["--data-dir=/y", "import", "-", "n:t"])).unwrap();
        assert_eq!(a.data_dir, Some(PathBuf::from("/y")));
        assert_eq!(a.positionals, ["import", "-", "n:t"]);
        assert!(parse(&args(&["ls", "--bogus"])).is_err());
        assert!(parse(&args(&["ls", "--data-dir"])).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(2_000), "2kB");
    }
}
