//! The container verbs (`bosun run`, `ps`, `logs`, `exec`, …): a thin client
//! of the engine's Docker API, with Docker's flags, tables and exit codes.
//! Parsed by hand like the other verbs; each invocation builds a
//! current-thread tokio runtime of its own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::container_fmt::{self as fmt, Listing};
use crate::engine_client::{
    DEFAULT_HOST, Demux, EngineClient, Hijacked, api_status, encode, with_query,
};

/// The verbs this module serves (also reachable as `bosun -H URL VERB …`).
pub(crate) const VERBS: &[&str] = &[
    "run",
    "create",
    "start",
    "stop",
    "kill",
    "rm",
    "ps",
    "logs",
    "exec",
    "inspect",
    "images",
    "rmi",
    "tag",
    "volume",
    "network",
    "top",
    "stats",
    "events",
    "attach",
    "restart",
    "pause",
    "unpause",
    "rename",
    "wait",
    "port",
    "system",
    "info",
    "container",
    "cp",
];

/// A mistake in the command line: Docker exits 125 for those.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Ends a verb with this exit code after the message was already printed.
#[derive(Debug)]
struct Exit(i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bool,
    Value,
}

/// One flag: its spellings (the first is the canonical one) and its kind.
type Flag = (&'static [&'static str], Kind);

const B: Kind = Kind::Bool;
const V: Kind = Kind::Value;

/// Flags every verb takes.
const COMMON: &[Flag] = &[(&["--host", "-H"], V), (&["--help"], B)];

/// `run` and `create`.
const RUN_FLAGS: &[Flag] = &[
    (&["--detach", "-d"], B),
    (&["--interactive", "-i"], B),
    (&["--tty", "-t"], B),
    (&["--rm"], B),
    (&["--publish", "-p"], V),
    (&["--publish-all", "-P"], B),
    (&["--expose"], V),
    (&["--volume", "-v"], V),
    (&["--tmpfs"], V),
    (&["--env", "-e"], V),
    (&["--label", "-l"], V),
    (&["--name"], V),
    (&["--network", "--net"], V),
    (&["--network-alias", "--net-alias"], V),
    (&["--memory", "-m"], V),
    (&["--cpus"], V),
    (&["--cpu-shares", "-c"], V),
    (&["--cpuset-cpus"], V),
    (&["--pids-limit"], V),
    (&["--restart"], V),
    (&["--workdir", "-w"], V),
    (&["--user", "-u"], V),
    (&["--entrypoint"], V),
    (&["--hostname", "-h"], V),
    (&["--privileged"], B),
    (&["--read-only"], B),
    (&["--init"], B),
    (&["--cap-add"], V),
    (&["--cap-drop"], V),
    (&["--security-opt"], V),
    (&["--dns"], V),
    (&["--add-host"], V),
    (&["--stop-signal"], V),
    (&["--stop-timeout"], V),
    (&["--env-file"], V),
    (&["--mount"], V),
    (&["--pull"], V),
    (&["--health-cmd"], V),
    (&["--health-interval"], V),
    (&["--health-timeout"], V),
    (&["--health-start-period"], V),
    (&["--health-retries"], V),
    (&["--no-healthcheck"], B),
];

#[derive(Debug, Default)]
struct Opts {
    set: Vec<(&'static str, Option<String>)>,
    args: Vec<String>,
}

impl Opts {
    fn has(&self, name: &str) -> bool {
        self.set.iter().any(|(n, _)| *n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn values(&self, name: &str) -> Vec<&str> {
        self.set
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }

    fn int(&self, name: &str) -> Result<Option<i64>> {
        self.value(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    Usage(format!("invalid value {v:?} for {name}: not a number")).into()
                })
            })
            .transpose()
    }
}

/// Docker-style flags: `--name v`, `--name=v`, `-x v`, `-xv`, `-it`; with
/// `stop_at_positional` (run, create, exec) everything from the first
/// positional argument on belongs to the container's command.
fn parse(
    verb: &str,
    spec: &[Flag],
    args: &[OsString],
    stop_at_positional: bool,
) -> Result<Opts, Usage> {
    let find = |name: &str| {
        spec.iter()
            .chain(COMMON)
            .find(|(names, _)| names.contains(&name))
            .map(|(names, kind)| (names[0], *kind))
    };
    let unknown = |f: &str| Usage(format!("unknown flag: {f}\nSee 'bosun {verb} --help'."));
    let mut out = Opts::default();
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        if !out.args.is_empty() && stop_at_positional {
            out.args.push(arg);
            continue;
        }
        if arg == "--" {
            out.args.extend(it.by_ref());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_owned())),
                None => (arg.clone(), None),
            };
            let (canon, kind) = find(&name).ok_or_else(|| unknown(&name))?;
            match kind {
                Kind::Bool => {
                    if !matches!(inline.as_deref(), Some("false" | "0")) {
                        out.set.push((canon, None));
                    }
                }
                Kind::Value => {
                    let v = inline
                        .or_else(|| it.next())
                        .ok_or_else(|| Usage(format!("flag needs an argument: {name}")))?;
                    out.set.push((canon, Some(v)));
                }
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            // A cluster of short flags; a value flag takes the rest or the next argument.
            let chars: Vec<char> = arg[1..].chars().collect();
            let mut i = 0;
            while i < chars.len() {
                let name = format!("-{}", chars[i]);
                let (canon, kind) = find(&name).ok_or_else(|| unknown(&name))?;
                match kind {
                    Kind::Bool => {
                        let rest: String = chars[i + 1..].iter().collect();
                        if let Some(v) = rest.strip_prefix('=') {
                            if !matches!(v, "false" | "0") {
                                out.set.push((canon, None));
                            }
                            break;
                        }
                        out.set.push((canon, None));
                        i += 1;
                    }
                    Kind::Value => {
                        let rest: String = chars[i + 1..].iter().collect();
                        let rest = rest.strip_prefix('=').unwrap_or(&rest).to_owned();
                        let v = if rest.is_empty() {
                            it.next()
                                .ok_or_else(|| Usage(format!("flag needs an argument: {name}")))?
                        } else {
                            rest
                        };
                        out.set.push((canon, Some(v)));
                        break;
                    }
                }
            }
        } else {
            out.args.push(arg);
        }
    }
    Ok(out)
}

fn usage(verb: &str) -> &'static str {
    match verb {
        "run" | "create" => {
            "\
Usage: bosun run|create [OPTIONS] IMAGE [COMMAND] [ARG...]

Creates a container from IMAGE (pulling it if it is missing) and, for `run`,
starts it and streams its output; `run` exits with the container's exit code.

Options:
  -d, --detach               run in the background and print the id
  -i, --interactive          keep stdin open and send ours
  -t, --tty                  allocate a terminal
      --rm                   remove the container when it exits
  -p, --publish [IP:][HOST:]PORT[/PROTO]  publish a port
  -P, --publish-all          publish every exposed port
      --expose PORT          expose a port
  -v, --volume SRC:DST[:ro]  a named volume or bind mount (DST alone: anonymous)
      --tmpfs DST[:OPTS]     a tmpfs mount
  -e, --env K=V              set an environment variable (K alone: ours)
  -l, --label K=V            set a label
      --name NAME            name the container
      --network NET          connect to NET (bridge, host, none, a network's name)
      --network-alias NAME   another name on the network
  -m, --memory SIZE          memory limit (b, k, m, g)
      --cpus N               CPU quota in CPUs
  -c, --cpu-shares N, --cpuset-cpus LIST, --pids-limit N
      --restart POLICY       no, always, unless-stopped, on-failure[:N]
  -w, --workdir DIR, -u, --user USER[:GROUP], --entrypoint CMD, -h, --hostname NAME
      --privileged, --read-only, --init, --cap-add CAP, --cap-drop CAP
      --security-opt OPT     seccomp=unconfined|PROFILE.json, no-new-privileges,
                             systempaths=unconfined
      --dns IP, --add-host HOST:IP, --stop-signal SIG, --stop-timeout SECONDS
      --env-file FILE        K=V lines (K alone: ours), # comments
      --mount type=volume|bind|tmpfs,source=S,target=T[,readonly]
      --pull missing|always|never   when to pull the image (default missing)
      --health-cmd CMD, --health-interval D, --health-timeout D,
      --health-start-period D, --health-retries N, --no-healthcheck
"
        }
        "start" => "Usage: bosun start [-a|--attach] [-i|--interactive] CONTAINER...\n",
        "attach" => "Usage: bosun attach [--no-stdin] CONTAINER\n",
        "restart" => "Usage: bosun restart [-t|--time SECONDS] CONTAINER...\n",
        "pause" => "Usage: bosun pause CONTAINER...\n",
        "unpause" => "Usage: bosun unpause CONTAINER...\n",
        "rename" => "Usage: bosun rename CONTAINER NEW_NAME\n",
        "wait" => "Usage: bosun wait CONTAINER...\n",
        "port" => "Usage: bosun port CONTAINER [PORT[/PROTO]]\n",
        "stop" => "Usage: bosun stop [-t|--time SECONDS] [-s|--signal SIG] CONTAINER...\n",
        "kill" => "Usage: bosun kill [-s|--signal SIG] CONTAINER...\n",
        "rm" => "Usage: bosun rm [-f|--force] [-v|--volumes] CONTAINER...\n",
        "ps" => {
            "Usage: bosun ps [-a|--all] [-q|--quiet] [-f|--filter K=V] [-n|--last N] [-l|--latest]\n\
             \x20               [--no-trunc] [--format TEMPLATE]\n"
        }
        "logs" => {
            "Usage: bosun logs [-f|--follow] [--tail N] [-t|--timestamps] [--since T] [--until T] CONTAINER\n"
        }
        "exec" => {
            "Usage: bosun exec [-d] [-i] [-t] [-e K=V] [-w DIR] [-u USER] [--privileged] CONTAINER COMMAND [ARG...]\n"
        }
        "inspect" => {
            "Usage: bosun inspect [-f|--format TEMPLATE] [--type container|image|volume|network] NAME...\n"
        }
        "images" => "Usage: bosun images [-a] [-q|--quiet] [--no-trunc] [--format TEMPLATE]\n",
        "rmi" => "Usage: bosun rmi [-f|--force] IMAGE...\n",
        "tag" => "Usage: bosun tag SOURCE[:TAG] TARGET[:TAG]\n",
        "volume" => {
            "\
Usage: bosun volume create [--label K=V] [NAME]
       bosun volume ls [-q] [--format TEMPLATE] [-f|--filter K=V]
       bosun volume inspect [-f|--format TEMPLATE] NAME...
       bosun volume rm [-f|--force] NAME...
       bosun volume prune [-f|--force] [-a|--all]
"
        }
        "network" => {
            "\
Usage: bosun network create [--subnet CIDR] [-d|--driver bridge] [--label K=V] NAME
       bosun network ls [-q] [--format TEMPLATE] [-f|--filter K=V]
       bosun network inspect [-f|--format TEMPLATE] NAME...
       bosun network rm NAME...
       bosun network prune [-f|--force]
"
        }
        "top" => "Usage: bosun top CONTAINER [ps OPTIONS]\n",
        "info" => "Usage: bosun info [-f|--format TEMPLATE]\n",
        "cp" => "Usage: bosun cp CONTAINER:SRC DEST|-\n       bosun cp SRC|- CONTAINER:DEST\n",
        "container" => {
            "\
Usage: bosun container ls|run|create|start|stop|restart|kill|pause|unpause|rm|rename|
                       logs|exec|attach|wait|port|inspect|top|stats ARGS...
       bosun container prune [-f|--force]
"
        }
        "system" => {
            "\
Usage: bosun system df
       bosun system info [-f|--format TEMPLATE]
       bosun system prune [-f|--force] [--volumes]
"
        }
        "stats" => "Usage: bosun stats [--no-stream] [-a|--all] [CONTAINER...]\n",
        "events" => {
            "Usage: bosun events [--since T] [--until T] [-f|--filter K=V] [--format TEMPLATE]\n"
        }
        _ => "",
    }
}

