//! From logical lines to stages and instructions.

use super::flags::{Flags, Kind};
use super::lines::{Lines, Logical};
use super::words::{Json, extract_flags, heredoc_marker, json_array, raw_words, split_command};
use super::{
    ArgDecl, Command, CommandLine, Containerfile, CopySource, CopySpec, Healthcheck, Heredoc,
    Instruction, KeyValue, Network, ParseError, PortSpec, Run, Stage, duration,
};

/// The instruction words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    StopSignal,
    Healthcheck,
    Shell,
}

const KEYWORDS: &[(&str, Keyword)] = &[
    ("FROM", Keyword::From),
    ("RUN", Keyword::Run),
    ("CMD", Keyword::Cmd),
    ("LABEL", Keyword::Label),
    ("MAINTAINER", Keyword::Maintainer),
    ("EXPOSE", Keyword::Expose),
    ("ENV", Keyword::Env),
    ("ADD", Keyword::Add),
    ("COPY", Keyword::Copy),
    ("ENTRYPOINT", Keyword::Entrypoint),
    ("VOLUME", Keyword::Volume),
    ("USER", Keyword::User),
    ("WORKDIR", Keyword::Workdir),
    ("ARG", Keyword::Arg),
    ("ONBUILD", Keyword::Onbuild),
    ("STOPSIGNAL", Keyword::StopSignal),
    ("HEALTHCHECK", Keyword::Healthcheck),
    ("SHELL", Keyword::Shell),
];

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        KEYWORDS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|&(_, k)| k)
    }

    fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|&&(_, k)| k == self)
            .map_or("?", |&(name, _)| name)
    }

    /// The flags the instruction accepts.
    fn flags(self) -> &'static [(&'static str, Kind)] {
        match self {
            Keyword::From => &[("platform", Kind::Str)],
            Keyword::Run => &[("network", Kind::Str), ("mount", Kind::Multi)],
            Keyword::Copy => &[
                ("from", Kind::Str),
                ("chown", Kind::Str),
                ("chmod", Kind::Str),
                ("link", Kind::Bool),
            ],
            Keyword::Add => &[
                ("chown", Kind::Str),
                ("chmod", Kind::Str),
                ("checksum", Kind::Str),
                ("link", Kind::Bool),
                ("keep-git-dir", Kind::Bool),
            ],
            Keyword::Healthcheck => &[
                ("interval", Kind::Str),
                ("timeout", Kind::Str),
                ("start-period", Kind::Str),
                ("start-interval", Kind::Str),
                ("retries", Kind::Str),
            ],
            _ => &[],
        }
    }

    fn takes_heredocs(self) -> bool {
        matches!(self, Keyword::Run | Keyword::Copy | Keyword::Add)
    }
}

/// One instruction split into its parts, before interpretation.
#[derive(Debug)]
struct Parts<'a> {
    keyword: Keyword,
    line: usize,
    flags: Flags,
    /// The text after the instruction word and the flags, trimmed.
    args: &'a str,
    /// The heredocs the line opens, bodies read.
    heredocs: Vec<Heredoc>,
    escape: char,
}

impl Parts<'_> {
    fn name(&self) -> &'static str {
        self.keyword.name()
    }

    fn missing(&self, expected: &'static str) -> ParseError {
        ParseError::MissingArguments {
            line: self.line,
            instruction: self.name(),
            expected,
        }
    }

    fn invalid(&self, reason: &'static str) -> ParseError {
        ParseError::Invalid {
            line: self.line,
            instruction: self.name(),
            reason,
        }
    }
}

