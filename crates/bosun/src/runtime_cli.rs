//! The runc-compatible command line: same verbs, flags and output formats, so
//! podman, containerd and the OCI tools can drive bosun in runc's place.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runc_args::{self, Matches, Parsed};
use anyhow::{Context, Result, bail};
use bosun_oci::ContainerId;
use bosun_runtime::{CreateOptions, ExecOptions, Runtime, Status};
use oci_spec::runtime::{LinuxCpu, LinuxPids, LinuxResources, Process};

#[derive(Debug)]
struct Cli {
    /// Directory for container state.
    root: PathBuf,
    /// Also write errors to this file.
    log: Option<PathBuf>,
    /// Format of --log: text or json.
    log_format: String,
    /// Refused: bosun manages cgroups through the file system only.
    systemd_cgroup: bool,
    /// Accepted for compatibility (true, false or auto).
    rootless: Option<String>,
    command: Command,
}

#[derive(Debug, Clone)]
struct CreateArgs {
    id: String,
    bundle: PathBuf,
    console_socket: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    preserve_fds: u32,
}

#[derive(Debug)]
enum Command {
    /// Create a container and leave its process waiting for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container; wait for it unless --detach.
    Run { create: CreateArgs, detach: bool },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default TERM) to the container's init, or to all its processes.
    Kill {
        id: String,
        signal: Option<String>,
        all: bool,
    },
    /// Delete a stopped container (or any container with --force).
    Delete { id: String, force: bool },
    /// Run a process in a running container.
    Exec(Box<ExecArgs>),
    /// List the processes of a container.
    Ps {
        id: String,
        format: String,
        ps_args: Vec<String>,
    },
    /// List containers.
    List { format: String, quiet: bool },
    /// Freeze all processes of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Print resource usage and OOM events.
    Events {
        id: String,
        /// Print one stats record and exit.
        stats: bool,
        interval: String,
    },
    /// Change the resources of a container.
    Update(Box<UpdateArgs>),
    /// Write a starting config.json.
    Spec { bundle: PathBuf },
    /// Print what this runtime supports, as JSON.
    Features,
}

#[derive(Debug)]
struct ExecArgs {
    id: String,
    process: Option<PathBuf>,
    tty: bool,
    detach: bool,
    env: Vec<String>,
    cwd: Option<PathBuf>,
    /// uid[:gid]
    user: Option<String>,
    additional_gids: Vec<u32>,
    caps: Vec<String>,
    no_new_privs: bool,
    console_socket: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    preserve_fds: u32,
    command: Vec<String>,
}

#[derive(Debug)]
struct UpdateArgs {
    id: String,
    /// A LinuxResources JSON file ("-" for stdin).
    resources: Option<PathBuf>,
    memory: Option<String>,
    memory_reservation: Option<String>,
    memory_swap: Option<String>,
    cpu_shares: Option<u64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<u64>,
    cpuset_cpus: Option<String>,
    cpuset_mems: Option<String>,
    pids_limit: Option<i64>,
    blkio_weight: Option<u16>,
}

/// Parse and run; returns the process exit code.
pub(crate) fn main(args: Vec<OsString>) -> i32 {
    let mut args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = if args.is_empty() {
        "bosun-runc".to_owned()
    } else {
        args.remove(0)
    };
    let cli = match runc_args::parse(&program, &args).and_then(|p| match p {
        Parsed::Command {
            global,
            spec,
            matches,
        } => build(&global, spec.name, &matches).map(Some),
        Parsed::Help(text) => {
            print!("{text}");
            Ok(None)
        }
        Parsed::Version => {
            println!(
                "bosun-runc version {}\nspec: 1.2.0",
                env!("CARGO_PKG_VERSION")
            );
            Ok(None)
        }
    }) {
        Ok(Some(cli)) => cli,
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("{program}: {e}");
            return 2;
        }
    };
    let log = cli.log.clone();
    let json = cli.log_format == "json";
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("bosun-runc: {msg}");
            if let Some(path) = log {
                write_log(&path, json, &msg);
            }
            1
        }
    }
}

fn usage(msg: String) -> runc_args::UsageError {
    runc_args::UsageError(msg)
}

