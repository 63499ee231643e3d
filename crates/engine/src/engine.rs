//! The engine: container records, their life cycle, and the shims that run
//! them. The HTTP layer (`api`) only translates requests into these calls.
//!
//! State lives in two places: `<data>/containers/<id>/record.json` (written
//! atomically at every change) and the shims themselves. At start the engine
//! re-adopts every container whose shim still answers (live restore) and
//! reads the exit record of those whose process ended meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_image::ImageStore;
use bosun_image::snapshot::Snapshotter;
use bosun_oci::ContainerId;
use bosun_runtime::Runtime;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{broadcast, watch};

use crate::error::{EngineError, Result};
use crate::fsutil::write_atomic;
use crate::model::{Config, CreateRequest, MountPoint, Published, Record, State, Status};
use crate::network::{self, NetworkConfig, Networks, PortRequest};
use crate::shim::{ExitRecord, ShimConfig};
use crate::spec::{self, ImageDefaults, NetNs, SpecInput, UserNs};
use crate::time::{ZERO, now_rfc3339_nano};
use crate::userns::{SubIdFiles, UsernsRemap};
use crate::volumes::{self, Volumes};

/// Where the engine keeps things and how it reaches its own binary.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Images, snapshots, containers, volumes (`/var/lib/bosun`).
    pub data_dir: PathBuf,
    /// Runtime state and shim sockets, gone at reboot (`/run/bosun/engine`).
    pub exec_root: PathBuf,
    /// The `bosun` binary, started as `bosun engine-shim` per container.
    pub exe: PathBuf,
    pub network: NetworkConfig,
    /// `--userns-remap`: run containers in a user namespace whose root is
    /// an unprivileged host id.
    pub userns_remap: Option<UsernsRemap>,
    /// `--userns-layers`: how remapped containers see the image layers
    /// (idmapped mounts, or copies per mapping where those are missing).
    pub userns_layers: bosun_image::snapshot::LayerMapping,
}

/// What waiters see of a container: bumps at every exit, and at removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub exits: u64,
    pub exit_code: i32,
    pub removed: bool,
    pub status: Status,
}

/// One container as the engine holds it.
#[derive(Debug)]
pub(crate) struct Container {
    pub id: String,
    pub dir: PathBuf,
    record: Mutex<Record>,
    changed: watch::Sender<Change>,
    /// Serializes start, stop, remove and restart of this container.
    op: tokio::sync::Mutex<()>,
    /// The daemon's control connection to the shim, while it runs.
    control: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
}

impl Container {
    pub(crate) fn record(&self) -> Record {
        self.record.lock().expect("record lock").clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Change> {
        self.changed.subscribe()
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Change the record and save it; the new record is returned.
    fn update(&self, f: impl FnOnce(&mut Record)) -> Result<Record> {
        let mut rec = self.record.lock().expect("record lock");
        f(&mut rec);
        save_record(&self.dir, &rec)?;
        // Status and exit code change together: a waiter that sees the
        // container stopped must also see how it ended.
        let (status, code) = (rec.state.status, rec.state.exit_code);
        self.changed.send_modify(|c| {
            c.status = status;
            c.exit_code = code;
        });
        Ok(rec.clone())
    }

    pub(crate) fn set_health(&self, health: Option<crate::model::Health>) -> Result<Record> {
        self.update(|r| r.state.health = health)
    }

    /// Send a control frame to the shim (stdin, resize); false if none runs.
    pub(crate) async fn control(&self, bytes: &[u8]) -> bool {
        let mut guard = self.control.lock().await;
        match guard.as_mut() {
            Some(w) => w.write_all(bytes).await.is_ok(),
            None => false,
        }
    }
}

fn save_record(dir: &Path, rec: &Record) -> Result<()> {
    let text = serde_json::to_vec_pretty(rec).map_err(|e| EngineError::internal("record", e))?;
    write_atomic(&dir.join("record.json"), &text)
        .map_err(|e| EngineError::internal("save the container record", e))
}

/// An event for `/events`.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub kind: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub time_nano: i64,
}

/// The engine of one host.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    pub(crate) images: ImageStore,
    snapshots: Snapshotter,
    runtime: Runtime,
    net: Networks,
    pub(crate) volumes: Volumes,
    containers: Mutex<BTreeMap<String, Arc<Container>>>,
    pub(crate) execs: Mutex<HashMap<String, Arc<crate::exec::Exec>>>,
    events: broadcast::Sender<Event>,
    /// The DNS server of each user-defined network.
    dns: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Containers' records and volumes: `<data>`, or `<data>/<uid>.<gid>`
    /// under `--userns-remap` (see [`remapped_state_dir`]).
    state_dir: PathBuf,
    /// `--userns-remap`'s mapping, with the user namespace that idmaps the
    /// image layers.
    remap: Option<bosun_image::snapshot::IdMap>,
}

/// How `wait` decides it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// A pending `wait`; see [`Engine::waiter`].
#[derive(Debug)]
pub(crate) struct Waiter {
    rx: watch::Receiver<Change>,
    condition: WaitCondition,
    start: Change,
    immediate: Option<i32>,
}

impl Waiter {
    /// The exit code once the condition holds (the last one if removed).
    pub(crate) async fn wait(mut self) -> i32 {
        if let Some(code) = self.immediate {
            return code;
        }
        let start = self.start;
        let condition = self.condition;
        let done = move |ch: &Change| match condition {
            WaitCondition::NotRunning => {
                ch.removed
                    || !matches!(
                        ch.status,
                        Status::Running | Status::Paused | Status::Restarting
                    )
            }
            WaitCondition::NextExit => ch.exits > start.exits || ch.removed,
            WaitCondition::Removed => ch.removed,
        };
        let last = self.rx.borrow().exit_code;
        match self.rx.wait_for(done).await {
            Ok(ch) => ch.exit_code,
            // The container's record is gone: it was removed.
            Err(_) => last,
        }
    }
}

