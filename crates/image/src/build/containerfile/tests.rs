use std::collections::BTreeMap;
use std::time::Duration;

use bosun_oci::ErrorKind;

use super::*;

fn ok(text: &str) -> Containerfile {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(f) => panic!("parsed: {f:?}"),
        Err(e) => e.to_string(),
    }
}

/// The commands of the only stage.
fn commands(text: &str) -> Vec<Command> {
    let f = ok(text);
    assert_eq!(f.stages.len(), 1);
    f.stages[0]
        .instructions
        .iter()
        .map(|i| i.command.clone())
        .collect()
}

/// The single command of `FROM x` + `line`.
fn one(line: &str) -> Command {
    let mut c = commands(&format!("FROM x\n{line}\n"));
    assert_eq!(c.len(), 1);
    c.remove(0)
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: v.to_owned(),
    }
}

fn shell(cmd: &str) -> CommandLine {
    CommandLine::Shell(cmd.to_owned())
}

fn exec(v: &[&str]) -> CommandLine {
    CommandLine::Exec(s(v))
}

fn run(cmd: CommandLine) -> Command {
    Command::Run(Run {
        command: cmd,
        heredocs: vec![],
        network: Network::Default,
        mounts: vec![],
    })
}

fn copy(sources: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        sources: sources
            .iter()
            .map(|p| CopySource::Path(p.to_string()))
            .collect(),
        dest: dest.to_owned(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        checksum: None,
        keep_git_dir: false,
    }
}

fn heredoc(name: &str, body: &str, expand: bool, chomp: bool) -> Heredoc {
    Heredoc {
        name: name.to_owned(),
        expand,
        chomp,
        body: body.to_owned(),
    }
}

fn default_shell() -> Vec<String> {
    DEFAULT_SHELL.iter().map(|x| x.to_string()).collect()
}

// ---- FROM and stages ----

#[test]
fn minimal_file() {
    let f = ok("FROM alpine:3.19\n");
    assert_eq!(
        f,
        Containerfile {
            stages: vec![Stage {
                name: None,
                base: "alpine:3.19".to_owned(),
                platform: None,
                line: 1,
                original: "FROM alpine:3.19".to_owned(),
                instructions: vec![],
            }],
            global_args: vec![],
            escape: '\\',
            syntax: None,
        }
    );
}

#[test]
fn from_forms() {
    let f =
        ok("from --platform=linux/arm64 golang:1.22 As Build\nFROM scratch\nFROM build AS final\n");
    assert_eq!(f.stages.len(), 3);
    assert_eq!(f.stages[0].name.as_deref(), Some("build"));
    assert_eq!(f.stages[0].platform.as_deref(), Some("linux/arm64"));
    assert_eq!(f.stages[0].base, "golang:1.22");
    assert_eq!(f.stages[1].name, None);
    assert_eq!(f.stages[1].base, "scratch");
    assert_eq!(f.stages[1].line, 2);
    assert_eq!(f.stages[2].original, "FROM build AS final");
    let none = |_: &str| None;
    assert_eq!(f.resolve_from(1, &none).unwrap().base, Base::Scratch);
    assert_eq!(f.resolve_from(2, &none).unwrap().base, Base::Stage(0));
    assert_eq!(
        f.resolve_from(0, &none).unwrap(),
        ResolvedFrom {
            base: Base::Image("golang:1.22".to_owned()),
            platform: Some("linux/arm64".to_owned())
        }
    );
}

#[test]
fn from_names_only_earlier_stages() {
    // `FROM node AS node` is the image, not the stage itself.
    let f = ok("FROM node AS node\nFROM node\nFROM later\nFROM alpine AS later\n");
    let none = |_: &str| None;
    assert_eq!(
        f.resolve_from(0, &none).unwrap().base,
        Base::Image("node".to_owned())
    );
    assert_eq!(f.resolve_from(1, &none).unwrap().base, Base::Stage(0));
    assert_eq!(
        f.resolve_from(2, &none).unwrap().base,
        Base::Image("later".to_owned())
    );
}

#[test]
fn from_errors() {
    assert_eq!(
        err("FROM\n"),
        "line 1: FROM requires a base image: FROM [--platform=P] image [AS name]"
    );
    assert_eq!(
        err("FROM a b c\n"),
        "line 1: FROM: expected AS between the image and the stage name"
    );
    assert_eq!(
        err("FROM a AS\n"),
        "line 1: FROM: expected FROM [--platform=P] image [AS name]"
    );
    assert_eq!(
        err("FROM a AS 1st\n"),
        "line 1: invalid stage name \"1st\": it must start with a letter and contain only letters, digits, '-', '_' and '.'"
    );
    assert_eq!(
        err("FROM a AS x/y\n"),
        "line 1: invalid stage name \"x/y\": it must start with a letter and contain only letters, digits, '-', '_' and '.'"
    );
    assert_eq!(
        err("FROM a AS b\nRUN x\nFROM c AS B\n"),
        "line 3: duplicate stage name \"b\" (first used on line 1)"
    );
    assert_eq!(
        err("FROM --platfrom=x a\n"),
        "line 1: FROM: unknown flag --platfrom"
    );
    let f = ok("FROM a AS ok-name_1.x\n");
    assert_eq!(f.stages[0].name.as_deref(), Some("ok-name_1.x"));
}

#[test]
fn empty_and_stageless_files() {
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert_eq!(parse("# just a comment\n\n"), Err(ParseError::Empty));
    assert_eq!(err("\n"), "the Containerfile has no instructions");
    assert_eq!(
        err("ARG A=1\n\nARG B\n"),
        "line 3: no FROM instruction: a Containerfile needs at least one build stage"
    );
}

