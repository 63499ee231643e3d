//! How a RUN instruction becomes a process, heredocs included.

use super::words::heredoc_marker;
use super::{CommandLine, Run};

/// The shell of shell forms when the stage has no SHELL instruction.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Where a RUN heredoc script is mounted (Docker's location).
const SCRIPT_DIR: &str = "/dev/pipes";

/// What the executor runs for a RUN: `argv`, after putting each of `files`
/// in place (read-only, e.g. a tmpfs mount at `/dev/pipes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub argv: Vec<String>,
    pub files: Vec<ScriptFile>,
}

/// A script file a RUN needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFile {
    /// Absolute path in the container.
    pub path: String,
    pub content: String,
    pub mode: u32,
}

impl Run {
    /// The process to run, with `shell` the stage's SHELL (by default
    /// [`DEFAULT_SHELL`]). Docker's rules for heredocs:
    ///
    /// - `RUN <<EOF` alone, body starting with `#!`: the body is written to
    ///   `/dev/pipes/EOF` (mode 0755) and run as `shell... /dev/pipes/EOF`,
    ///   so its interpreter line picks the interpreter;
    /// - `RUN <<EOF` alone, any other body: `shell... body` (the body is the
    ///   script, whatever the delimiter's quoting);
    /// - anything else (`RUN python3 <<EOF`, several heredocs): the line and
    ///   the heredocs are put back together as written and given to the
    ///   shell, which handles them (`<<-`, quoting) itself.
    ///
    /// Exec forms and shell forms without heredocs map as
    /// [`CommandLine::argv`].
    pub fn plan(&self, shell: &[String]) -> RunPlan {
        let CommandLine::Shell(line) = &self.command else {
            return RunPlan {
                argv: self.command.argv(shell),
                files: Vec::new(),
            };
        };
        let with_shell = |script: String| shell.iter().cloned().chain([script]).collect();
        match self.heredocs.as_slice() {
            [] => RunPlan {
                argv: with_shell(line.clone()),
                files: Vec::new(),
            },
            [only] if heredoc_marker(line.trim(), '\\').is_some() => {
                let content = only.content();
                if content.starts_with("#!") {
                    let path = format!("{SCRIPT_DIR}/{}", only.name);
                    RunPlan {
                        argv: with_shell(path.clone()),
                        files: vec![ScriptFile {
                            path,
                            content,
                            mode: 0o755,
                        }],
                    }
                } else {
                    RunPlan {
                        argv: with_shell(content),
                        files: Vec::new(),
                    }
                }
            }
            docs => {
                let mut script = line.clone();
                for doc in docs {
                    script.push('\n');
                    script.push_str(&doc.body);
                    script.push_str(&doc.name);
                }
                RunPlan {
                    argv: with_shell(script),
                    files: Vec::new(),
                }
            }
        }
    }
}