impl Engine {
    /// Open the engine's state, set up the default network, and re-adopt the
    /// containers that still run. Blocking; call before serving.
    pub fn open(cfg: EngineConfig) -> Result<Arc<Self>> {
        let mk = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|e| EngineError::internal(p.display(), e))
        };
        mk(&cfg.data_dir)?;
        let (state_dir, remap) = match &cfg.userns_remap {
            None => (cfg.data_dir.clone(), None),
            Some(spec) => {
                let ids = crate::userns::resolve(spec, &SubIdFiles::default())?;
                let root = ids.root();
                let map = bosun_image::snapshot::IdMap::new(ids.uids, ids.gids)?
                    .with_layers(cfg.userns_layers);
                (remapped_state_dir(&cfg.data_dir, root)?, Some(map))
            }
        };
        mk(&state_dir.join("containers"))?;
        mk(&cfg.exec_root)?;
        let images = ImageStore::open(&cfg.data_dir)?;
        let snapshots = Snapshotter::open(&cfg.data_dir)?;
        let runtime = Runtime::new(cfg.exec_root.join("runtime"));
        let net = Networks::open(&cfg.data_dir.join("network"), cfg.network.clone())?;
        let volumes = Volumes::open(&state_dir.join("volumes"), remap.as_ref().map(|m| m.root()))?;
        let (events, _) = broadcast::channel(1024);
        let engine = Arc::new(Self {
            cfg,
            images,
            snapshots,
            runtime,
            net,
            volumes,
            containers: Mutex::new(BTreeMap::new()),
            execs: Mutex::new(HashMap::new()),
            events,
            dns: Mutex::new(HashMap::new()),
            state_dir,
            remap,
        });
        engine.load_records()?;
        Ok(engine)
    }

    fn load_records(&self) -> Result<()> {
        let dir = self.state_dir.join("containers");
        let entries =
            std::fs::read_dir(&dir).map_err(|e| EngineError::internal("containers", e))?;
        let mut map = self.containers.lock().expect("containers lock");
        for entry in entries.flatten() {
            let cdir = entry.path();
            let Ok(text) = std::fs::read(cdir.join("record.json")) else {
                // A create that died before its record: nothing to keep.
                let _ = std::fs::remove_dir_all(&cdir);
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<Record>(&text) else {
                continue;
            };
            let change = Change {
                exits: 0,
                exit_code: rec.state.exit_code,
                removed: false,
                status: rec.state.status,
            };
            map.insert(
                rec.id.clone(),
                Arc::new(Container {
                    id: rec.id.clone(),
                    dir: cdir,
                    record: Mutex::new(rec),
                    changed: watch::channel(change).0,
                    op: tokio::sync::Mutex::new(()),
                    control: tokio::sync::Mutex::new(None),
                }),
            );
        }
        Ok(())
    }

    /// Live restore: reconnect to every shim that still runs; settle the
    /// containers whose process ended while the engine was down; remove
    /// network leftovers nobody owns any more; restart what the restart
    /// policies ask for.
    pub async fn restore(self: &Arc<Self>) {
        for net in self.net.list() {
            self.start_dns(&net);
        }
        let all: Vec<Arc<Container>> = self.all();
        for c in &all {
            let rec = c.record();
            if !matches!(
                rec.state.status,
                Status::Running | Status::Paused | Status::Restarting
            ) {
                continue;
            }
            match UnixStream::connect(self.shim_socket(&c.id)).await {
                Ok(stream) => self.adopt(c.clone(), stream).await,
                Err(_) => self.on_exit(c.clone()).await,
            }
        }
        // Rules and addresses whose container is gone or not running.
        let live: Vec<String> = self
            .all()
            .iter()
            .filter(|c| c.record().state.status.is_live())
            .map(|c| c.id.clone())
            .collect();
        let engine = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for owner in engine.net.owners() {
                if !live.contains(&owner) {
                    engine.net.disconnect(&owner);
                }
            }
        })
        .await;
        for c in self.all() {
            let rec = c.record();
            let always = matches!(
                rec.host_config.restart_policy.name.as_str(),
                "always" | "unless-stopped"
            );
            if rec.state.status == Status::Exited && always && !rec.state.stopped_by_user {
                let engine = self.clone();
                tokio::spawn(async move {
                    let _ = engine.start(&c.id).await;
                });
            }
        }
    }

    pub(crate) fn all(&self) -> Vec<Arc<Container>> {
        self.containers
            .lock()
            .expect("containers lock")
            .values()
            .cloned()
            .collect()
    }

    fn shim_socket(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join(format!("{id}.sock"))
    }

    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.cfg.exec_root.join("runtime")
    }

    pub(crate) fn exe(&self) -> &Path {
        &self.cfg.exe
    }

    pub(crate) fn exec_root(&self) -> &Path {
        &self.cfg.exec_root
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    /// The host uid and gid of containers' root under `--userns-remap`.
    pub(crate) fn remapped_root(&self) -> Option<(u32, u32)> {
        self.remap.as_ref().map(|m| m.root())
    }

    /// The mapping a container runs with: the engine's, unless it asked for
    /// the host's user namespace (`--userns=host`).
    pub(crate) fn remap_of(&self, rec: &Record) -> Option<&bosun_image::snapshot::IdMap> {
        match rec.host_config.userns_mode.as_str() {
            "host" => None,
            _ => self.remap.as_ref(),
        }
    }

    /// Docker's rules for `--userns`: "" or "host"; under `--userns-remap`,
    /// `--privileged` and the host's network need `--userns=host`.
    fn check_userns(&self, host: &crate::model::HostConfig) -> Result<()> {
        match host.userns_mode.as_str() {
            "" => {}
            "host" => return Ok(()),
            other => {
                return Err(EngineError::Invalid(format!(
                    "invalid USER mode {other:?}: only \"host\" is supported"
                )));
            }
        }
        if self.remap.is_none() {
            return Ok(());
        }
        if host.privileged {
            return Err(EngineError::Invalid(
                "privileged mode is incompatible with user namespaces.  You must run the \
                 container in the host namespace when running privileged mode"
                    .into(),
            ));
        }
        if host.network_mode == "host" {
            return Err(EngineError::Invalid(
                "cannot share the host's network namespace when user namespaces are enabled".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn networks(&self) -> &Networks {
        &self.net
    }

    /// Serve DNS on a user-defined network's gateway for its containers.
    pub(crate) fn start_dns(self: &Arc<Self>, net: &network::NetworkInfo) {
        if !net.has_dns() {
            return;
        }
        let addr = std::net::SocketAddr::from((net.subnet().gateway(), 53));
        let socket = match std::net::UdpSocket::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UdpSocket::from_std)
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "bosun engine: no DNS for network {}: bind {addr}: {e}",
                    net.name
                );
                return;
            }
        };
        let weak = Arc::downgrade(self);
        let name = net.name.clone();
        let lookup: crate::dns::Lookup = Arc::new(move |q: &str| {
            let Some(engine) = weak.upgrade() else {
                return Vec::new();
            };
            engine.resolve_on(&name, q)
        });
        let task = tokio::spawn(crate::dns::serve(socket, lookup, crate::dns::upstreams()));
        if let Some(old) = self
            .dns
            .lock()
            .expect("dns lock")
            .insert(net.name.clone(), task)
        {
            old.abort();
        }
    }

    pub(crate) fn stop_dns(&self, network: &str) {
        if let Some(task) = self.dns.lock().expect("dns lock").remove(network) {
            task.abort();
        }
    }

    /// Addresses on `network` of the running containers that `name` names:
    /// container name, alias, short id or hostname.
    fn resolve_on(&self, network: &str, name: &str) -> Vec<std::net::Ipv4Addr> {
        let mut out = Vec::new();
        for c in self.all() {
            let r = c.record();
            for e in r.endpoints.iter().filter(|e| e.network == network) {
                let hit = r.name.eq_ignore_ascii_case(name)
                    || r.short_id() == name
                    || r.config.hostname.eq_ignore_ascii_case(name)
                    || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name));
                if hit && let Ok(ip) = e.ip.parse() {
                    out.push(ip);
                }
            }
        }
        out
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, kind: &'static str, action: &str, id: &str, attrs: &[(&str, &str)]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let _ = self.events.send(Event {
            kind,
            action: action.to_owned(),
            id: id.to_owned(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time_nano: now.as_nanos() as i64,
        });
    }

    pub(crate) fn emit_health(&self, c: &Container, status: &str) {
        self.emit_container(&format!("health_status: {status}"), &c.record(), &[]);
    }

    fn emit_container(&self, action: &str, rec: &Record, extra: &[(&str, &str)]) {
        let mut attrs = vec![("name", rec.name.as_str()), ("image", rec.image.as_str())];
        attrs.extend_from_slice(extra);
        for (k, v) in &rec.config.labels {
            attrs.push((k, v));
        }
        self.emit("container", action, &rec.id, &attrs);
    }

    /// A container by full id, name (with or without `/`), or unique id prefix.
    pub(crate) fn find(&self, name_or_id: &str) -> Result<Arc<Container>> {
        let map = self.containers.lock().expect("containers lock");
        let missing = || EngineError::NotFound(format!("No such container: {name_or_id}"));
        if name_or_id.is_empty() {
            return Err(missing());
        }
        if let Some(c) = map.get(name_or_id) {
            return Ok(c.clone());
        }
        let name = name_or_id.trim_start_matches('/');
        if let Some(c) = map
            .values()
            .find(|c| c.record.lock().expect("record lock").name == name)
        {
            return Ok(c.clone());
        }
        let matches: Vec<&Arc<Container>> = map
            .iter()
            .filter(|(id, _)| id.starts_with(name_or_id))
            .map(|(_, c)| c)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(missing()),
            _ => Err(EngineError::Invalid(format!(
                "multiple containers match {name_or_id:?}; use more of the id"
            ))),
        }
    }

    fn image_defaults(&self, manifest: &str) -> Result<(ImageDefaults, String)> {
        let details = self.images.inspect(manifest)?;
        let c = details.config.config().clone().unwrap_or_default();
        Ok((
            ImageDefaults {
                entrypoint: c.entrypoint().clone(),
                cmd: c.cmd().clone(),
                env: c.env().clone().unwrap_or_default(),
                working_dir: c.working_dir().clone().unwrap_or_default(),
                user: c.user().clone().unwrap_or_default(),
                volumes: c.volumes().clone().unwrap_or_default(),
                stop_signal: c.stop_signal().clone().unwrap_or_default(),
                exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
            },
            details.id.to_string(),
        ))
    }

    /// `POST /containers/create`. Nothing is left when it fails.
    pub(crate) async fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        req: CreateRequest,
    ) -> Result<String> {
        let engine = self.clone();
        let name = name.map(str::to_owned);
        let rec = tokio::task::spawn_blocking(move || engine.create_blocking(name, req))
            .await
            .map_err(|e| EngineError::internal("create", e))??;
        let id = rec.id.clone();
        self.emit_container("create", &rec, &[]);
        Ok(id)
    }

    fn create_blocking(
        self: &Arc<Self>,
        name: Option<String>,
        req: CreateRequest,
    ) -> Result<Record> {
        let CreateRequest {
            mut config,
            host_config,
            networking_config,
        } = req;
        if config.image.is_empty() {
            return Err(EngineError::Invalid(
                "Config.Image: an image is required".into(),
            ));
        }
        let manifest = match self.images.resolve(&config.image) {
            Ok(d) => d.to_string(),
            Err(e) if e.kind() == bosun_oci::ErrorKind::NotFound => {
                return Err(EngineError::NotFound(format!(
                    "No such image: {}",
                    image_display(&config.image)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let (image, image_id) = self.image_defaults(&manifest)?;
        let args = spec::command(&config, &image)?;
        spec::capabilities(&host_config)?;
        spec::security(&host_config)?;
        spec::environment(&config, &image, "x")?;
        self.check_userns(&host_config)?;
        let ports = network::parse_port_bindings(&host_config.port_bindings)?;
        check_restart_policy(&host_config.restart_policy)?;
        let mode = match host_config.network_mode.as_str() {
            "" | "default" => network::DEFAULT_NETWORK.to_owned(),
            m => m.to_owned(),
        };
        let bridged = match mode.as_str() {
            "host" | "none" => false,
            m if m.starts_with("container:") => {
                self.find(&m["container:".len()..])?;
                false
            }
            m => {
                self.net.get(m)?;
                true
            }
        };
        if !ports.is_empty() && !bridged {
            return Err(EngineError::Invalid(format!(
                "published ports need a bridge network, not {mode:?}"
            )));
        }
        if config.stop_signal.is_empty() {
            config.stop_signal = image.stop_signal.clone();
        }
        if !config.stop_signal.is_empty() {
            bosun_runtime::parse_signal(&config.stop_signal)
                .map_err(|e| EngineError::Invalid(format!("StopSignal: {e}")))?;
        }
        // Docker's inspect shows the image's config merged in.
        if config.cmd.is_none() && config.entrypoint.is_none() {
            config.cmd = image.cmd.clone();
        }
        if config.entrypoint.is_none() {
            config.entrypoint = image.entrypoint.clone();
        }
        if config.working_dir.is_empty() {
            config.working_dir = image.working_dir.clone();
        }
        if config.user.is_empty() {
            config.user = image.user.clone();
        }
        for p in &image.exposed_ports {
            config.exposed_ports.entry(p.clone()).or_insert(json!({}));
        }

        let id = random_id();
        let name = match name {
            Some(n) => {
                let n = n.trim_start_matches('/').to_owned();
                if !volumes::valid_name(&n) {
                    return Err(EngineError::Invalid(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n
            }
            None => generated_name(&id),
        };
        let aliases = networking_config
            .endpoints_config
            .into_iter()
            .map(|(k, v)| (k, v.map(|e| e.aliases).unwrap_or_default()))
            .collect();
        let mounts = self.resolve_mounts(&config, &host_config, &image)?;
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: now_rfc3339_nano(),
            image: config.image.clone(),
            image_id,
            manifest: manifest.clone(),
            path: args[0].clone(),
            args: args[1..].to_vec(),
            config,
            host_config,
            aliases,
            state: State {
                status: Status::Created,
                pid: 0,
                exit_code: 0,
                started_at: ZERO.into(),
                finished_at: ZERO.into(),
                oom_killed: false,
                error: String::new(),
                stopped_by_user: false,
                health: None,
            },
            restart_count: 0,
            endpoints: Vec::new(),
            ports: Vec::new(),
            mounts,
        };
        // The name is taken under the map's lock, so two creates cannot both
        // get it; everything made after that is undone on failure.
        let dir = self.state_dir.join("containers").join(&id);
        {
            let mut map = self.containers.lock().expect("containers lock");
            if let Some(other) = map
                .values()
                .find(|c| c.record.lock().expect("record lock").name == name)
            {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". \
                     You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
            let change = Change {
                exits: 0,
                exit_code: 0,
                removed: false,
                status: Status::Created,
            };
            map.insert(
                id.clone(),
                Arc::new(Container {
                    id: id.clone(),
                    dir: dir.clone(),
                    record: Mutex::new(rec.clone()),
                    changed: watch::channel(change).0,
                    op: tokio::sync::Mutex::new(()),
                    control: tokio::sync::Mutex::new(None),
                }),
            );
        }
        let made = (|| -> Result<()> {
            std::fs::create_dir_all(dir.join("rootfs"))
                .map_err(|e| EngineError::internal("create the container directory", e))?;
            let digest = manifest
                .parse()
                .map_err(|e| EngineError::internal("manifest digest", e))?;
            let layers = self.snapshots.prepare(&self.images, &digest)?;
            self.snapshots.create_active(&id, &layers)?;
            save_record(&dir, &rec)
        })();
        if let Err(e) = made {
            let _ = self.snapshots.remove_active(&id);
            let _ = std::fs::remove_dir_all(&dir);
            self.containers.lock().expect("containers lock").remove(&id);
            self.remove_anonymous_volumes(&rec.mounts);
            return Err(e);
        }
        Ok(rec)
    }

    /// Binds, volumes (named, anonymous, and the image's `VOLUME`s) and tmpfs
    /// mounts, as the container will get them.
    fn resolve_mounts(
        &self,
        config: &Config,
        host: &crate::model::HostConfig,
        image: &ImageDefaults,
    ) -> Result<Vec<MountPoint>> {
        let mut out: Vec<MountPoint> = Vec::new();
        let mut created: Vec<String> = Vec::new();
        let result = (|| -> Result<()> {
            for bind in &host.binds {
                let parts: Vec<&str> = bind.split(':').collect();
                let (src, dst, opts) = match parts.as_slice() {
                    [d] => ("", *d, ""),
                    [s, d] => (*s, *d, ""),
                    [s, d, o] => (*s, *d, *o),
                    _ => {
                        return Err(EngineError::Invalid(format!(
                            "invalid volume specification: {bind:?}"
                        )));
                    }
                };
                if !dst.starts_with('/') {
                    return Err(EngineError::Invalid(format!(
                        "invalid volume specification: {bind:?}: the destination must be an absolute path"
                    )));
                }
                let rw = !opts.split(',').any(|o| o == "ro");
                out.push(self.volume_mount(src, dst, rw, &mut created)?);
            }
            for m in &host.mounts {
                if !m.target.starts_with('/') {
                    return Err(EngineError::Invalid(format!(
                        "invalid mount target {:?}: it must be an absolute path",
                        m.target
                    )));
                }
                let mp = match m.r#type.as_str() {
                    "bind" | "volume" => {
                        if m.r#type == "bind" && !m.source.starts_with('/') {
                            return Err(EngineError::Invalid(format!(
                                "invalid mount source {:?}: a bind mount needs an absolute path",
                                m.source
                            )));
                        }
                        self.volume_mount(&m.source, &m.target, !m.read_only, &mut created)?
                    }
                    "tmpfs" => MountPoint {
                        kind: "tmpfs".into(),
                        name: None,
                        source: String::new(),
                        destination: m.target.clone(),
                        rw: !m.read_only,
                    },
                    other => {
                        return Err(EngineError::Invalid(format!(
                            "mount type {other:?} is not supported (bind, volume, tmpfs)"
                        )));
                    }
                };
                out.push(mp);
            }
            for dst in host.tmpfs.keys() {
                out.push(MountPoint {
                    kind: "tmpfs".into(),
                    name: None,
                    source: String::new(),
                    destination: dst.clone(),
                    rw: true,
                });
            }
            for dst in image.volumes.iter().chain(config.volumes.keys()) {
                if !out.iter().any(|m| &m.destination == dst) {
                    out.push(self.volume_mount("", dst, true, &mut created)?);
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                for v in created {
                    let _ = self.volumes.remove(&v);
                }
                Err(e)
            }
        }
    }

    fn volume_mount(
        &self,
        src: &str,
        dst: &str,
        rw: bool,
        created: &mut Vec<String>,
    ) -> Result<MountPoint> {
        if src.starts_with('/') {
            if !Path::new(src).exists() {
                // Docker creates a missing bind source; so do we.
                std::fs::create_dir_all(src)
                    .map_err(|e| EngineError::Invalid(format!("bind source {src:?}: {e}")))?;
            }
            return Ok(MountPoint {
                kind: "bind".into(),
                name: None,
                source: src.to_owned(),
                destination: dst.to_owned(),
                rw,
            });
        }
        let (name, anonymous) = match src {
            "" => (random_id(), true),
            n => (n.to_owned(), false),
        };
        let existed = self.volumes.get(&name).is_ok();
        self.volumes.create(&name, BTreeMap::new(), anonymous)?;
        if !existed {
            created.push(name.clone());
        }
        Ok(MountPoint {
            kind: "volume".into(),
            source: self.volumes.data_path(&name).display().to_string(),
            name: Some(name),
            destination: dst.to_owned(),
            rw,
        })
    }

    fn remove_anonymous_volumes(&self, mounts: &[MountPoint]) {
        for m in mounts {
            if let Some(name) = &m.name
                && self.volumes.get(name).is_ok_and(|v| v.anonymous)
            {
                let _ = self.volumes.remove(name);
            }
        }
    }

    /// Published ports of every other running container.
    fn ports_taken(&self, except: &str) -> Vec<Published> {
        self.all()
            .iter()
            .filter(|c| c.id != except)
            .flat_map(|c| c.record().ports)
            .collect()
    }

    /// `POST /containers/{id}/start`. Ok(false): it was already running.
    pub(crate) async fn start(self: &Arc<Self>, name_or_id: &str) -> Result<bool> {
        let c = self.find(name_or_id)?;
        let _op = c.op.lock().await;
        let rec = c.record();
        match rec.state.status {
            Status::Running | Status::Paused => return Ok(false),
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "container {} is being removed",
                    rec.id
                )));
            }
            _ => {}
        }
        match self.start_locked(&c, &rec).await {
            Ok(()) => Ok(true),
            Err(e) => {
                let msg = e.to_string();
                let rec = c.update(|r| {
                    r.state.error = msg.clone();
                    if r.state.status == Status::Restarting {
                        r.state.status = Status::Exited;
                    }
                });
                // `docker run --rm` waits for the removal after a failed start.
                if rec.is_ok_and(|r| r.host_config.auto_remove) {
                    drop(_op);
                    let engine = self.clone();
                    let id = c.id.clone();
                    tokio::spawn(async move {
                        let _ = engine.remove(&id, true, true).await;
                    });
                }
                Err(e)
            }
        }
    }

    async fn start_locked(self: &Arc<Self>, c: &Arc<Container>, rec: &Record) -> Result<()> {
        let ports = network::parse_port_bindings(&rec.host_config.port_bindings)?;
        let taken = self.ports_taken(&c.id);
        self.net.check_ports(&ports, &taken)?;
        let engine = self.clone();
        let c2 = c.clone();
        let rec2 = rec.clone();
        let shim_config = tokio::task::spawn_blocking(move || engine.prepare_start(&c2, &rec2))
            .await
            .map_err(|e| EngineError::internal("start", e))??;

        let arg =
            serde_json::to_string(&shim_config).map_err(|e| EngineError::internal("shim", e))?;
        let mut child = tokio::process::Command::new(&self.cfg.exe)
            .arg("engine-shim")
            .arg(arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| EngineError::internal("start the container's shim", e))?;
        let mut to_shim = child.stdin.take().expect("piped stdin");
        let mut from_shim = BufReader::new(child.stdout.take().expect("piped stdout"));
        let fail = |what: String| {
            let rootfs = c.rootfs();
            async move {
                let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
                EngineError::Internal(what)
            }
        };
        let mut line = String::new();
        let _ = from_shim.read_line(&mut line).await;
        let pid: i32 = match line.trim_end().split_once(' ') {
            Some(("created", pid)) => pid.parse().unwrap_or(0),
            Some(("error", msg)) => {
                let _ = child.wait().await;
                fail(String::new()).await;
                return Err(start_error(msg));
            }
            _ => {
                let _ = child.wait().await;
                return Err(fail("the container's shim ended during create".into()).await);
            }
        };
        // The network goes in between create and start, into the new netns.
        let netns_mode = rec.network_mode().to_owned();
        let bridged = !matches!(netns_mode.as_str(), "host" | "none")
            && !netns_mode.starts_with("container:");
        let connected = if bridged {
            let net = netns_mode.clone();
            let engine = self.clone();
            let id = c.id.clone();
            let taken2 = taken.clone();
            let ports2: Vec<PortRequest> = ports.clone();
            tokio::task::spawn_blocking(move || {
                engine.net.connect(&net, &id, pid, &ports2, &taken2)
            })
            .await
            .map_err(|e| EngineError::internal("network", e))
            .and_then(|r| r)
            .map(Some)
        } else {
            Ok(None)
        };
        let (endpoints, published) = match connected {
            Ok(Some((mut ep, published))) => {
                ep.aliases = rec.aliases.get(&netns_mode).cloned().unwrap_or_default();
                (vec![ep], published)
            }
            Ok(None) => (Vec::new(), Vec::new()),
            Err(e) => {
                drop(to_shim);
                let _ = child.wait().await;
                let _ = nix::mount::umount2(&c.rootfs(), nix::mount::MntFlags::MNT_DETACH);
                return Err(e);
            }
        };
        if !endpoints.is_empty() {
            // /etc/hosts names the container by its address.
            let _ = write_hosts(&c.dir, rec, endpoints[0].ip.as_str());
        }
        // Connected before `go`: a process that ends at once still finds the
        // daemon connected, and the shim keeps the connection open until the
        // exit record is written.
        let mut stream = match UnixStream::connect(self.shim_socket(&c.id)).await {
            Ok(s) => s,
            Err(e) => {
                drop(to_shim);
                let _ = child.wait().await;
                let engine = self.clone();
                let id = c.id.clone();
                let _ = tokio::task::spawn_blocking(move || engine.net.disconnect(&id)).await;
                return Err(EngineError::internal("connect to the container's shim", e));
            }
        };
        // The terminal's first size; the shim applies it as it starts pumping.
        if let (true, Some([rows, cols])) = (rec.config.tty, rec.host_config.console_size)
            && rows > 0
            && cols > 0
        {
            let _ = stream
                .write_all(&crate::shim::frame::resize(rows, cols))
                .await;
        }
        let go = to_shim.write_all(b"go\n").await;
        line.clear();
        let _ = from_shim.read_line(&mut line).await;
        if go.is_err() || line.trim_end() != "started" {
            let _ = child.wait().await;
            let engine = self.clone();
            let id = c.id.clone();
            let _ = tokio::task::spawn_blocking(move || engine.net.disconnect(&id)).await;
            let msg = line
                .trim_end()
                .strip_prefix("error ")
                .unwrap_or("the shim ended during start");
            return Err(start_error(msg));
        }
        drop(to_shim);
        // The shim lives on in its own session; tokio reaps it when it ends.
        drop(child);
        let (read, write) = stream.into_split();
        // Control before the status: an attach waiting for Running finds it.
        *c.control.lock().await = Some(write);
        let rec = c.update(|r| {
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.started_at = now_rfc3339_nano();
            r.state.finished_at = ZERO.into();
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
            r.state.stopped_by_user = false;
            r.endpoints = endpoints;
            r.ports = published;
        })?;
        self.emit_container("start", &rec, &[]);
        self.monitor(c.clone(), read);
        self.start_health(c.clone());
        Ok(())
    }

    /// Mount the rootfs, write the spec and the /etc files: everything the
    /// shim needs. Blocking.
    fn prepare_start(&self, c: &Container, rec: &Record) -> Result<ShimConfig> {
        let rootfs = c.rootfs();
        let active = self.snapshots.active(&c.id)?;
        // A mount left by a crash would stack a second overlay on the same upper.
        let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
        let remap = self.remap_of(rec);
        match remap {
            Some(map) => active.mount_idmapped(&rootfs, map)?,
            None => active.mount(&rootfs)?,
        }
        let owner = remap.map(|m| m.root());
        let prepared = (|| -> Result<ShimConfig> {
            let (image, _) = self.image_defaults(&rec.manifest)?;
            let hostname = match rec.config.hostname.as_str() {
                "" => rec.short_id().to_owned(),
                h => h.to_owned(),
            };
            let netns = match rec.network_mode() {
                "host" => NetNs::Host,
                m if m.starts_with("container:") => {
                    let other = self.find(&m["container:".len()..])?.record();
                    if !other.state.status.is_live() {
                        return Err(EngineError::Conflict(format!(
                            "cannot join the network of a non running container: {}",
                            other.id
                        )));
                    }
                    NetNs::Join(PathBuf::from(format!("/proc/{}/ns/net", other.state.pid)))
                }
                _ => NetNs::New,
            };
            let userns = match (remap, &netns) {
                (None, _) => None,
                (Some(_), NetNs::Join(net)) => Some(UserNs::Join(net.with_file_name("user"))),
                (Some(map), _) => Some(UserNs::New {
                    uids: map.uids(),
                    gids: map.gids(),
                }),
            };
            let (uid, gid, additional_gids) = match rec.config.user.as_str() {
                "" => (0, 0, Vec::new()),
                user => bosun_image::build::resolve_user(&rootfs, user).map_err(|e| {
                    EngineError::Invalid(format!("unable to find user {user}: {e}"))
                })?,
            };
            let mut env = spec::environment(&rec.config, &image, &hostname)?;
            env.retain(|e| !e.starts_with("HOSTNAME=") || e == &format!("HOSTNAME={hostname}"));
            let dns_server = match &netns {
                NetNs::New => self
                    .net
                    .get(rec.network_mode())
                    .ok()
                    .filter(|n| n.has_dns())
                    .map(|n| n.subnet().gateway()),
                _ => None,
            };
            let etc = write_etc_files(&c.dir, rec, &hostname, dns_server)?;
            if let Some((uid, gid)) = owner {
                // Writable by the container's root, as in Docker.
                for (_, file) in &etc {
                    chown(file, uid, gid)?;
                }
            }
            let cwd = match rec.config.working_dir.as_str() {
                "" => "/".to_owned(),
                w => w.to_owned(),
            };
            // Docker creates a missing working directory (owned by the
            // container's root, as if it had made it).
            let _ = crate::fsutil::create_dirs_owned(&rootfs, &cwd, owner);
            let args: Vec<String> = std::iter::once(rec.path.clone())
                .chain(rec.args.iter().cloned())
                .collect();
            let spec = spec::build(&SpecInput {
                id: &c.id,
                config: &rec.config,
                host: &rec.host_config,
                args: &args,
                env,
                cwd,
                uid,
                gid,
                additional_gids,
                hostname,
                rootfs: &rootfs,
                netns,
                etc_files: etc,
                mounts: &rec.mounts,
                userns,
                host_devices: match rec.host_config.privileged {
                    true => spec::host_devices(),
                    false => Vec::new(),
                },
            })?;
            write_atomic(&c.dir.join("config.json"), spec.to_string().as_bytes())
                .map_err(|e| EngineError::internal("write the bundle config", e))?;
            let exit_file = c.dir.join("exit.json");
            let _ = std::fs::remove_file(&exit_file);
            Ok(ShimConfig {
                id: c.id.clone(),
                runtime_root: self.runtime_root(),
                bundle: c.dir.clone(),
                log: c.log_path(),
                exit_file,
                socket: self.shim_socket(&c.id),
                stdin: rec.config.open_stdin,
                rootfs: rootfs.clone(),
            })
        })();
        if prepared.is_err() {
            let _ = active.unmount(&rootfs);
        }
        prepared
    }

    /// Keep the control connection to a running container's shim, and learn
    /// of its exit when the shim closes it.
    async fn adopt(self: &Arc<Self>, c: Arc<Container>, stream: UnixStream) {
        let (read, write) = stream.into_split();
        *c.control.lock().await = Some(write);
        self.monitor(c, read);
    }

    /// Learn of the container's end: the shim closes the connection then.
    fn monitor(self: &Arc<Self>, c: Arc<Container>, mut read: tokio::net::unix::OwnedReadHalf) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            // The shim never writes; EOF (or a reset) means it has ended.
            while let Ok(1..) = read.read(&mut buf).await {}
            *c.control.lock().await = None;
            engine.on_exit(c).await;
        });
    }

    /// The shim has ended: record how the process ended, release its network,
    /// then restart or remove it as its policy says.
    ///
    /// Boxed: restarts make start → adopt → on_exit → start a cycle, which
    /// the compiler can only check for `Send` through a named future type.
    fn on_exit(
        self: &Arc<Self>,
        c: Arc<Container>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let engine = self.clone();
        Box::pin(async move { engine.on_exit_inner(c).await })
    }

    async fn on_exit_inner(self: &Arc<Self>, c: Arc<Container>) {
        let exit: ExitRecord = std::fs::read(c.dir.join("exit.json"))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_else(|| ExitRecord {
                code: 255,
                finished_at: now_rfc3339_nano(),
                oom_killed: false,
            });
        let engine = self.clone();
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            engine.net.disconnect(&id);
            // A shim killed before its cleanup leaves the runtime state and rootfs.
            if let Ok(cid) = id.parse::<ContainerId>() {
                let _ = engine.runtime.delete(&cid, true);
            }
        })
        .await;
        let _ = nix::mount::umount2(&c.rootfs(), nix::mount::MntFlags::MNT_DETACH);
        let Ok(rec) = c.update(|r| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = exit.code;
            r.state.finished_at = exit.finished_at.clone();
            r.state.oom_killed = exit.oom_killed;
            r.endpoints.clear();
            r.ports.clear();
        }) else {
            return;
        };
        c.changed.send_modify(|ch| {
            ch.exits += 1;
            ch.exit_code = exit.code;
        });
        let code = exit.code.to_string();
        self.emit_container("die", &rec, &[("exitCode", &code)]);
        if let Some(delay) = restart_delay(&rec) {
            let _ = c.update(|r| {
                r.state.status = Status::Restarting;
                r.restart_count += 1;
            });
            let engine = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let still = c.record();
                if still.state.status == Status::Restarting && !still.state.stopped_by_user {
                    let _ = engine.start(&c.id).await;
                }
            });
        } else if rec.host_config.auto_remove {
            let engine = self.clone();
            tokio::spawn(async move {
                let _ = engine.remove(&c.id, true, true).await;
            });
        }
    }

    /// Signal the container's init (or every process with `all`).
    pub(crate) async fn kill(&self, name_or_id: &str, signal: &str) -> Result<()> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        if !rec.state.status.is_live() {
            return Err(EngineError::NotRunning(format!(
                "Cannot kill container: {}: Container {} is not running",
                name_or_id, rec.id
            )));
        }
        let sig = match signal {
            "" => Signal::SIGKILL,
            s => bosun_runtime::parse_signal(s)
                .map_err(|e| EngineError::Invalid(format!("signal: {e}")))?,
        };
        if matches!(sig, Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT) {
            // Restart policies other than `always` respect a stop by hand.
            let _ = c.update(|r| r.state.stopped_by_user = true);
        }
        self.signal(&c.id, sig, sig == Signal::SIGKILL)?;
        self.emit_container("kill", &rec, &[("signal", &(sig as i32).to_string())]);
        Ok(())
    }

    fn signal(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let cid: ContainerId = id.parse().map_err(|e| EngineError::internal("id", e))?;
        match self.runtime.kill(&cid, sig, all) {
            Ok(()) => Ok(()),
            // It ended between our look and the signal.
            Err(e) if e.kind() == bosun_oci::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `stop`: the stop signal, then SIGKILL after the timeout. Ok(false):
    /// it was not running.
    pub(crate) async fn stop(
        &self,
        name_or_id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<bool> {
        let c = self.find(name_or_id)?;
        let rec = c.update(|r| r.state.stopped_by_user = true)?;
        if rec.state.status == Status::Restarting {
            c.update(|r| r.state.status = Status::Exited)?;
            return Ok(true);
        }
        if !rec.state.status.is_live() {
            return Ok(false);
        }
        let sig = match signal
            .filter(|s| !s.is_empty())
            .unwrap_or(&rec.config.stop_signal)
        {
            "" => Signal::SIGTERM,
            s => bosun_runtime::parse_signal(s)
                .map_err(|e| EngineError::Invalid(format!("signal: {e}")))?,
        };
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let mut rx = c.subscribe();
        let exits = rx.borrow().exits;
        if rec.state.status == Status::Paused {
            let _ = self.unpause(&c.id).await;
        }
        if timeout != 0 {
            self.signal(&c.id, sig, false)?;
        }
        let exited = |rx: &mut watch::Receiver<Change>| {
            let mut rx = rx.clone();
            async move {
                rx.wait_for(|ch| ch.exits > exits || ch.removed)
                    .await
                    .is_ok()
            }
        };
        let graceful = match timeout {
            t if t < 0 => exited(&mut rx).await,
            0 => false,
            t => tokio::time::timeout(Duration::from_secs(t as u64), exited(&mut rx))
                .await
                .unwrap_or(false),
        };
        if !graceful {
            self.signal(&c.id, Signal::SIGKILL, true)?;
            exited(&mut rx).await;
        }
        self.emit_container("stop", &c.record(), &[]);
        Ok(true)
    }

    pub(crate) async fn restart(
        self: &Arc<Self>,
        name_or_id: &str,
        timeout: Option<i64>,
    ) -> Result<()> {
        self.stop(name_or_id, timeout, None).await?;
        self.start(name_or_id).await?;
        let c = self.find(name_or_id)?;
        self.emit_container("restart", &c.record(), &[]);
        Ok(())
    }

    pub(crate) async fn pause(&self, name_or_id: &str) -> Result<()> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        if rec.state.status != Status::Running {
            return Err(EngineError::NotRunning(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let cid: ContainerId = c.id.parse().map_err(|e| EngineError::internal("id", e))?;
        self.runtime.pause(&cid)?;
        let rec = c.update(|r| r.state.status = Status::Paused)?;
        self.emit_container("pause", &rec, &[]);
        Ok(())
    }

    pub(crate) async fn unpause(&self, name_or_id: &str) -> Result<()> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        if rec.state.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is not paused",
                rec.id
            )));
        }
        let cid: ContainerId = c.id.parse().map_err(|e| EngineError::internal("id", e))?;
        self.runtime.resume(&cid)?;
        let rec = c.update(|r| r.state.status = Status::Running)?;
        self.emit_container("unpause", &rec, &[]);
        Ok(())
    }

    /// Freeze a running container while `docker cp` resolves and uses paths
    /// inside it: none of its processes can swap a path component for a
    /// symlink between the check and the use (the CVE-2018-15664 class;
    /// Docker's fix was the same). The record keeps saying running; a
    /// container that is not running (or already paused) is left as it is.
    pub(crate) fn freeze_for_copy(&self, c: &Arc<Container>) -> Result<CopyFreeze<'_>> {
        if c.record().state.status != Status::Running {
            return Ok(CopyFreeze {
                engine: self,
                frozen: None,
            });
        }
        let cid: ContainerId = c.id.parse().map_err(|e| EngineError::internal("id", e))?;
        self.runtime.pause(&cid)?;
        Ok(CopyFreeze {
            engine: self,
            frozen: Some((c.clone(), cid)),
        })
    }

    /// `wait`: subscribes now, so an exit right after the call is not
    /// missed; the returned waiter resolves once `condition` holds.
    pub(crate) fn waiter(&self, name_or_id: &str, condition: WaitCondition) -> Result<Waiter> {
        let c = self.find(name_or_id)?;
        let rx = c.subscribe();
        let start = *rx.borrow();
        let rec = c.record();
        let settled = !rec.state.status.is_live() && rec.state.status != Status::Restarting;
        let immediate =
            (condition == WaitCondition::NotRunning && settled).then_some(rec.state.exit_code);
        Ok(Waiter {
            rx,
            condition,
            start,
            immediate,
        })
    }

    /// `rm`: refuse a running container unless `force`; then remove the
    /// record, the writable layer, and with `volumes` its anonymous volumes.
    pub(crate) async fn remove(
        self: &Arc<Self>,
        name_or_id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        if rec.state.status.is_live() || rec.state.status == Status::Restarting {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a {} container {}. Stop the container before attempting removal or force remove",
                    rec.state.status.as_str(),
                    rec.id
                )));
            }
            let _ = c.update(|r| r.state.stopped_by_user = true);
            if rec.state.status == Status::Paused {
                let _ = self.unpause(&c.id).await;
            }
            self.stop(&c.id, Some(0), None).await?;
        }
        let _op = c.op.lock().await;
        if c.record().state.status == Status::Removing {
            return Ok(());
        }
        let rec = c.update(|r| r.state.status = Status::Removing)?;
        let engine = self.clone();
        let c2 = c.clone();
        let removed = tokio::task::spawn_blocking(move || -> Result<()> {
            let _ = nix::mount::umount2(&c2.rootfs(), nix::mount::MntFlags::MNT_DETACH);
            match engine.snapshots.remove_active(&c2.id) {
                Ok(()) => {}
                Err(e) if e.kind() == bosun_oci::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            std::fs::remove_dir_all(&c2.dir)
                .map_err(|e| EngineError::internal("remove the container directory", e))
        })
        .await
        .map_err(|e| EngineError::internal("remove", e))?;
        if let Err(e) = removed {
            let _ = c.update(|r| r.state.status = Status::Dead);
            return Err(e);
        }
        self.containers
            .lock()
            .expect("containers lock")
            .remove(&c.id);
        if volumes {
            self.remove_anonymous_volumes(&rec.mounts);
        }
        c.changed.send_modify(|ch| ch.removed = true);
        self.emit_container("destroy", &rec, &[]);
        Ok(())
    }

    /// `network connect`/`disconnect`. A container is on one network (its
    /// network mode); a running one keeps its interface until it restarts,
    /// so changing it while it runs is refused.
    pub(crate) fn set_network(
        &self,
        name_or_id: &str,
        network: &str,
        aliases: Vec<String>,
        connect: bool,
    ) -> Result<()> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        if rec.state.status.is_live() {
            return Err(EngineError::Conflict(format!(
                "container {} is running: bosun changes a container's network only while it is stopped",
                rec.id
            )));
        }
        if !connect && rec.network_mode() != network {
            return Err(EngineError::Conflict(format!(
                "container {} is not connected to network {network}",
                rec.id
            )));
        }
        let rec = c.update(|r| {
            r.host_config.network_mode = if connect {
                network.to_owned()
            } else {
                "none".into()
            };
            r.aliases.clear();
            if connect && !aliases.is_empty() {
                r.aliases.insert(network.to_owned(), aliases);
            }
        })?;
        let action = if connect { "connect" } else { "disconnect" };
        self.emit(
            "network",
            action,
            &crate::network::network_id(network),
            &[("container", &rec.id), ("name", network)],
        );
        Ok(())
    }

    pub(crate) fn rename(&self, name_or_id: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.trim_start_matches('/');
        if !volumes::valid_name(new_name) {
            return Err(EngineError::Invalid(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let c = self.find(name_or_id)?;
        let map = self.containers.lock().expect("containers lock");
        if let Some(other) = map
            .values()
            .find(|o| o.id != c.id && o.record().name == new_name)
        {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{}\"",
                other.id
            )));
        }
        let old = c.record().name;
        let rec = c.update(|r| r.name = new_name.to_owned())?;
        drop(map);
        self.emit_container("rename", &rec, &[("oldName", &format!("/{old}"))]);
        Ok(())
    }

    /// `update`: new resource limits (applied to a running container's
    /// cgroup at once) and restart policy.
    pub(crate) fn update_container(
        &self,
        name_or_id: &str,
        req: &crate::model::HostConfig,
        policy: Option<crate::model::RestartPolicy>,
    ) -> Result<()> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        let mut host = rec.host_config.clone();
        if req.memory != 0 {
            host.memory = req.memory;
        }
        if req.nano_cpus != 0 {
            host.nano_cpus = req.nano_cpus;
        }
        if req.cpu_shares != 0 {
            host.cpu_shares = req.cpu_shares;
        }
        if !req.cpuset_cpus.is_empty() {
            host.cpuset_cpus = req.cpuset_cpus.clone();
        }
        if req.pids_limit.is_some() {
            host.pids_limit = req.pids_limit;
        }
        if let Some(p) = &policy {
            check_restart_policy(p)?;
            host.restart_policy = p.clone();
        }
        let resources = spec::resources(&host)?;
        if rec.state.status.is_live() {
            let mut resources: oci_spec::runtime::LinuxResources =
                serde_json::from_value(resources)
                    .map_err(|e| EngineError::internal("resources", e))?;
            // The device rules stay as created.
            resources.set_devices(None);
            let cid: ContainerId = c.id.parse().map_err(|e| EngineError::internal("id", e))?;
            self.runtime.update(&cid, &resources)?;
        }
        let rec = c.update(|r| r.host_config = host)?;
        self.emit_container("update", &rec, &[]);
        Ok(())
    }

    /// `commit`: the container's writable layer over its image as a new
    /// image, with the container's configuration; a running container is
    /// paused meanwhile (as Docker does), so the layer is consistent.
    pub(crate) fn commit(
        &self,
        name_or_id: &str,
        tag: Option<bosun_oci::ImageRef>,
        comment: &str,
        author: &str,
        pause: bool,
    ) -> Result<String> {
        let c = self.find(name_or_id)?;
        let rec = c.record();
        let (image, _) = self.image_defaults(&rec.manifest)?;
        let mut env = image.env.clone();
        for e in rec.config.env.iter().filter(|e| e.contains('=')) {
            spec::set_env(&mut env, e);
        }
        let mut config = serde_json::Map::new();
        config.insert("Env".into(), json!(env));
        config.insert("Cmd".into(), json!(rec.config.cmd));
        config.insert("Entrypoint".into(), json!(rec.config.entrypoint));
        if !rec.config.working_dir.is_empty() {
            config.insert("WorkingDir".into(), json!(rec.config.working_dir));
        }
        if !rec.config.user.is_empty() {
            config.insert("User".into(), json!(rec.config.user));
        }
        if !rec.config.labels.is_empty() {
            config.insert("Labels".into(), json!(rec.config.labels));
        }
        if !rec.config.exposed_ports.is_empty() {
            config.insert("ExposedPorts".into(), json!(rec.config.exposed_ports));
        }
        let opts = bosun_image::CommitOptions {
            config,
            author: author.to_owned(),
            comment: comment.to_owned(),
            created_by: format!("bosun commit {}", rec.short_id()),
            tag,
        };
        let base: bosun_oci::Digest = rec
            .manifest
            .parse()
            .map_err(|e| EngineError::internal("manifest digest", e))?;
        let active = self.snapshots.active(&c.id)?;
        let cid: ContainerId = c.id.parse().map_err(|e| EngineError::internal("id", e))?;
        let paused =
            pause && rec.state.status == Status::Running && self.runtime.pause(&cid).is_ok();
        let committed = match self.remap_of(&rec) {
            Some(map) => self
                .images
                .commit_upper_unmapped(&base, active.upper(), &opts, map),
            None => self.images.commit_upper(&base, active.upper(), &opts),
        };
        if paused {
            let _ = self.runtime.resume(&cid);
        }
        let committed = committed?;
        self.emit_container("commit", &rec, &[]);
        Ok(committed.id.to_string())
    }

    /// `export`: the container's file system as a tar, written to `out`.
    /// A stopped container's writable layer is mounted for the while.
    pub(crate) fn export(&self, name_or_id: &str, out: &mut dyn std::io::Write) -> Result<()> {
        let c = self.find(name_or_id)?;
        let rootfs = c.rootfs();
        let live = c.record().state.status.is_live();
        let active = self.snapshots.active(&c.id)?;
        if !live {
            match self.remap_of(&c.record()) {
                Some(map) => active.mount_idmapped(&rootfs, map)?,
                None => active.mount(&rootfs)?,
            }
        }
        let result = match self.remap_of(&c.record()) {
            Some(map) => tar_unmapped(out, map, |tar| tar.append_dir_all(".", &rootfs)),
            None => (|| {
                let mut tar = tar::Builder::new(out);
                // Links stay links: following them could leave the container's tree.
                tar.follow_symlinks(false);
                tar.append_dir_all(".", &rootfs)?;
                tar.finish()
            })(),
        };
        if !live {
            let _ = active.unmount(&rootfs);
        }
        result.map_err(|e| EngineError::internal("export", e))
    }

    /// Host pids of the container's processes (`top`).
    pub(crate) fn pids(&self, name_or_id: &str) -> Result<Vec<i32>> {
        let c = self.find(name_or_id)?;
        if !c.record().state.status.is_live() {
            return Err(EngineError::NotRunning(format!(
                "Container {} is not running",
                c.id
            )));
        }
        let cid: ContainerId = c.id.parse().map_err(|e| EngineError::internal("id", e))?;
        Ok(self.runtime.pids(&cid)?)
    }

    /// The runtime's cgroup statistics of a running container.
    pub(crate) fn stats(&self, id: &str) -> Result<Value> {
        let cid: ContainerId = id.parse().map_err(|e| EngineError::internal("id", e))?;
        Ok(self.runtime.stats(&cid)?)
    }

    pub(crate) fn image_store(&self) -> &ImageStore {
        &self.images
    }

    pub(crate) fn snapshotter(&self) -> Snapshotter {
        self.snapshots.clone()
    }
}