#[test]
fn only_arg_before_from() {
    assert_eq!(
        err("# c\nRUN echo\nFROM a\n"),
        "line 2: RUN before the first FROM (only ARG may come before FROM)"
    );
    assert_eq!(
        err("ARG X\nENV A=b\nFROM a\n"),
        "line 2: ENV before the first FROM (only ARG may come before FROM)"
    );
    // Reported even when the instruction is otherwise malformed.
    assert_eq!(
        err("COPY --bogus a\n"),
        "line 1: COPY before the first FROM (only ARG may come before FROM)"
    );
}

#[test]
fn unknown_instruction() {
    assert_eq!(
        err("FROM a\n\nRUNN echo\n"),
        "line 3: unknown instruction \"RUNN\""
    );
    assert_eq!(
        parse("FROM a\nfoo bar"),
        Err(ParseError::UnknownInstruction {
            line: 2,
            name: "foo".to_owned()
        })
    );
}

// ---- lines, comments, continuations, directives ----

#[test]
fn case_insensitive_instructions_and_comments() {
    let f = ok("  # comment\nfrom a\n\n   run echo hi\n#RUN not this\nCmd [\"sh\"]\n");
    let ins = &f.stages[0].instructions;
    assert_eq!(ins.len(), 2);
    assert_eq!(ins[0].line, 4);
    assert_eq!(ins[0].original, "run echo hi");
    assert_eq!(ins[0].command, run(shell("echo hi")));
    assert_eq!(ins[1].command, Command::Cmd(exec(&["sh"])));
}

#[test]
fn continuations_keep_the_first_line_number() {
    let text = "FROM a\nRUN apt-get update && \\\n    apt-get install -y \\\n      curl\nUSER me\n";
    let f = ok(text);
    let ins = &f.stages[0].instructions;
    assert_eq!(ins[0].line, 2);
    assert_eq!(
        ins[0].original,
        "RUN apt-get update &&     apt-get install -y       curl"
    );
    assert_eq!(
        ins[0].command,
        run(shell("apt-get update &&     apt-get install -y       curl"))
    );
    assert_eq!(ins[1].line, 5);
}

#[test]
fn comments_and_blank_lines_inside_continuations() {
    let text = "FROM a\nRUN echo one \\\n# a comment\n  # indented comment\n\n    two\nRUN three\n";
    let f = ok(text);
    let ins = &f.stages[0].instructions;
    assert_eq!(ins[0].command, run(shell("echo one     two")));
    assert_eq!(ins[1].line, 7);
}

#[test]
fn escaped_escape_is_still_a_continuation() {
    // Docker's rule: an escape character at the end continues the line.
    assert_eq!(one("RUN echo a\\\\\n b"), run(shell("echo a\\ b")));
}

#[test]
fn crlf_and_bom() {
    let f = ok("\u{feff}FROM a\r\nRUN x \\\r\n  y\r\n");
    assert_eq!(f.stages[0].instructions[0].command, run(shell("x   y")));
}

#[test]
fn backtick_escape_directive() {
    let text = "# escape=`\nFROM mcr.microsoft.com/windows/servercore\nCOPY testfile.txt c:\\\nRUN dir c:\\\nRUN echo a `\n  b\nENV P=c:\\x`\" Q=`$1\n";
    let f = ok(text);
    assert_eq!(f.escape, '`');
    let ins = &f.stages[0].instructions;
    assert_eq!(
        ins[0].command,
        Command::Copy(copy(&["testfile.txt"], "c:\\"))
    );
    assert_eq!(ins[1].command, run(shell("dir c:\\")));
    assert_eq!(ins[1].line, 4);
    assert_eq!(ins[2].command, run(shell("echo a   b")));
    assert_eq!(ins[3].line, 7);
    let Command::Env(env) = &ins[3].command else {
        panic!("{:?}", ins[3]);
    };
    assert_eq!(env, &[kv("P", "c:\\x`\""), kv("Q", "`$1")]);
    let none = |_: &str| None;
    assert_eq!(
        crate::build::expand(&env[0].value, &none, f.escape).unwrap(),
        "c:\\x\""
    );
    assert_eq!(
        crate::build::expand(&env[1].value, &none, f.escape).unwrap(),
        "$1"
    );
}

