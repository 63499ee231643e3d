//! The build executor: runs a parsed Containerfile against the image store.
//!
//! Every stage is a sequence of states (an image config plus a list of
//! layers) and a *cache key* chained through its instructions: the key of a
//! step hashes the previous key, the instruction, what of the config it sees,
//! and for COPY/ADD the content of the files it reads. A step whose key has a
//! cache record reuses that layer without running anything; so a rebuild with
//! nothing changed touches no snapshot at all, and touching one COPYed file
//! re-runs from that step on.
//!
//! Steps that change files (RUN, COPY, ADD) run on an overlay snapshot of
//! the layers so far; the upper directory becomes the step's layer and is
//! committed as the next snapshot, so the following step does not extract
//! anything again. RUN itself is delegated to a [`StepRunner`] (the binary
//! runs `bosun runtime` as a child process): the runtime is synchronous and
//! must not be entered from a process with threads it does not own.

mod config;
mod context;
mod fs;
mod user;
pub use fs::resolve_in_root;
pub use user::resolve_user;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bosun_oci::{Digest, ErrorKind, ImageRef};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use self::config::ImageConfig;
use self::context::{Context, Source, hash_sources, match_sources};
use self::fs::{CopyAttrs, copy_tree, mkdir_in_root, write_file};
use super::containerfile::{
    self, Base, CommandLine, Containerfile, CopySource, CopySpec, Healthcheck, Instruction,
    Network, ParseError, PortSpec,
};
use super::expand::{expand, expand_words};
use crate::hash::{Hasher, HashingWriter};
use crate::images::ImageLayer;
use crate::manifest::descriptor_digest;
use crate::snapshot::{self, Snapshotter};
use crate::{Compression, ImageError, ImageStore};

/// What a RUN step asks the runtime to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The mounted root file system (read-write).
    pub rootfs: PathBuf,
    /// A fresh directory the runner may use for the bundle and state.
    pub scratch: PathBuf,
    /// A container id unique on this machine.
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// `false` for `RUN --network=none`: a new, empty network namespace.
    pub host_network: bool,
}

/// What the builder needs from its host: running RUN steps, downloading
/// `ADD` URLs.
pub trait StepRunner: Sync {
    /// Runs the process, copying its stdout and stderr to `output`, and
    /// returns its exit code.
    fn run(&self, request: &RunRequest, output: &mut dyn Write) -> io::Result<i32>;

    /// Stops whatever a RUN step of a builder that died left running:
    /// `scratch` and `id` are what that step's [`RunRequest`] had.
    fn cleanup(&self, scratch: &Path, id: &str) {
        let _ = (scratch, id);
    }

    /// Downloads `url` into `out`; the error says why it could not.
    fn fetch(&self, url: &str, out: &mut dyn Write) -> Result<(), String> {
        let _ = (url, out);
        Err("this builder cannot download".into())
    }
}

/// Everything `bosun build` was asked.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// Defaults to `Containerfile`, then `Dockerfile`, in the context.
    pub containerfile: Option<PathBuf>,
    pub tags: Vec<ImageRef>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Digest,
    /// The config digest: what Docker calls the image id.
    pub id: Digest,
    /// Steps that changed files, and how many of them came from the cache.
    pub layer_steps: usize,
    pub cached_steps: usize,
}

/// Why a build failed. Instruction errors name the Containerfile line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    Input(String),
    #[error("line {line}: {instruction}: {reason}")]
    Step {
        line: usize,
        instruction: String,
        reason: String,
    },
    #[error("line {line}: {instruction}: the command exited with code {code}")]
    RunFailed {
        line: usize,
        instruction: String,
        code: i32,
    },
    #[error("line {line}: {instruction}: {source}")]
    Image {
        line: usize,
        instruction: String,
        source: Box<ImageError>,
    },
    #[error(transparent)]
    Store(Box<ImageError>),
    #[error(transparent)]
    Snapshot(Box<snapshot::SnapshotError>),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl From<ImageError> for BuildError {
    fn from(e: ImageError) -> Self {
        BuildError::Store(Box::new(e))
    }
}

impl From<snapshot::SnapshotError> for BuildError {
    fn from(e: snapshot::SnapshotError) -> Self {
        BuildError::Snapshot(Box::new(e))
    }
}

impl BuildError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BuildError::Parse(e) => e.kind(),
            BuildError::Input(_) | BuildError::Step { .. } | BuildError::RunFailed { .. } => {
                ErrorKind::Invalid
            }
            BuildError::Image { source, .. } | BuildError::Store(source) => source.kind(),
            BuildError::Snapshot(e) => e.kind(),
            BuildError::Io { .. } => ErrorKind::Internal,
        }
    }
}

fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> BuildError {
    let path = path.into();
    move |source| BuildError::Io { op, path, source }
}

/// What a file-changing step does on its mounted root file system, given a
/// scratch directory of its own and the progress output.
type StepWork<'a> = dyn FnMut(&Path, &Path, &mut dyn Write) -> Result<(), BuildError> + 'a;

/// One layer of a stage: the blob and what it unpacks to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Layer {
    blob: Digest,
    size: u64,
    media_type: String,
    diff_id: Digest,
    /// When the step that made it ran (the cache keeps it, so a rebuild
    /// from the cache gives the same config, hence the same image id).
    #[serde(default)]
    created: String,
}

