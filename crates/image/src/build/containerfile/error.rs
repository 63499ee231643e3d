use bosun_oci::ErrorKind;

use crate::build::ExpandError;

/// Why a Containerfile was rejected. Every message but `TargetNotFound`
/// starts with the 1-based line of the instruction at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the Containerfile has no instructions")]
    Empty,
    #[error("line {line}: no FROM instruction: a Containerfile needs at least one build stage")]
    NoStage { line: usize },
    #[error("line {line}: parser directive {directive:?}: {reason}")]
    Directive {
        line: usize,
        directive: String,
        reason: String,
    },
    #[error("line {line}: unknown instruction {name:?}")]
    UnknownInstruction { line: usize, name: String },
    #[error("line {line}: {instruction} requires {expected}")]
    MissingArguments {
        line: usize,
        instruction: &'static str,
        expected: &'static str,
    },
    #[error("line {line}: {instruction} before the first FROM (only ARG may come before FROM)")]
    BeforeFrom {
        line: usize,
        instruction: &'static str,
    },
    #[error("line {line}: {instruction}: {reason}")]
    BadJson {
        line: usize,
        instruction: &'static str,
        reason: String,
    },
    #[error(
        "line {line}: unterminated heredoc {name:?}: no line {name:?} before the end of the file"
    )]
    UnterminatedHeredoc { line: usize, name: String },
    #[error("line {line}: {instruction}: a heredoc cannot be {what}")]
    MisplacedHeredoc {
        line: usize,
        instruction: &'static str,
        what: &'static str,
    },
    #[error("line {line}: {instruction}: unknown flag --{flag}")]
    UnknownFlag {
        line: usize,
        instruction: &'static str,
        flag: String,
    },
    #[error("line {line}: {instruction}: flag --{flag}: {reason}")]
    BadFlag {
        line: usize,
        instruction: &'static str,
        flag: String,
        reason: String,
    },
    #[error("line {line}: FROM: {reason}")]
    BadFrom { line: usize, reason: &'static str },
    #[error("line {line}: duplicate stage name {name:?} (first used on line {first_line})")]
    DuplicateStage {
        line: usize,
        name: String,
        first_line: usize,
    },
    #[error(
        "line {line}: invalid stage name {name:?}: it must start with a letter and contain only letters, digits, '-', '_' and '.'"
    )]
    InvalidStageName { line: usize, name: String },
    #[error("line {line}: {instruction}: {word:?} is not of the form name=value")]
    BadKeyValue {
        line: usize,
        instruction: &'static str,
        word: String,
    },
    #[error("line {line}: {instruction}: a name cannot be empty")]
    BlankName {
        line: usize,
        instruction: &'static str,
    },
    #[error("line {line}: HEALTHCHECK --{flag}={value:?}: {reason}")]
    BadDuration {
        line: usize,
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("line {line}: HEALTHCHECK: {reason}")]
    BadHealthcheck { line: usize, reason: String },
    #[error("line {line}: ONBUILD: {reason}")]
    BadOnbuild { line: usize, reason: String },
    #[error("line {line}: EXPOSE {port:?}: {reason}")]
    BadPort {
        line: usize,
        port: String,
        reason: &'static str,
    },
    #[error("line {line}: {instruction}: {reason}")]
    Invalid {
        line: usize,
        instruction: &'static str,
        reason: &'static str,
    },
    #[error("line {line}: {source}")]
    Expand { line: usize, source: ExpandError },
    #[error("line {line}: FROM: base name {base:?} expands to an empty string")]
    BlankBase { line: usize, base: String },
    #[error("line {line}: --from={reference:?} does not name a stage defined before this one")]
    StageOrder { line: usize, reference: String },
    #[error("target stage {target:?} not found")]
    TargetNotFound { target: String },
}

impl ParseError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ParseError::TargetNotFound { .. } => ErrorKind::NotFound,
            ParseError::Expand { source, .. } => source.kind(),
            _ => ErrorKind::Invalid,
        }
    }

    /// The 1-based line at fault, if the error has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Empty | ParseError::TargetNotFound { .. } => None,
            ParseError::NoStage { line }
            | ParseError::Directive { line, .. }
            | ParseError::UnknownInstruction { line, .. }
            | ParseError::MissingArguments { line, .. }
            | ParseError::BeforeFrom { line, .. }
            | ParseError::BadJson { line, .. }
            | ParseError::UnterminatedHeredoc { line, .. }
            | ParseError::MisplacedHeredoc { line, .. }
            | ParseError::UnknownFlag { line, .. }
            | ParseError::BadFlag { line, .. }
            | ParseError::BadFrom { line, .. }
            | ParseError::DuplicateStage { line, .. }
            | ParseError::InvalidStageName { line, .. }
            | ParseError::BadKeyValue { line, .. }
            | ParseError::BlankName { line, .. }
            | ParseError::BadDuration { line, .. }
            | ParseError::BadHealthcheck { line, .. }
            | ParseError::BadOnbuild { line, .. }
            | ParseError::BadPort { line, .. }
            | ParseError::Invalid { line, .. }
            | ParseError::Expand { line, .. }
            | ParseError::BlankBase { line, .. }
            | ParseError::StageOrder { line, .. } => Some(*line),
        }
    }
}