/// What the runtime reported at create or start, in the words the docker CLI
/// looks for to choose its exit code (127: no such program, 126: cannot run it).
fn start_error(msg: &str) -> EngineError {
    let missing = msg.contains("not found") || msg.contains("No such file");
    let denied = msg.contains("ermission denied");
    match (missing, denied) {
        (true, _) => EngineError::Invalid(format!(
            "failed to create task for container: {msg}: exec: executable file not found in $PATH"
        )),
        (_, true) => EngineError::Invalid(format!(
            "failed to create task for container: {msg}: permission denied"
        )),
        _ => EngineError::Internal(format!("failed to create task for container: {msg}")),
    }
}

fn check_restart_policy(p: &crate::model::RestartPolicy) -> Result<()> {
    match p.name.as_str() {
        "" | "no" | "always" | "unless-stopped" if p.maximum_retry_count == 0 => Ok(()),
        "on-failure" if p.maximum_retry_count >= 0 => Ok(()),
        "always" | "unless-stopped" | "no" | "" => Err(EngineError::Invalid(format!(
            "maximum retry count cannot be used with restart policy '{}'",
            p.name
        ))),
        other => Err(EngineError::Invalid(format!(
            "invalid restart policy '{other}'"
        ))),
    }
}

/// Whether the policy restarts a container that just exited, and after how
/// long: Docker's back-off doubles from 100 ms, capped at a minute.
pub(crate) fn restart_delay(rec: &Record) -> Option<Duration> {
    let p = &rec.host_config.restart_policy;
    let restart = match p.name.as_str() {
        "always" => !rec.state.stopped_by_user,
        "unless-stopped" => !rec.state.stopped_by_user,
        "on-failure" => {
            rec.state.exit_code != 0
                && !rec.state.stopped_by_user
                && (p.maximum_retry_count == 0
                    || i64::from(rec.restart_count) < p.maximum_retry_count)
        }
        _ => false,
    };
    restart.then(|| {
        let ms = 100u64.saturating_mul(1u64 << rec.restart_count.min(10));
        Duration::from_millis(ms.min(60_000))
    })
}

