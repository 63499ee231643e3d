//! The Containerfile (Dockerfile) parser: text in, an AST of stages out, no IO.
//!
//! It follows Docker's BuildKit frontend: parser directives, comments, line
//! continuations with the escape character, heredocs, JSON (exec) and shell
//! forms, and the instruction set of the Dockerfile reference.
//!
//! # What the executor must do with the raw words
//!
//! Values are kept exactly as written (quotes included) because Docker expands
//! them at build time, with the ENV and ARG state of the stage at that point.
//! Fields documented as *expanded* go through [`expand`](super::expand) (or
//! [`expand_words`](super::expand_words) for EXPOSE) with that state; all the
//! values of one ENV, LABEL or ARG instruction are expanded with the state from
//! *before* the instruction (`ENV A=1 B=$A` gives `B` the old `A`). RUN, CMD,
//! ENTRYPOINT, SHELL, HEALTHCHECK commands and ONBUILD triggers are never
//! expanded by the builder: the shell in the container does it.
//!
//! # ARG scoping
//!
//! ARGs before the first FROM are [`Containerfile::global_args`]: they are
//! visible in FROM lines only ([`Containerfile::resolve_global_args`], then
//! [`Containerfile::resolve_from`]). Inside a stage an ARG is visible from its
//! declaration to the end of the stage; [`ArgDecl::resolve`] applies Docker's
//! precedence: the `--build-arg` value, else the declared default, else (for a
//! bare `ARG NAME`) the value of the global ARG of that name.

mod duration;
mod error;
mod flags;
mod instruction;
mod lines;
mod run;
mod words;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

pub use error::ParseError;
pub use run::{DEFAULT_SHELL, RunPlan, ScriptFile};

use super::expand::{Lookup, expand};

/// A parsed Containerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerfile {
    /// The build stages, in file order (a `COPY --from=0` index is into this).
    pub stages: Vec<Stage>,
    /// The ARGs declared before the first FROM, usable in FROM lines only.
    pub global_args: Vec<ArgDecl>,
    /// The escape character: `\` or, after `# escape=``, `` ` ``. Pass it to
    /// [`expand`](super::expand).
    pub escape: char,
    /// The `# syntax=` directive, recorded and otherwise ignored.
    pub syntax: Option<String>,
}

/// One build stage: a FROM line and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, lowercased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The base: an image reference, `scratch`, or an earlier stage's name.
    /// Expanded with the global ARGs only; see [`Containerfile::resolve_from`].
    pub base: String,
    /// `--platform=`, expanded like `base`.
    pub platform: Option<String>,
    /// 1-based line of the FROM instruction.
    pub line: usize,
    /// The FROM line as written (continuations joined).
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The instruction as written, continuation lines joined, heredoc bodies
    /// not included (they are in the command). This is what Docker shows in
    /// progress output and records in the image history.
    pub original: String,
    pub command: Command,
}