/// `bosun -H URL VERB …`: the host given before the verb.
pub(crate) fn with_host(args: &[OsString]) -> i32 {
    let first = args.first().map(|a| a.to_string_lossy().into_owned());
    let (host, rest) = match first.as_deref().and_then(|a| a.strip_prefix("--host=")) {
        Some(h) => (h.to_owned(), &args[1..]),
        None => match args.get(1) {
            Some(h) => (h.to_string_lossy().into_owned(), &args[2..]),
            None => {
                eprintln!("bosun: flag needs an argument: -H");
                return 125;
            }
        },
    };
    match rest.first().and_then(|v| v.to_str()) {
        Some(verb) if VERBS.contains(&verb) => dispatch(verb, &rest[1..], Some(host)),
        other => {
            eprintln!("bosun: -H goes with a container verb, not {other:?}; see `bosun help`");
            125
        }
    }
}

/// `bosun VERB ARGS…`.
pub(crate) fn main(verb: &str, args: &[OsString]) -> i32 {
    dispatch(verb, args, None)
}

fn dispatch(verb: &str, args: &[OsString], host: Option<String>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bosun {verb}: start the async runtime: {e}");
            return 125;
        }
    };
    let result = runtime.block_on(run_verb(verb, args, host));
    // A thread may still be blocked reading our stdin; it must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
                return *code;
            }
            if let Some(u) = e.downcast_ref::<Usage>() {
                eprintln!("bosun {verb}: {u}");
                return 125;
            }
            eprintln!("bosun {verb}: {e:#}");
            // Docker's run/create/exec say 125 for a failure of their own
            // (their other codes are the container's); the other verbs say 1.
            match verb {
                "run" | "create" | "exec" => 125,
                _ => 1,
            }
        }
    }
}