/// A stage's state between steps.
#[derive(Debug, Clone)]
struct State {
    config: ImageConfig,
    layers: Vec<Layer>,
    key: String,
    /// The ARGs in scope and their values.
    args: BTreeMap<String, String>,
    /// Whether this stage set CMD (ENTRYPOINT resets an inherited one).
    cmd_set: bool,
    /// The time of the newest layer so far: history entries and the image's
    /// `created` use it instead of the clock, so builds are reproducible.
    created: String,
}

/// Builds the image `opts` describe; progress goes to `out`.
pub fn build(
    store: &ImageStore,
    snapshots: &Snapshotter,
    runner: &dyn StepRunner,
    opts: &BuildOptions,
    out: &mut dyn Write,
) -> Result<Built, BuildError> {
    let file_path = match &opts.containerfile {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(io_err("read", "the current directory"))?,
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| opts.context.join(n))
            .find(|p| p.exists())
            .ok_or_else(|| {
                BuildError::Input(format!(
                    "no Containerfile or Dockerfile in {}; name one with -f",
                    opts.context.display()
                ))
            })?,
    };
    if !opts.context.is_dir() {
        return Err(BuildError::Input(format!(
            "build context {} is not a directory",
            opts.context.display()
        )));
    }
    let text = std::fs::read_to_string(&file_path)
        .map_err(|e| BuildError::Input(format!("cannot read {}: {e}", file_path.display())))?;
    let file = containerfile::parse(&text)?;
    let context = Context::open(&opts.context, &file_path).map_err(BuildError::Input)?;
    let target = file.target(opts.target.as_deref())?;
    let _guard = store.ingest_guard()?;
    sweep_stale_work(store, snapshots, runner);
    let mut builder = Builder {
        store,
        snapshots,
        runner,
        opts,
        file: &file,
        context: std::sync::Arc::new(context),
        out,
        step: 0,
        total: 0,
        layer_steps: 0,
        cached_steps: 0,
        cache_dir: store.data_dir().join("build-cache"),
        work_dir: store.data_dir().join("build-work"),
    };
    builder.run(target)
}

struct Builder<'a> {
    store: &'a ImageStore,
    snapshots: &'a Snapshotter,
    runner: &'a dyn StepRunner,
    opts: &'a BuildOptions,
    file: &'a Containerfile,
    context: std::sync::Arc<Context>,
    out: &'a mut dyn Write,
    step: usize,
    total: usize,
    layer_steps: usize,
    cached_steps: usize,
    cache_dir: PathBuf,
    work_dir: PathBuf,
}

static WORK_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The only platform built here, as BuildKit names it in its automatic ARGs.
const PLATFORM_ARGS: [(&str, &str); 8] = [
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
];

/// The time of an image made of nothing but metadata over `scratch`.
const EPOCH: &str = "1970-01-01T00:00:00Z";