/// `busybox` → `busybox:latest`, as Docker's messages show it.
fn image_display(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.contains(':') || image.contains('@') {
        true => image.to_owned(),
        false => format!("{image}:latest"),
    }
}

pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique enough when the kernel's generator is unavailable.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        use sha2::Digest as _;
        bytes.copy_from_slice(&sha2::Sha256::digest(format!(
            "{now}-{}",
            std::process::id()
        )));
    }
    hex::encode(bytes)
}

/// Docker-style `adjective_name`, picked from the id.
fn generated_name(id: &str) -> String {
    const LEFT: [&str; 16] = [
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nimble", "proud", "quiet", "rapid", "sharp", "witty",
    ];
    const RIGHT: [&str; 16] = [
        "albatross",
        "badger",
        "cormorant",
        "dolphin",
        "egret",
        "falcon",
        "gannet",
        "heron",
        "ibis",
        "jackal",
        "kestrel",
        "lemur",
        "marlin",
        "narwhal",
        "osprey",
        "puffin",
    ];
    let b = hex::decode(&id[..8]).unwrap_or_else(|_| vec![0; 4]);
    format!(
        "{}_{}_{}",
        LEFT[b[0] as usize % 16],
        RIGHT[b[1] as usize % 16],
        u16::from_be_bytes([b[2], b[3]]) % 1000
    )
}