/// The single positional `<id>` of a command.
fn one_id(cmd: &str, m: &Matches) -> Result<String, runc_args::UsageError> {
    match m.positionals.as_slice() {
        [id] => Ok(id.clone()),
        [] => Err(usage(format!("{cmd} needs a container id"))),
        more => Err(usage(format!("{cmd} takes one container id, got {more:?}"))),
    }
}

fn number<T: std::str::FromStr>(
    m: &Matches,
    flag: &str,
) -> Result<Option<T>, runc_args::UsageError> {
    m.value(flag)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| usage(format!("--{flag}: {v:?} is not a valid number")))
        })
        .transpose()
}

fn path(m: &Matches, flag: &str) -> Option<PathBuf> {
    m.value(flag).map(PathBuf::from)
}

fn create_args(cmd: &str, m: &Matches) -> Result<CreateArgs, runc_args::UsageError> {
    Ok(CreateArgs {
        id: one_id(cmd, m)?,
        bundle: path(m, "bundle").unwrap_or_else(|| PathBuf::from(".")),
        console_socket: path(m, "console-socket"),
        pid_file: path(m, "pid-file"),
        preserve_fds: number(m, "preserve-fds")?.unwrap_or(0),
    })
}

/// Turn parsed flags into the command to run.
fn build(g: &Matches, cmd: &str, m: &Matches) -> Result<Cli, runc_args::UsageError> {
    let command = match cmd {
        "create" => Command::Create(create_args(cmd, m)?),
        "run" => Command::Run {
            create: create_args(cmd, m)?,
            detach: m.flag("detach"),
        },
        "start" => Command::Start {
            id: one_id(cmd, m)?,
        },
        "state" => Command::State {
            id: one_id(cmd, m)?,
        },
        "pause" => Command::Pause {
            id: one_id(cmd, m)?,
        },
        "resume" => Command::Resume {
            id: one_id(cmd, m)?,
        },
        "kill" => match m.positionals.as_slice() {
            [id] => Command::Kill {
                id: id.clone(),
                signal: None,
                all: m.flag("all"),
            },
            [id, sig] => Command::Kill {
                id: id.clone(),
                signal: Some(sig.clone()),
                all: m.flag("all"),
            },
            _ => return Err(usage("kill takes <id> [SIGNAL]".into())),
        },
        "delete" => Command::Delete {
            id: one_id(cmd, m)?,
            force: m.flag("force"),
        },
        "exec" => Command::Exec(Box::new(ExecArgs {
            id: one_id(cmd, m)?,
            process: path(m, "process"),
            tty: m.flag("tty"),
            detach: m.flag("detach"),
            env: m.values("env"),
            cwd: path(m, "cwd"),
            user: m.value("user").map(str::to_owned),
            additional_gids: m
                .values("additional-gids")
                .iter()
                .map(|g| {
                    g.parse()
                        .map_err(|_| usage(format!("--additional-gids: {g:?} is not a gid")))
                })
                .collect::<Result<_, _>>()?,
            caps: m.values("cap"),
            no_new_privs: m.flag("no-new-privs"),
            console_socket: path(m, "console-socket"),
            pid_file: path(m, "pid-file"),
            preserve_fds: number(m, "preserve-fds")?.unwrap_or(0),
            command: m.tail.clone(),
        })),
        "ps" => Command::Ps {
            id: one_id(cmd, m)?,
            format: m.value("format").unwrap_or("table").to_owned(),
            ps_args: m.tail.clone(),
        },
        "list" => {
            if !m.positionals.is_empty() {
                return Err(usage(format!(
                    "list takes no arguments, got {:?}",
                    m.positionals
                )));
            }
            Command::List {
                format: m.value("format").unwrap_or("table").to_owned(),
                quiet: m.flag("quiet"),
            }
        }
        "events" => Command::Events {
            id: one_id(cmd, m)?,
            stats: m.flag("stats"),
            interval: m.value("interval").unwrap_or("5s").to_owned(),
        },
        "update" => Command::Update(Box::new(UpdateArgs {
            id: one_id(cmd, m)?,
            resources: path(m, "resources"),
            memory: m.value("memory").map(str::to_owned),
            memory_reservation: m.value("memory-reservation").map(str::to_owned),
            memory_swap: m.value("memory-swap").map(str::to_owned),
            cpu_shares: number(m, "cpu-shares")?,
            cpu_quota: number(m, "cpu-quota")?,
            cpu_period: number(m, "cpu-period")?,
            cpuset_cpus: m.value("cpuset-cpus").map(str::to_owned),
            cpuset_mems: m.value("cpuset-mems").map(str::to_owned),
            pids_limit: number(m, "pids-limit")?,
            blkio_weight: number(m, "blkio-weight")?,
        })),
        "spec" => Command::Spec {
            bundle: path(m, "bundle").unwrap_or_else(|| PathBuf::from(".")),
        },
        "features" => Command::Features,
        other => return Err(usage(format!("unknown command {other:?}"))),
    };
    Ok(Cli {
        root: path(g, "root").unwrap_or_else(|| PathBuf::from("/run/bosun/runtime")),
        log: path(g, "log"),
        log_format: g.value("log-format").unwrap_or("text").to_owned(),
        systemd_cgroup: g.flag("systemd-cgroup"),
        rootless: g.value("rootless").map(str::to_owned),
        command,
    })
}