pub(super) fn parse_file(text: &str) -> Result<Containerfile, ParseError> {
    let mut lines = Lines::new(text);
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut any = false;
    while let Some(logical) = lines.next_logical()? {
        any = true;
        let Logical { line, text } = logical;
        let (word, rest) = split_command(&text);
        let keyword = Keyword::from_word(word).ok_or_else(|| ParseError::UnknownInstruction {
            line,
            name: word.to_owned(),
        })?;
        if stages.is_empty() && !matches!(keyword, Keyword::From | Keyword::Arg) {
            return Err(ParseError::BeforeFrom {
                line,
                instruction: keyword.name(),
            });
        }
        let (flag_words, args) = extract_flags(rest);
        let flags = Flags::parse(&flag_words, keyword.flags(), keyword.name(), line)?;
        let escape = lines.escape();
        let mut heredocs = Vec::new();
        // Only shell forms open heredocs; BuildKit reads their bodies right
        // after the instruction's (joined) line.
        if keyword.takes_heredocs() && json_array(args) == Json::Text {
            for marker in raw_words(args, escape)
                .iter()
                .filter_map(|w| heredoc_marker(w, escape))
            {
                let body = lines.read_heredoc(line, &marker.name, marker.chomp)?;
                heredocs.push(Heredoc {
                    name: marker.name,
                    expand: marker.expand,
                    chomp: marker.chomp,
                    body,
                });
            }
        }
        let parts = Parts {
            keyword,
            line,
            flags,
            args,
            heredocs,
            escape,
        };
        match keyword {
            Keyword::From => {
                let stage = parse_from(&parts, &text, &stages)?;
                stages.push(stage);
            }
            Keyword::Arg if stages.is_empty() => global_args.extend(parse_arg(&parts)?),
            _ => {
                let Some(stage) = stages.last_mut() else {
                    unreachable!("checked above: only ARG and FROM come before a stage");
                };
                let command = parse_command(&parts)?;
                stage.instructions.push(Instruction {
                    line,
                    original: text.clone(),
                    command,
                });
            }
        }
    }
    if !any {
        return Err(ParseError::Empty);
    }
    if stages.is_empty() {
        return Err(ParseError::NoStage {
            line: lines.lines_read(),
        });
    }
    let file = Containerfile {
        stages,
        global_args,
        escape: lines.escape(),
        syntax: lines.syntax().map(str::to_owned),
    };
    check_static_froms(&file)?;
    Ok(file)
}

/// Rejects the `--from=` values without variables that name this stage, a
/// later one, or a stage index that does not exist: they can only be
/// mistakes, and the executor can then trust [`Containerfile::dependencies`].
fn check_static_froms(file: &Containerfile) -> Result<(), ParseError> {
    for (i, stage) in file.stages.iter().enumerate() {
        for ins in &stage.instructions {
            for from in ins.command.source_references() {
                if !from.contains('$') {
                    file.resolve_from_flag(i, ins.line, from)?;
                }
            }
        }
    }
    Ok(())
}

fn parse_from(parts: &Parts<'_>, original: &str, stages: &[Stage]) -> Result<Stage, ParseError> {
    let line = parts.line;
    let words: Vec<&str> = parts.args.split_whitespace().collect();
    let (base, name) = match words.as_slice() {
        [] => return Err(parts.missing("a base image: FROM [--platform=P] image [AS name]")),
        [base] => (*base, None),
        [base, kw, name] if kw.eq_ignore_ascii_case("as") => (*base, Some(*name)),
        [_, _, _] => {
            return Err(ParseError::BadFrom {
                line,
                reason: "expected AS between the image and the stage name",
            });
        }
        _ => {
            return Err(ParseError::BadFrom {
                line,
                reason: "expected FROM [--platform=P] image [AS name]",
            });
        }
    };
    let name = name.map(str::to_ascii_lowercase);
    if let Some(name) = &name {
        if !valid_stage_name(name) {
            return Err(ParseError::InvalidStageName {
                line,
                name: name.clone(),
            });
        }
        if let Some(first) = stages.iter().find(|s| s.name.as_ref() == Some(name)) {
            return Err(ParseError::DuplicateStage {
                line,
                name: name.clone(),
                first_line: first.line,
            });
        }
    }
    Ok(Stage {
        name,
        base: base.to_owned(),
        platform: parts.flags.string("platform"),
        line,
        original: original.to_owned(),
        instructions: Vec::new(),
    })
}

