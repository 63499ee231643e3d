//! `bosun build`: the front end (the Containerfile parser, Docker's variable
//! expansion, the `.dockerignore` matcher; all pure, no IO) and the executor
//! that runs a parsed file against the image store and snapshotter.

pub mod containerfile;
mod exec;
mod expand;
pub mod ignore;

pub use containerfile::{
    ArgDecl, Base, Command, CommandLine, Containerfile, CopySource, CopySpec, DEFAULT_SHELL,
    Healthcheck, Heredoc, Instruction, KeyValue, Network, ParseError, PortSpec, Protocol,
    ResolvedFrom, Run, RunPlan, ScriptFile, Stage, StageDep, parse,
};
pub use exec::{
    BuildError, BuildOptions, Built, RunRequest, StepRunner, build, resolve_in_root, resolve_user,
    sweep_stale_work,
};
pub use expand::{ExpandError, Lookup, expand, expand_heredoc, expand_words};
pub use ignore::{IgnoreError, IgnoreRules};