/// Where `--userns-remap` keeps containers and volumes: `<data>/<uid>.<gid>`,
/// as Docker does. Their files are owned by the mapped root, so a container
/// made under one mapping cannot run under another, nor under none: each
/// mapping sees its own. Images and snapshots stay shared (idmapped mounts
/// show them to any mapping), and so do networks, whose bridges and
/// addresses are the host's.
///
/// The runtime mounts the rootfs and bind sources from inside the user
/// namespace, as the mapped root, so every directory on the way must be
/// searchable by it: the data directory gets o+x (no listing), the state
/// directory is 0710 root:<gid>, and a parent that others cannot search is
/// an error naming it, which is Docker's check too.
fn remapped_state_dir(data: &Path, (uid, gid): (u32, u32)) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let io = |p: &Path, e: std::io::Error| EngineError::internal(p.display(), e);
    let data = std::fs::canonicalize(data).map_err(|e| io(data, e))?;
    let mut parent = data.parent();
    while let Some(dir) = parent {
        let mode = std::fs::metadata(dir)
            .map_err(|e| io(dir, e))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(EngineError::Invalid(format!(
                "--userns-remap: {} is not searchable by others, so the remapped root \
                 cannot reach {}; allow it with chmod o+x",
                dir.display(),
                data.display()
            )));
        }
        parent = dir.parent();
    }
    let mut perms = std::fs::metadata(&data)
        .map_err(|e| io(&data, e))?
        .permissions();
    if perms.mode() & 0o001 == 0 {
        perms.set_mode(perms.mode() | 0o001);
        std::fs::set_permissions(&data, perms).map_err(|e| io(&data, e))?;
    }
    let dir = data.join(format!("{uid}.{gid}"));
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    chown(&dir, 0, gid)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o710))
        .map_err(|e| io(&dir, e))?;
    Ok(dir)
}