async fn run_verb(verb: &str, args: &[OsString], host: Option<String>) -> Result<i32> {
    let (spec, stop): (&[Flag], bool) = match verb {
        "run" | "create" => (RUN_FLAGS, true),
        "exec" => (
            &[
                (&["--detach", "-d"], B),
                (&["--interactive", "-i"], B),
                (&["--tty", "-t"], B),
                (&["--env", "-e"], V),
                (&["--workdir", "-w"], V),
                (&["--user", "-u"], V),
                (&["--privileged"], B),
            ],
            true,
        ),
        "start" => (
            &[(&["--attach", "-a"], B), (&["--interactive", "-i"], B)],
            false,
        ),
        "attach" => (&[(&["--no-stdin"], B)], false),
        "restart" => (&[(&["--time", "-t"], V)], false),
        "pause" | "unpause" | "wait" | "rename" | "port" | "cp" => (&[], false),
        "stop" => (&[(&["--time", "-t"], V), (&["--signal", "-s"], V)], false),
        "kill" => (&[(&["--signal", "-s"], V)], false),
        "rm" => (&[(&["--force", "-f"], B), (&["--volumes", "-v"], B)], false),
        "ps" => (
            &[
                (&["--all", "-a"], B),
                (&["--quiet", "-q"], B),
                (&["--filter", "-f"], V),
                (&["--last", "-n"], V),
                (&["--latest", "-l"], B),
                (&["--no-trunc"], B),
                (&["--format"], V),
            ],
            false,
        ),
        "logs" => (
            &[
                (&["--follow", "-f"], B),
                (&["--tail", "-n"], V),
                (&["--timestamps", "-t"], B),
                (&["--since"], V),
                (&["--until"], V),
            ],
            false,
        ),
        "inspect" => (&[(&["--format", "-f"], V), (&["--type"], V)], false),
        "images" => (
            &[
                (&["--all", "-a"], B),
                (&["--quiet", "-q"], B),
                (&["--no-trunc"], B),
                (&["--format"], V),
            ],
            false,
        ),
        "rmi" => (&[(&["--force", "-f"], B), (&["--no-prune"], B)], false),
        "tag" => (&[], false),
        "top" => (&[], true),
        "stats" => (
            &[
                (&["--no-stream"], B),
                (&["--all", "-a"], B),
                (&["--no-trunc"], B),
            ],
            false,
        ),
        "events" => (
            &[
                (&["--since"], V),
                (&["--until"], V),
                (&["--filter", "-f"], V),
                (&["--format"], V),
            ],
            false,
        ),
        // `volume` and `network` parse their own subcommands.
        "volume" | "network" => return group(verb, args, host).await,
        "system" => return system(args, host).await,
        // Docker's management-command spellings: `container ls`, `container rm`, …
        "container" => {
            let sub = args.first().and_then(|a| a.to_str()).unwrap_or("");
            let verb = match sub {
                "ls" | "list" => "ps",
                "prune" => return container_prune(args.get(1..).unwrap_or(&[]), host).await,
                v if VERBS.contains(&v)
                    && !matches!(
                        v,
                        "container"
                            | "system"
                            | "info"
                            | "images"
                            | "rmi"
                            | "tag"
                            | "volume"
                            | "network"
                    ) =>
                {
                    v
                }
                "" | "--help" | "-h" | "help" => {
                    print!("{}", usage("container"));
                    return Ok(0);
                }
                other => {
                    return Err(Usage(format!(
                        "unknown command \"container {other}\"\n\n{}",
                        usage("container")
                    ))
                    .into());
                }
            };
            return Box::pin(run_verb(verb, args.get(1..).unwrap_or(&[]), host)).await;
        }
        "info" => (&[(&["--format", "-f"], V)], false),
        other => bail!("unknown verb {other}"),
    };
    let opts = parse(verb, spec, args, stop)?;
    if opts.has("--help") {
        print!("{}", usage(verb));
        return Ok(0);
    }
    let client = client(&opts, host)?;
    match verb {
        "run" => run(&client, &opts, true).await,
        "create" => run(&client, &opts, false).await,
        "exec" => exec(&client, &opts).await,
        "start" => start(&client, &opts).await,
        "attach" => attach(&client, &opts).await,
        "cp" => cp(&client, &opts).await,
        "port" => port(&client, &opts).await,
        "pause" | "unpause" => {
            each(&opts, 1, |n| {
                let path = format!("/containers/{}/{verb}", encode(n));
                let c = &client;
                async move { c.post(&path, None).await.map(|_| ()) }
            })
            .await
        }
        "restart" => {
            let mut q = Vec::new();
            if let Some(t) = opts.int("--time")? {
                q.push(("t", t.to_string()));
            }
            each(&opts, 1, |n| {
                let path = with_query(&format!("/containers/{}/restart", encode(n)), &q);
                let c = &client;
                async move { c.post(&path, None).await.map(|_| ()) }
            })
            .await
        }
        "rename" => {
            let [old, new] = opts.args.as_slice() else {
                return Err(
                    Usage("requires exactly 2 arguments: CONTAINER NEW_NAME".into()).into(),
                );
            };
            let path = with_query(
                &format!("/containers/{}/rename", encode(old)),
                &[("name", new.clone())],
            );
            client.post(&path, None).await?;
            Ok(0)
        }
        "wait" => {
            if opts.args.is_empty() {
                return Err(Usage("requires at least 1 argument".into()).into());
            }
            let mut code = 0;
            for n in &opts.args {
                match client
                    .post(&format!("/containers/{}/wait", encode(n)), None)
                    .await
                {
                    Ok(v) => println!("{}", v["StatusCode"].as_i64().unwrap_or(-1)),
                    Err(e) => {
                        eprintln!("{e:#}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        "stop" => {
            let mut q = Vec::new();
            if let Some(t) = opts.int("--time")? {
                q.push(("t", t.to_string()));
            }
            if let Some(s) = opts.value("--signal") {
                q.push(("signal", s.to_owned()));
            }
            each(&opts, 1, |n| {
                let path = with_query(&format!("/containers/{}/stop", encode(n)), &q);
                let c = &client;
                async move { c.post(&path, None).await.map(|_| ()) }
            })
            .await
        }
        "kill" => {
            let signal = opts.value("--signal").unwrap_or("KILL").to_owned();
            each(&opts, 1, |n| {
                let path = with_query(
                    &format!("/containers/{}/kill", encode(n)),
                    &[("signal", signal.clone())],
                );
                let c = &client;
                async move { c.post(&path, None).await.map(|_| ()) }
            })
            .await
        }
        "rm" => {
            let q = [
                ("force", bool_param(opts.has("--force"))),
                ("v", bool_param(opts.has("--volumes"))),
            ];
            each(&opts, 1, |n| {
                let path = with_query(&format!("/containers/{}", encode(n)), &q);
                let c = &client;
                async move { c.delete(&path).await.map(|_| ()) }
            })
            .await
        }
        "ps" => ps(&client, &opts).await,
        "logs" => logs(&client, &opts).await,
        "inspect" => inspect(&client, &opts).await,
        "images" => images(&client, &opts).await,
        "rmi" => rmi(&client, &opts).await,
        "tag" => tag(&client, &opts).await,
        "top" => top(&client, &opts).await,
        "stats" => stats(&client, &opts).await,
        "events" => events(&client, &opts).await,
        "info" => info(&client, opts.value("--format")).await,
        _ => unreachable!("verbs are matched above"),
    }
}

fn bool_param(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

/// `-H`/`--host`, else `BOSUN_HOST`, else the default socket.
fn client(opts: &Opts, host: Option<String>) -> Result<EngineClient> {
    let host = opts
        .value("--host")
        .map(str::to_owned)
        .or(host)
        .or_else(|| std::env::var("BOSUN_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    EngineClient::new(&host)
}

/// Apply `f` to each named object, printing each name that succeeded and
/// each error, as `docker stop a b c` does; exit 1 if any failed.
async fn each<'a, F, Fut>(opts: &'a Opts, min: usize, f: F) -> Result<i32>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    if opts.args.len() < min {
        return Err(Usage("requires at least 1 argument".into()).into());
    }
    let mut code = 0;
    for name in &opts.args {
        match f(name).await {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("{e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

// ---------------------------------------------------------------- run, create

/// `512m`, `1g`, `100k`, `1024` (bytes) as Docker's `-m` reads them.
fn parse_memory(s: &str) -> Result<i64> {
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| Usage(format!("invalid size: {s:?}")))?;
    Ok((n * mult as f64) as i64)
}

/// `-p [IP:][HOST:]CONTAINER[/PROTO]` → (`80/tcp`, HostIp, HostPort).
fn parse_publish(s: &str) -> Result<(String, String, String)> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (spec, p),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(Usage(format!("invalid publish spec: {s:?}")).into()),
    };
    if container.parse::<u16>().is_err() || (!host.is_empty() && host.parse::<u16>().is_err()) {
        return Err(Usage(format!("invalid publish spec: {s:?}")).into());
    }
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(Usage(format!("invalid protocol {proto:?} in {s:?}")).into());
    }
    Ok((
        format!("{container}/{proto}"),
        ip.to_owned(),
        host.to_owned(),
    ))
}

/// `--restart` → Docker's RestartPolicy.
fn parse_restart(s: &str) -> Result<Value> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            c.parse::<i64>()
                .map_err(|_| Usage(format!("invalid restart policy {s:?}")))?,
        ),
        None => (s, 0),
    };
    if !matches!(name, "no" | "always" | "unless-stopped" | "on-failure") {
        return Err(Usage(format!(
            "invalid restart policy {s:?}: no, always, unless-stopped or on-failure[:N]"
        ))
        .into());
    }
    Ok(json!({"Name": name, "MaximumRetryCount": count}))
}

/// `--mount type=volume,source=data,target=/data,readonly`.
/// `--security-opt`, as the docker CLI sends it: a seccomp profile file is
/// read here and its (compacted) JSON sent in its place, since the engine
/// may not see the client's files.
fn security_opts(opts: &[&str]) -> Result<Vec<String>> {
    opts.iter()
        .map(|opt| {
            let (key, value) = match opt.find(['=', ':']) {
                Some(i) => (&opt[..i], &opt[i + 1..]),
                None => return Ok(opt.to_string()),
            };
            if key != "seccomp" || value == "unconfined" || value == "builtin" {
                return Ok(opt.to_string());
            }
            let text = std::fs::read_to_string(value)
                .with_context(|| format!("--security-opt seccomp: cannot read {value}"))?;
            let json: Value = serde_json::from_str(&text)
                .with_context(|| format!("--security-opt seccomp: {value} is not JSON"))?;
            Ok(format!("seccomp={json}"))
        })
        .collect()
}

fn parse_mount(spec: &str) -> Result<Value> {
    let mut kind = "volume".to_owned();
    let (mut source, mut target, mut read_only) = (String::new(), String::new(), false);
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        match (k, v) {
            ("type", Some(v)) => kind = v.to_owned(),
            ("source" | "src", Some(v)) => source = v.to_owned(),
            ("target" | "destination" | "dst", Some(v)) => target = v.to_owned(),
            ("readonly" | "ro", None | Some("true" | "1")) => read_only = true,
            ("readonly" | "ro", Some("false" | "0")) => read_only = false,
            _ => return Err(Usage(format!("invalid field {field:?} in --mount {spec:?}")).into()),
        }
    }
    if target.is_empty() {
        return Err(Usage(format!("--mount {spec:?}: target is required")).into());
    }
    Ok(json!({"Type": kind, "Source": source, "Target": target, "ReadOnly": read_only}))
}

/// A duration flag (`30s`, `1m`) in nanoseconds, as the API takes it.
fn duration_ns(opts: &Opts, name: &str) -> Result<i64> {
    match opts.value(name) {
        Some(v) => go_duration(v)
            .map(|s| (s * 1e9) as i64)
            .ok_or_else(|| Usage(format!("invalid duration {v:?} for {name}")).into()),
        None => Ok(0),
    }
}

/// `--health-*` and `--no-healthcheck` → Config.Healthcheck (none: the image's).
fn healthcheck(opts: &Opts) -> Result<Option<Value>> {
    if opts.has("--no-healthcheck") {
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    let cmd = opts.value("--health-cmd");
    let tuned = [
        "--health-interval",
        "--health-timeout",
        "--health-start-period",
        "--health-retries",
    ]
    .iter()
    .any(|f| opts.has(f));
    if cmd.is_none() && !tuned {
        return Ok(None);
    }
    let test = match cmd {
        Some(c) => json!(["CMD-SHELL", c]),
        None => json!([]),
    };
    Ok(Some(json!({
        "Test": test,
        "Interval": duration_ns(opts, "--health-interval")?,
        "Timeout": duration_ns(opts, "--health-timeout")?,
        "StartPeriod": duration_ns(opts, "--health-start-period")?,
        "Retries": opts.int("--health-retries")?.unwrap_or(0),
    })))
}

/// The `POST /containers/create` body for `run`/`create` flags.
fn create_body(opts: &Opts, detach: bool) -> Result<(Value, String)> {
    let image = opts
        .args
        .first()
        .ok_or_else(|| Usage("requires at least 1 argument: IMAGE".into()))?
        .clone();
    let cmd: Vec<&String> = opts.args[1..].iter().collect();
    let interactive = opts.has("--interactive");
    let attach = !detach;
    let mut lines: Vec<String> = Vec::new();
    for file in opts.values("--env-file") {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("read the env file {file}"))?;
        lines.extend(
            text.lines()
                .map(str::trim_start)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    lines.extend(opts.values("--env").iter().map(|e| (*e).to_owned()));
    let env: Vec<String> = lines
        .into_iter()
        .filter_map(|e| match e.contains('=') {
            true => Some(e),
            // `-e NAME` passes our value, or nothing if we have none.
            false => std::env::var(&e).ok().map(|v| format!("{e}={v}")),
        })
        .collect();
    let labels: BTreeMap<String, String> = opts
        .values("--label")
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => ((*l).to_owned(), String::new()),
        })
        .collect();
    let mut exposed = serde_json::Map::new();
    let mut bindings = serde_json::Map::new();
    for p in opts.values("--expose") {
        let key = if p.contains('/') {
            p.to_owned()
        } else {
            format!("{p}/tcp")
        };
        exposed.insert(key, json!({}));
    }
    for p in opts.values("--publish") {
        let (key, ip, host) = parse_publish(p)?;
        exposed.insert(key.clone(), json!({}));
        let entry = bindings.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": ip, "HostPort": host}));
        }
    }
    let mut binds = Vec::new();
    let mut volumes = serde_json::Map::new();
    for v in opts.values("--volume") {
        if v.contains(':') {
            binds.push(v.to_owned());
        } else {
            volumes.insert(v.to_owned(), json!({}));
        }
    }
    let mut tmpfs = serde_json::Map::new();
    for t in opts.values("--tmpfs") {
        let (dst, o) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(dst.to_owned(), json!(o));
    }
    let network = opts.value("--network").unwrap_or("default").to_owned();
    let aliases = opts.values("--network-alias");
    let mut endpoints = serde_json::Map::new();
    if !aliases.is_empty() {
        endpoints.insert(network.clone(), json!({"Aliases": aliases}));
    }
    let nano_cpus = match opts.value("--cpus") {
        Some(c) => {
            let v: f64 = c
                .parse()
                .map_err(|_| Usage(format!("invalid value {c:?} for --cpus")))?;
            (v * 1e9) as i64
        }
        None => 0,
    };
    let memory = opts.value("--memory").map(parse_memory).transpose()?;
    let restart = match opts.value("--restart") {
        Some(r) => parse_restart(r)?,
        None => json!({"Name": "no", "MaximumRetryCount": 0}),
    };
    if opts.has("--rm") && opts.value("--restart").is_some_and(|r| r != "no") {
        return Err(Usage("conflicting options: --restart and --rm".into()).into());
    }
    let mut config = json!({
        "Image": image,
        "Hostname": opts.value("--hostname").unwrap_or(""),
        "User": opts.value("--user").unwrap_or(""),
        "WorkingDir": opts.value("--workdir").unwrap_or(""),
        "Env": env,
        "Cmd": if cmd.is_empty() { Value::Null } else { json!(cmd) },
        "Labels": labels,
        "Tty": opts.has("--tty"),
        "OpenStdin": interactive,
        // Docker's daemon never closes a terminal's stdin when the client
        // leaves, so ctrl-p ctrl-q leaves the shell running; the engine closes
        // it whenever StdinOnce is set, so it is asked for only without -t.
        "StdinOnce": interactive && attach && !opts.has("--tty"),
        "AttachStdin": interactive && attach,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "ExposedPorts": exposed,
        "Volumes": volumes,
    });
    if let Some(ep) = opts.value("--entrypoint") {
        // An empty --entrypoint resets the image's, as in Docker.
        config["Entrypoint"] = json!([ep]);
    }
    if let Some(s) = opts.value("--stop-signal") {
        config["StopSignal"] = json!(s);
    }
    if let Some(t) = opts.int("--stop-timeout")? {
        config["StopTimeout"] = json!(t);
    }
    if let Some(h) = healthcheck(opts)? {
        config["Healthcheck"] = h;
    }
    let mut host_config = json!({
        "Binds": binds,
        "PortBindings": bindings,
        "PublishAllPorts": opts.has("--publish-all"),
        "NetworkMode": network,
        "RestartPolicy": restart,
        "AutoRemove": opts.has("--rm"),
        "Memory": memory.unwrap_or(0),
        "NanoCpus": nano_cpus,
        "CpuShares": opts.int("--cpu-shares")?.unwrap_or(0),
        "CpusetCpus": opts.value("--cpuset-cpus").unwrap_or(""),
        "Privileged": opts.has("--privileged"),
        "ReadonlyRootfs": opts.has("--read-only"),
        "CapAdd": opts.values("--cap-add"),
        "CapDrop": opts.values("--cap-drop"),
        "Dns": opts.values("--dns"),
        "ExtraHosts": opts.values("--add-host"),
        "Tmpfs": tmpfs,
        "SecurityOpt": security_opts(&opts.values("--security-opt"))?,
    });
    if opts.has("--init") {
        host_config["Init"] = json!(true);
    }
    let mounts = opts
        .values("--mount")
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>>>()?;
    if !mounts.is_empty() {
        host_config["Mounts"] = json!(mounts);
    }
    if let Some(p) = opts.int("--pids-limit")? {
        host_config["PidsLimit"] = json!(p);
    }
    Ok((
        json!({
            "Config": config,
            "HostConfig": host_config,
            "NetworkingConfig": {"EndpointsConfig": endpoints},
        }),
        image,
    ))
}

/// Flatten `Config`/`HostConfig` into the one object the API takes
/// (Config's fields at the top, HostConfig and NetworkingConfig beside them).
fn api_body(body: &Value) -> Value {
    let mut out = body["Config"].clone();
    out["HostConfig"] = body["HostConfig"].clone();
    out["NetworkingConfig"] = body["NetworkingConfig"].clone();
    out
}

/// `fromImage` and `tag` for a pull: `a/b:t` → (`a/b`, `t`), `a@sha256:…` kept.
fn split_image(image: &str) -> (String, String) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name.to_owned(), digest.to_owned());
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_owned(),
            image[slash + i + 1..].to_owned(),
        ),
        None => (image.to_owned(), "latest".to_owned()),
    }
}

