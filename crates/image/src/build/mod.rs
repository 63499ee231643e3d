//! `bosun build`'s front end: the Containerfile (Dockerfile) parser, Docker's
//! variable expansion, and the `.dockerignore` matcher. All pure: no IO.

pub mod containerfile;
mod expand;
pub mod ignore;

pub use containerfile::{
    ArgDecl, Base, Command, CommandLine, Containerfile, CopySource, CopySpec, DEFAULT_SHELL,
    Healthcheck, Heredoc, Instruction, KeyValue, Network, ParseError, PortSpec, Protocol,
    ResolvedFrom, Run, RunPlan, ScriptFile, Stage, StageDep, parse,
};
pub use expand::{ExpandError, Lookup, expand, expand_heredoc, expand_words};
pub use ignore::{IgnoreError, IgnoreRules};