/// Docker's `^[a-z][a-z0-9-_.]*$` (on the lowercased name).
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn parse_command(p: &Parts<'_>) -> Result<Command, ParseError> {
    Ok(match p.keyword {
        Keyword::Run => Command::Run(parse_run(p)?),
        Keyword::Cmd => Command::Cmd(command_line(p, true)?),
        Keyword::Entrypoint => Command::Entrypoint(command_line(p, true)?),
        Keyword::Shell => match json_array(p.args) {
            Json::Strings(v) if v.is_empty() => return Err(p.missing("at least one argument")),
            Json::Strings(v) => Command::Shell(v),
            Json::NotStrings => return Err(not_strings(p)),
            Json::Text => {
                return Err(ParseError::BadJson {
                    line: p.line,
                    instruction: p.name(),
                    reason: "the arguments must be a JSON array, e.g. [\"/bin/sh\", \"-c\"]"
                        .to_owned(),
                });
            }
        },
        Keyword::Copy | Keyword::Add => {
            let spec = parse_copy(p)?;
            if p.keyword == Keyword::Copy {
                Command::Copy(spec)
            } else {
                Command::Add(spec)
            }
        }
        Keyword::Env => Command::Env(key_values(p)?),
        Keyword::Label => Command::Label(key_values(p)?),
        Keyword::Arg => Command::Arg(parse_arg(p)?),
        Keyword::Workdir => Command::Workdir(single(p, "a directory")?),
        Keyword::User => Command::User(single(p, "a user: USER user[:group]")?),
        Keyword::StopSignal => Command::StopSignal(single(p, "a signal name or number")?),
        Keyword::Maintainer => Command::Maintainer(single(p, "a name")?),
        Keyword::Expose => Command::Expose(parse_expose(p)?),
        Keyword::Volume => Command::Volume(parse_volume(p)?),
        Keyword::Healthcheck => Command::Healthcheck(parse_healthcheck(p)?),
        Keyword::Onbuild => Command::Onbuild(parse_onbuild(p)?),
        Keyword::From => unreachable!("FROM starts a stage"),
    })
}

fn not_strings(p: &Parts<'_>) -> ParseError {
    ParseError::BadJson {
        line: p.line,
        instruction: p.name(),
        reason: "a JSON array of arguments must hold only strings".to_owned(),
    }
}

/// The exec form (a JSON array of strings) or else, like Docker, the shell
/// form, even for text that merely starts with `[`.
fn command_line(p: &Parts<'_>, empty_exec_ok: bool) -> Result<CommandLine, ParseError> {
    match json_array(p.args) {
        Json::Strings(v) if v.is_empty() && !empty_exec_ok => Err(p.missing("a command")),
        Json::Strings(v) => Ok(CommandLine::Exec(v)),
        Json::NotStrings => Err(not_strings(p)),
        Json::Text if p.args.is_empty() => Err(p.missing("a command")),
        Json::Text => Ok(CommandLine::Shell(p.args.to_owned())),
    }
}

fn parse_run(p: &Parts<'_>) -> Result<Run, ParseError> {
    let network = match p.flags.string("network").as_deref() {
        None | Some("default") => Network::Default,
        Some("none") => Network::None,
        Some("host") => Network::Host,
        Some(other) => {
            return Err(ParseError::BadFlag {
                line: p.line,
                instruction: p.name(),
                flag: "network".to_owned(),
                reason: format!("{other:?} is not default, none or host"),
            });
        }
    };
    Ok(Run {
        command: command_line(p, false)?,
        heredocs: p.heredocs.clone(),
        network,
        mounts: p.flags.all("mount"),
    })
}