#[test]
fn directives() {
    let f = ok("# syntax=docker/dockerfile:1.7\n#ESCAPE = \\\n# check=skip=all\nFROM a\n");
    assert_eq!(f.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(f.escape, '\\');
}

#[test]
fn directives_only_at_the_top() {
    // After a comment, a blank line or an unknown directive, a directive is
    // an ordinary comment.
    for text in [
        "# hello\n# escape=`\nFROM a\nRUN x `\n",
        "\n# escape=`\nFROM a\nRUN x `\n",
        "# unknown=1\n# escape=`\nFROM a\nRUN x `\n",
        "FROM a\n# escape=`\nRUN x `\n",
    ] {
        let f = ok(text);
        assert_eq!(f.escape, '\\', "{text:?}");
        assert_eq!(
            f.stages[0].instructions[0].command,
            run(shell("x `")),
            "{text:?}"
        );
    }
}

#[test]
fn directive_errors() {
    assert_eq!(
        err("# escape=x\nFROM a\n"),
        "line 1: parser directive \"escape\": invalid escape character \"x\": it must be \\ or `"
    );
    assert_eq!(
        err("# escape=`\n# Escape=\\\nFROM a\n"),
        "line 2: parser directive \"escape\": may only be given once"
    );
}

// ---- RUN ----

#[test]
fn run_forms_and_flags() {
    assert_eq!(
        one("RUN echo \"$HOME\" 'x'"),
        run(shell("echo \"$HOME\" 'x'"))
    );
    assert_eq!(
        one("RUN [\"/bin/echo\", \"a b\"]"),
        run(exec(&["/bin/echo", "a b"]))
    );
    // Not valid JSON: Docker runs it with the shell.
    assert_eq!(one("RUN [echo, hi]"), run(shell("[echo, hi]")));
    assert_eq!(
        one(
            "RUN --network=none --mount=type=cache,target=/root/.cache --mount=type=bind,from=b,target=/b make"
        ),
        Command::Run(Run {
            command: shell("make"),
            heredocs: vec![],
            network: Network::None,
            mounts: s(&[
                "type=cache,target=/root/.cache",
                "type=bind,from=b,target=/b"
            ]),
        })
    );
    let Command::Run(r) = one("RUN --network=host [\"ping\"]") else {
        panic!()
    };
    assert_eq!(r.network, Network::Host);
    assert_eq!(r.command, exec(&["ping"]));
    let Command::Run(r) = one("RUN --network=default x") else {
        panic!()
    };
    assert_eq!(r.network, Network::Default);
}

#[test]
fn run_errors() {
    assert_eq!(err("FROM a\nRUN\n"), "line 2: RUN requires a command");
    assert_eq!(err("FROM a\nRUN []\n"), "line 2: RUN requires a command");
    assert_eq!(
        err("FROM a\nRUN [\"a\", 1]\n"),
        "line 2: RUN: a JSON array of arguments must hold only strings"
    );
    assert_eq!(
        err("FROM a\nRUN --network=bridge x\n"),
        "line 2: RUN: flag --network: \"bridge\" is not default, none or host"
    );
    assert_eq!(
        err("FROM a\nRUN --security=insecure x\n"),
        "line 2: RUN: unknown flag --security"
    );
    assert_eq!(
        err("FROM a\nRUN --network=host --network=none x\n"),
        "line 2: RUN: flag --network: given more than once"
    );
}

#[test]
fn command_line_argv() {
    let sh = default_shell();
    assert_eq!(shell("echo hi").argv(&sh), s(&["/bin/sh", "-c", "echo hi"]));
    assert_eq!(exec(&["a", "b"]).argv(&sh), s(&["a", "b"]));
    let bash = s(&["/bin/bash", "-eo", "pipefail", "-c"]);
    assert_eq!(
        shell("x").argv(&bash),
        s(&["/bin/bash", "-eo", "pipefail", "-c", "x"])
    );
}

// ---- heredocs ----

#[test]
fn run_heredoc_plain() {
    let f = ok("FROM a\nRUN <<EOF\napt-get update\n  echo $HOME\nEOF\nUSER x\n");
    let ins = &f.stages[0].instructions;
    assert_eq!(ins.len(), 2);
    assert_eq!(ins[0].original, "RUN <<EOF");
    let Command::Run(r) = &ins[0].command else {
        panic!()
    };
    assert_eq!(r.command, shell("<<EOF"));
    assert_eq!(
        r.heredocs,
        [heredoc(
            "EOF",
            "apt-get update\n  echo $HOME\n",
            true,
            false
        )]
    );
    assert_eq!(ins[0].heredocs(), [&r.heredocs[0]]);
    assert_eq!(ins[1].line, 6);
    assert_eq!(
        r.plan(&default_shell()),
        RunPlan {
            argv: s(&["/bin/sh", "-c", "apt-get update\n  echo $HOME\n"]),
            files: vec![]
        }
    );
}

#[test]
fn run_heredoc_chomp_and_quoted() {
    let f = ok("FROM a\nRUN <<-EOT\n\t\techo \"$x\"\n\tEOT\nRUN <<'END'\necho $y\nEND\n");
    let ins = &f.stages[0].instructions;
    let Command::Run(r) = &ins[0].command else {
        panic!()
    };
    assert_eq!(
        r.heredocs,
        [heredoc("EOT", "\t\techo \"$x\"\n", true, true)]
    );
    assert_eq!(r.heredocs[0].content(), "echo \"$x\"\n");
    assert_eq!(r.plan(&default_shell()).argv[2], "echo \"$x\"\n");
    let Command::Run(r) = &ins[1].command else {
        panic!()
    };
    assert_eq!(r.heredocs, [heredoc("END", "echo $y\n", false, false)]);
    assert_eq!(ins[1].line, 5);
}

#[test]
fn run_heredoc_with_shebang_runs_a_file() {
    let f = ok("FROM a\nRUN <<EOF\n#!/usr/bin/env python3\nprint('hi')\nEOF\n");
    let Command::Run(r) = &f.stages[0].instructions[0].command else {
        panic!()
    };
    assert_eq!(
        r.plan(&default_shell()),
        RunPlan {
            argv: s(&["/bin/sh", "-c", "/dev/pipes/EOF"]),
            files: vec![ScriptFile {
                path: "/dev/pipes/EOF".to_owned(),
                content: "#!/usr/bin/env python3\nprint('hi')\n".to_owned(),
                mode: 0o755,
            }]
        }
    );
}

#[test]
fn run_heredocs_given_to_the_shell() {
    let text = "FROM a\nRUN python3 <<PY > out && cat <<-\"TXT\"\nprint(1)\nPY\n\tliteral $x\n\tTXT\nWORKDIR /w\n";
    let f = ok(text);
    let ins = &f.stages[0].instructions;
    let Command::Run(r) = &ins[0].command else {
        panic!()
    };
    assert_eq!(
        r.heredocs,
        [
            heredoc("PY", "print(1)\n", true, false),
            heredoc("TXT", "\tliteral $x\n", false, true)
        ]
    );
    assert_eq!(
        r.plan(&default_shell()).argv,
        s(&[
            "/bin/sh",
            "-c",
            "python3 <<PY > out && cat <<-\"TXT\"\nprint(1)\nPY\n\tliteral $x\nTXT"
        ])
    );
    assert_eq!(ins[1].line, 7);
    assert_eq!(ins[1].command, Command::Workdir("/w".to_owned()));
}

#[test]
fn heredoc_markers_need_a_word_of_their_own() {
    // Quoted or glued to other text, `<<` is no heredoc (as in Docker).
    assert_eq!(one("RUN echo \"<<EOF\""), run(shell("echo \"<<EOF\"")));
    assert_eq!(one("RUN echo a<<EOF"), run(shell("echo a<<EOF")));
    assert_eq!(one("RUN echo << EOF"), run(shell("echo << EOF")));
    // The exec form has no heredocs.
    assert_eq!(
        one("RUN [\"cat\", \"<<EOF\"]"),
        run(exec(&["cat", "<<EOF"]))
    );
}

#[test]
fn heredoc_empty_body() {
    let f = ok("FROM a\nRUN cat <<EOF\nEOF\n");
    let Command::Run(r) = &f.stages[0].instructions[0].command else {
        panic!()
    };
    assert_eq!(r.heredocs, [heredoc("EOF", "", true, false)]);
    assert_eq!(r.plan(&default_shell()).argv[2], "cat <<EOF\nEOF");
}

#[test]
fn copy_heredoc() {
    let text = "FROM a\nCOPY --chmod=755 <<EOF <<-'RAW' ./ctx.txt /app/\n#!/bin/sh\necho $NAME\nEOF\n\tkeep $this\n\tRAW\nCMD x\n";
    let f = ok(text);
    let ins = &f.stages[0].instructions;
    let Command::Copy(c) = &ins[0].command else {
        panic!()
    };
    assert_eq!(
        c.sources,
        [
            CopySource::Heredoc(heredoc("EOF", "#!/bin/sh\necho $NAME\n", true, false)),
            CopySource::Heredoc(heredoc("RAW", "\tkeep $this\n", false, true)),
            CopySource::Path("./ctx.txt".to_owned()),
        ]
    );
    assert_eq!(c.dest, "/app/");
    assert_eq!(c.chmod.as_deref(), Some("755"));
    assert_eq!(ins[0].heredocs().len(), 2);
    assert_eq!(ins[1].line, 8);
}

#[test]
fn heredoc_errors() {
    assert_eq!(
        err("FROM a\nRUN <<EOF\necho\nEOF \n"),
        "line 2: unterminated heredoc \"EOF\": no line \"EOF\" before the end of the file"
    );
    assert_eq!(
        parse("FROM a\n\nRUN <<A <<B\na\nA\nb\n"),
        Err(ParseError::UnterminatedHeredoc {
            line: 3,
            name: "B".to_owned()
        })
    );
    assert_eq!(
        err("FROM a\nCOPY x <<EOF\nbody\nEOF\n"),
        "line 2: COPY: a heredoc cannot be the destination"
    );
}

// ---- COPY and ADD ----

#[test]
fn copy_forms() {
    assert_eq!(
        one("COPY a b /dest/"),
        Command::Copy(copy(&["a", "b"], "/dest/"))
    );
    assert_eq!(
        one("COPY [\"a b\", \"$X\", \"/d e\"]"),
        Command::Copy(copy(&["a b", "$X"], "/d e"))
    );
    let mut full = copy(&["/out/app"], "/usr/bin/");
    full.from = Some("build".to_owned());
    full.chown = Some("1000:1000".to_owned());
    full.chmod = Some("0755".to_owned());
    full.link = true;
    assert_eq!(
        ok("FROM a AS build\nFROM b\nCOPY --from=build --chown=1000:1000 --chmod=0755 --link /out/app /usr/bin/\n")
            .stages[1]
            .instructions[0]
            .command,
        Command::Copy(full)
    );
    let Command::Copy(c) = one("COPY --link=false a b") else {
        panic!()
    };
    assert!(!c.link);
}

#[test]
fn add_forms() {
    let mut add = copy(&["https://example.com/a.tgz"], "/x");
    add.checksum = Some("sha256:abc".to_owned());
    add.keep_git_dir = true;
    assert_eq!(
        one("ADD --checksum=sha256:abc --keep-git-dir https://example.com/a.tgz /x"),
        Command::Add(add)
    );
    assert_eq!(
        err("FROM a\nADD --from=b x y\n"),
        "line 2: ADD: unknown flag --from"
    );
}

#[test]
fn copy_errors() {
    assert_eq!(
        err("FROM a\nCOPY onlyone\n"),
        "line 2: COPY requires at least two arguments: one or more sources and a destination"
    );
    assert_eq!(
        err("FROM a\nADD\n"),
        "line 2: ADD requires at least two arguments: one or more sources and a destination"
    );
    assert_eq!(
        err("FROM a\nCOPY [\"x\"]\n"),
        "line 2: COPY requires at least two arguments: one or more sources and a destination"
    );
    assert_eq!(
        err("FROM a\nCOPY --chown a b\n"),
        "line 2: COPY: flag --chown: needs a value (--chown=...)"
    );
    assert_eq!(
        err("FROM a\nCOPY --exclude=x a b\n"),
        "line 2: COPY: unknown flag --exclude"
    );
}

// ---- ENV, LABEL, ARG ----

#[test]
fn env_forms() {
    assert_eq!(
        one("ENV A=1 B=\"two words\" C=three\\ words D='$x' E="),
        Command::Env(vec![
            kv("A", "1"),
            kv("B", "\"two words\""),
            kv("C", "three\\ words"),
            kv("D", "'$x'"),
            kv("E", ""),
        ])
    );
    // The legacy form: the value is the rest of the line, as written.
    assert_eq!(
        one("ENV PATH /usr/local/bin:$PATH"),
        Command::Env(vec![kv("PATH", "/usr/local/bin:$PATH")])
    );
    assert_eq!(
        one("ENV MSG   hello   \"big\" world"),
        Command::Env(vec![kv("MSG", "hello   \"big\" world")])
    );
    assert_eq!(one("ENV K V=x"), Command::Env(vec![kv("K", "V=x")]));
}

#[test]
fn env_errors() {
    assert_eq!(
        err("FROM a\nENV\n"),
        "line 2: ENV requires at least one name=value"
    );
    assert_eq!(
        err("FROM a\nENV ONLY\n"),
        "line 2: ENV requires name=value, or a name and a value"
    );
    assert_eq!(
        err("FROM a\nENV A=1 B\n"),
        "line 2: ENV: \"B\" is not of the form name=value"
    );
    assert_eq!(
        err("FROM a\nENV =x\n"),
        "line 2: ENV: a name cannot be empty"
    );
}

#[test]
fn label_forms() {
    assert_eq!(
        one("LABEL org.opencontainers.image.title=\"My app\" \"com.x.y\"=z version=1.0"),
        Command::Label(vec![
            kv("org.opencontainers.image.title", "\"My app\""),
            kv("\"com.x.y\"", "z"),
            kv("version", "1.0"),
        ])
    );
    assert_eq!(
        one("LABEL desc some text"),
        Command::Label(vec![kv("desc", "some text")])
    );
    let f = ok("FROM a\nLABEL a=b \\\n      c=d\n");
    assert_eq!(
        f.stages[0].instructions[0].command,
        Command::Label(vec![kv("a", "b"), kv("c", "d")])
    );
}

#[test]
fn maintainer_is_kept_verbatim() {
    assert_eq!(
        one("MAINTAINER Jane Doe <jane@example.com>"),
        Command::Maintainer("Jane Doe <jane@example.com>".to_owned())
    );
    assert_eq!(
        err("FROM a\nMAINTAINER\n"),
        "line 2: MAINTAINER requires a name"
    );
}

#[test]
fn arg_forms() {
    let f =
        ok("ARG BASE=alpine\nARG TAG\nFROM ${BASE}:${TAG:-latest}\nARG A B=\"x y\" C=\nARG TAG\n");
    assert_eq!(
        f.global_args,
        [
            ArgDecl {
                name: "BASE".to_owned(),
                default: Some("alpine".to_owned()),
                line: 1
            },
            ArgDecl {
                name: "TAG".to_owned(),
                default: None,
                line: 2
            },
        ]
    );
    let ins = &f.stages[0].instructions;
    assert_eq!(
        ins[0].command,
        Command::Arg(vec![
            ArgDecl {
                name: "A".to_owned(),
                default: None,
                line: 4
            },
            ArgDecl {
                name: "B".to_owned(),
                default: Some("\"x y\"".to_owned()),
                line: 4
            },
            ArgDecl {
                name: "C".to_owned(),
                default: Some(String::new()),
                line: 4
            },
        ])
    );
    assert_eq!(
        err("FROM a\nARG\n"),
        "line 2: ARG requires a name: ARG name[=default]"
    );
    assert_eq!(
        err("ARG =1\nFROM a\n"),
        "line 1: ARG: a name cannot be empty"
    );
}

#[test]
fn global_args_resolve_in_order() {
    let f = ok(
        "ARG REG=docker.io\nARG IMAGE=${REG}/library/alpine\nARG TAG\nARG UNSET\nFROM ${IMAGE}:${TAG:-3.19}\n",
    );
    let none = |_: &str| None;
    let globals = f.resolve_global_args(&none).unwrap();
    assert_eq!(
        globals,
        BTreeMap::from([
            ("REG".to_owned(), "docker.io".to_owned()),
            ("IMAGE".to_owned(), "docker.io/library/alpine".to_owned()),
        ])
    );
    let lookup = |k: &str| globals.get(k).cloned();
    assert_eq!(
        f.resolve_from(0, &lookup).unwrap().base,
        Base::Image("docker.io/library/alpine:3.19".to_owned())
    );

    // A --build-arg overrides the default, and later defaults see it.
    let cli = |k: &str| match k {
        "REG" => Some("quay.io".to_owned()),
        "TAG" => Some("edge".to_owned()),
        "NOT_DECLARED" => Some("x".to_owned()),
        _ => None,
    };
    let globals = f.resolve_global_args(&cli).unwrap();
    assert_eq!(globals["IMAGE"], "quay.io/library/alpine");
    assert_eq!(globals["TAG"], "edge");
    assert!(!globals.contains_key("NOT_DECLARED"));
    let lookup = |k: &str| globals.get(k).cloned();
    assert_eq!(
        f.resolve_from(0, &lookup).unwrap().base,
        Base::Image("quay.io/library/alpine:edge".to_owned())
    );
}

#[test]
fn from_may_name_a_stage_through_an_arg() {
    let f = ok(
        "ARG VARIANT=dev\nFROM alpine AS base-dev\nFROM alpine AS base-prod\nFROM base-${VARIANT}\n",
    );
    let globals = f.resolve_global_args(&|_| None).unwrap();
    let lookup = |k: &str| globals.get(k).cloned();
    assert_eq!(f.resolve_from(2, &lookup).unwrap().base, Base::Stage(0));
    assert_eq!(f.dependencies(2), [StageDep::Stage(0)]);
    let cli = |k: &str| (k == "VARIANT").then(|| "prod".to_owned());
    let globals = f.resolve_global_args(&cli).unwrap();
    let lookup = |k: &str| globals.get(k).cloned();
    assert_eq!(
        f.dependencies_with(2, &lookup, &|_| None).unwrap(),
        [StageDep::Stage(1)]
    );
}

#[test]
fn from_expansion_errors() {
    let f = ok("ARG BASE\nFROM ${BASE}\nFROM ${X:?needs-X}\n");
    assert_eq!(
        f.resolve_from(0, &|_| None).unwrap_err().to_string(),
        "line 2: FROM: base name \"${BASE}\" expands to an empty string"
    );
    assert_eq!(
        f.resolve_from(1, &|_| None).unwrap_err().to_string(),
        "line 3: X: needs-X"
    );
    // An unexpandable FROM is reported raw by `dependencies`.
    assert_eq!(
        f.dependencies(1),
        [StageDep::Image("${X:?needs-X}".to_owned())]
    );
}

#[test]
fn stage_args_take_the_global_value() {
    let f = ok("ARG VERSION=1.0\nFROM a\nARG VERSION\nARG OTHER=$VERSION-x\n");
    let globals = f.resolve_global_args(&|_| None).unwrap();
    let Command::Arg(decls) = &f.stages[0].instructions[0].command else {
        panic!()
    };
    let none = |_: &str| None;
    let g = globals.get("VERSION").map(String::as_str);
    // A bare ARG inherits the global value...
    assert_eq!(
        decls[0]
            .resolve(None, g, &none, f.escape)
            .unwrap()
            .as_deref(),
        Some("1.0")
    );
    // ...a --build-arg wins over it...
    assert_eq!(
        decls[0]
            .resolve(Some("2.0"), g, &none, f.escape)
            .unwrap()
            .as_deref(),
        Some("2.0")
    );
    // ...and without a global it is declared but unset.
    assert_eq!(decls[0].resolve(None, None, &none, f.escape).unwrap(), None);
    // A default is expanded with the state before the ARG.
    let Command::Arg(decls) = &f.stages[0].instructions[1].command else {
        panic!()
    };
    let state = |k: &str| (k == "VERSION").then(|| "1.0".to_owned());
    assert_eq!(
        decls[0]
            .resolve(None, None, &state, f.escape)
            .unwrap()
            .as_deref(),
        Some("1.0-x")
    );
    // A default beats the global value; a --build-arg is used verbatim.
    assert_eq!(
        decls[0]
            .resolve(None, Some("global"), &state, f.escape)
            .unwrap()
            .as_deref(),
        Some("1.0-x")
    );
    assert_eq!(
        decls[0]
            .resolve(Some("$raw"), None, &state, f.escape)
            .unwrap()
            .as_deref(),
        Some("$raw")
    );
    let bad = ArgDecl {
        name: "B".to_owned(),
        default: Some("'open".to_owned()),
        line: 9,
    };
    assert_eq!(
        bad.resolve(None, None, &none, '\\')
            .unwrap_err()
            .to_string(),
        "line 9: unexpected end of text looking for the matching single quote"
    );
}

// ---- other instructions ----

#[test]
fn workdir_user_stopsignal() {
    assert_eq!(
        one("WORKDIR /app/$NAME"),
        Command::Workdir("/app/$NAME".to_owned())
    );
    assert_eq!(one("USER 1000:1000"), Command::User("1000:1000".to_owned()));
    assert_eq!(
        one("STOPSIGNAL SIGTERM"),
        Command::StopSignal("SIGTERM".to_owned())
    );
    assert_eq!(
        err("FROM a\nWORKDIR\n"),
        "line 2: WORKDIR requires a directory"
    );
    assert_eq!(
        err("FROM a\nUSER\n"),
        "line 2: USER requires a user: USER user[:group]"
    );
    assert_eq!(
        err("FROM a\nSTOPSIGNAL  \n"),
        "line 2: STOPSIGNAL requires a signal name or number"
    );
    assert_eq!(
        err("FROM a\nUSER --x=1 me\n"),
        "line 2: USER: unknown flag --x"
    );
}

#[test]
fn cmd_and_entrypoint() {
    assert_eq!(
        one("CMD [\"nginx\", \"-g\", \"daemon off;\"]"),
        Command::Cmd(exec(&["nginx", "-g", "daemon off;"]))
    );
    assert_eq!(
        one("CMD nginx -g 'daemon off;'"),
        Command::Cmd(shell("nginx -g 'daemon off;'"))
    );
    assert_eq!(one("CMD []"), Command::Cmd(exec(&[])));
    assert_eq!(
        one("ENTRYPOINT [\"/entry.sh\"]"),
        Command::Entrypoint(exec(&["/entry.sh"]))
    );
    assert_eq!(
        one("ENTRYPOINT exec top -b"),
        Command::Entrypoint(shell("exec top -b"))
    );
    assert_eq!(one("CMD [\"a\" ,]"), Command::Cmd(shell("[\"a\" ,]")));
    assert_eq!(err("FROM a\nCMD\n"), "line 2: CMD requires a command");
    assert_eq!(
        err("FROM a\nENTRYPOINT [1]\n"),
        "line 2: ENTRYPOINT: a JSON array of arguments must hold only strings"
    );
}

#[test]
fn json_over_continuation_lines() {
    let f = ok("FROM a\nCMD [\"a\", \\\n     \"b\"]\n");
    assert_eq!(
        f.stages[0].instructions[0].command,
        Command::Cmd(exec(&["a", "b"]))
    );
}

#[test]
fn shell_instruction() {
    assert_eq!(
        one("SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]"),
        Command::Shell(s(&["/bin/bash", "-o", "pipefail", "-c"]))
    );
    assert_eq!(
        err("FROM a\nSHELL /bin/bash -c\n"),
        "line 2: SHELL: the arguments must be a JSON array, e.g. [\"/bin/sh\", \"-c\"]"
    );
    assert_eq!(
        err("FROM a\nSHELL []\n"),
        "line 2: SHELL requires at least one argument"
    );
}

#[test]
fn expose() {
    assert_eq!(
        one("EXPOSE 80 443/tcp 53/udp 7000-7010/SCTP $P"),
        Command::Expose(s(&["80", "443/tcp", "53/udp", "7000-7010/SCTP", "$P"]))
    );
    assert_eq!(
        err("FROM a\nEXPOSE\n"),
        "line 2: EXPOSE requires at least one port: EXPOSE port[/protocol]"
    );
    assert_eq!(
        err("FROM a\nEXPOSE 80/http\n"),
        "line 2: EXPOSE \"80/http\": the protocol must be tcp, udp or sctp"
    );
    assert_eq!(
        err("FROM a\nEXPOSE 70000\n"),
        "line 2: EXPOSE \"70000\": a port is a number from 1 to 65535"
    );
    assert_eq!(
        err("FROM a\nEXPOSE 90-80\n"),
        "line 2: EXPOSE \"90-80\": the range ends before it starts"
    );
    assert_eq!(
        err("FROM a\n\nEXPOSE 0\n"),
        "line 3: EXPOSE \"0\": a port is a number from 1 to 65535"
    );
}

#[test]
fn port_specs() {
    assert_eq!(
        PortSpec::parse("8080", 1).unwrap(),
        PortSpec {
            start: 8080,
            end: 8080,
            protocol: Protocol::Tcp
        }
    );
    assert_eq!(
        PortSpec::parse("53/UDP", 1).unwrap(),
        PortSpec {
            start: 53,
            end: 53,
            protocol: Protocol::Udp
        }
    );
    assert_eq!(
        PortSpec::parse("1-3/sctp", 1).unwrap(),
        PortSpec {
            start: 1,
            end: 3,
            protocol: Protocol::Sctp
        }
    );
    assert_eq!(Protocol::Udp.as_str(), "udp");
    assert!(PortSpec::parse("", 1).is_err());
    assert!(PortSpec::parse("a", 1).is_err());
    assert!(PortSpec::parse("-5", 1).is_err());
    assert!(PortSpec::parse("80/", 1).is_err());
}

#[test]
fn volume() {
    assert_eq!(
        one("VOLUME /data /logs"),
        Command::Volume(s(&["/data", "/logs"]))
    );
    assert_eq!(
        one("VOLUME [\"/data\", \"/my logs\"]"),
        Command::Volume(s(&["/data", "/my logs"]))
    );
    assert_eq!(
        err("FROM a\nVOLUME\n"),
        "line 2: VOLUME requires at least one path"
    );
    assert_eq!(
        err("FROM a\nVOLUME []\n"),
        "line 2: VOLUME requires at least one path"
    );
    assert_eq!(
        err("FROM a\nVOLUME [\"\"]\n"),
        "line 2: VOLUME: a volume path cannot be empty"
    );
}

#[test]
fn healthcheck() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Command::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one("healthcheck none"),
        Command::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one(
            "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1"
        ),
        Command::Healthcheck(Healthcheck::Check {
            test: shell("curl -f http://localhost/ || exit 1"),
            interval: Some(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(90)),
            start_period: Some(Duration::from_millis(500)),
            start_interval: Some(Duration::from_secs(2)),
            retries: Some(3),
        })
    );
    assert_eq!(
        one("HEALTHCHECK --interval=0s --retries=0 CMD [\"/check\", \"-q\"]"),
        Command::Healthcheck(Healthcheck::Check {
            test: exec(&["/check", "-q"]),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        })
    );
}