/// A tar of a remapped container's files (`export`, `cp` out): what `add`
/// puts in a builder, as the host sees it (under the mapped ids), is tarred
/// on a thread into a pipe, and each entry is written out again with the
/// container's ids, as Docker gives them. Links are never followed.
pub(crate) fn tar_unmapped(
    out: &mut dyn std::io::Write,
    map: &bosun_image::snapshot::IdMap,
    add: impl FnOnce(&mut tar::Builder<std::io::PipeWriter>) -> std::io::Result<()> + Send,
) -> std::io::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || {
            let mut tar = tar::Builder::new(writer);
            tar.follow_symlinks(false);
            add(&mut tar)?;
            tar.finish()
        });
        // Consumed first: an error drops the reader, so the producer stops
        // with a broken pipe instead of blocking.
        let consumed = (|| {
            let mut archive = tar::Archive::new(reader);
            let mut builder = tar::Builder::new(out);
            for entry in archive.entries()? {
                let mut entry = entry?;
                let mut header = entry.header().clone();
                let (uid, gid) = map.to_container(
                    u32::try_from(header.uid()?).unwrap_or(u32::MAX),
                    u32::try_from(header.gid()?).unwrap_or(u32::MAX),
                );
                header.set_uid(uid.into());
                header.set_gid(gid.into());
                let path = entry.path()?.into_owned();
                let link = entry.link_name()?.map(|l| l.into_owned());
                match (header.entry_type(), link) {
                    (tar::EntryType::Symlink | tar::EntryType::Link, Some(link)) => {
                        builder.append_link(&mut header, &path, &link)?;
                    }
                    _ => builder.append_data(&mut header, &path, &mut entry)?,
                }
            }
            builder.finish()
        })();
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the export thread panicked")));
        consumed.and(produced)
    })
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| EngineError::internal(format!("chown {}", path.display()), e))
}