fn parse_copy(p: &Parts<'_>) -> Result<CopySpec, ParseError> {
    let words = match json_array(p.args) {
        Json::Strings(v) => v,
        Json::NotStrings => return Err(not_strings(p)),
        Json::Text => p.args.split_whitespace().map(str::to_owned).collect(),
    };
    let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(p.missing("at least two arguments: one or more sources and a destination"));
    };
    // In the shell form, heredoc markers became `p.heredocs`, in order.
    let mut heredocs = p.heredocs.iter();
    let is_marker = |w: &str| !p.heredocs.is_empty() && heredoc_marker(w, p.escape).is_some();
    if is_marker(dest) {
        return Err(ParseError::MisplacedHeredoc {
            line: p.line,
            instruction: p.name(),
            what: "the destination",
        });
    }
    let sources = sources
        .iter()
        .map(|w| match is_marker(w).then(|| heredocs.next()).flatten() {
            Some(doc) => CopySource::Heredoc(doc.clone()),
            None => CopySource::Path(w.clone()),
        })
        .collect();
    Ok(CopySpec {
        sources,
        dest: dest.clone(),
        from: p.flags.string("from"),
        chown: p.flags.string("chown"),
        chmod: p.flags.string("chmod"),
        link: p.flags.bool("link"),
        checksum: p.flags.string("checksum"),
        keep_git_dir: p.flags.bool("keep-git-dir"),
    })
}