#[test]
fn healthcheck_errors() {
    let e = |l: &str| err(&format!("FROM a\n{l}\n"));
    assert_eq!(
        e("HEALTHCHECK"),
        "line 2: HEALTHCHECK requires NONE, or CMD and a command"
    );
    assert_eq!(
        e("HEALTHCHECK NONE x"),
        "line 2: HEALTHCHECK: HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        e("HEALTHCHECK --interval=5s NONE"),
        "line 2: HEALTHCHECK: HEALTHCHECK NONE takes no options"
    );
    assert_eq!(
        e("HEALTHCHECK CMD"),
        "line 2: HEALTHCHECK: missing command after HEALTHCHECK CMD"
    );
    assert_eq!(
        e("HEALTHCHECK CMD []"),
        "line 2: HEALTHCHECK: missing command after HEALTHCHECK CMD"
    );
    assert_eq!(
        e("HEALTHCHECK RUN x"),
        "line 2: HEALTHCHECK: unknown type \"RUN\" (use CMD or NONE)"
    );
    assert_eq!(
        e("HEALTHCHECK --interval=30 CMD x"),
        "line 2: HEALTHCHECK --interval=\"30\": missing unit (use ns, us, ms, s, m or h)"
    );
    assert_eq!(
        e("HEALTHCHECK --timeout=-1s CMD x"),
        "line 2: HEALTHCHECK --timeout=\"-1s\": a duration cannot be negative"
    );
    assert_eq!(
        e("HEALTHCHECK --start-period=10us CMD x"),
        "line 2: HEALTHCHECK --start-period=\"10us\": must be at least 1ms (or 0 to inherit)"
    );
    assert_eq!(
        parse("FROM a\nHEALTHCHECK --interval=1x CMD x\n"),
        Err(ParseError::BadDuration {
            line: 2,
            flag: "interval",
            value: "1x".to_owned(),
            reason: "unknown unit (use ns, us, ms, s, m or h)"
        })
    );
    assert_eq!(
        e("HEALTHCHECK --retries=-1 CMD x"),
        "line 2: HEALTHCHECK: --retries cannot be negative (-1)"
    );
    assert_eq!(
        e("HEALTHCHECK --retries=two CMD x"),
        "line 2: HEALTHCHECK: --retries=\"two\" is not a number"
    );
    assert_eq!(
        e("HEALTHCHECK --every=1s CMD x"),
        "line 2: HEALTHCHECK: unknown flag --every"
    );
}

