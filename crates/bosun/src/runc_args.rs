//! A small table-driven parser for runc's command line.
//!
//! The runtime is started once per container by engines, so its command line is a
//! hot path: this parser keeps clap's code out of those processes (fewer pages of
//! code mapped, a lower peak RSS). It accepts what runc's parser accepts and what
//! podman and containerd send: `--flag value`, `--flag=value`, single-dash long
//! names (`-root`), short flags (`-b`, bundled booleans like `-dt`), flags before
//! or after the container id, and `--` to end flags.

use std::fmt;

/// One flag of a command (or of the global set).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag {
    pub(crate) long: &'static str,
    pub(crate) short: Option<char>,
    pub(crate) takes_value: bool,
}

const fn val(long: &'static str, short: Option<char>) -> Flag {
    Flag {
        long,
        short,
        takes_value: true,
    }
}

const fn bool_(long: &'static str, short: Option<char>) -> Flag {
    Flag {
        long,
        short,
        takes_value: false,
    }
}

/// Where a command's free-form tail begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// No tail: every non-flag is a positional.
    None,
    /// After the first positional (the id), everything is the tail (`ps ID -ef`).
    AfterId,
    /// From the second positional on, everything is the tail (`exec ID cmd -x`).
    AfterCommand,
}

#[derive(Debug)]
pub(crate) struct CommandSpec {
    pub(crate) name: &'static str,
    pub(crate) flags: &'static [Flag],
    pub(crate) tail: Tail,
    pub(crate) usage: &'static str,
}

pub(crate) const GLOBAL: &[Flag] = &[
    val("root", None),
    val("log", None),
    val("log-format", None),
    val("criu", None),
    val("rootless", None),
    bool_("debug", None),
    bool_("systemd-cgroup", None),
];

const CREATE_FLAGS: &[Flag] = &[
    val("bundle", Some('b')),
    val("console-socket", None),
    val("pid-file", None),
    val("preserve-fds", None),
    bool_("no-pivot", None),
    bool_("no-new-keyring", None),
];

const RUN_FLAGS: &[Flag] = &[
    val("bundle", Some('b')),
    val("console-socket", None),
    val("pid-file", None),
    val("preserve-fds", None),
    bool_("no-pivot", None),
    bool_("no-new-keyring", None),
    bool_("detach", Some('d')),
    bool_("keep", None),
];

const EXEC_FLAGS: &[Flag] = &[
    val("process", Some('p')),
    val("env", Some('e')),
    val("cwd", None),
    val("user", Some('u')),
    val("additional-gids", Some('g')),
    val("cap", Some('c')),
    val("console-socket", None),
    val("pid-file", None),
    val("preserve-fds", None),
    val("process-label", None),
    val("apparmor", None),
    val("cgroup", None),
    bool_("tty", Some('t')),
    bool_("detach", Some('d')),
    bool_("no-new-privs", None),
    bool_("ignore-paused", None),
];

const UPDATE_FLAGS: &[Flag] = &[
    val("resources", Some('r')),
    val("memory", None),
    val("memory-reservation", None),
    val("memory-swap", None),
    val("cpu-shares", None),
    val("cpu-quota", None),
    val("cpu-period", None),
    val("cpuset-cpus", None),
    val("cpuset-mems", None),
    val("pids-limit", None),
    val("blkio-weight", None),
];