fn write_log(path: &Path, json: bool, msg: &str) {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg, "time": bosun_runtime::now_rfc3339()})
            .to_string()
    } else {
        format!(
            "time=\"{}\" level=error msg={msg:?}",
            bosun_runtime::now_rfc3339()
        )
    };
    let _ = writeln!(f, "{line}");
}

fn id(s: &str) -> Result<ContainerId> {
    s.parse()
        .with_context(|| format!("invalid container id {s:?}"))
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn create_opts(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!(
            "--systemd-cgroup is not supported: bosun drives cgroupfs directly (use the cgroupfs cgroup manager)"
        );
    }
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run { .. } | Command::Exec(_)
    ) {
        // These enter a container: from a binary no container can write through.
        bosun_runtime::reexec_protected()?;
    }
    let rt = Runtime::new(&cli.root);
    match cli.command {
        Command::Create(a) => {
            rt.create(&id(&a.id)?, &create_opts(&a))?;
        }
        Command::Start { id: i } => rt.start(&id(&i)?)?,
        Command::Run { create, detach } => {
            return Ok(rt.run(&id(&create.id)?, &create_opts(&create), detach)?);
        }
        Command::State { id: i } => print_json(&rt.state(&id(&i)?)?)?,
        Command::Kill { id: i, signal, all } => {
            let sig = bosun_runtime::parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            rt.kill(&id(&i)?, sig, all)?;
        }
        Command::Delete { id: i, force } => {
            let cid = id(&i)?;
            match rt.delete(&cid, force) {
                Err(bosun_runtime::Error::NotFound(_)) if force => {}
                other => other?,
            }
        }
        Command::Exec(a) => return exec(&rt, *a),
        Command::Ps {
            id: i,
            format,
            ps_args,
        } => ps(&rt, &id(&i)?, &format, &ps_args)?,
        Command::List { format, quiet } => list(&rt, &format, quiet)?,
        Command::Pause { id: i } => rt.pause(&id(&i)?)?,
        Command::Resume { id: i } => rt.resume(&id(&i)?)?,
        Command::Events {
            id: i,
            stats,
            interval,
        } => events(&rt, &id(&i)?, stats, &interval)?,
        Command::Update(a) => update(&rt, *a)?,
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} already exists; remove it first", path.display());
            }
            let rootless = match cli.rootless.as_deref() {
                Some("true") => Some((
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw(),
                )),
                _ => None,
            };
            let spec = bosun_runtime::default_spec(rootless);
            let text = serde_json::to_string_pretty(&spec)?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("write {}", path.display()))?;
        }
        Command::Features => print_json(&bosun_runtime::features())?,
    }
    Ok(0)
}