impl Instruction {
    /// The heredocs of a RUN, COPY or ADD (empty for other instructions).
    /// A layer cache key must cover them as well as [`Instruction::original`].
    pub fn heredocs(&self) -> Vec<&Heredoc> {
        match &self.command {
            Command::Run(run) => run.heredocs.iter().collect(),
            Command::Copy(copy) | Command::Add(copy) => copy
                .sources
                .iter()
                .filter_map(|s| match s {
                    CopySource::Heredoc(h) => Some(h),
                    CopySource::Path(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The instructions that may appear inside a stage (FROM starts a [`Stage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Run),
    /// COPY; never has `checksum` or `keep_git_dir`.
    Copy(CopySpec),
    /// ADD; never has `from`.
    Add(CopySpec),
    /// `ENV K=V ...` or the legacy `ENV K V` (one pair whose value is the rest
    /// of the line). Keys and values are expanded.
    Env(Vec<KeyValue>),
    /// `ARG NAME[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// Expanded.
    Workdir(String),
    /// `user[:group]`, expanded.
    User(String),
    /// The container's default command; not expanded.
    Cmd(CommandLine),
    /// Not expanded.
    Entrypoint(CommandLine),
    /// Raw port words: expand each with [`expand_words`](super::expand_words),
    /// then [`PortSpec::parse`] the results. Words without variables were
    /// already checked by the parser.
    Expose(Vec<String>),
    /// Keys and values are expanded.
    Label(Vec<KeyValue>),
    /// Paths, each expanded.
    Volume(Vec<String>),
    /// Expanded.
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The shell for shell forms, e.g. `["/bin/bash", "-c"]`; not expanded.
    Shell(Vec<String>),
    /// The trigger recorded in the image config, e.g. `RUN make` (validated
    /// but not expanded).
    Onbuild(String),
    /// Deprecated MAINTAINER: record its text verbatim (not expanded) as the
    /// label `maintainer` (Docker also sets the image's `author`).
    Maintainer(String),
}

/// A `key=value` of ENV or LABEL, both raw (quotes kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// The default as written (quotes kept): expanded when used.
    pub default: Option<String>,
    /// 1-based line of the ARG instruction.
    pub line: usize,
}

impl ArgDecl {
    /// The value of this ARG at its declaration, with Docker's precedence:
    /// `build_arg` (a `--build-arg` value, used verbatim), else the default
    /// expanded with `lookup` (the state before this ARG), else `global`, the
    /// value of the global ARG of the same name (only meaningful inside a
    /// stage). `None` means declared but unset: `$NAME` expands to nothing
    /// and RUN does not see it.
    pub fn resolve(
        &self,
        build_arg: Option<&str>,
        global: Option<&str>,
        lookup: Lookup<'_>,
        escape: char,
    ) -> Result<Option<String>, ParseError> {
        if let Some(v) = build_arg {
            return Ok(Some(v.to_owned()));
        }
        match &self.default {
            Some(d) => expand(d, lookup, escape)
                .map(Some)
                .map_err(|source| ParseError::Expand {
                    line: self.line,
                    source,
                }),
            None => Ok(global.map(str::to_owned)),
        }
    }
}

/// A command as written: JSON (exec) form or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `["executable", "arg"]`, run as is.
    Exec(Vec<String>),
    /// A string given to the shell: `[shell..., string]`.
    Shell(String),
}

impl CommandLine {
    /// The argv to run: the exec form as is, the shell form after `shell`
    /// (the stage's SHELL, by default [`DEFAULT_SHELL`]).
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            CommandLine::Exec(argv) => argv.clone(),
            CommandLine::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
        }
    }
}

/// RUN's network mode (`--network=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The builder's default (a network namespace with outbound access).
    #[default]
    Default,
    /// No network: only a loopback interface.
    None,
    /// The host's network namespace.
    Host,
}

/// A RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Not expanded by the builder. With heredocs, use [`Run::plan`].
    pub command: CommandLine,
    /// The heredocs of the line, in order (shell form only).
    pub heredocs: Vec<Heredoc>,
    pub network: Network,
    /// Raw `--mount=` values (`type=cache,target=/root/.cache`...), in order;
    /// the executor interprets or refuses them.
    pub mounts: Vec<String>,
}

/// A heredoc: `<<NAME` (or `<<-NAME`, `<<"NAME"`) and the lines up to `NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, unquoted; for COPY/ADD also the file's name.
    pub name: String,
    /// False when any part of the delimiter was quoted or escaped: the body
    /// is then used verbatim. For COPY/ADD a true value means the body is
    /// expanded with [`expand_heredoc`](super::expand_heredoc).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body's lines.
    pub chomp: bool,
    /// The lines as written, each ending in `\n`, without the terminator.
    pub body: String,
}

impl Heredoc {
    /// The content: the body, with leading tabs stripped for `<<-`.
    pub fn content(&self) -> String {
        if !self.chomp {
            return self.body.clone();
        }
        let mut out = String::with_capacity(self.body.len());
        for line in self.body.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}

/// A source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// A path in the context (or the `--from` stage/image), or for ADD a URL;
    /// expanded.
    Path(String),
    /// An inline file (`COPY <<EOF /dest`) named after the delimiter.
    Heredoc(Heredoc),
}

/// The arguments of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// At least one.
    pub sources: Vec<CopySource>,
    /// Expanded; a trailing `/` means "into this directory".
    pub dest: String,
    /// COPY `--from=`: a stage name, a stage index, or an image; expanded.
    pub from: Option<String>,
    /// `--chown=user[:group]`, expanded.
    pub chown: Option<String>,
    /// `--chmod=` (octal), expanded.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// ADD `--checksum=` for a remote source.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    /// `HEALTHCHECK [options] CMD ...`. `None` options (or a zero value, which
    /// Docker treats the same) inherit the base image's or the defaults.
    Check {
        /// Exec form is the OCI `CMD`, shell form `CMD-SHELL`; not expanded.
        test: CommandLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// An exposed port or range and its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub start: u16,
    /// Equal to `start` for a single port.
    pub end: u16,
    pub protocol: Protocol,
}

/// A transport protocol of EXPOSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl PortSpec {
    /// Parses `80`, `80/tcp`, `53/udp`, `8000-8010/tcp` (protocol
    /// case-insensitive, tcp by default). `line` is the EXPOSE line, for the
    /// error.
    pub fn parse(spec: &str, line: usize) -> Result<PortSpec, ParseError> {
        let bad = |reason: &'static str| ParseError::BadPort {
            line,
            port: spec.to_owned(),
            reason,
        };
        let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => return Err(bad("the protocol must be tcp, udp or sctp")),
        };
        let number = |s: &str| match s.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad("a port is a number from 1 to 65535")),
            Ok(n) => Ok(n),
        };
        let (start, end) = match ports.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(ports)?;
                (n, n)
            }
        };
        if end < start {
            return Err(bad("the range ends before it starts"));
        }
        Ok(PortSpec {
            start,
            end,
            protocol,
        })
    }
}