/// ENV and LABEL: `k=v ...`, or the legacy `k v` whose value is the rest of
/// the line (chosen when the first word has no `=`).
fn key_values(p: &Parts<'_>) -> Result<Vec<KeyValue>, ParseError> {
    let words = raw_words(p.args, p.escape);
    let Some(first) = words.first() else {
        return Err(p.missing("at least one name=value"));
    };
    if !first.contains('=') {
        return match p.args.split_once(char::is_whitespace) {
            Some((key, value)) => Ok(vec![KeyValue {
                key: key.to_owned(),
                value: value.trim_start().to_owned(),
            }]),
            None => Err(p.missing("name=value, or a name and a value")),
        };
    }
    words
        .iter()
        .map(|word| {
            let Some((key, value)) = word.split_once('=') else {
                return Err(ParseError::BadKeyValue {
                    line: p.line,
                    instruction: p.name(),
                    word: word.clone(),
                });
            };
            if key.is_empty() {
                return Err(ParseError::BlankName {
                    line: p.line,
                    instruction: p.name(),
                });
            }
            Ok(KeyValue {
                key: key.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect()
}

fn parse_arg(p: &Parts<'_>) -> Result<Vec<ArgDecl>, ParseError> {
    let words = raw_words(p.args, p.escape);
    if words.is_empty() {
        return Err(p.missing("a name: ARG name[=default]"));
    }
    words
        .into_iter()
        .map(|word| {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
                None => (word, None),
            };
            if name.is_empty() {
                return Err(ParseError::BlankName {
                    line: p.line,
                    instruction: p.name(),
                });
            }
            Ok(ArgDecl {
                name,
                default,
                line: p.line,
            })
        })
        .collect()
}

/// WORKDIR, USER, STOPSIGNAL, MAINTAINER: the whole rest of the line.
fn single(p: &Parts<'_>, expected: &'static str) -> Result<String, ParseError> {
    if p.args.is_empty() {
        return Err(p.missing(expected));
    }
    Ok(p.args.to_owned())
}

fn parse_expose(p: &Parts<'_>) -> Result<Vec<String>, ParseError> {
    let ports: Vec<String> = p.args.split_whitespace().map(str::to_owned).collect();
    if ports.is_empty() {
        return Err(p.missing("at least one port: EXPOSE port[/protocol]"));
    }
    // Check now what needs no expansion; the rest is checked at build time.
    for port in &ports {
        if !port.contains(['$', '\'', '"', p.escape]) {
            PortSpec::parse(port, p.line)?;
        }
    }
    Ok(ports)
}

fn parse_volume(p: &Parts<'_>) -> Result<Vec<String>, ParseError> {
    let paths = match json_array(p.args) {
        Json::Strings(v) => v,
        Json::NotStrings => return Err(not_strings(p)),
        Json::Text => p.args.split_whitespace().map(str::to_owned).collect(),
    };
    if paths.is_empty() {
        return Err(p.missing("at least one path"));
    }
    if paths.iter().any(|v| v.trim().is_empty()) {
        return Err(p.invalid("a volume path cannot be empty"));
    }
    Ok(paths)
}

fn parse_healthcheck(p: &Parts<'_>) -> Result<Healthcheck, ParseError> {
    let bad = |reason: String| ParseError::BadHealthcheck {
        line: p.line,
        reason,
    };
    let (kind, rest) = split_command(p.args);
    if kind.is_empty() {
        return Err(p.missing("NONE, or CMD and a command"));
    }
    if kind.eq_ignore_ascii_case("NONE") {
        if !rest.is_empty() {
            return Err(bad("HEALTHCHECK NONE takes no arguments".to_owned()));
        }
        if !p.flags.is_empty() {
            return Err(bad("HEALTHCHECK NONE takes no options".to_owned()));
        }
        return Ok(Healthcheck::None);
    }
    if !kind.eq_ignore_ascii_case("CMD") {
        return Err(bad(format!("unknown type {kind:?} (use CMD or NONE)")));
    }
    let test = match json_array(rest) {
        Json::Strings(v) if !v.is_empty() => CommandLine::Exec(v),
        Json::NotStrings => return Err(not_strings(p)),
        Json::Text if !rest.is_empty() => CommandLine::Shell(rest.to_owned()),
        _ => return Err(bad("missing command after HEALTHCHECK CMD".to_owned())),
    };
    let duration = |flag: &'static str| -> Result<Option<std::time::Duration>, ParseError> {
        let Some(value) = p.flags.string(flag) else {
            return Ok(None);
        };
        let bad = |reason| ParseError::BadDuration {
            line: p.line,
            flag,
            value: value.clone(),
            reason,
        };
        let d = duration::parse(&value).map_err(bad)?;
        if d.is_zero() {
            return Ok(None);
        }
        if d < std::time::Duration::from_millis(1) {
            return Err(bad("must be at least 1ms (or 0 to inherit)"));
        }
        Ok(Some(d))
    };
    let retries = match p.flags.string("retries") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 0 => return Err(bad(format!("--retries cannot be negative ({n})"))),
            Ok(0) => None,
            Ok(n) => {
                Some(u32::try_from(n).map_err(|_| bad(format!("--retries={n} is too large")))?)
            }
            Err(_) => return Err(bad(format!("--retries={v:?} is not a number"))),
        },
    };
    Ok(Healthcheck::Check {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// Checks the trigger as an instruction of its own and returns its text.
fn parse_onbuild(p: &Parts<'_>) -> Result<String, ParseError> {
    let line = p.line;
    let (word, rest) = split_command(p.args);
    if word.is_empty() {
        return Err(p.missing("an instruction"));
    }
    let keyword = Keyword::from_word(word).ok_or_else(|| ParseError::UnknownInstruction {
        line,
        name: word.to_owned(),
    })?;
    let reason = match keyword {
        Keyword::Onbuild => Some("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned()),
        Keyword::From | Keyword::Maintainer => Some(format!(
            "{} isn't allowed as an ONBUILD trigger",
            keyword.name()
        )),
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(ParseError::BadOnbuild { line, reason });
    }
    let (flag_words, args) = extract_flags(rest);
    let inner = Parts {
        keyword,
        line,
        flags: Flags::parse(&flag_words, keyword.flags(), keyword.name(), line)?,
        args,
        // Docker does not read heredocs for a trigger.
        heredocs: Vec::new(),
        escape: p.escape,
    };
    parse_command(&inner)?;
    Ok(p.args.to_owned())
}