/// How a pull's progress is shown: a bar per blob on a terminal, else the
/// status lines without the per-chunk byte counts.
struct PullView {
    multi: Option<indicatif::MultiProgress>,
    bars: BTreeMap<String, indicatif::ProgressBar>,
}

impl PullView {
    fn new() -> Self {
        let multi = std::io::stderr().is_terminal().then(|| {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())
        });
        Self {
            multi,
            bars: BTreeMap::new(),
        }
    }

    fn show(&mut self, v: &Value) {
        let status = v["status"].as_str().unwrap_or("");
        let id = v["id"].as_str();
        let Some(multi) = &self.multi else {
            // Byte counts would scroll; the rest is what docker prints.
            if v["progressDetail"]["current"].is_number() {
                return;
            }
            match id {
                Some(id) => eprintln!("{id}: {status}"),
                None => eprintln!("{status}"),
            }
            return;
        };
        let (Some(id), true) = (id, v["progressDetail"].is_object()) else {
            let line = match id {
                Some(id) => format!("{id}: {status}"),
                None => status.to_owned(),
            };
            let _ = multi.println(line);
            return;
        };
        let bar = self.bars.entry(id.to_owned()).or_insert_with(|| {
            // Status only until a size is known, then a bar too.
            let bar = multi.add(indicatif::ProgressBar::new(0));
            if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix}: {msg}") {
                bar.set_style(style);
            }
            bar.set_prefix(id.to_owned());
            bar
        });
        bar.set_message(status.to_owned());
        let detail = &v["progressDetail"];
        if let (Some(current), Some(total)) = (detail["current"].as_u64(), detail["total"].as_u64())
        {
            if bar.length() == Some(0)
                && let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}",
                )
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_length(total);
            bar.set_position(current);
        } else if status.ends_with("complete") || status.ends_with("exists") {
            bar.finish_with_message(status.to_owned());
        }
    }
}

/// Pull through the engine, showing its progress on stderr.
async fn pull(client: &EngineClient, image: &str) -> Result<()> {
    let (from, tag) = split_image(image);
    let path = with_query("/images/create", &[("fromImage", from), ("tag", tag)]);
    let resp = client.stream(Method::POST, &path, None).await?;
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut view = PullView::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read the pull's progress")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(e) = v["error"].as_str() {
                bail!("Error response from daemon: {e}");
            }
            view.show(&v);
        }
    }
    Ok(())
}

/// Create, pulling the image first if the engine has none by that name.
async fn create_container(
    client: &EngineClient,
    body: &Value,
    image: &str,
    name: Option<&str>,
    pull_policy: &str,
) -> Result<String> {
    if pull_policy == "always" {
        pull(client, image).await?;
    }
    let path = match name {
        Some(n) => with_query("/containers/create", &[("name", n.to_owned())]),
        None => "/containers/create".to_owned(),
    };
    let api = api_body(body);
    let created = match client.post(&path, Some(&api)).await {
        Err(e)
            if pull_policy == "missing"
                && api_status(&e).is_some_and(|a| {
                    a.status == hyper::StatusCode::NOT_FOUND && a.message.contains("No such image")
                }) =>
        {
            let shown = if image.contains(':') || image.contains('@') {
                image.to_owned()
            } else {
                format!("{image}:latest")
            };
            eprintln!("Unable to find image '{shown}' locally");
            pull(client, image).await?;
            client.post(&path, Some(&api)).await?
        }
        other => other?,
    };
    created["Id"]
        .as_str()
        .map(str::to_owned)
        .context("the engine's create answer has no Id")
}

/// Docker's exit codes for a container that could not start: 127 when the
/// command is missing, 126 when it cannot be run, else 125.
fn start_failure_code(message: &str) -> i32 {
    let m = message.to_ascii_lowercase();
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied") || m.contains("exec format error") {
        126
    } else {
        125
    }
}

async fn run(client: &EngineClient, opts: &Opts, start: bool) -> Result<i32> {
    let detach = opts.has("--detach") || !start;
    let (body, image) = create_body(opts, detach)?;
    let pull_policy = opts.value("--pull").unwrap_or("missing");
    if !matches!(pull_policy, "missing" | "always" | "never") {
        return Err(Usage(format!(
            "invalid pull option {pull_policy:?}: must be one of \"always\", \"missing\" or \"never\""
        ))
        .into());
    }
    let id = create_container(client, &body, &image, opts.value("--name"), pull_policy).await?;
    if !start {
        println!("{id}");
        return Ok(0);
    }
    let start_path = format!("/containers/{id}/start");
    if detach {
        if let Err(e) = client.post(&start_path, None).await {
            // A container that never ran never exits: --rm is ours to do.
            if opts.has("--rm") {
                let _ = client.delete(&format!("/containers/{id}?force=1")).await;
            }
            eprintln!("bosun run: {e:#}");
            return Err(Exit(start_failure_code(&e.to_string())).into());
        }
        println!("{id}");
        return Ok(0);
    }
    let session = Session {
        tty: opts.has("--tty"),
        stdin: opts.has("--interactive"),
        auto_remove: opts.has("--rm"),
        start: true,
    };
    session.run(client, &id).await
}

/// An attached container: `run` without `-d`, `start -a`, `attach`.
#[derive(Debug, Clone, Copy)]
struct Session {
    /// The container has a terminal: raw bytes, our terminal raw too.
    tty: bool,
    /// Our stdin goes to the container.
    stdin: bool,
    /// The container goes when it exits (`--rm`): wait for its removal.
    auto_remove: bool,
    /// Start it once attached (else it is running already).
    start: bool,
}

impl Session {
    /// Attach, start, stream until the output ends; the container's exit code.
    async fn run(self, client: &EngineClient, id: &str) -> Result<i32> {
        let mut q = vec![
            ("stream", "1".to_owned()),
            ("stdout", "1".to_owned()),
            ("stderr", "1".to_owned()),
        ];
        if self.stdin {
            q.push(("stdin", "1".to_owned()));
        }
        let io = client
            .upgrade(&with_query(&format!("/containers/{id}/attach"), &q), None)
            .await?;
        // Waiting starts before the container does, so its exit cannot be missed.
        let condition = if self.auto_remove {
            "removed"
        } else {
            "next-exit"
        };
        let wait = client
            .stream(
                Method::POST,
                &format!("/containers/{id}/wait?condition={condition}"),
                None,
            )
            .await?;
        let waiter = tokio::spawn(async move {
            let bytes = wait.into_body().collect().await?.to_bytes();
            let v: Value = serde_json::from_slice(&bytes).context("the engine's wait answer")?;
            if let Some(e) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
                bail!("Error response from daemon: {e}");
            }
            Ok::<i32, anyhow::Error>(v["StatusCode"].as_i64().unwrap_or(125) as i32)
        });
        let raw = if self.tty && self.stdin {
            RawMode::enter()
        } else {
            None
        };
        if self.start
            && let Err(e) = client.post(&format!("/containers/{id}/start"), None).await
        {
            drop(raw);
            waiter.abort();
            if self.auto_remove {
                let _ = client.delete(&format!("/containers/{id}?force=1")).await;
            }
            eprintln!("{e:#}");
            return Err(Exit(start_failure_code(&e.to_string())).into());
        }
        if self.tty {
            resize_task(client, format!("/containers/{id}/resize"));
        } else {
            forward_signals(client, id);
        }
        let detached = stream_io(io, self.tty, self.stdin).await?;
        drop(raw);
        if detached {
            // The container runs on, as after docker's ctrl-p ctrl-q.
            waiter.abort();
            eprintln!("read escape sequence");
            return Ok(0);
        }
        waiter.await.context("wait for the container")?
    }
}

/// `start -a [-i]`: attached, like `run`; plain `start` prints each name.
async fn start(client: &EngineClient, opts: &Opts) -> Result<i32> {
    if !opts.has("--attach") && !opts.has("--interactive") {
        return each(opts, 1, |n| {
            let path = format!("/containers/{}/start", encode(n));
            async move { client.post(&path, None).await.map(|_| ()) }
        })
        .await;
    }
    let [name] = opts.args.as_slice() else {
        return Err(Usage("you cannot start and attach multiple containers at once".into()).into());
    };
    let info = client
        .get(&format!("/containers/{}/json", encode(name)))
        .await?;
    let id = info["Id"].as_str().context("inspect has no Id")?;
    let session = Session {
        tty: info["Config"]["Tty"].as_bool().unwrap_or(false),
        stdin: opts.has("--interactive") && info["Config"]["OpenStdin"].as_bool().unwrap_or(false),
        auto_remove: info["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false),
        start: true,
    };
    session.run(client, id).await
}

/// `attach`: to a running container's output (and input, if it has one open).
async fn attach(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let [name] = opts.args.as_slice() else {
        return Err(Usage("requires exactly 1 argument: CONTAINER".into()).into());
    };
    let info = client
        .get(&format!("/containers/{}/json", encode(name)))
        .await?;
    let id = info["Id"].as_str().context("inspect has no Id")?;
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let session = Session {
        tty: info["Config"]["Tty"].as_bool().unwrap_or(false),
        stdin: !opts.has("--no-stdin") && info["Config"]["OpenStdin"].as_bool().unwrap_or(false),
        auto_remove: info["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false),
        start: false,
    };
    session.run(client, id).await
}

/// `port`: the published ports of a container, `80/tcp -> 0.0.0.0:8080`.
async fn port(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let [name, filter @ ..] = opts.args.as_slice() else {
        return Err(Usage("requires at least 1 argument: CONTAINER [PORT[/PROTO]]".into()).into());
    };
    let info = client
        .get(&format!("/containers/{}/json", encode(name)))
        .await?;
    let want = filter.first().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut lines = Vec::new();
    for (key, bindings) in info["NetworkSettings"]["Ports"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if want.as_ref().is_some_and(|w| w != key) {
            continue;
        }
        for b in bindings.as_array().into_iter().flatten() {
            let ip = b["HostIp"]
                .as_str()
                .filter(|i| !i.is_empty())
                .unwrap_or("0.0.0.0");
            let port = b["HostPort"].as_str().unwrap_or("");
            lines.push(match want {
                Some(_) => format!("{ip}:{port}"),
                None => format!("{key} -> {ip}:{port}"),
            });
        }
    }
    if lines.is_empty()
        && let Some(w) = want
    {
        bail!("Error: No public port '{w}' published for {name}");
    }
    for l in lines {
        println!("{l}");
    }
    Ok(0)
}

/// The local terminal in raw mode for `-it`, restored on drop.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl std::fmt::Debug for RawMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawMode")
    }
}