pub(crate) const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "create",
        flags: CREATE_FLAGS,
        tail: Tail::None,
        usage: "create [--bundle DIR] [--console-socket PATH] [--pid-file PATH] [--preserve-fds N] <id>",
    },
    CommandSpec {
        name: "start",
        flags: &[],
        tail: Tail::None,
        usage: "start <id>",
    },
    CommandSpec {
        name: "run",
        flags: RUN_FLAGS,
        tail: Tail::None,
        usage: "run [--bundle DIR] [--detach] [--console-socket PATH] [--pid-file PATH] [--preserve-fds N] <id>",
    },
    CommandSpec {
        name: "state",
        flags: &[],
        tail: Tail::None,
        usage: "state <id>",
    },
    CommandSpec {
        name: "kill",
        flags: &[bool_("all", Some('a'))],
        tail: Tail::None,
        usage: "kill [--all] <id> [SIGNAL]",
    },
    CommandSpec {
        name: "delete",
        flags: &[bool_("force", Some('f'))],
        tail: Tail::None,
        usage: "delete [--force] <id>",
    },
    CommandSpec {
        name: "exec",
        flags: EXEC_FLAGS,
        tail: Tail::AfterCommand,
        usage: "exec [--process FILE] [-t] [-d] [--env K=V]... [--cwd DIR] [--user UID[:GID]] <id> [COMMAND [ARG...]]",
    },
    CommandSpec {
        name: "ps",
        flags: &[val("format", Some('f'))],
        tail: Tail::AfterId,
        usage: "ps [--format table|json] <id> [PS ARGS...]",
    },
    CommandSpec {
        name: "list",
        flags: &[val("format", Some('f')), bool_("quiet", Some('q'))],
        tail: Tail::None,
        usage: "list [--format table|json] [--quiet]",
    },
    CommandSpec {
        name: "pause",
        flags: &[],
        tail: Tail::None,
        usage: "pause <id>",
    },
    CommandSpec {
        name: "resume",
        flags: &[],
        tail: Tail::None,
        usage: "resume <id>",
    },
    CommandSpec {
        name: "events",
        flags: &[bool_("stats", None), val("interval", None)],
        tail: Tail::None,
        usage: "events [--stats] [--interval 5s] <id>",
    },
    CommandSpec {
        name: "update",
        flags: UPDATE_FLAGS,
        tail: Tail::None,
        usage: "update [--resources FILE|-] [--memory N] [--memory-reservation N] [--memory-swap N] [--cpu-shares N] [--cpu-quota N] [--cpu-period N] [--cpuset-cpus LIST] [--cpuset-mems LIST] [--pids-limit N] [--blkio-weight N] <id>",
    },
    CommandSpec {
        name: "spec",
        flags: &[val("bundle", Some('b'))],
        tail: Tail::None,
        usage: "spec [--bundle DIR]",
    },
    CommandSpec {
        name: "features",
        flags: &[],
        tail: Tail::None,
        usage: "features",
    },
];

