//! `bosun build`: the Containerfile builder on the store in `--data-dir`.
//! RUN steps run as `bosun runtime run` child processes of this binary (see
//! `bosun_engine::ChildRuntime`).

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use bosun_image::build::BuildOptions;
use bosun_image::snapshot::Snapshotter;
use bosun_image::{DEFAULT_DATA_DIR, ImageStore};

const USAGE: &str = "\
Usage: bosun build [OPTIONS] CONTEXT

Builds an image from a Containerfile (or Dockerfile) in CONTEXT.

Options:
  -t, --tag NAME[:TAG]     name the image (repeatable)
  -f, --file PATH          the Containerfile (default: CONTEXT/Containerfile, then Dockerfile)
  --build-arg KEY[=VALUE]  set a build argument (without a value: from the environment)
  --target STAGE           build up to this stage
  --no-cache               run every step, ignoring the layer cache
  -q, --quiet              print only the image id
  --data-dir DIR           the store (default /var/lib/bosun)
";

pub(crate) fn main(raw: &[OsString]) -> i32 {
    let opts = match parse(raw) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return 0;
        }
        Err(msg) => {
            eprintln!("bosun build: {msg}\n\n{USAGE}");
            return 2;
        }
    };
    match run(opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bosun build: {e:#}");
            1
        }
    }
}

struct Parsed {
    data_dir: PathBuf,
    quiet: bool,
    build: BuildOptions,
}

fn parse(raw: &[OsString]) -> Result<Option<Parsed>, String> {
    let mut build = BuildOptions::default();
    let mut data_dir = PathBuf::from(DEFAULT_DATA_DIR);
    let mut quiet = false;
    let mut context = None;
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| format!("argument {arg:?} is not UTF-8"))?;
        if !arg.starts_with('-') || arg == "-" {
            if context.replace(PathBuf::from(arg)).is_some() {
                return Err("give exactly one CONTEXT".into());
            }
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .and_then(|v| v.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "-t" | "--tag" => {
                let v = value()?;
                build
                    .tags
                    .push(v.parse().map_err(|e| format!("--tag {v:?}: {e}"))?);
            }
            "-f" | "--file" => build.containerfile = Some(PathBuf::from(value()?)),
            "--build-arg" => {
                let v = value()?;
                let (k, val) = match v.split_once('=') {
                    Some((k, val)) => (k.to_owned(), val.to_owned()),
                    None => match std::env::var(&v) {
                        Ok(val) => (v.clone(), val),
                        // Docker ignores an unset one.
                        Err(_) => continue,
                    },
                };
                if k.is_empty() {
                    return Err(format!("--build-arg {v:?}: the name is empty"));
                }
                build.build_args.insert(k, val);
            }
            "--target" => build.target = Some(value()?),
            "--no-cache" => build.no_cache = true,
            "-q" | "--quiet" => quiet = true,
            "--data-dir" => data_dir = PathBuf::from(value()?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    build.context = context.ok_or("missing CONTEXT (e.g. `.`)")?;
    Ok(Some(Parsed {
        data_dir,
        quiet,
        build,
    }))
}

fn run(opts: Parsed) -> Result<()> {
    let store = ImageStore::open(&opts.data_dir)
        .with_context(|| format!("data dir {}", opts.data_dir.display()))?;
    let snapshots = Snapshotter::open(&opts.data_dir)?;
    let runner =
        bosun_engine::ChildRuntime::new(std::env::current_exe().context("find this binary")?);
    let mut sink = io::sink();
    let mut stderr = io::stderr();
    let mut bar = StepBar::new();
    let out: &mut dyn Write = if opts.quiet {
        &mut sink
    } else if io::stderr().is_terminal() {
        &mut bar
    } else {
        &mut stderr
    };
    let built = bosun_image::build::build(&store, &snapshots, &runner, &opts.build, out);
    bar.finish();
    println!("{}", built?.id);
    Ok(())
}

/// Progress on a terminal: the builder's `STEP n/N: …` lines drive a bar
/// that stays at the bottom; everything else (RUN output, cache notes) is
/// printed above it. Off a terminal the plain lines go to stderr as they are.
struct StepBar {
    bar: indicatif::ProgressBar,
    line: Vec<u8>,
}

impl StepBar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {pos}/{len} {wide_msg}")
        {
            bar.set_style(style);
        }
        Self {
            bar,
            line: Vec::new(),
        }
    }

    fn line(&self, text: &str) {
        let step = text
            .strip_prefix("STEP ")
            .and_then(|rest| rest.split_once(": "))
            .and_then(|(count, what)| {
                let (n, total) = count.split_once('/')?;
                Some((n.parse::<u64>().ok()?, total.parse::<u64>().ok()?, what))
            });
        match step {
            Some((n, total, what)) => {
                if self.bar.length() == Some(0) {
                    self.bar
                        .enable_steady_tick(std::time::Duration::from_millis(100));
                }
                self.bar.set_length(total);
                self.bar.set_position(n.saturating_sub(1));
                self.bar.set_message(what.to_owned());
                self.bar.println(text);
            }
            None => self.bar.println(text),
        }
    }

    fn finish(&mut self) {
        if !self.line.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            self.line(&rest);
        }
        self.bar.finish_and_clear();
    }
}

impl Write for StepBar {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&self.line[..end]).into_owned();
            self.line.drain(..=end);
            self.line(&text);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_and_context() {
        let p = parse(&args(&[
            "-t",
            "a:1",
            "--tag=b",
            "--build-arg",
            "X=1",
            "--target",
            "s",
            "--no-cache",
            "-f",
            "F",
            "ctx",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(p.build.tags.len(), 2);
        assert_eq!(p.build.build_args["X"], "1");
        assert_eq!(p.build.target.as_deref(), Some("s"));
        assert!(p.build.no_cache);
        assert_eq!(p.build.context, PathBuf::from("ctx"));
        assert!(parse(&args(&["a", "b"])).is_err());
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["--bogus", "."])).is_err());
        assert!(parse(&args(&["-t", "UPPER", "."])).is_err());
    }
}