#[test]
fn onbuild() {
    assert_eq!(
        one("ONBUILD RUN make install"),
        Command::Onbuild("RUN make install".to_owned())
    );
    assert_eq!(
        one("onbuild copy --from=x . /app"),
        Command::Onbuild("copy --from=x . /app".to_owned())
    );
    let e = |l: &str| err(&format!("FROM a\n{l}\n"));
    assert_eq!(
        e("ONBUILD ONBUILD RUN x"),
        "line 2: ONBUILD: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        e("ONBUILD FROM x"),
        "line 2: ONBUILD: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        e("ONBUILD maintainer me"),
        "line 2: ONBUILD: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(e("ONBUILD"), "line 2: ONBUILD requires an instruction");
    assert_eq!(e("ONBUILD RUNN x"), "line 2: unknown instruction \"RUNN\"");
    // The trigger is checked like an instruction of its own.
    assert_eq!(
        e("ONBUILD COPY x"),
        "line 2: COPY requires at least two arguments: one or more sources and a destination"
    );
    assert_eq!(e("ONBUILD RUN --bad x"), "line 2: RUN: unknown flag --bad");
    assert_eq!(e("ONBUILD --x RUN y"), "line 2: ONBUILD: unknown flag --x");
}

#[test]
fn full_file_line_numbers() {
    let text = "\
# syntax=docker/dockerfile:1
ARG GO=1.22

FROM golang:${GO} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod \\
    go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/app ./cmd/app

FROM gcr.io/distroless/static AS final
COPY --from=build /out/app /app
USER 65532:65532
EXPOSE 8080
ENTRYPOINT [\"/app\"]
";
    let f = ok(text);
    assert_eq!(f.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(f.global_args.len(), 1);
    let lines: Vec<Vec<usize>> = f
        .stages
        .iter()
        .map(|s| s.instructions.iter().map(|i| i.line).collect())
        .collect();
    assert_eq!(lines, [vec![5, 6, 7, 9, 10], vec![13, 14, 15, 16]]);
    assert_eq!(f.stages[0].line, 4);
    assert_eq!(f.stages[1].line, 12);
    assert_eq!(f.target(None).unwrap(), 1);
    assert_eq!(
        f.dependencies(1),
        [
            StageDep::Image("gcr.io/distroless/static".to_owned()),
            StageDep::Stage(0)
        ]
    );
    assert_eq!(
        f.dependencies(0),
        [StageDep::Image("golang:1.22".to_owned())]
    );
}

// ---- stage helpers ----

#[test]
fn stage_index_and_target() {
    let f = ok("FROM a AS Builder\nFROM b\nFROM c AS test\n");
    assert_eq!(f.stage_index("builder"), Some(0));
    assert_eq!(f.stage_index("BUILDER"), Some(0));
    assert_eq!(f.stage_index("1"), Some(1));
    assert_eq!(f.stage_index("3"), None);
    assert_eq!(f.stage_index("nope"), None);
    assert_eq!(f.target(None).unwrap(), 2);
    assert_eq!(f.target(Some("Builder")).unwrap(), 0);
    let e = f.target(Some("prod")).unwrap_err();
    assert_eq!(e.to_string(), "target stage \"prod\" not found");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.line(), None);
}

#[test]
fn dependencies_from_copy_and_mounts() {
    let text = "\
FROM alpine AS a
FROM a AS b
COPY --from=a /x /x
COPY --from=0 /y /y
COPY --from=nginx:latest /etc/nginx /etc/nginx
RUN --mount=type=bind,from=a,target=/m --mount=type=cache,target=/c true
FROM scratch
COPY --from=b / /
COPY --from=${SRC} / /
";
    let f = ok(text);
    assert_eq!(f.dependencies(0), [StageDep::Image("alpine".to_owned())]);
    assert_eq!(
        f.dependencies(1),
        [
            StageDep::Stage(0),
            StageDep::Image("nginx:latest".to_owned())
        ]
    );
    // The raw `${SRC}` is reported as written by `dependencies`...
    assert_eq!(
        f.dependencies(2),
        [StageDep::Stage(1), StageDep::Image("${SRC}".to_owned())]
    );
    // ...and resolved by `dependencies_with`.
    let src = |k: &str| (k == "SRC").then(|| "A".to_owned());
    assert_eq!(
        f.dependencies_with(2, &|_| None, &src).unwrap(),
        [StageDep::Stage(1), StageDep::Stage(0)]
    );
    let own = |k: &str| (k == "SRC").then(|| "2".to_owned());
    assert_eq!(
        f.dependencies_with(2, &|_| None, &own)
            .unwrap_err()
            .to_string(),
        "line 9: --from=\"2\" does not name a stage defined before this one"
    );
}

#[test]
fn static_from_must_name_an_earlier_stage() {
    assert_eq!(
        err("FROM a AS one\nCOPY --from=one x y\n"),
        "line 2: --from=\"one\" does not name a stage defined before this one"
    );
    assert_eq!(
        err("FROM a\nCOPY --from=later x y\nFROM b AS later\n"),
        "line 2: --from=\"later\" does not name a stage defined before this one"
    );
    assert_eq!(
        err("FROM a\nFROM b\nCOPY --from=5 x y\n"),
        "line 3: --from=\"5\" does not name a stage defined before this one"
    );
    assert_eq!(
        err("FROM a\nRUN --mount=from=0,target=/x true\n"),
        "line 2: --from=\"0\" does not name a stage defined before this one"
    );
}

#[test]
fn error_kinds_and_lines() {
    let e = parse("FROM a\nRUNN x\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.line(), Some(2));
    assert_eq!(parse("").unwrap_err().line(), None);
    let e = ok("FROM ${X:?}\n").resolve_from(0, &|_| None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.line(), Some(1));
}

#[test]
fn json_escapes_are_json_not_dockerfile_escapes() {
    assert_eq!(
        one(r#"CMD ["echo", "a\"b", "\u00e9", "c:\\dir"]"#),
        Command::Cmd(exec(&["echo", "a\"b", "é", "c:\\dir"]))
    );
    let f = ok("# escape=`\nFROM a\nRUN [\"cmd\", \"/S\", \"/C\", \"echo `x\"]\n");
    assert_eq!(
        f.stages[0].instructions[0].command,
        run(exec(&["cmd", "/S", "/C", "echo `x"]))
    );
}

#[test]
fn target_of_a_stageless_value_is_an_error() {
    let f = Containerfile {
        stages: vec![],
        global_args: vec![],
        escape: '\\',
        syntax: None,
    };
    assert_eq!(f.target(None), Err(ParseError::Empty));
}