impl RawMode {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// Our terminal's size, if stdout is one.
fn terminal_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    // `stty size` answers "ROWS COLS" for the terminal on its stdin; it
    // avoids an ioctl, which would need unsafe here.
    let tty = std::fs::File::open("/dev/tty").ok()?;
    let o = std::process::Command::new("stty")
        .arg("size")
        .stdin(tty)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Tell the engine our terminal's size now and on every SIGWINCH.
fn resize_task(client: &EngineClient, path: String) {
    let client = client.clone();
    tokio::spawn(async move {
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
        loop {
            if let Some((h, w)) = terminal_size() {
                let _ = client.post(&format!("{path}?h={h}&w={w}"), None).await;
            }
            match winch.as_mut() {
                Some(s) => {
                    if s.recv().await.is_none() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
}

/// Without a terminal, SIGINT and SIGTERM to us go to the container, as the
/// docker CLI's `--sig-proxy` does.
fn forward_signals(client: &EngineClient, id: &str) {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, name) in [
        (SignalKind::interrupt(), "INT"),
        (SignalKind::terminate(), "TERM"),
    ] {
        let Ok(mut s) = signal(kind) else { continue };
        let client = client.clone();
        let path = format!("/containers/{id}/kill?signal={name}");
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                let _ = client.post(&path, None).await;
            }
        });
    }
}

/// Our stdin in chunks, read on a thread of its own: a blocking read there
/// never holds up the runtime or the exit.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Write one piece of output where it belongs (kind 2 = stderr).
fn emit(kind: u8, data: &[u8]) {
    let result = if kind == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data).and_then(|()| e.flush())
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data).and_then(|()| o.flush())
    };
    // A closed stdout (`| head`) ends our interest, not the container.
    let _ = result;
}

/// Docker's default detach keys: ctrl-p ctrl-q.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Finds the detach sequence in typed input across chunks, holding back a
/// partial match until the next byte decides.
#[derive(Debug, Default)]
struct DetachKeys {
    matched: usize,
}

impl DetachKeys {
    /// The bytes to send on, and whether the sequence was typed.
    fn scan(&mut self, chunk: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(chunk.len());
        for &b in chunk {
            if b == DETACH_KEYS[self.matched] {
                self.matched += 1;
                if self.matched == DETACH_KEYS.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&DETACH_KEYS[..self.matched]);
            self.matched = usize::from(b == DETACH_KEYS[0]);
            if self.matched == 0 {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// Copy a hijacked stream: output to stdout/stderr (demultiplexed unless
/// `tty`), our stdin to it when `stdin`. Returns when the output ends
/// (false) or the detach keys were typed on a terminal (true).
async fn stream_io(io: Hijacked, tty: bool, stdin: bool) -> Result<bool> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
    let input = stdin.then(|| {
        let mut chunks = stdin_chunks();
        let watch_keys = tty && std::io::stdin().is_terminal();
        tokio::spawn(async move {
            let mut keys = DetachKeys::default();
            while let Some(c) = chunks.recv().await {
                let (c, detach) = if watch_keys {
                    keys.scan(&c)
                } else {
                    (c, false)
                };
                if wr.write_all(&c).await.is_err() {
                    return;
                }
                if detach {
                    let _ = detached_tx.send(());
                    return;
                }
            }
            // Half-close: the engine reads end-of-file as the end of stdin.
            let _ = wr.shutdown().await;
        })
    });
    let mut demux = Demux::default();
    let mut buf = vec![0u8; 32 * 1024];
    let mut was_detached = false;
    // A oneshot receiver must not be polled again once it has answered.
    let mut keys_open = true;
    loop {
        let n = tokio::select! {
            n = rd.read(&mut buf) => n.context("read the container's output")?,
            r = &mut detached, if keys_open => {
                if r.is_ok() {
                    was_detached = true;
                    break;
                }
                keys_open = false;
                continue;
            }
        };
        if n == 0 {
            break;
        }
        if tty {
            emit(1, &buf[..n]);
        } else {
            demux.feed(&buf[..n], &mut emit);
        }
    }
    if let Some(i) = input {
        i.abort();
    }
    Ok(was_detached)
}

// ---------------------------------------------------------------- exec, logs

async fn exec(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let [container, cmd @ ..] = opts.args.as_slice() else {
        return Err(Usage("requires at least 2 arguments: CONTAINER COMMAND".into()).into());
    };
    if cmd.is_empty() {
        return Err(Usage("requires at least 2 arguments: CONTAINER COMMAND".into()).into());
    }
    let detach = opts.has("--detach");
    let tty = opts.has("--tty");
    let stdin = opts.has("--interactive") && !detach;
    let created = client
        .post(
            &format!("/containers/{}/exec", encode(container)),
            Some(&json!({
                "AttachStdin": stdin,
                "AttachStdout": !detach,
                "AttachStderr": !detach,
                "Tty": tty,
                "Cmd": cmd,
                "Env": opts.values("--env"),
                "WorkingDir": opts.value("--workdir").unwrap_or(""),
                "User": opts.value("--user").unwrap_or(""),
                "Privileged": opts.has("--privileged"),
            })),
        )
        .await?;
    let exec_id = created["Id"]
        .as_str()
        .context("the engine's exec answer has no Id")?
        .to_owned();
    let start = format!("/exec/{exec_id}/start");
    if detach {
        client
            .post(&start, Some(&json!({"Detach": true, "Tty": tty})))
            .await?;
        return Ok(0);
    }
    let raw = if tty && stdin { RawMode::enter() } else { None };
    let io = client
        .upgrade(&start, Some(&json!({"Detach": false, "Tty": tty})))
        .await?;
    if tty {
        resize_task(client, format!("/exec/{exec_id}/resize"));
    }
    let detached = stream_io(io, tty, stdin).await?;
    drop(raw);
    if detached {
        eprintln!("read escape sequence");
        return Ok(0);
    }
    let inspect = client.get(&format!("/exec/{exec_id}/json")).await?;
    Ok(inspect["ExitCode"].as_i64().unwrap_or(126) as i32)
}

async fn logs(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let [name] = opts.args.as_slice() else {
        return Err(Usage("requires exactly 1 argument: CONTAINER".into()).into());
    };
    let info = client
        .get(&format!("/containers/{}/json", encode(name)))
        .await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = vec![
        ("stdout", "1".to_owned()),
        ("stderr", "1".to_owned()),
        ("follow", bool_param(opts.has("--follow"))),
        ("timestamps", bool_param(opts.has("--timestamps"))),
        ("tail", opts.value("--tail").unwrap_or("all").to_owned()),
    ];
    for key in ["since", "until"] {
        if let Some(v) = opts.value(&format!("--{key}")) {
            q.push((key, timestamp(v)));
        }
    }
    let path = with_query(&format!("/containers/{}/logs", encode(name)), &q);
    let mut body = client.stream(Method::GET, &path, None).await?.into_body();
    let mut demux = Demux::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read the logs")?;
        if let Some(data) = frame.data_ref() {
            if tty {
                emit(1, data);
            } else {
                demux.feed(data, &mut emit);
            }
        }
    }
    Ok(0)
}

/// A Go duration (`90s`, `1h30m`, `1.5h`) in seconds.
fn go_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// `--since`/`--until` as the API takes them: a relative duration (`10m`)
/// becomes a unix time, as the docker CLI converts it; anything else (unix
/// seconds, RFC 3339) goes as written.
fn timestamp(value: &str) -> String {
    match go_duration(value) {
        Some(d) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            format!("{:.9}", now - d)
        }
        None => value.to_owned(),
    }
}

// ---------------------------------------------------------------- listings

fn filters_param(opts: &Opts) -> Result<Option<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in opts.values("--filter") {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| Usage(format!("bad format of filter (expected name=value): {f}")))?;
        map.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    Ok((!map.is_empty()).then(|| json!(map).to_string()))
}

fn short_id(id: &str, no_trunc: bool) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if no_trunc {
        id.to_owned()
    } else {
        id.chars().take(12).collect()
    }
}