impl Builder<'_> {
    fn run(&mut self, target: usize) -> Result<Built, BuildError> {
        std::fs::create_dir_all(&self.cache_dir).map_err(io_err("create", &self.cache_dir))?;
        std::fs::create_dir_all(&self.work_dir).map_err(io_err("create", &self.work_dir))?;
        let globals = self.global_args()?;
        let deps = self.needed_stages(target, &globals)?;
        // Step numbers follow the file, whatever order stages finish in.
        let mut offsets = BTreeMap::new();
        for &i in deps.keys() {
            offsets.insert(i, self.total);
            self.total += self.file.stages[i].instructions.len() + 1;
        }
        let mut done: BTreeMap<usize, State> = BTreeMap::new();
        while done.len() < deps.len() {
            let wave: Vec<usize> = deps
                .iter()
                .filter(|(i, d)| !done.contains_key(i) && d.iter().all(|j| done.contains_key(j)))
                .map(|(i, _)| *i)
                .collect();
            match wave.as_slice() {
                [] => {
                    return Err(BuildError::Input(
                        "the stages depend on each other in a cycle".into(),
                    ));
                }
                [i] => {
                    self.step = offsets[i];
                    let state = self.build_stage(*i, &globals, &done)?;
                    done.insert(*i, state);
                }
                _ => {
                    for (i, state) in self.build_wave(&wave, &offsets, &globals, &done)? {
                        done.insert(i, state);
                    }
                }
            }
        }
        let state = done.remove(&target).expect("the target stage was built");
        self.commit(&state)
    }

    /// Builds stages that do not depend on each other at the same time, one
    /// thread each; each stage's progress is printed whole when it ends, in
    /// file order, so the lines of two stages never interleave.
    fn build_wave(
        &mut self,
        wave: &[usize],
        offsets: &BTreeMap<usize, usize>,
        globals: &BTreeMap<String, String>,
        done: &BTreeMap<usize, State>,
    ) -> Result<Vec<(usize, State)>, BuildError> {
        type Outcome = (usize, Vec<u8>, Result<(State, usize, usize), BuildError>);
        let results: Vec<Outcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = wave
                .iter()
                .map(|&i| {
                    let (store, snapshots, runner, opts, file) = (
                        self.store,
                        self.snapshots,
                        self.runner,
                        self.opts,
                        self.file,
                    );
                    let context = self.context.clone();
                    let (cache_dir, work_dir) = (self.cache_dir.clone(), self.work_dir.clone());
                    let (step, total) = (offsets[&i], self.total);
                    scope.spawn(move || {
                        let mut buf = Vec::new();
                        let mut sub = Builder {
                            store,
                            snapshots,
                            runner,
                            opts,
                            file,
                            context,
                            out: &mut buf,
                            step,
                            total,
                            layer_steps: 0,
                            cached_steps: 0,
                            cache_dir,
                            work_dir,
                        };
                        let result = sub
                            .build_stage(i, globals, done)
                            .map(|state| (state, sub.layer_steps, sub.cached_steps));
                        (i, buf, result)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a build thread panicked"))
                .collect()
        });
        let mut built = Vec::new();
        let mut first_error = None;
        for (i, output, result) in results {
            // Progress is best effort: a closed terminal must not fail the build.
            let _ = self.out.write_all(&output);
            match result {
                Ok((state, layer_steps, cached_steps)) => {
                    self.layer_steps += layer_steps;
                    self.cached_steps += cached_steps;
                    built.push((i, state));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(built),
        }
    }

    /// The target and, transitively, the stages it needs (in file order),
    /// each with the stages it needs directly. A `--from=$VAR` is expanded
    /// with the build args and global ARGs: a stage's own ARG values are only
    /// known while it builds.
    fn needed_stages(
        &self,
        target: usize,
        globals: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<usize, BTreeSet<usize>>, BuildError> {
        let globals_lookup = |k: &str| globals.get(k).cloned();
        let from_lookup = |k: &str| {
            self.opts
                .build_args
                .get(k)
                .or_else(|| globals.get(k))
                .cloned()
        };
        let mut needed = BTreeMap::new();
        let mut pending = vec![target];
        while let Some(i) = pending.pop() {
            if needed.contains_key(&i) {
                continue;
            }
            let mut direct = BTreeSet::new();
            for dep in self
                .file
                .dependencies_with(i, &globals_lookup, &from_lookup)?
            {
                if let containerfile::StageDep::Stage(j) = dep {
                    direct.insert(j);
                    pending.push(j);
                }
            }
            needed.insert(i, direct);
        }
        Ok(needed)
    }

    /// BuildKit's automatic platform ARGs are global without a declaration.
    fn global_args(&self) -> Result<BTreeMap<String, String>, BuildError> {
        let mut globals: BTreeMap<String, String> = PLATFORM_ARGS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let build_args = |k: &str| self.opts.build_args.get(k).cloned();
        globals.extend(self.file.resolve_global_args(&build_args)?);
        Ok(globals)
    }

    fn say(&mut self, line: impl AsRef<str>) {
        // Progress is best effort: a closed terminal must not fail the build.
        let _ = writeln!(self.out, "{}", line.as_ref());
    }

    fn build_stage(
        &mut self,
        index: usize,
        globals: &BTreeMap<String, String>,
        done: &BTreeMap<usize, State>,
    ) -> Result<State, BuildError> {
        let stage = &self.file.stages[index];
        self.step += 1;
        self.say(format!(
            "STEP {}/{}: {}",
            self.step, self.total, stage.original
        ));
        let lookup = |k: &str| globals.get(k).cloned();
        let from = self.file.resolve_from(index, &lookup)?;
        if let Some(platform) = &from.platform
            && platform != "linux/amd64"
        {
            return Err(BuildError::Step {
                line: stage.line,
                instruction: stage.original.clone(),
                reason: format!("--platform={platform}: only linux/amd64 images are built here"),
            });
        }
        let mut state = match &from.base {
            Base::Scratch => State {
                config: ImageConfig::scratch(),
                layers: Vec::new(),
                key: hash_parts(&["scratch"]),
                args: BTreeMap::new(),
                cmd_set: false,
                created: EPOCH.to_owned(),
            },
            Base::Stage(j) => {
                let mut s = done
                    .get(j)
                    .cloned()
                    .expect("dependencies are built before their users");
                s.args.clear();
                s.cmd_set = false;
                s
            }
            Base::Image(name) => {
                let (config, layers, manifest) =
                    self.image_state(name).map_err(|source| BuildError::Image {
                        line: stage.line,
                        instruction: stage.original.clone(),
                        source: Box::new(source),
                    })?;
                let created = config.doc["created"].as_str().unwrap_or(EPOCH).to_owned();
                State {
                    config,
                    layers,
                    key: hash_parts(&["image", manifest.as_str()]),
                    args: BTreeMap::new(),
                    cmd_set: false,
                    created,
                }
            }
        };
        for instruction in &stage.instructions {
            self.step += 1;
            self.say(format!(
                "STEP {}/{}: {}",
                self.step, self.total, instruction.original
            ));
            self.instruction(&mut state, instruction, globals, done)?;
        }
        Ok(state)
    }

    /// The config and layers of a local image.
    fn image_state(&self, name: &str) -> Result<(ImageConfig, Vec<Layer>, Digest), ImageError> {
        let digest = self.store.resolve(name)?;
        let manifest = self.store.image_manifest(&digest)?;
        let bad = |what: &'static str, digest: &Digest, reason: String| ImageError::BadBlob {
            what,
            digest: digest.clone(),
            reason,
        };
        let config_digest = descriptor_digest(manifest.config())
            .map_err(|e| bad("manifest", &digest, e.to_string()))?;
        let bytes = self.store.content().get(&config_digest)?;
        let config = ImageConfig::from_bytes(&bytes)
            .map_err(|reason| bad("image config", &config_digest, reason))?;
        // `layers` pairs each blob with its diff_id and checks they agree in number.
        let layers = self
            .store
            .layers(&digest)?
            .into_iter()
            .zip(manifest.layers())
            .map(|(l, d)| Layer {
                blob: l.blob,
                size: d.size(),
                media_type: d.media_type().to_string(),
                diff_id: l.diff_id,
                created: String::new(),
            })
            .collect();
        Ok((config, layers, digest))
    }

    fn instruction(
        &mut self,
        state: &mut State,
        ins: &Instruction,
        globals: &BTreeMap<String, String>,
        done: &BTreeMap<usize, State>,
    ) -> Result<(), BuildError> {
        use containerfile::Command as C;
        let step_err = |reason: String| BuildError::Step {
            line: ins.line,
            instruction: ins.original.clone(),
            reason,
        };
        let escape = self.file.escape;
        // ENV wins over ARG of the same name, as in Docker.
        let env: BTreeMap<String, String> = state.config.env().into_iter().collect();
        let args = state.args.clone();
        let lookup = move |k: &str| env.get(k).or_else(|| args.get(k)).cloned();
        let x = |word: &str| expand(word, &lookup, escape).map_err(|e| step_err(e.to_string()));
        let mut empty_layer = true;
        match &ins.command {
            C::Env(pairs) => {
                for kv in pairs {
                    let (k, v) = (x(&kv.key)?, x(&kv.value)?);
                    state.config.set_env(&k, &v);
                }
            }
            C::Arg(decls) => {
                for decl in decls {
                    let value = decl
                        .resolve(
                            self.opts.build_args.get(&decl.name).map(String::as_str),
                            globals.get(&decl.name).map(String::as_str),
                            &lookup,
                            escape,
                        )
                        .map_err(BuildError::Parse)?;
                    if let Some(v) = value {
                        state.args.insert(decl.name.clone(), v);
                    } else {
                        state.args.remove(&decl.name);
                    }
                }
            }
            C::Workdir(dir) => {
                let dir = x(dir)?;
                let joined = Path::new(&state.config.workdir()).join(&dir);
                state.config.set("WorkingDir", json!(clean(&joined)));
            }
            C::User(user) => state.config.set("User", json!(x(user)?)),
            C::Cmd(cmd) => {
                state
                    .config
                    .set("Cmd", json!(cmd.argv(&state.config.shell())));
                state.cmd_set = true;
            }
            C::Entrypoint(ep) => {
                state
                    .config
                    .set("Entrypoint", json!(ep.argv(&state.config.shell())));
                if !state.cmd_set {
                    state.config.set("Cmd", Value::Null);
                }
            }
            C::Expose(words) => {
                for word in words {
                    for port in
                        expand_words(word, &lookup, escape).map_err(|e| step_err(e.to_string()))?
                    {
                        let spec = PortSpec::parse(&port, ins.line)?;
                        for p in spec.start..=spec.end {
                            state.config.insert_into(
                                "ExposedPorts",
                                &format!("{p}/{}", spec.protocol.as_str()),
                            );
                        }
                    }
                }
            }
            C::Label(pairs) => {
                for kv in pairs {
                    let (k, v) = (x(&kv.key)?, x(&kv.value)?);
                    state.config.set_label(&k, &v);
                }
            }
            C::Volume(paths) => {
                for p in paths {
                    state.config.insert_into("Volumes", &x(p)?);
                }
            }
            C::StopSignal(sig) => state.config.set("StopSignal", json!(x(sig)?)),
            C::Healthcheck(h) => state.config.set("Healthcheck", healthcheck_json(h)),
            C::Shell(shell) => state.config.set("Shell", json!(shell)),
            C::Onbuild(trigger) => state.config.push_onbuild(trigger),
            C::Maintainer(who) => state.config.doc["author"] = json!(who),
            C::Run(run) => {
                empty_layer = false;
                self.run_step(state, ins, run)?;
            }
            C::Copy(spec) | C::Add(spec) => {
                empty_layer = false;
                let add = matches!(ins.command, C::Add(_));
                self.copy_step(state, ins, spec, add, &lookup, done)?;
            }
        }
        if empty_layer {
            // Metadata changes what later RUN steps see; chain it into the key.
            state.key = hash_parts(&[
                &state.key,
                &ins.original,
                &state.config.run_view().to_string(),
            ]);
        }
        let created = state.created.clone();
        state
            .config
            .push_history(&created, &ins.original, empty_layer);
        Ok(())
    }

    fn run_step(
        &mut self,
        state: &mut State,
        ins: &Instruction,
        run: &containerfile::Run,
    ) -> Result<(), BuildError> {
        let shell = state.config.shell();
        let plan = run.plan(&shell);
        let mut env: Vec<String> = state
            .config
            .env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for (k, v) in &state.args {
            if !env
                .iter()
                .any(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k))
            {
                env.push(format!("{k}={v}"));
            }
        }
        let heredocs: Vec<String> = ins.heredocs().iter().map(|h| h.content()).collect();
        let key = hash_parts(&[
            &state.key,
            "RUN",
            &ins.original,
            &heredocs.join("\0"),
            &state.config.run_view().to_string(),
            &serde_json::to_string(&state.args).unwrap_or_default(),
        ]);
        let user = state.config.string("User").unwrap_or_else(|| "0".into());
        let cwd = state.config.workdir();
        let host_network = run.network != Network::None;
        let runner = self.runner;
        let line = ins.line;
        let original = ins.original.clone();
        self.layer_step(state, ins, key, &mut |rootfs, scratch, out| {
            let step_err = |reason: String| BuildError::Step {
                line,
                instruction: original.clone(),
                reason,
            };
            let (uid, gid, additional_gids) =
                user::resolve_user(rootfs, &user).map_err(step_err)?;
            mkdir_in_root(rootfs, Path::new(&cwd))
                .map_err(|e| step_err(format!("WORKDIR {cwd}: {e}")))?;
            for file in &plan.files {
                let host = resolve_in_root(rootfs, Path::new(&file.path))
                    .map_err(|e| step_err(e.to_string()))?;
                if let Some(parent) = host.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
                }
                write_file(
                    &host,
                    file.content.as_bytes(),
                    CopyAttrs {
                        owner: None,
                        mode: Some(file.mode),
                    },
                )
                .map_err(io_err("write", &host))?;
            }
            let request = RunRequest {
                rootfs: rootfs.to_path_buf(),
                scratch: scratch.to_path_buf(),
                id: scratch
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                args: plan.argv.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                uid,
                gid,
                additional_gids,
                host_network,
            };
            let code = runner
                .run(&request, out)
                .map_err(|e| step_err(format!("cannot run: {e}")))?;
            for file in &plan.files {
                if let Ok(host) = resolve_in_root(rootfs, Path::new(&file.path)) {
                    let _ = std::fs::remove_file(host);
                }
            }
            if code != 0 {
                return Err(BuildError::RunFailed {
                    line,
                    instruction: original.clone(),
                    code,
                });
            }
            Ok(())
        })
    }

    fn copy_step(
        &mut self,
        state: &mut State,
        ins: &Instruction,
        spec: &CopySpec,
        add: bool,
        lookup: &dyn Fn(&str) -> Option<String>,
        done: &BTreeMap<usize, State>,
    ) -> Result<(), BuildError> {
        let step_err = |reason: String| BuildError::Step {
            line: ins.line,
            instruction: ins.original.clone(),
            reason,
        };
        let escape = self.file.escape;
        let x = |w: &str| expand(w, lookup, escape).map_err(|e| step_err(e.to_string()));
        let dest = x(&spec.dest)?;
        let chmod = spec
            .chmod
            .as_deref()
            .map(|m| {
                u32::from_str_radix(&x(m)?, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| step_err(format!("--chmod={m}: not an octal mode")))
            })
            .transpose()?;
        let chown = spec.chown.as_deref().map(x).transpose()?;
        let mut hasher = Sha256::new();
        hasher.update(state.key.as_bytes());
        hasher.update(ins.original.as_bytes());
        // Where the sources live: the context, or another stage's or image's
        // file system (mounted only when the step actually runs).
        let from_layers: Option<(Vec<Layer>, String)> = match &spec.from {
            None => None,
            Some(from) => {
                let from = x(from)?;
                match self.file.stage_index(&from) {
                    Some(j) => {
                        let s = done.get(&j).ok_or_else(|| {
                            step_err(format!(
                                "--from={from}: a stage can only copy from an earlier one"
                            ))
                        })?;
                        Some((s.layers.clone(), s.key.clone()))
                    }
                    None => {
                        let (_, layers, digest) =
                            self.image_state(&from)
                                .map_err(|source| BuildError::Image {
                                    line: ins.line,
                                    instruction: ins.original.clone(),
                                    source: Box::new(source),
                                })?;
                        Some((layers, digest.to_string()))
                    }
                }
            }
        };
        let mut patterns = Vec::new();
        let mut urls = Vec::new();
        let mut inline = Vec::new();
        for source in &spec.sources {
            match source {
                CopySource::Path(p) => {
                    let p = x(p)?;
                    if add && (p.starts_with("http://") || p.starts_with("https://")) {
                        urls.push(p);
                    } else {
                        patterns.push(p);
                    }
                }
                CopySource::Heredoc(h) => {
                    let content = if h.expand {
                        super::expand::expand_heredoc(&h.content(), lookup, escape)
                            .map_err(|e| step_err(e.to_string()))?
                    } else {
                        h.content()
                    };
                    hasher.update(h.name.as_bytes());
                    hasher.update(content.as_bytes());
                    inline.push((h.name.clone(), content));
                }
            }
        }
        let mut downloads: Option<TempDir> = None;
        let context_sources: Vec<Source> = match &from_layers {
            Some((_, key)) => {
                hasher.update(key.as_bytes());
                Vec::new()
            }
            None => {
                let mut all = Vec::new();
                for p in &patterns {
                    all.extend(self.context.matches(p).map_err(step_err)?);
                }
                // Downloaded on every build, as Docker does: the content, not
                // the URL, decides whether the cached layer still holds.
                for url in &urls {
                    let dir = downloads.get_or_insert_with(|| {
                        let n = WORK_COUNTER.fetch_add(1, Ordering::Relaxed);
                        TempDir(self.work_dir.join(format!("d{}-{n}", std::process::id())))
                    });
                    all.push(
                        self.download(url, &dir.0)
                            .map_err(|reason| step_err(format!("ADD {url}: {reason}")))?,
                    );
                }
                let keep = |rel: &Path| self.context.keeps(rel);
                hash_sources(&all, &keep, &mut hasher)
                    .map_err(io_err("read", &self.opts.context))?;
                all
            }
        };
        let key = hex(&hasher.finalize());
        let many = spec.sources.len() > 1 || patterns.iter().any(|p| p.contains(['*', '?', '[']));
        // `.` (the WORKDIR) and `dir/.` name directories too.
        let dest_is_dir = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || many;
        let workdir = state.config.workdir();
        let dest_abs = clean(&Path::new(&workdir).join(&dest));
        let ctx = self.context.clone();
        let keep_ctx = move |rel: &Path| ctx.keeps(rel);
        let snapshots = self.snapshots;
        let store = self.store;
        let work_dir = self.work_dir.clone();
        let line = ins.line;
        let original = ins.original.clone();
        let mut apply = |rootfs: &Path,
                         _scratch: &Path,
                         _out: &mut dyn Write|
         -> Result<(), BuildError> {
            let step_err = |reason: String| BuildError::Step {
                line,
                instruction: original.clone(),
                reason,
            };
            let owner = chown
                .as_deref()
                .map(|c| user::resolve_user(rootfs, c).map(|(u, g, _)| (u, g)))
                .transpose()
                .map_err(step_err)?;
            let attrs = CopyAttrs { owner, mode: chmod };
            let target_dir = |rootfs: &Path| -> Result<PathBuf, BuildError> {
                mkdir_in_root(rootfs, Path::new(&dest_abs))
                    .map_err(|e| step_err(format!("{dest_abs}: {e}")))
            };
            for (name, content) in &inline {
                let dst = if dest_is_dir || dest.ends_with('/') {
                    target_dir(rootfs)?.join(name)
                } else {
                    place_file(rootfs, &dest_abs, name).map_err(|e| step_err(e.to_string()))?
                };
                write_file(&dst, content.as_bytes(), attrs).map_err(io_err("write", &dst))?;
            }
            let copy_from = |sources: &[Source],
                             keep: &dyn Fn(&Path) -> bool|
             -> Result<(), BuildError> {
                for s in sources {
                    let meta =
                        std::fs::symlink_metadata(&s.host).map_err(io_err("read", &s.host))?;
                    if meta.is_dir() {
                        // A directory's contents are copied, not the directory.
                        let dst = target_dir(rootfs)?;
                        let base = s.rel.clone();
                        copy_tree(&s.host, &dst, attrs, &|rel: &Path| keep(&base.join(rel)))
                            .map_err(|e| step_err(format!("copy {}: {e}", s.rel.display())))?;
                    } else if add && !s.remote && meta.is_file() && is_archive(&s.host) {
                        let dst = target_dir(rootfs)?;
                        let f = std::fs::File::open(&s.host).map_err(io_err("open", &s.host))?;
                        let mut reader = io::BufReader::new(f);
                        let c = {
                            use std::io::BufRead;
                            let head = reader.fill_buf().map_err(io_err("read", &s.host))?;
                            Compression::detect(head).map_err(|e| step_err(e.to_string()))?
                        };
                        crate::apply_layer(&dst, reader, c)
                            .map_err(|e| step_err(format!("ADD {}: {e}", s.rel.display())))?;
                    } else {
                        let dst = if dest_is_dir {
                            target_dir(rootfs)?.join(s.host.file_name().unwrap_or_default())
                        } else {
                            let name = s.host.file_name().unwrap_or_default().to_string_lossy();
                            place_file(rootfs, &dest_abs, &name)
                                .map_err(|e| step_err(e.to_string()))?
                        };
                        let attrs = match s.remote {
                            true => CopyAttrs {
                                mode: attrs.mode.or(Some(0o600)),
                                ..attrs
                            },
                            false => attrs,
                        };
                        copy_tree(&s.host, &dst, attrs, &|_| true)
                            .map_err(|e| step_err(format!("copy {}: {e}", s.rel.display())))?;
                    }
                }
                Ok(())
            };
            match &from_layers {
                None => copy_from(&context_sources, &keep_ctx),
                Some((layers, _)) => {
                    let mount = SourceMount::new(store, snapshots, &work_dir, layers)?;
                    let mut all = Vec::new();
                    for p in &patterns {
                        let found = match_sources(mount.root(), p, &|_| true).map_err(step_err)?;
                        for s in found {
                            // Resolve inside the source root: an image's
                            // symlinks must not reach the host.
                            let host = resolve_in_root(mount.root(), &s.rel)
                                .map_err(io_err("read", &s.host))?;
                            all.push(Source {
                                host,
                                rel: s.rel,
                                remote: false,
                            });
                        }
                    }
                    copy_from(&all, &|_| true)
                }
            }
        };
        self.layer_step(state, ins, key, &mut apply)
    }

    /// Downloads `url` into `dir` under the last segment of its path.
    fn download(&self, url: &str, dir: &Path) -> Result<Source, String> {
        let name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .unwrap_or("download")
            .to_owned();
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let host = dir.join(&name);
        let mut file = std::fs::File::create(&host).map_err(|e| e.to_string())?;
        self.runner.fetch(url, &mut file)?;
        file.sync_all().map_err(|e| e.to_string())?;
        Ok(Source {
            host,
            rel: PathBuf::from(name),
            remote: true,
        })
    }

    /// Runs one file-changing step, or takes its layer from the cache.
    fn layer_step(
        &mut self,
        state: &mut State,
        ins: &Instruction,
        key: String,
        work: &mut StepWork<'_>,
    ) -> Result<(), BuildError> {
        self.layer_steps += 1;
        if !self.opts.no_cache
            && let Some(layer) = self.cached(&key)?
        {
            self.cached_steps += 1;
            self.say(format!("--> Using cache {}", &key[..12]));
            if !layer.created.is_empty() {
                state.created = layer.created.clone();
            }
            state.layers.push(layer);
            state.key = key;
            return Ok(());
        }
        let n = WORK_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("b{}-{n}", std::process::id());
        let scratch = self.work_dir.join(&name);
        let rootfs = scratch.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io_err("create", &rootfs))?;
        let result = self.run_in_snapshot(state, &name, &scratch, &rootfs, work);
        let _ = std::fs::remove_dir_all(&scratch);
        let layer = result.map_err(|e| match e {
            BuildError::Snapshot(source) => BuildError::Step {
                line: ins.line,
                instruction: ins.original.clone(),
                reason: source.to_string(),
            },
            e => e,
        })?;
        self.remember(&key, &layer)?;
        self.say(format!("--> {}", &layer.diff_id.hex()[..12]));
        state.created = layer.created.clone();
        state.layers.push(layer);
        state.key = key;
        Ok(())
    }

    fn run_in_snapshot(
        &mut self,
        state: &State,
        name: &str,
        scratch: &Path,
        rootfs: &Path,
        work: &mut StepWork<'_>,
    ) -> Result<Layer, BuildError> {
        let specs: Vec<ImageLayer> = state
            .layers
            .iter()
            .map(layer_spec)
            .collect::<Result<_, _>>()?;
        let parent = self.snapshots.prepare_layers(self.store, &specs)?;
        let active = self.snapshots.create_active(name, &parent)?;
        let outcome = (|| {
            active.mount(rootfs)?;
            let ran = work(rootfs, scratch, &mut *self.out);
            active.unmount(rootfs)?;
            ran
        })();
        if let Err(e) = outcome {
            let _ = active.unmount(rootfs);
            let _ = self.snapshots.remove_active(name);
            return Err(e);
        }
        let layer = match self.write_layer(active.upper()) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.snapshots.remove_active(name);
                return Err(e);
            }
        };
        self.snapshots.commit(active, &layer.diff_id)?;
        Ok(layer)
    }

    /// The diff of an upper directory as a gzip layer blob.
    fn write_layer(&self, upper: &Path) -> Result<Layer, BuildError> {
        let blob = self.store.content().writer().map_err(ImageError::from)?;
        let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
        let mut tee = HashingWriter {
            inner: gz,
            hasher: Hasher::default(),
        };
        snapshot::diff(upper, &mut tee)?;
        let diff_id = tee.hasher.finish();
        let blob = tee.inner.finish().map_err(io_err("write", upper))?;
        let (digest, size) = blob.commit(None).map_err(ImageError::from)?;
        Ok(Layer {
            blob: digest,
            size,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id,
            created: crate::images::now(),
        })
    }

    fn cached(&self, key: &str) -> Result<Option<Layer>, BuildError> {
        let path = self.cache_dir.join(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        // A record whose blob was pruned, or that does not parse, is a miss.
        let Ok(layer) = serde_json::from_slice::<Layer>(&bytes) else {
            return Ok(None);
        };
        if !self
            .store
            .content()
            .exists(&layer.blob)
            .map_err(ImageError::from)?
        {
            return Ok(None);
        }
        Ok(Some(layer))
    }

    fn remember(&self, key: &str, layer: &Layer) -> Result<(), BuildError> {
        let path = self.cache_dir.join(key);
        let temp = self
            .cache_dir
            .join(format!(".{key}.{}", std::process::id()));
        let bytes = serde_json::to_vec(layer).expect("a layer record serialises");
        std::fs::write(&temp, bytes)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                io_err("write", &path)(e)
            })
    }

    /// Writes the config and manifest and tags them.
    fn commit(&mut self, state: &State) -> Result<Built, BuildError> {
        self.say(format!(
            "COMMIT {}",
            self.opts
                .tags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ));
        let diff_ids: Vec<String> = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
        let config = state.config.finish(&diff_ids, &state.created);
        let config_bytes = serde_json::to_vec(&config).expect("JSON values serialise");
        // Check it is a valid OCI config before anyone can pull it.
        oci_spec::image::ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| BuildError::Input(format!("the built image config is not valid: {e}")))?;
        let id = self
            .store
            .content()
            .put(&config_bytes)
            .map_err(ImageError::from)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": id.to_string(),
                "size": config_bytes.len(),
            },
            "layers": state.layers.iter().map(|l| json!({
                "mediaType": l.media_type,
                "digest": l.blob.to_string(),
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("JSON values serialise");
        let digest = self
            .store
            .content()
            .put(&manifest_bytes)
            .map_err(ImageError::from)?;
        for tag in &self.opts.tags {
            self.store.set_tag(tag, &digest)?;
        }
        self.say(format!("--> {}", &id.hex()[..12]));
        Ok(Built {
            manifest: digest,
            id,
            layer_steps: self.layer_steps,
            cached_steps: self.cached_steps,
        })
    }
}

/// Undoes what builders that died (SIGKILL, a crash) left in `build-work/`:
/// the RUN container, the mount, the active snapshot, the directory. Work
/// names carry the pid of their builder (`b<pid>-<n>`, `s<pid>-<n>`,
/// `d<pid>-<n>`); entries of live processes are left alone. Best effort:
/// what cannot be undone now is tried again by the next build.
pub fn sweep_stale_work(store: &ImageStore, snapshots: &Snapshotter, runner: &dyn StepRunner) {
    let work_dir = store.data_dir().join("build-work");
    let Ok(entries) = std::fs::read_dir(&work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .get(1..)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        if name.starts_with('b') {
            runner.cleanup(&dir, &name);
        }
        if let Ok(active) = snapshots.active(&name) {
            let _ = active.unmount(&dir.join("rootfs"));
        }
        let _ = snapshots.remove_active(&name);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A directory removed, with what is in it, when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Another stage's or image's file system, mounted read-write on a throwaway
/// upper for as long as a COPY --from reads it.
struct SourceMount<'a> {
    snapshots: &'a Snapshotter,
    name: String,
    dir: PathBuf,
    root: PathBuf,
    active: Option<snapshot::Active>,
}

impl<'a> SourceMount<'a> {
    fn new(
        store: &ImageStore,
        snapshots: &'a Snapshotter,
        work_dir: &Path,
        layers: &[Layer],
    ) -> Result<Self, BuildError> {
        let n = WORK_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("s{}-{n}", std::process::id());
        let dir = work_dir.join(&name);
        let root = dir.join("rootfs");
        std::fs::create_dir_all(&root).map_err(io_err("create", &root))?;
        let mut me = Self {
            snapshots,
            name: name.clone(),
            dir,
            root,
            active: None,
        };
        let specs: Vec<ImageLayer> = layers.iter().map(layer_spec).collect::<Result<_, _>>()?;
        let parent = snapshots.prepare_layers(store, &specs)?;
        let active = snapshots.create_active(&name, &parent)?;
        active.mount(&me.root)?;
        me.active = Some(active);
        Ok(me)
    }

    fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for SourceMount<'_> {
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            let _ = active.unmount(&self.root);
        }
        let _ = self.snapshots.remove_active(&self.name);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn layer_spec(l: &Layer) -> Result<ImageLayer, BuildError> {
    let compression = Compression::from_media_type(&l.media_type.as_str().into())
        .map_err(|e| BuildError::Input(format!("layer {}: {e}", l.blob)))?;
    Ok(ImageLayer {
        blob: l.blob.clone(),
        compression,
        diff_id: l.diff_id.clone(),
    })
}

/// Where a single-file COPY lands: `dest` itself, or inside it if it is an
/// existing directory (as Docker does); parents are created.
fn place_file(rootfs: &Path, dest: &str, name: &str) -> io::Result<PathBuf> {
    let host = resolve_in_root(rootfs, Path::new(dest))?;
    if host.is_dir() {
        return Ok(host.join(name));
    }
    if let Some(parent) = Path::new(dest).parent() {
        mkdir_in_root(rootfs, parent)?;
    }
    resolve_in_root(rootfs, Path::new(dest))
}

/// ADD unpacks local tar archives (plain, gzip or zstd), as Docker does.
fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 512];
    let Ok(n) = io::Read::read(&mut f, &mut head) else {
        return false;
    };
    match Compression::detect(&head[..n]) {
        Ok(Compression::Gzip | Compression::Zstd) => true,
        // A plain tar has "ustar" at offset 257.
        Ok(Compression::None) => n >= 262 && &head[257..262] == b"ustar",
        Err(_) => false,
    }
}

/// Docker's healthcheck JSON: durations in nanoseconds.
fn healthcheck_json(h: &Healthcheck) -> Value {
    match h {
        Healthcheck::None => json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test: Vec<String> = match test {
                CommandLine::Exec(argv) => std::iter::once("CMD".to_owned())
                    .chain(argv.iter().cloned())
                    .collect(),
                CommandLine::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
            };
            let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64);
            let mut v = json!({"Test": test});
            for (k, d) in [
                ("Interval", ns(interval)),
                ("Timeout", ns(timeout)),
                ("StartPeriod", ns(start_period)),
                ("StartInterval", ns(start_interval)),
            ] {
                if let Some(d) = d {
                    v[k] = json!(d);
                }
            }
            if let Some(r) = retries {
                v["Retries"] = json!(r);
            }
            v
        }
    }
}

/// `/a/./b/../c` → `/a/c`, never above `/`.
fn clean(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