/// The /etc files a container gets bound over its image's: hosts, resolv.conf
/// and hostname, in the container's directory.
fn write_etc_files(
    dir: &Path,
    rec: &Record,
    hostname: &str,
    dns_server: Option<std::net::Ipv4Addr>,
) -> Result<Vec<(&'static str, PathBuf)>> {
    let io = |e| EngineError::internal("write the container's /etc files", e);
    let hostname_file = dir.join("hostname");
    std::fs::write(&hostname_file, format!("{hostname}\n")).map_err(io)?;
    let resolv = dir.join("resolv.conf");
    let text = match (&rec.host_config.dns[..], dns_server) {
        ([], None) => host_resolv_conf(),
        // The network's embedded DNS answers container names and forwards
        // the rest to the host's resolvers.
        ([], Some(gw)) => format!("nameserver {gw}\noptions ndots:0\n"),
        (servers, _) => servers
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect(),
    };
    std::fs::write(&resolv, text).map_err(io)?;
    write_hosts(dir, rec, "")?;
    Ok(vec![
        ("/etc/hostname", hostname_file),
        ("/etc/hosts", dir.join("hosts")),
        ("/etc/resolv.conf", resolv),
    ])
}

/// The host's resolvers, minus loopback ones a container cannot reach.
fn host_resolv_conf() -> String {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("nameserver")
                || !l
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|ip| ip.starts_with("127."))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    kept
}