fn exec(rt: &Runtime, a: ExecArgs) -> Result<i32> {
    let cid = id(&a.id)?;
    let process: Process = match &a.process {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("parse process {}", path.display()))?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec needs a command (or --process FILE)");
            }
            let mut p = rt.config(&cid)?.process().clone().unwrap_or_default();
            p.set_args(Some(a.command.clone()));
            p.set_terminal(Some(a.tty));
            let mut env = p.env().clone().unwrap_or_default();
            for kv in &a.env {
                let key = kv.split('=').next().unwrap_or_default();
                env.retain(|e| e.split('=').next() != Some(key));
                env.push(kv.clone());
            }
            p.set_env(Some(env));
            if let Some(cwd) = &a.cwd {
                p.set_cwd(cwd.clone());
            }
            if let Some(user) = &a.user {
                let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
                let mut u = p.user().clone();
                u.set_uid(
                    uid.parse()
                        .with_context(|| format!("--user: bad uid {uid:?}"))?,
                );
                u.set_gid(
                    gid.parse()
                        .with_context(|| format!("--user: bad gid {gid:?}"))?,
                );
                p.set_user(u);
            }
            if !a.additional_gids.is_empty() {
                let mut u = p.user().clone();
                u.set_additional_gids(Some(a.additional_gids.clone()));
                p.set_user(u);
            }
            if a.no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            if !a.caps.is_empty() {
                let mut caps = p.capabilities().clone().unwrap_or_default();
                for c in &a.caps {
                    let name = c.strip_prefix("CAP_").unwrap_or(c);
                    let cap: oci_spec::runtime::Capability = name
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--cap: unknown capability {c:?}"))?;
                    let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                        let mut s = s.clone().unwrap_or_default();
                        s.insert(cap);
                        Some(s)
                    };
                    caps.set_bounding(add(caps.bounding()));
                    caps.set_effective(add(caps.effective()));
                    caps.set_permitted(add(caps.permitted()));
                }
                p.set_capabilities(Some(caps));
            }
            p
        }
    };
    let opts = ExecOptions {
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        detach: a.detach,
    };
    Ok(rt.exec(&cid, &process, &opts)?)
}

fn ps(rt: &Runtime, cid: &ContainerId, format: &str, ps_args: &[String]) -> Result<()> {
    let pids = rt.pids(cid)?;
    match format {
        "json" => print_json(&pids),
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow::anyhow!("ps output has no PID column"))?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{header}")?;
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    writeln!(stdout, "{line}")?;
                }
            }
            Ok(())
        }
        other => bail!("--format: unknown format {other:?} (table or json)"),
    }
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<()> {
    let states = rt.list()?;
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        "json" => print_json(&states),
        "table" => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<31} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
            Ok(())
        }
        other => bail!("--format: unknown format {other:?} (table or json)"),
    }
}

fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .with_context(|| format!("--interval: bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => bail!("--interval: bad unit in {s:?} (ms, s or m)"),
    };
    if secs <= 0.0 {
        bail!("--interval must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn events(rt: &Runtime, cid: &ContainerId, once: bool, interval: &str) -> Result<()> {
    let event = |data: serde_json::Value| serde_json::json!({"type": "stats", "id": cid.as_str(), "data": data});
    if once {
        return print_json(&event(rt.stats(cid)?));
    }
    let every = parse_duration(interval)?;
    let mut ooms = rt.oom_kill_count(cid).unwrap_or(0);
    loop {
        let state = rt.state(cid)?;
        if state.status == Status::Stopped {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        let count = rt.oom_kill_count(cid).unwrap_or(ooms);
        if count > ooms {
            ooms = count;
            writeln!(
                out,
                "{}",
                serde_json::json!({"type": "oom", "id": cid.as_str()})
            )?;
        }
        writeln!(out, "{}", event(rt.stats(cid)?))?;
        out.flush()?;
        drop(out);
        std::thread::sleep(every);
    }
}

/// Bytes with an optional k/m/g suffix (binary units, like runc).
fn parse_bytes(s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1i64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let n: i64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad size {s:?}"))?;
    n.checked_mul(mult)
        .ok_or_else(|| anyhow::anyhow!("size {s:?} is too large"))
}

fn update(rt: &Runtime, a: UpdateArgs) -> Result<()> {
    let cid = id(&a.id)?;
    let mut res: LinuxResources = match &a.resources {
        Some(p) if p == Path::new("-") => {
            serde_json::from_reader(std::io::stdin()).context("parse resources from stdin")?
        }
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("parse resources {}", p.display()))?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = (*res.memory()).unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_bytes(v).context("--memory")?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_bytes(v).context("--memory-reservation")?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_bytes(v).context("--memory-swap")?));
        }
        res.set_memory(Some(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c: LinuxCpu = res.cpu().clone().unwrap_or_default();
        if let Some(v) = a.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = a.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = a.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = &a.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &a.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        res.set_cpu(Some(c));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        res.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    rt.update(&cid, &res)?;
    Ok(())
}