/// What a stage's FROM resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty file system.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, still to be normalised and pulled.
    Image(String),
}

/// A stage's FROM after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFrom {
    pub base: Base,
    pub platform: Option<String>,
}

/// Something a stage needs before it can be built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageDep {
    /// An earlier stage (its FROM, `COPY --from=` or `RUN --mount=from=`).
    Stage(usize),
    /// An image (its FROM, or a `--from=` naming no stage).
    Image(String),
}

/// Parses a Containerfile.
pub fn parse(text: &str) -> Result<Containerfile, ParseError> {
    instruction::parse_file(text)
}

impl Containerfile {
    /// The stage named `name_or_index` (case-insensitive), or with that
    /// index, as `COPY --from=` accepts both.
    pub fn stage_index(&self, name_or_index: &str) -> Option<usize> {
        let lower = name_or_index.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        name_or_index
            .parse::<usize>()
            .ok()
            .filter(|&i| i < self.stages.len())
    }

    /// The stage to build: `target` (`--target`) or, by default, the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize, ParseError> {
        match target {
            None => self.stages.len().checked_sub(1).ok_or(ParseError::Empty),
            Some(t) => self
                .stage_index(t)
                .ok_or_else(|| ParseError::TargetNotFound {
                    target: t.to_owned(),
                }),
        }
    }

    /// The values of the global ARGs, for FROM lines: each is its
    /// `--build-arg` value, else its default expanded with the global ARGs
    /// before it. Declared-but-unset ARGs are absent. The executor adds the
    /// automatic platform ARGs (`TARGETPLATFORM`, `BUILDPLATFORM`...), which
    /// Docker makes visible to FROM lines without a declaration.
    pub fn resolve_global_args(
        &self,
        build_args: Lookup<'_>,
    ) -> Result<BTreeMap<String, String>, ParseError> {
        let mut values = BTreeMap::new();
        for decl in &self.global_args {
            let from_cli = build_args(&decl.name);
            let lookup = |name: &str| values.get(name).cloned();
            // A redeclaration without a value keeps the earlier value.
            if let Some(v) = decl.resolve(from_cli.as_deref(), None, &lookup, self.escape)? {
                values.insert(decl.name.clone(), v);
            }
        }
        Ok(values)
    }

    /// Expands stage `stage`'s FROM with `globals` (the global ARG values)
    /// and says what it names: a stage named before it (an image of the same
    /// name is shadowed, as in Docker), `scratch`, or an image.
    ///
    /// # Panics
    ///
    /// If `stage` is not an index of [`Containerfile::stages`] (likewise for
    /// [`Containerfile::dependencies`] and [`Containerfile::dependencies_with`]).
    pub fn resolve_from(
        &self,
        stage: usize,
        globals: Lookup<'_>,
    ) -> Result<ResolvedFrom, ParseError> {
        let s = &self.stages[stage];
        let expand_from = |word: &str| {
            expand(word, globals, self.escape).map_err(|source| ParseError::Expand {
                line: s.line,
                source,
            })
        };
        let name = expand_from(&s.base)?;
        if name.is_empty() {
            return Err(ParseError::BlankBase {
                line: s.line,
                base: s.base.clone(),
            });
        }
        let platform = s.platform.as_deref().map(expand_from).transpose()?;
        let base = if name == "scratch" {
            Base::Scratch
        } else {
            match self.earlier_stage(stage, &name) {
                Some(i) => Base::Stage(i),
                None => Base::Image(name),
            }
        };
        Ok(ResolvedFrom { base, platform })
    }

    /// What stage `stage` needs, in first-use order without duplicates, with
    /// the global ARGs at their defaults and `--from=` values taken as
    /// written. A FROM that fails to expand is reported as an image of its
    /// raw text (building the stage reports the real error). When
    /// `--build-arg`s are given or a `--from=` uses a variable, use
    /// [`Containerfile::dependencies_with`].
    pub fn dependencies(&self, stage: usize) -> Vec<StageDep> {
        let globals = self.resolve_global_args(&|_| None).unwrap_or_default();
        let lookup = |name: &str| globals.get(name).cloned();
        let mut deps = Vec::new();
        // The parser rejected the static `--from=`s that name no earlier
        // stage, so only a variable's raw text can fail here: skip it.
        for dep in self.references(stage, &lookup, &|w: &str| Ok(w.to_owned())) {
            if let Ok(d) = dep
                && !deps.contains(&d)
            {
                deps.push(d);
            }
        }
        deps
    }

    /// Like [`Containerfile::dependencies`], with the FROM expanded with
    /// `globals` ([`Containerfile::resolve_global_args`]) and each `--from=`
    /// expanded with `from_lookup` (the stage's ARG values). A `--from=`
    /// naming this stage or a later one is an error.
    pub fn dependencies_with(
        &self,
        stage: usize,
        globals: Lookup<'_>,
        from_lookup: Lookup<'_>,
    ) -> Result<Vec<StageDep>, ParseError> {
        let mut deps = Vec::new();
        for dep in self.references(stage, globals, &|w: &str| {
            expand(w, from_lookup, self.escape)
        }) {
            let d = dep?;
            if !deps.contains(&d) {
                deps.push(d);
            }
        }
        Ok(deps)
    }

    /// Every reference of stage `stage` to another stage or an image, in
    /// order: its FROM, then each `COPY --from=` and `RUN --mount=from=`.
    fn references(
        &self,
        stage: usize,
        globals: Lookup<'_>,
        expand_from: &dyn Fn(&str) -> Result<String, super::ExpandError>,
    ) -> Vec<Result<StageDep, ParseError>> {
        let s = &self.stages[stage];
        let mut refs = Vec::new();
        match self.resolve_from(stage, globals) {
            Ok(ResolvedFrom { base, .. }) => match base {
                Base::Stage(i) => refs.push(Ok(StageDep::Stage(i))),
                Base::Image(r) => refs.push(Ok(StageDep::Image(r))),
                Base::Scratch => {}
            },
            Err(_) => refs.push(Ok(StageDep::Image(s.base.clone()))),
        }
        for ins in &s.instructions {
            for raw in ins.command.source_references() {
                refs.push(
                    expand_from(raw)
                        .map_err(|source| ParseError::Expand {
                            line: ins.line,
                            source,
                        })
                        .and_then(|from| self.resolve_from_flag(stage, ins.line, &from)),
                );
            }
        }
        refs
    }

    /// A `--from=` value: an earlier stage's name or index, else an image.
    fn resolve_from_flag(
        &self,
        stage: usize,
        line: usize,
        from: &str,
    ) -> Result<StageDep, ParseError> {
        match self.stage_index(from) {
            Some(i) if i < stage => Ok(StageDep::Stage(i)),
            _ if self.stage_index(from).is_some() || from.parse::<usize>().is_ok() => {
                Err(ParseError::StageOrder {
                    line,
                    reference: from.to_owned(),
                })
            }
            _ => Ok(StageDep::Image(from.to_owned())),
        }
    }

    /// An earlier stage named `name` (case-insensitive).
    fn earlier_stage(&self, stage: usize, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages[..stage]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }
}

impl Command {
    /// The raw `--from=` of a COPY and the `from=` of RUN's `--mount`s.
    fn source_references(&self) -> Vec<&str> {
        match self {
            Command::Copy(c) => c.from.as_deref().into_iter().collect(),
            Command::Run(r) => r.mounts.iter().filter_map(|m| mount_from(m)).collect(),
            _ => Vec::new(),
        }
    }
}

/// The `from=` of a raw `--mount=` value (`type=bind,from=builder,...`).
fn mount_from(mount: &str) -> Option<&str> {
    mount
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("from"))
        .map(|(_, v)| v.trim())
}