fn write_hosts(dir: &Path, rec: &Record, ip: &str) -> Result<()> {
    let hostname = match rec.config.hostname.as_str() {
        "" => rec.short_id().to_owned(),
        h => h.to_owned(),
    };
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in &rec.host_config.extra_hosts {
        if let Some((name, addr)) = h.split_once(':') {
            let addr = if addr == "host-gateway" {
                "10.88.0.1"
            } else {
                addr
            };
            text.push_str(&format!("{addr}\t{name}\n"));
        }
    }
    if !ip.is_empty() {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    // Rewritten in place: the container may already have it bound.
    std::fs::write(dir.join("hosts"), text)
        .map_err(|e| EngineError::internal("write the container's /etc/hosts", e))
}

/// A container frozen for a copy ([`Engine::freeze_for_copy`]); thawed on
/// drop, unless someone paused it meanwhile (then it stays paused).
pub(crate) struct CopyFreeze<'a> {
    engine: &'a Engine,
    frozen: Option<(Arc<Container>, ContainerId)>,
}

impl Drop for CopyFreeze<'_> {
    fn drop(&mut self) {
        if let Some((c, cid)) = self.frozen.take()
            && c.record().state.status == Status::Running
        {
            let _ = self.engine.runtime.resume(&cid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(policy: &str, max: i64, code: i32, count: u32) -> Record {
        let mut r: Record = serde_json::from_value(json!({
            "id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "name": "n", "created": "", "image": "i", "image_id": "", "manifest": "",
            "config": {}, "host_config": {}, "aliases": {},
            "state": {"status": "exited", "pid": 0, "exit_code": code, "started_at": "",
                      "finished_at": "", "oom_killed": false, "error": "",
                      "stopped_by_user": false, "health": null},
            "restart_count": count, "endpoints": [], "ports": [], "mounts": [],
            "path": "/bin/true", "args": []
        }))
        .expect("record");
        r.host_config.restart_policy.name = policy.into();
        r.host_config.restart_policy.maximum_retry_count = max;
        r
    }

    #[test]
    fn restart_policies() {
        assert_eq!(restart_delay(&record("no", 0, 1, 0)), None);
        assert_eq!(
            restart_delay(&record("always", 0, 0, 0)),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            restart_delay(&record("always", 0, 0, 3)),
            Some(Duration::from_millis(800))
        );
        assert_eq!(restart_delay(&record("on-failure", 0, 0, 0)), None);
        assert!(restart_delay(&record("on-failure", 2, 1, 1)).is_some());
        assert_eq!(restart_delay(&record("on-failure", 2, 1, 2)), None);
        let mut stopped = record("unless-stopped", 0, 0, 0);
        stopped.state.stopped_by_user = true;
        assert_eq!(restart_delay(&stopped), None);
        assert_eq!(
            restart_delay(&record("always", 0, 0, 40)),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn restart_policy_validation() {
        let p = |name: &str, max| crate::model::RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        };
        assert!(check_restart_policy(&p("on-failure", 3)).is_ok());
        assert!(check_restart_policy(&p("always", 3)).is_err());
        assert!(check_restart_policy(&p("sometimes", 0)).is_err());
    }

    #[test]
    fn generated_names_look_like_dockers() {
        let n = generated_name(&random_id());
        assert_eq!(n.split('_').count(), 3);
        assert!(volumes::valid_name(&n));
    }
}