fn ports_text(ports: &Value) -> String {
    let mut out: Vec<String> = ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let private = p["PrivatePort"].as_u64().unwrap_or(0);
            let proto = p["Type"].as_str().unwrap_or("tcp");
            match p["PublicPort"].as_u64().filter(|p| *p != 0) {
                Some(public) => {
                    let ip = p["IP"]
                        .as_str()
                        .filter(|i| !i.is_empty())
                        .unwrap_or("0.0.0.0");
                    format!("{ip}:{public}->{private}/{proto}")
                }
                None => format!("{private}/{proto}"),
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out.join(", ")
}

fn command_text(cmd: &str, no_trunc: bool) -> String {
    if no_trunc || cmd.chars().count() <= 20 {
        return format!("\"{cmd}\"");
    }
    let cut: String = cmd.chars().take(19).collect();
    format!("\"{cut}…\"")
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("RunningFor", "CREATED"),
    ("CreatedAt", "CREATED AT"),
];

async fn ps(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let mut q = Vec::new();
    if opts.has("--all") {
        q.push(("all", "1".to_owned()));
    }
    if let Some(n) = opts.int("--last")? {
        q.push(("limit", n.to_string()));
    } else if opts.has("--latest") {
        q.push(("limit", "1".to_owned()));
    }
    if let Some(f) = filters_param(opts)? {
        q.push(("filters", f));
    }
    let list = client.get(&with_query("/containers/json", &q)).await?;
    let no_trunc = opts.has("--no-trunc");
    let rows: Vec<Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let names: Vec<&str> = c["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|n| n.trim_start_matches('/'))
                .collect();
            let labels: Vec<String> = c["Labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            let networks: Vec<&String> = c["NetworkSettings"]["Networks"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .collect();
            let mounts: Vec<&str> = c["Mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["Name"].as_str().or(m["Source"].as_str()))
                .collect();
            let created = c["Created"].as_i64().unwrap_or(0);
            json!({
                "ID": short_id(c["Id"].as_str().unwrap_or(""), no_trunc),
                "Image": c["Image"],
                "Command": command_text(c["Command"].as_str().unwrap_or(""), no_trunc),
                "CreatedAt": fmt::go_time(created),
                "RunningFor": fmt::ago(created),
                "Ports": ports_text(&c["Ports"]),
                "State": c["State"],
                "Status": c["Status"],
                "Names": names.join(","),
                "Labels": labels.join(","),
                "Mounts": mounts.join(","),
                "Networks": networks.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                "Size": "",
            })
        })
        .collect();
    let listing = Listing {
        rows,
        default_format: "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
        headers: PS_HEADERS,
    };
    let format = if opts.has("--quiet") {
        Some("{{.ID}}")
    } else {
        opts.value("--format")
    };
    print!("{}", listing.print(format)?);
    Ok(0)
}

async fn images(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let list = client.get("/images/json").await?;
    let no_trunc = opts.has("--no-trunc");
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for img in list.as_array().into_iter().flatten() {
        let id = short_id(img["Id"].as_str().unwrap_or(""), no_trunc);
        let created = img["Created"].as_i64().unwrap_or(0);
        let size = img["Size"].as_u64().unwrap_or(0);
        let mut tags: Vec<&str> = img["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if tags.is_empty() {
            tags.push("<none>:<none>");
        }
        for t in tags {
            let slash = t.rfind('/').map_or(0, |i| i + 1);
            let (repo, tag) = match t[slash..].rfind(':') {
                Some(i) => (&t[..slash + i], &t[slash + i + 1..]),
                None => (t, "<none>"),
            };
            rows.push(json!({
                "Repository": repo, "Tag": tag, "ID": id, "Digest": "<none>",
                "CreatedSince": fmt::ago(created), "CreatedAt": fmt::go_time(created),
                "Size": fmt::human_size(size),
            }));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if opts.has("--quiet") {
        for id in ids {
            println!("{id}");
        }
        return Ok(0);
    }
    let listing = Listing {
        rows,
        default_format: "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        headers: &[
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
        ],
    };
    print!("{}", listing.print(opts.value("--format"))?);
    Ok(0)
}

async fn rmi(client: &EngineClient, opts: &Opts) -> Result<i32> {
    if opts.args.is_empty() {
        return Err(Usage("requires at least 1 argument".into()).into());
    }
    let mut code = 0;
    for name in &opts.args {
        let path = with_query(
            &format!("/images/{}", encode(name)),
            &[
                ("force", bool_param(opts.has("--force"))),
                ("noprune", bool_param(opts.has("--no-prune"))),
            ],
        );
        match client.delete(&path).await {
            Ok(v) => {
                for item in v.as_array().into_iter().flatten() {
                    if let Some(t) = item["Untagged"].as_str() {
                        println!("Untagged: {t}");
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

async fn tag(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let [source, target] = opts.args.as_slice() else {
        return Err(Usage("requires exactly 2 arguments: SOURCE TARGET".into()).into());
    };
    let (repo, tag) = split_image(target);
    client
        .post(
            &with_query(
                &format!("/images/{}/tag", encode(source)),
                &[("repo", repo), ("tag", tag)],
            ),
            None,
        )
        .await?;
    Ok(0)
}

/// `inspect`: containers, then images (or only `--type`); a JSON array, or
/// one rendered template per object.
async fn inspect(client: &EngineClient, opts: &Opts) -> Result<i32> {
    if opts.args.is_empty() {
        return Err(Usage("requires at least 1 argument".into()).into());
    }
    let kinds: &[(&str, &str)] = match opts.value("--type") {
        None => &[
            ("container", "/containers/{}/json"),
            ("image", "/images/{}/json"),
            ("volume", "/volumes/{}"),
            ("network", "/networks/{}"),
        ],
        Some("container") => &[("container", "/containers/{}/json")],
        Some("image") => &[("image", "/images/{}/json")],
        Some("volume") => &[("volume", "/volumes/{}")],
        Some("network") => &[("network", "/networks/{}")],
        Some(other) => {
            return Err(Usage(format!("{other:?} is not a valid value for --type")).into());
        }
    };
    let mut found = Vec::new();
    let mut code = 0;
    for name in &opts.args {
        let mut got = None;
        for (_, path) in kinds {
            match client.get(&path.replace("{}", &encode(name))).await {
                Ok(v) => {
                    got = Some(v);
                    break;
                }
                Err(e)
                    if api_status(&e).is_some_and(|a| a.status == hyper::StatusCode::NOT_FOUND) => {
                }
                Err(e) => return Err(e),
            }
        }
        match got {
            Some(v) => found.push(v),
            None => {
                eprintln!("Error: No such object: {name}");
                code = 1;
            }
        }
    }
    print_inspected(&found, opts.value("--format"))?;
    Ok(code)
}

fn print_inspected(found: &[Value], format: Option<&str>) -> Result<()> {
    match format {
        Some(f) => {
            for v in found {
                println!("{}", fmt::render(f, v)?);
            }
        }
        None => println!("{}", fmt::pretty(&Value::Array(found.to_vec()))),
    }
    Ok(())
}

// ---------------------------------------------------------------- volume, network

async fn group(verb: &str, args: &[OsString], host: Option<String>) -> Result<i32> {
    let sub = args.first().and_then(|a| a.to_str()).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    let spec: &[Flag] = match (verb, sub) {
        (_, "create") => &[
            (&["--label"], V),
            (&["--driver", "-d"], V),
            (&["--subnet"], V),
            (&["--gateway"], V),
            (&["--opt", "-o"], V),
        ],
        (_, "ls" | "list") => &[
            (&["--quiet", "-q"], B),
            (&["--format"], V),
            (&["--filter", "-f"], V),
            (&["--no-trunc"], B),
        ],
        (_, "inspect") => &[(&["--format", "-f"], V)],
        (_, "rm" | "remove") => &[(&["--force", "-f"], B)],
        ("volume", "prune") => &[(&["--force", "-f"], B), (&["--all", "-a"], B)],
        ("network", "prune") => &[(&["--force", "-f"], B)],
        (_, "" | "--help" | "-h" | "help") => {
            print!("{}", usage(verb));
            return Ok(0);
        }
        (_, other) => {
            return Err(Usage(format!(
                "unknown command \"{verb} {other}\"\n\n{}",
                usage(verb)
            ))
            .into());
        }
    };
    let opts = parse(verb, spec, rest, false)?;
    if opts.has("--help") {
        print!("{}", usage(verb));
        return Ok(0);
    }
    let client = client(&opts, host)?;
    let base = if verb == "volume" {
        "/volumes"
    } else {
        "/networks"
    };
    match sub {
        "create" => {
            let labels: BTreeMap<&str, &str> = opts
                .values("--label")
                .iter()
                .map(|l| l.split_once('=').unwrap_or((l, "")))
                .collect();
            let options: BTreeMap<&str, &str> = opts
                .values("--opt")
                .iter()
                .map(|l| l.split_once('=').unwrap_or((l, "")))
                .collect();
            if verb == "volume" {
                let name = match opts.args.as_slice() {
                    [] => "",
                    [n] => n.as_str(),
                    _ => return Err(Usage("at most 1 argument: NAME".into()).into()),
                };
                let v = client
                    .post(
                        "/volumes/create",
                        Some(&json!({"Name": name, "Driver": opts.value("--driver").unwrap_or("local"),
                                     "Labels": labels, "DriverOpts": options})),
                    )
                    .await?;
                println!("{}", v["Name"].as_str().unwrap_or(name));
            } else {
                let [name] = opts.args.as_slice() else {
                    return Err(Usage("requires exactly 1 argument: NAME".into()).into());
                };
                let mut config = serde_json::Map::new();
                if let Some(s) = opts.value("--subnet") {
                    config.insert("Subnet".into(), json!(s));
                }
                if let Some(g) = opts.value("--gateway") {
                    config.insert("Gateway".into(), json!(g));
                }
                let ipam = if config.is_empty() {
                    json!({"Driver": "default", "Config": []})
                } else {
                    json!({"Driver": "default", "Config": [config]})
                };
                let v = client
                    .post(
                        "/networks/create",
                        Some(&json!({"Name": name, "Driver": opts.value("--driver").unwrap_or("bridge"),
                                     "Labels": labels, "Options": options, "IPAM": ipam})),
                    )
                    .await?;
                println!("{}", v["Id"].as_str().unwrap_or(name));
            }
            Ok(0)
        }
        "ls" | "list" => {
            let path = match filters_param(&opts)? {
                Some(f) => with_query(base, &[("filters", f)]),
                None => base.to_owned(),
            };
            let v = client.get(&path).await?;
            let no_trunc = opts.has("--no-trunc");
            let listing = if verb == "volume" {
                Listing {
                    rows: v["Volumes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| {
                            json!({"Driver": v["Driver"], "Name": v["Name"], "Mountpoint": v["Mountpoint"],
                                   "Scope": v["Scope"], "Labels": labels_text(&v["Labels"])})
                        })
                        .collect(),
                    default_format: "table {{.Driver}}\t{{.Name}}",
                    headers: &[("Name", "VOLUME NAME")],
                }
            } else {
                let mut rows: Vec<Value> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| {
                        json!({"ID": short_id(n["Id"].as_str().unwrap_or(""), no_trunc),
                               "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
                               "Labels": labels_text(&n["Labels"]), "CreatedAt": n["Created"]})
                    })
                    .collect();
                rows.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
                Listing {
                    rows,
                    default_format: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                    headers: &[("ID", "NETWORK ID")],
                }
            };
            let key = if verb == "volume" {
                "{{.Name}}"
            } else {
                "{{.ID}}"
            };
            let format = if opts.has("--quiet") {
                Some(key)
            } else {
                opts.value("--format")
            };
            print!("{}", listing.print(format)?);
            Ok(0)
        }
        "inspect" => {
            if opts.args.is_empty() {
                return Err(Usage("requires at least 1 argument".into()).into());
            }
            let mut found = Vec::new();
            let mut code = 0;
            for name in &opts.args {
                match client.get(&format!("{base}/{}", encode(name))).await {
                    Ok(v) => found.push(v),
                    Err(e) => {
                        eprintln!("{e:#}");
                        code = 1;
                    }
                }
            }
            print_inspected(&found, opts.value("--format"))?;
            Ok(code)
        }
        "prune" => {
            let what = if verb == "volume" {
                if opts.has("--all") {
                    "all volumes not used by at least one container"
                } else {
                    "all anonymous volumes not used by at least one container"
                }
            } else {
                "all custom networks not used by at least one container"
            };
            if !opts.has("--force") && !confirm(&[what])? {
                bail!("{verb} prune has been cancelled");
            }
            let path = if opts.has("--all") {
                with_query(
                    &format!("{base}/prune"),
                    &[("filters", json!({"all": ["true"]}).to_string())],
                )
            } else {
                format!("{base}/prune")
            };
            let v = client.post(&path, None).await?;
            if verb == "volume" {
                print_deleted("Deleted Volumes:", &v["VolumesDeleted"]);
                println!(
                    "Total reclaimed space: {}",
                    fmt::human_size(v["SpaceReclaimed"].as_u64().unwrap_or(0))
                );
            } else {
                print_deleted("Deleted Networks:", &v["NetworksDeleted"]);
            }
            Ok(0)
        }
        "rm" | "remove" => {
            let force = opts.has("--force");
            each(&opts, 1, |n| {
                let path = if verb == "volume" && force {
                    format!("{base}/{}?force=1", encode(n))
                } else {
                    format!("{base}/{}", encode(n))
                };
                let c = &client;
                async move { c.delete(&path).await.map(|_| ()) }
            })
            .await
        }
        _ => unreachable!("subcommands are matched above"),
    }
}

/// `container prune`: every stopped container.
async fn container_prune(args: &[OsString], host: Option<String>) -> Result<i32> {
    let opts = parse("container prune", &[(&["--force", "-f"], B)], args, false)?;
    if opts.has("--help") {
        print!("{}", usage("container"));
        return Ok(0);
    }
    let client = client(&opts, host)?;
    if !opts.has("--force") && !confirm(&["all stopped containers"])? {
        bail!("container prune has been cancelled");
    }
    let v = client.post("/containers/prune", None).await?;
    print_deleted("Deleted Containers:", &v["ContainersDeleted"]);
    println!(
        "Total reclaimed space: {}",
        fmt::human_size(v["SpaceReclaimed"].as_u64().unwrap_or(0))
    );
    Ok(0)
}

/// Ask on the terminal, as Docker's prune verbs do.
fn confirm(what: &[&str]) -> Result<bool> {
    match what {
        [one] => eprintln!("WARNING! This will remove {one}."),
        many => eprintln!("WARNING! This will remove:\n  - {}", many.join("\n  - ")),
    }
    eprint!("Are you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn print_deleted(title: &str, list: &Value) {
    let items: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !items.is_empty() {
        println!("{title}");
        for i in items {
            println!("{i}");
        }
        println!();
    }
}

/// Whether two references name the same tag (`busybox` is
/// `docker.io/library/busybox:latest`).
fn same_image(a: &str, b: &str) -> bool {
    let norm = |r: &str| {
        r.parse::<bosun_oci::ImageRef>()
            .map(|r| format!("{}:{}", r.name(), r.tag().unwrap_or("latest")))
            .unwrap_or_else(|_| r.to_owned())
    };
    a == b || norm(a) == norm(b)
}

/// `system df`, `system info`, `system prune`.
async fn system(args: &[OsString], host: Option<String>) -> Result<i32> {
    let sub = args.first().and_then(|a| a.to_str()).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    let spec: &[Flag] = match sub {
        "df" => &[],
        "info" => &[(&["--format", "-f"], V)],
        "prune" => &[(&["--force", "-f"], B), (&["--volumes"], B)],
        "" | "--help" | "-h" | "help" => {
            print!("{}", usage("system"));
            return Ok(0);
        }
        other => {
            return Err(Usage(format!(
                "unknown command \"system {other}\"\n\n{}",
                usage("system")
            ))
            .into());
        }
    };
    let opts = parse("system", spec, rest, false)?;
    if opts.has("--help") {
        print!("{}", usage("system"));
        return Ok(0);
    }
    let client = client(&opts, host)?;
    match sub {
        "info" => info(&client, opts.value("--format")).await,
        "df" => {
            let v = client.get("/system/df").await?;
            let containers: Vec<&Value> =
                v["Containers"].as_array().into_iter().flatten().collect();
            let used: Vec<&str> = containers
                .iter()
                .filter_map(|c| c["Image"].as_str())
                .collect();
            let images: Vec<&Value> = v["Images"].as_array().into_iter().flatten().collect();
            let image_used = |i: &Value| {
                i["RepoTags"].as_array().into_iter().flatten().any(|t| {
                    t.as_str()
                        .is_some_and(|t| used.iter().any(|u| same_image(u, t)))
                })
            };
            let size = |i: &Value| i["Size"].as_u64().unwrap_or(0);
            let images_size: u64 = images.iter().map(|i| size(i)).sum();
            let images_free: u64 = images
                .iter()
                .filter(|i| !image_used(i))
                .map(|i| size(i))
                .sum();
            let volumes: Vec<&Value> = v["Volumes"].as_array().into_iter().flatten().collect();
            let vsize = |v: &Value| v["UsageData"]["Size"].as_u64().unwrap_or(0);
            let vused = |v: &Value| v["UsageData"]["RefCount"].as_u64().unwrap_or(0) > 0;
            let volumes_size: u64 = volumes.iter().map(|v| vsize(v)).sum();
            let volumes_free: u64 = volumes.iter().filter(|v| !vused(v)).map(|v| vsize(v)).sum();
            let percent = |part: u64, all: u64| {
                (part * 100)
                    .checked_div(all)
                    .map_or_else(String::new, |p| format!(" ({p}%)"))
            };
            let running = containers
                .iter()
                .filter(|c| {
                    matches!(
                        c["State"].as_str(),
                        Some("running" | "paused" | "restarting")
                    )
                })
                .count();
            let rw = |c: &Value| c["SizeRw"].as_u64().unwrap_or(0);
            let containers_size: u64 = containers.iter().map(|c| rw(c)).sum();
            let containers_free: u64 = containers
                .iter()
                .filter(|c| {
                    !matches!(
                        c["State"].as_str(),
                        Some("running" | "paused" | "restarting")
                    )
                })
                .map(|c| rw(c))
                .sum();
            let rows = [
                format!(
                    "Images\t{}\t{}\t{}\t{}{}",
                    images.len(),
                    images.iter().filter(|i| image_used(i)).count(),
                    fmt::human_size(images_size),
                    fmt::human_size(images_free),
                    percent(images_free, images_size)
                ),
                format!(
                    "Containers\t{}\t{running}\t{}\t{}",
                    containers.len(),
                    fmt::human_size(containers_size),
                    fmt::human_size(containers_free)
                ),
                format!(
                    "Local Volumes\t{}\t{}\t{}\t{}{}",
                    volumes.len(),
                    volumes.iter().filter(|v| vused(v)).count(),
                    fmt::human_size(volumes_size),
                    fmt::human_size(volumes_free),
                    percent(volumes_free, volumes_size)
                ),
            ];
            let mut lines = vec!["TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE".to_owned()];
            lines.extend(rows);
            print!("{}", fmt::align(&lines));
            Ok(0)
        }
        "prune" => {
            let mut what = vec![
                "all stopped containers",
                "all networks not used by at least one container",
            ];
            if opts.has("--volumes") {
                what.push("all anonymous volumes not used by at least one container");
            }
            if !opts.has("--force") && !confirm(&what)? {
                bail!("system prune has been cancelled");
            }
            let c = client.post("/containers/prune", None).await?;
            print_deleted("Deleted Containers:", &c["ContainersDeleted"]);
            let n = client.post("/networks/prune", None).await?;
            print_deleted("Deleted Networks:", &n["NetworksDeleted"]);
            let mut space = c["SpaceReclaimed"].as_u64().unwrap_or(0);
            if opts.has("--volumes") {
                let v = client.post("/volumes/prune", None).await?;
                print_deleted("Deleted Volumes:", &v["VolumesDeleted"]);
                space += v["SpaceReclaimed"].as_u64().unwrap_or(0);
            }
            println!("Total reclaimed space: {}", fmt::human_size(space));
            Ok(0)
        }
        _ => unreachable!("subcommands are matched above"),
    }
}

/// `info`: the engine's summary, or a template over `/info`.
async fn info(client: &EngineClient, format: Option<&str>) -> Result<i32> {
    let v = client.get("/info").await?;
    if let Some(f) = format {
        println!("{}", fmt::render(f, &v)?);
        return Ok(0);
    }
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    println!("Server:");
    println!(" Containers: {}", s("Containers"));
    println!("  Running: {}", s("ContainersRunning"));
    println!("  Paused: {}", s("ContainersPaused"));
    println!("  Stopped: {}", s("ContainersStopped"));
    println!(" Images: {}", s("Images"));
    println!(" Server Version: {}", s("ServerVersion"));
    println!(" Storage Driver: {}", s("Driver"));
    println!(" Logging Driver: {}", s("LoggingDriver"));
    println!(" Cgroup Driver: {}", s("CgroupDriver"));
    println!(" Cgroup Version: {}", s("CgroupVersion"));
    println!(" Default Runtime: {}", s("DefaultRuntime"));
    println!(" Live Restore Enabled: {}", s("LiveRestoreEnabled"));
    println!(" Kernel Version: {}", s("KernelVersion"));
    println!(" Operating System: {}", s("OperatingSystem"));
    println!(" OSType: {}", s("OSType"));
    println!(" Architecture: {}", s("Architecture"));
    println!(" CPUs: {}", s("NCPU"));
    println!(
        " Total Memory: {}",
        fmt::bytes_size(v["MemTotal"].as_u64().unwrap_or(0))
    );
    println!(" Name: {}", s("Name"));
    println!(" ID: {}", s("ID"));
    println!(" Docker Root Dir: {}", s("DockerRootDir"));
    Ok(0)
}

fn labels_text(labels: &Value) -> String {
    labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------- cp

/// `CONTAINER:PATH` → (container, path); a local path (absolute, or
/// starting with `.`) never names a container, as in Docker.
fn split_container(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':').filter(|(c, _)| !c.is_empty())
}

/// The last component of a path (`/a/b/` → `b`), or `.` for `/`.
fn base_name(path: &str) -> String {
    std::path::Path::new(path.trim_end_matches('/'))
        .file_name()
        .map_or_else(|| ".".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// What the engine says about a path in a container (HEAD archive): its
/// mode bits with Go's directory flag, or None if it does not exist.
async fn container_stat(client: &EngineClient, id: &str, path: &str) -> Result<Option<Value>> {
    let url = with_query(
        &format!("/containers/{}/archive", encode(id)),
        &[("path", path.to_owned())],
    );
    let resp = client.send(Method::HEAD, &url, None).await?;
    if resp.status() == hyper::StatusCode::NOT_FOUND {
        // Either the container or the path; the container is checked by the caller.
        return Ok(None);
    }
    let header = resp
        .headers()
        .get("X-Docker-Container-Path-Stat")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    EngineClient::bytes(resp).await?;
    let Some(header) = header else {
        bail!("the engine's archive answer has no path stat");
    };
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, header)
        .context("the engine's path stat")?;
    Ok(Some(serde_json::from_slice(&raw)?))
}

/// `cp`: between a container and the local file system, as tar through the
/// engine's archive endpoints; `-` is a tar stream on stdin or stdout.
async fn cp(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let [src, dst] = opts.args.as_slice() else {
        return Err(Usage("requires exactly 2 arguments: SRC DEST".into()).into());
    };
    match (split_container(src), split_container(dst)) {
        (Some((id, path)), None) => copy_out(client, id, path, dst).await,
        (None, Some((id, path))) => copy_in(client, src, id, path).await,
        _ => Err(Usage(
            "one of SRC and DEST must be CONTAINER:PATH and the other a local path".into(),
        )
        .into()),
    }
}

async fn copy_out(client: &EngineClient, id: &str, path: &str, dst: &str) -> Result<i32> {
    let url = with_query(
        &format!("/containers/{}/archive", encode(id)),
        &[("path", path.to_owned())],
    );
    let resp = client.send(Method::GET, &url, None).await?;
    let tar = EngineClient::bytes(resp).await?;
    if dst == "-" {
        std::io::stdout().write_all(&tar)?;
        return Ok(0);
    }
    let dst = std::path::Path::new(dst);
    // Into an existing directory under its own name; else as DEST itself.
    let (dir, rename) = if dst.is_dir() {
        (dst.to_path_buf(), None)
    } else {
        let parent = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if !parent.is_dir() {
            bail!("no such directory: {}", parent.display());
        }
        (parent, dst.file_name().map(std::ffi::OsStr::to_owned))
    };
    let tar = match rename {
        Some(new) => rename_root(&tar, &new)?,
        None => tar.to_vec(),
    };
    let mut archive = tar::Archive::new(std::io::Cursor::new(tar));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    // `unpack` refuses `..` and absolute names: nothing lands outside DIR.
    archive
        .unpack(&dir)
        .with_context(|| format!("extract into {}", dir.display()))?;
    Ok(0)
}

/// The same archive with its top-level name replaced (`cp C:/a/b ./c`
/// makes `c`, not `c/b`).
fn rename_root(tar: &[u8], new: &std::ffi::OsStr) -> Result<Vec<u8>> {
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let rest: std::path::PathBuf = name
            .components()
            .skip_while(|c| matches!(c, std::path::Component::CurDir))
            .skip(1)
            .collect();
        // Joining an empty path would add a slash, which makes a directory.
        let target = if rest.as_os_str().is_empty() {
            std::path::PathBuf::from(new)
        } else {
            std::path::Path::new(new).join(rest)
        };
        let mut header = entry.header().clone();
        out.append_data(&mut header, target, &mut entry)?;
    }
    Ok(out.into_inner()?)
}

async fn copy_in(client: &EngineClient, src: &str, id: &str, path: &str) -> Result<i32> {
    let (dir, tar) = if src == "-" {
        // A tar stream from stdin goes into the directory as it is.
        let mut tar = Vec::new();
        std::io::stdin().read_to_end(&mut tar)?;
        (path.to_owned(), tar)
    } else {
        let local = std::path::Path::new(src);
        let meta = std::fs::symlink_metadata(local)
            .with_context(|| format!("no such file or directory: {src}"))?;
        // Into an existing directory under SRC's name; else as DEST itself,
        // in DEST's parent directory.
        let stat = container_stat(client, id, path).await?;
        let is_dir = stat
            .as_ref()
            .and_then(|s| s["mode"].as_u64())
            .is_some_and(|m| m & (1 << 31) != 0);
        let (dir, name) = if is_dir {
            (path.to_owned(), base_name(src))
        } else {
            let trimmed = path.trim_end_matches('/');
            let parent = match trimmed.rfind('/') {
                Some(0) => "/".to_owned(),
                Some(i) => trimmed[..i].to_owned(),
                None => ".".to_owned(),
            };
            (parent, base_name(path))
        };
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        if meta.is_dir() {
            builder.append_dir_all(&name, local)?;
        } else {
            builder.append_path_with_name(local, &name)?;
        }
        (dir, builder.into_inner()?)
    };
    let url = with_query(
        &format!("/containers/{}/archive", encode(id)),
        &[("path", dir)],
    );
    let resp = client
        .send_bytes(
            Method::PUT,
            &url,
            bytes::Bytes::from(tar),
            "application/x-tar",
        )
        .await?;
    EngineClient::bytes(resp).await?;
    Ok(0)
}

// ---------------------------------------------------------------- top, stats, events

async fn top(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let [name, ps_args @ ..] = opts.args.as_slice() else {
        return Err(Usage("requires at least 1 argument: CONTAINER".into()).into());
    };
    let mut path = format!("/containers/{}/top", encode(name));
    if !ps_args.is_empty() {
        path = with_query(&path, &[("ps_args", ps_args.join(" "))]);
    }
    let v = client.get(&path).await?;
    let mut lines = Vec::new();
    let titles: Vec<&str> = v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    lines.push(titles.join("\t"));
    for p in v["Processes"].as_array().into_iter().flatten() {
        let cells: Vec<&str> = p
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        lines.push(cells.join("\t"));
    }
    print!("{}", fmt::align(&lines));
    Ok(0)
}

/// Host memory, for containers without a limit (cgroup v1 reports a huge one).
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One `stats` row from a sample that carries its predecessor (precpu).
fn stats_row(s: &Value, no_trunc: bool) -> Value {
    let cpu = s["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_f64()
        .unwrap_or(0.0);
    let pre = s["precpu_stats"]["cpu_usage"]["total_usage"]
        .as_f64()
        .unwrap_or(0.0);
    let sys = s["cpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let presys = s["precpu_stats"]["system_cpu_usage"]
        .as_f64()
        .unwrap_or(0.0);
    let online = s["cpu_stats"]["online_cpus"].as_f64().unwrap_or(1.0);
    let cpu_pct = if sys > presys && cpu >= pre && presys > 0.0 {
        (cpu - pre) / (sys - presys) * online * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    // Docker leaves the page cache out of the usage it shows.
    let cache = mem["stats"]["total_inactive_file"]
        .as_u64()
        .or(mem["stats"]["inactive_file"].as_u64())
        .unwrap_or(0);
    let usage = mem["usage"].as_u64().unwrap_or(0).saturating_sub(cache);
    let host = host_memory();
    let limit = match mem["limit"].as_u64().unwrap_or(0) {
        0 => host,
        l if host > 0 && l > host => host,
        l => l,
    };
    let mem_pct = if limit > 0 {
        usage as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    json!({
        "ID": short_id(s["id"].as_str().unwrap_or(""), no_trunc),
        "Name": s["name"].as_str().unwrap_or("").trim_start_matches('/'),
        "CPUPerc": format!("{cpu_pct:.2}%"),
        "MemUsage": format!("{} / {}", fmt::bytes_size(usage), fmt::bytes_size(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

async fn stats(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let names: Vec<String> = if opts.args.is_empty() {
        let q = if opts.has("--all") { "?all=1" } else { "" };
        client
            .get(&format!("/containers/json{q}"))
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Id"].as_str().map(str::to_owned))
            .collect()
    } else {
        opts.args.clone()
    };
    let no_trunc = opts.has("--no-trunc");
    let rows = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<usize, Value>::new()));
    let mut tasks = Vec::new();
    let once = opts.has("--no-stream");
    for (i, name) in names.iter().enumerate() {
        let path = format!("/containers/{}/stats?stream=1", encode(name));
        let mut body = client.stream(Method::GET, &path, None).await?.into_body();
        let rows = rows.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut samples = 0;
            while let Some(Ok(frame)) = body.frame().await {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    samples += 1;
                    rows.lock()
                        .expect("rows")
                        .insert(i, stats_row(&v, no_trunc));
                    // The second sample has a predecessor to take CPU from.
                    if once && samples >= 2 {
                        return;
                    }
                }
            }
        }));
    }
    let listing_of = |rows: Vec<Value>| Listing {
        rows,
        default_format: "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.PIDs}}",
        headers: &[
            ("ID", "CONTAINER ID"),
            ("CPUPerc", "CPU %"),
            ("MemUsage", "MEM USAGE / LIMIT"),
            ("MemPerc", "MEM %"),
        ],
    };
    if once {
        for t in tasks {
            let _ = t.await;
        }
        let rows: Vec<Value> = rows.lock().expect("rows").values().cloned().collect();
        print!("{}", listing_of(rows).print(None)?);
        return Ok(0);
    }
    let clear = std::io::stdout().is_terminal();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let rows: Vec<Value> = rows.lock().expect("rows").values().cloned().collect();
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", listing_of(rows).print(None)?);
        let _ = std::io::stdout().flush();
        if tasks.iter().all(tokio::task::JoinHandle::is_finished) {
            return Ok(0);
        }
    }
}

async fn events(client: &EngineClient, opts: &Opts) -> Result<i32> {
    let mut q = Vec::new();
    for key in ["since", "until"] {
        if let Some(v) = opts.value(&format!("--{key}")) {
            q.push((key, timestamp(v)));
        }
    }
    if let Some(f) = filters_param(opts)? {
        q.push(("filters", f));
    }
    let mut body = client
        .stream(Method::GET, &with_query("/events", &q), None)
        .await?
        .into_body();
    let format = opts.value("--format");
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read the events")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let text = match format {
                Some(f) => fmt::render(f, &v)?,
                None => event_text(&v),
            };
            println!("{text}");
            let _ = std::io::stdout().flush();
        }
    }
    Ok(0)
}

/// Docker's event line: `TIME TYPE ACTION ID (k=v, …)`.
fn event_text(v: &Value) -> String {
    let nanos = v["timeNano"]
        .as_i64()
        .unwrap_or_else(|| v["time"].as_i64().unwrap_or(0) * 1_000_000_000);
    let attrs: Vec<String> = v["Actor"]["Attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    let mut line = format!(
        "{} {} {} {}",
        fmt::rfc3339_nano(nanos),
        v["Type"].as_str().unwrap_or(""),
        v["Action"].as_str().unwrap_or(""),
        v["Actor"]["ID"].as_str().unwrap_or(""),
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_in_docker_spelling() {
        let o = parse(
            "run",
            RUN_FLAGS,
            &os(&[
                "-it", "--rm", "-p", "8080:80", "-e=A=1", "--name=x", "-v/a:/b", "img", "sh", "-c",
                "-d",
            ]),
            true,
        )
        .unwrap();
        assert!(o.has("--interactive") && o.has("--tty") && o.has("--rm"));
        assert!(
            !o.has("--detach"),
            "flags after the image are the command's"
        );
        assert_eq!(o.values("--publish"), ["8080:80"]);
        assert_eq!(o.value("--env"), Some("A=1"));
        assert_eq!(o.value("--name"), Some("x"));
        assert_eq!(o.value("--volume"), Some("/a:/b"));
        assert_eq!(o.args, ["img", "sh", "-c", "-d"]);
        assert!(parse("run", RUN_FLAGS, &os(&["--bogus", "img"]), true).is_err());
        assert!(parse("run", RUN_FLAGS, &os(&["--name"]), true).is_err());
        let o = parse(
            "rm",
            &[(&["--force", "-f"], B)],
            &os(&["a", "-f", "b"]),
            false,
        )
        .unwrap();
        assert!(o.has("--force"));
        assert_eq!(o.args, ["a", "b"]);
    }

    #[test]
    fn publish_memory_restart_and_images() {
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap(),
            ("80/udp".into(), "127.0.0.1".into(), "8080".into())
        );
        assert_eq!(
            parse_publish("80").unwrap(),
            ("80/tcp".into(), String::new(), String::new())
        );
        assert!(parse_publish("x:80").is_err());
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("100").unwrap(), 100);
        assert!(parse_restart("on-failure:3").is_ok());
        assert!(parse_restart("sometimes").is_err());
        assert_eq!(split_image("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split_image("localhost:5000/a/b:v1"),
            ("localhost:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            split_image("localhost:5000/a"),
            ("localhost:5000/a".into(), "latest".into())
        );
        assert_eq!(
            start_failure_code("exec: executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("x: permission denied"), 126);
        assert_eq!(start_failure_code("port is already allocated"), 125);
        assert!(same_image("busybox", "docker.io/library/busybox:latest"));
        assert_eq!(go_duration("1h30m"), Some(5400.0));
        assert_eq!(go_duration("1.5s"), Some(1.5));
        assert_eq!(go_duration("1700000000"), None);
        assert_eq!(timestamp("1700000000.5"), "1700000000.5");
        assert!(timestamp("10m").parse::<f64>().is_ok());
        assert!(!same_image("busybox:1", "docker.io/library/busybox:latest"));
    }

    #[test]
    fn detach_keys_across_chunks() {
        let mut k = DetachKeys::default();
        assert_eq!(k.scan(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(k.scan(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(k.scan(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(k.scan(b"\x11rest"), (Vec::new(), true));
    }

    #[test]
    fn ps_columns() {
        let ports = json!([{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                           {"PrivatePort": 53, "Type": "udp"}]);
        assert_eq!(ports_text(&ports), "0.0.0.0:8080->80/tcp, 53/udp");
        assert_eq!(command_text("echo hi", false), "\"echo hi\"");
        assert_eq!(
            command_text("sh -c 'for i in 1 2 3; do'", false),
            "\"sh -c 'for i in 1 2…\""
        );
    }
}