/// A usage error: the message names the flag or argument at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The result of parsing: flags by long name, positionals, and the tail.
#[derive(Debug, Default)]
pub(crate) struct Matches {
    values: Vec<(&'static str, String)>,
    bools: Vec<&'static str>,
    pub(crate) positionals: Vec<String>,
    pub(crate) tail: Vec<String>,
}

impl Matches {
    /// The last value given for `long`.
    pub(crate) fn value(&self, long: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| *k == long)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `long`, in order.
    pub(crate) fn values(&self, long: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(k, _)| *k == long)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn flag(&self, long: &str) -> bool {
        self.bools.contains(&long)
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Parsed {
    Help(String),
    Version,
    Command {
        global: Matches,
        spec: &'static CommandSpec,
        matches: Matches,
    },
}

fn find<'a>(flags: &'a [Flag], name: &str) -> Option<&'a Flag> {
    flags.iter().find(|f| f.long == name)
}

fn find_short(flags: &[Flag], c: char) -> Option<&Flag> {
    flags.iter().find(|f| f.short == Some(c))
}

fn help(program: &str) -> String {
    let mut s = format!(
        "{program}: bosun's OCI runtime (runc-compatible)\n\nUsage: {program} [--root DIR] [--log FILE] [--log-format text|json] COMMAND\n\nCommands:\n"
    );
    for c in COMMANDS {
        s.push_str(&format!("  {}\n", c.usage));
    }
    s
}

/// Parse `args` (without the program name).
pub(crate) fn parse(program: &str, args: &[String]) -> Result<Parsed, UsageError> {
    let mut global = Matches::default();
    let mut i = 0;
    // Global flags come first; the first non-flag is the command.
    let spec = loop {
        let Some(tok) = args.get(i) else {
            return Err(UsageError(format!("no command given\n\n{}", help(program))));
        };
        match tok.as_str() {
            "--help" | "-h" | "help" => return Ok(Parsed::Help(help(program))),
            "--version" | "-v" | "version" => return Ok(Parsed::Version),
            _ => {}
        }
        if tok.starts_with('-') {
            i = take_flag(args, i, GLOBAL, &[], &mut global, "")?;
            continue;
        }
        break COMMANDS
            .iter()
            .find(|c| c.name == tok)
            .ok_or_else(|| UsageError(format!("unknown command {tok:?}\n\n{}", help(program))))?;
    };
    i += 1;
    let mut m = Matches::default();
    let mut in_tail = false;
    while let Some(tok) = args.get(i) {
        if in_tail {
            m.tail.push(tok.clone());
            i += 1;
            continue;
        }
        if tok == "--" {
            for rest in &args[i + 1..] {
                if spec.tail != Tail::None && !m.positionals.is_empty() {
                    m.tail.push(rest.clone());
                } else {
                    m.positionals.push(rest.clone());
                }
            }
            break;
        }
        if tok == "--help" || tok == "-h" {
            return Ok(Parsed::Help(format!("Usage: {program} {}\n", spec.usage)));
        }
        if tok.starts_with('-') && tok.len() > 1 {
            i = take_flag(args, i, spec.flags, GLOBAL, &mut m, spec.name)?;
            continue;
        }
        if spec.tail == Tail::AfterCommand && m.positionals.len() == 1 {
            // This token starts the command; it and everything after are the tail.
            in_tail = true;
            continue;
        }
        m.positionals.push(tok.clone());
        if spec.tail == Tail::AfterId && m.positionals.len() == 1 {
            in_tail = true;
        }
        i += 1;
    }
    // Global flags given after the command count as global ones.
    let (globals, own): (Vec<_>, Vec<_>) = m
        .values
        .drain(..)
        .partition(|(k, _)| find(spec.flags, k).is_none() && find(GLOBAL, k).is_some());
    m.values = own;
    global.values.extend(globals);
    let (gbools, own): (Vec<_>, Vec<_>) = m
        .bools
        .drain(..)
        .partition(|k| find(spec.flags, k).is_none() && find(GLOBAL, k).is_some());
    m.bools = own;
    global.bools.extend(gbools);
    Ok(Parsed::Command {
        global,
        spec,
        matches: m,
    })
}

/// Consume the flag at `args[i]` (and its value); returns the next index.
fn take_flag(
    args: &[String],
    i: usize,
    flags: &'static [Flag],
    also: &'static [Flag],
    m: &mut Matches,
    command: &str,
) -> Result<usize, UsageError> {
    let tok = &args[i];
    let whose = if command.is_empty() {
        String::new()
    } else {
        format!(" for {command}")
    };
    let unknown = || UsageError(format!("unknown flag {tok:?}{whose}"));
    let body = tok.trim_start_matches('-');
    let (name, inline) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v.to_owned())),
        None => (body, None),
    };
    let double = tok.starts_with("--");
    let flag = if double || name.chars().count() > 1 {
        find(flags, name).or_else(|| find(also, name))
    } else {
        name.chars()
            .next()
            .and_then(|c| find_short(flags, c).or_else(|| find_short(also, c)))
    };
    let flag = match flag {
        Some(f) => *f,
        None if !double && inline.is_none() => {
            // Bundled short booleans: -dt.
            let shorts: Option<Vec<&Flag>> = name
                .chars()
                .map(|c| find_short(flags, c).filter(|f| !f.takes_value))
                .collect();
            let shorts = shorts.ok_or_else(unknown)?;
            m.bools.extend(shorts.iter().map(|f| f.long));
            return Ok(i + 1);
        }
        None => return Err(unknown()),
    };
    if !flag.takes_value {
        if let Some(v) = inline {
            match v.as_str() {
                "true" | "1" => m.bools.push(flag.long),
                "false" | "0" => {}
                _ => {
                    return Err(UsageError(format!(
                        "--{} takes no value, got {v:?}",
                        flag.long
                    )));
                }
            }
        } else {
            m.bools.push(flag.long);
        }
        return Ok(i + 1);
    }
    match inline {
        Some(v) => {
            m.values.push((flag.long, v));
            Ok(i + 1)
        }
        None => {
            let v = args
                .get(i + 1)
                .ok_or_else(|| UsageError(format!("--{} needs a value", flag.long)))?;
            m.values.push((flag.long, v.clone()));
            Ok(i + 2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> (Matches, &'static str, Matches) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse("bosun-runc", &args).unwrap() {
            Parsed::Command {
                global,
                spec,
                matches,
            } => (global, spec.name, matches),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn globals_then_command_then_flags_around_the_id() {
        let (g, cmd, m) = p(&[
            "--root",
            "/r",
            "--log-format=json",
            "create",
            "c1",
            "--bundle",
            "/b",
            "--pid-file=/p",
        ]);
        assert_eq!(cmd, "create");
        assert_eq!(g.value("root"), Some("/r"));
        assert_eq!(g.value("log-format"), Some("json"));
        assert_eq!(m.positionals, ["c1"]);
        assert_eq!(m.value("bundle"), Some("/b"));
        assert_eq!(m.value("pid-file"), Some("/p"));
    }

    #[test]
    fn single_dash_long_names_short_flags_and_bundles() {
        let (g, _, m) = p(&["-root", "/r", "run", "-b", "/b", "-d", "x"]);
        assert_eq!(g.value("root"), Some("/r"));
        assert_eq!(m.value("bundle"), Some("/b"));
        assert!(m.flag("detach"));
        let (_, _, m) = p(&["exec", "-dt", "x", "sh"]);
        assert!(m.flag("detach") && m.flag("tty"));
    }

    #[test]
    fn exec_tail_keeps_the_commands_own_flags() {
        let (_, _, m) = p(&[
            "exec",
            "--env",
            "A=1",
            "x",
            "--cwd",
            "/tmp",
            "sh",
            "-c",
            "echo -n hi",
            "--env",
            "B",
        ]);
        assert_eq!(m.positionals, ["x"]);
        assert_eq!(m.values("env"), ["A=1"]);
        assert_eq!(m.value("cwd"), Some("/tmp"));
        assert_eq!(m.tail, ["sh", "-c", "echo -n hi", "--env", "B"]);
    }

    #[test]
    fn ps_tail_starts_after_the_id() {
        let (_, _, m) = p(&["ps", "--format", "json", "x", "-ef"]);
        assert_eq!(m.value("format"), Some("json"));
        assert_eq!(m.tail, ["-ef"]);
    }

    #[test]
    fn kill_and_global_flags_after_the_command() {
        let (g, _, m) = p(&["kill", "x", "KILL", "--all", "--root", "/r"]);
        assert_eq!(m.positionals, ["x", "KILL"]);
        assert!(m.flag("all"));
        assert_eq!(g.value("root"), Some("/r"));
    }

    #[test]
    fn errors_name_the_culprit() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            parse("r", &args(&["create", "--bogus", "x"]))
                .unwrap_err()
                .0
                .contains("--bogus")
        );
        assert!(
            parse("r", &args(&["frobnicate"]))
                .unwrap_err()
                .0
                .contains("frobnicate")
        );
        assert!(
            parse("r", &args(&["create", "x", "--bundle"]))
                .unwrap_err()
                .0
                .contains("--bundle needs a value")
        );
        assert!(matches!(
            parse("r", &args(&["--version"])).unwrap(),
            Parsed::Version
        ));
        assert!(matches!(
            parse("r", &args(&["state", "--help"])).unwrap(),
            Parsed::Help(_)
        ));
    }
}
