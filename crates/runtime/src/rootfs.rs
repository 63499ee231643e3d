//! The container's file system view: mounts, devices, pivot_root, masked and
//! read-only paths. Runs in the container's new mount namespace, in the child.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, fstatat, makedev, mkdirat, mknodat};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchdir, fchownat, pivot_root, symlinkat, unlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use crate::config::Bundle;
use crate::error::{Context, Error, Result};
use crate::inroot::{Root, fd_path};

/// One `options` entry of an OCI mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountOpt {
    /// Set (`clear == false`) or clear a mount flag.
    Flag { flag: MsFlags, clear: bool },
    /// `private`, `rslave`, …: applied after the mount.
    Propagation(MsFlags),
    /// `bind` / `rbind`.
    Bind { recursive: bool },
    /// Passed to the file system as data (`mode=755`, `size=64k`, `newinstance`).
    Data(String),
}

pub(crate) fn parse_propagation(s: &str) -> Option<MsFlags> {
    Some(match s {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

pub(crate) fn parse_mount_option(opt: &str) -> std::result::Result<MountOpt, String> {
    use MsFlags as F;
    let set = |flag| Ok(MountOpt::Flag { flag, clear: false });
    let clear = |flag| Ok(MountOpt::Flag { flag, clear: true });
    if let Some(p) = parse_propagation(opt) {
        return Ok(MountOpt::Propagation(p));
    }
    match opt {
        "bind" => Ok(MountOpt::Bind { recursive: false }),
        "rbind" => Ok(MountOpt::Bind { recursive: true }),
        "defaults" => clear(F::empty()),
        "ro" => set(F::MS_RDONLY),
        "rw" => clear(F::MS_RDONLY),
        "nosuid" => set(F::MS_NOSUID),
        "suid" => clear(F::MS_NOSUID),
        "nodev" => set(F::MS_NODEV),
        "dev" => clear(F::MS_NODEV),
        "noexec" => set(F::MS_NOEXEC),
        "exec" => clear(F::MS_NOEXEC),
        "sync" => set(F::MS_SYNCHRONOUS),
        "async" => clear(F::MS_SYNCHRONOUS),
        "dirsync" => set(F::MS_DIRSYNC),
        "remount" => set(F::MS_REMOUNT),
        "mand" => set(F::MS_MANDLOCK),
        "nomand" => clear(F::MS_MANDLOCK),
        "atime" => clear(F::MS_NOATIME),
        "noatime" => set(F::MS_NOATIME),
        "diratime" => clear(F::MS_NODIRATIME),
        "nodiratime" => set(F::MS_NODIRATIME),
        "relatime" => set(F::MS_RELATIME),
        "norelatime" => clear(F::MS_RELATIME),
        "strictatime" => set(F::MS_STRICTATIME),
        "nostrictatime" => clear(F::MS_STRICTATIME),
        "lazytime" => set(F::MS_LAZYTIME),
        "nolazytime" => clear(F::MS_LAZYTIME),
        "silent" => set(F::MS_SILENT),
        "loud" => clear(F::MS_SILENT),
        "idmap" | "ridmap" => Err(format!("{opt:?}: id-mapped mounts are not supported")),
        "tmpcopyup" => Err(format!("{opt:?} is not supported")),
        "" => Err("empty option".into()),
        other => Ok(MountOpt::Data(other.to_owned())),
    }
}

/// A mount with its options resolved.
#[derive(Debug)]
struct Resolved {
    flags: MsFlags,
    propagation: Vec<MsFlags>,
    bind: Option<bool>,
    data: Vec<String>,
}

fn resolve(m: &Mount) -> Result<Resolved> {
    let mut r = Resolved {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        bind: None,
        data: Vec::new(),
    };
    if m.typ().as_deref() == Some("bind") {
        r.bind = Some(false);
    }
    for opt in m.options().iter().flatten() {
        match parse_mount_option(opt).map_err(|e| Error::invalid("mounts.options", e))? {
            MountOpt::Flag { flag, clear: false } => r.flags |= flag,
            MountOpt::Flag { flag, clear: true } => r.flags &= !flag,
            MountOpt::Propagation(p) => r.propagation.push(p),
            MountOpt::Bind { recursive } => r.bind = Some(recursive || r.bind == Some(true)),
            MountOpt::Data(d) => r.data.push(d),
        }
    }
    Ok(r)
}

/// Flags a remount in a user namespace must keep, because the kernel locks them.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn mount_err(what: &str, dest: &Path) -> impl FnOnce() -> String {
    let s = format!("mount {what} on {}", dest.display());
    move || s
}

/// What `prepare` needs to know besides the bundle.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) in_user_ns: bool,
    pub(crate) terminal: bool,
}

/// Everything before pivot_root: propagation, the rootfs bind, the config's mounts,
/// and /dev. Paths are still host paths here.
pub(crate) fn prepare(bundle: &Bundle, opts: &Options) -> Result<()> {
    // Never let our mounts propagate back to the host; the requested
    // rootfsPropagation is applied to the root only after pivot_root (`finish`).
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .ctx(|| "make / rslave".into())?;
    let rootfs = &bundle.rootfs;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(mount_err("rootfs bind", rootfs))?;

    // Opened after the bind, so it is the bind (where mounts must land).
    let root = Root::new(rootfs)?;
    let mut dev_bound = false;
    for (i, m) in bundle.spec.mounts().iter().flatten().enumerate() {
        mount_one(bundle, &root, m, opts).map_err(|e| match e {
            Error::Sys { context, source } => Error::Sys {
                context: format!("mounts[{i}]: {context}"),
                source,
            },
            Error::Io { context, source } => Error::Io {
                context: format!("mounts[{i}]: {context}"),
                source,
            },
            other => other,
        })?;
        if m.destination() == Path::new("/dev") && resolve(m)?.bind.is_some() {
            dev_bound = true;
        }
    }
    if !dev_bound {
        create_devices(bundle, &root, opts)?;
    }
    Ok(())
}

fn mount_one(bundle: &Bundle, root: &Root, m: &Mount, opts: &Options) -> Result<()> {
    let r = resolve(m)?;
    let dest = m.destination();
    let shown = PathBuf::from(root.display(dest));
    let typ = m.typ().as_deref().unwrap_or("");
    let data = r.data.join(",");
    if let Some(recursive) = r.bind {
        let src = m.source().as_ref().map(|s| {
            if s.is_absolute() {
                s.clone()
            } else {
                bundle.dir.join(s)
            }
        });
        let src =
            src.ok_or_else(|| Error::invalid("mounts.source", "a bind mount needs a source"))?;
        let meta = fs::metadata(&src).ctx(|| format!("stat bind source {}", src.display()))?;
        let target = make_target(root, dest, meta.is_dir())?;
        let mut flags = MsFlags::MS_BIND;
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(
            Some(&src),
            &fd_path(&target),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .ctx(mount_err(&src.display().to_string(), &shown))?;
        let want = r.flags & !(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_REC);
        if !want.is_empty() {
            // The descriptor still names the covered mount point: reopen to reach the bind.
            let mounted_fd = root.open_ctx(dest, OFlag::O_PATH)?;
            let mounted = fd_path(&mounted_fd);
            let keep = if opts.in_user_ns {
                locked_flags(&mounted) & !MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            };
            mount(
                None::<&str>,
                &mounted,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | want | keep,
                None::<&str>,
            )
            .ctx(mount_err("bind remount", &shown))?;
        }
    } else {
        if matches!(typ, "proc" | "sysfs") && !root.without_symlinks(dest) {
            // Through a link the kernel's files would land elsewhere, away from
            // the masked and read-only paths meant for them (runc refuses it too).
            return Err(Error::invalid(
                "mounts.destination",
                format!(
                    "{} leads through a symlink; {typ} is mounted only on a real directory",
                    dest.display()
                ),
            ));
        }
        let target = make_target(root, dest, true)?;
        let on = fd_path(&target);
        match typ {
            "cgroup" | "cgroup2" => mount_cgroup(root, dest, &on, r.flags)?,
            _ => {
                let source = m
                    .source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| typ.to_owned());
                let res = mount(
                    Some(source.as_str()),
                    &on,
                    Some(typ),
                    r.flags,
                    (!data.is_empty()).then_some(data.as_str()),
                );
                match (typ, res) {
                    (_, Ok(())) => {}
                    // Without a private network (or ipc) namespace sysfs (mqueue) cannot be
                    // mounted fresh; fall back to the host's, as runc does.
                    ("sysfs", Err(nix::errno::Errno::EPERM)) => {
                        bind_fallback("/sys", root, dest, &on, r.flags)?
                    }
                    ("mqueue", Err(nix::errno::Errno::EPERM)) => {
                        bind_fallback("/dev/mqueue", root, dest, &on, r.flags)?
                    }
                    (_, Err(e)) => return Err(e).ctx(mount_err(typ, &shown)),
                }
            }
        }
    }
    if !r.propagation.is_empty() {
        let mounted_fd = root.open_ctx(dest, OFlag::O_PATH)?;
        let mounted = fd_path(&mounted_fd);
        for p in &r.propagation {
            mount(None::<&str>, &mounted, None::<&str>, *p, None::<&str>)
                .ctx(mount_err("propagation", &shown))?;
        }
    }
    Ok(())
}

/// Bind the host's `src` on `on` (a descriptor path of `dest`), read-only if asked.
fn bind_fallback(src: &str, root: &Root, dest: &Path, on: &Path, flags: MsFlags) -> Result<()> {
    let shown = PathBuf::from(root.display(dest));
    mount(
        Some(src),
        on,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(mount_err(src, &shown))?;
    if flags.contains(MsFlags::MS_RDONLY) {
        let mounted_fd = root.open_ctx(dest, OFlag::O_PATH)?;
        let mounted = fd_path(&mounted_fd);
        let keep = locked_flags(&mounted);
        mount(
            None::<&str>,
            &mounted,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .ctx(mount_err("read-only remount", &shown))?;
    }
    Ok(())
}

/// cgroup v2: one cgroup2 mount. v1: a tmpfs with one mount per hierarchy, which
/// inside a cgroup namespace shows the container's own cgroup as the root.
fn mount_cgroup(root: &Root, dest: &Path, on: &Path, flags: MsFlags) -> Result<()> {
    let shown = PathBuf::from(root.display(dest));
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    let hierarchies = crate::cgroups::Cgroup::v1_hierarchies()?;
    if hierarchies.is_empty() {
        return mount(Some("cgroup2"), on, Some("cgroup2"), flags, None::<&str>)
            .ctx(mount_err("cgroup2", &shown));
    }
    mount(
        Some("tmpfs"),
        on,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .ctx(mount_err("tmpfs for cgroups", &shown))?;
    // The fresh tmpfs holds nothing the container made, so names in it are safe.
    let tmpfs = root.open_ctx(dest, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for h in &hierarchies {
        let sub = shown.join(&h.dir_name);
        mkdirat(
            tmpfs.as_fd(),
            h.dir_name.as_str(),
            Mode::from_bits_truncate(0o755),
        )
        .ctx(|| format!("mkdir {}", sub.display()))?;
        let dir = nix::fcntl::openat(
            tmpfs.as_fd(),
            h.dir_name.as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", sub.display()))?;
        mount(
            Some("cgroup"),
            &fd_path(&dir),
            Some("cgroup"),
            flags,
            Some(h.options.as_str()),
        )
        .ctx(mount_err(&format!("cgroup {}", h.options), &sub))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            &fd_path(&tmpfs),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
            Some("mode=755"),
        )
        .ctx(mount_err("read-only remount", &shown))?;
    }
    Ok(())
}

/// The mount point, made if missing: a directory, or an empty file for a file
/// bind mount; an `O_PATH` descriptor of it, resolved inside the root.
fn make_target(root: &Root, dest: &Path, dir: bool) -> Result<OwnedFd> {
    if dir {
        root.mkdir_all(dest)
    } else {
        root.make_file(dest)
    }
}

fn default_devices() -> Vec<LinuxDevice> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| {
        let mut d = LinuxDevice::default();
        d.set_path(PathBuf::from(format!("/dev/{name}")));
        d.set_typ(LinuxDeviceType::C);
        d.set_major(major);
        d.set_minor(minor);
        d.set_file_mode(Some(0o666));
        d.set_uid(Some(0));
        d.set_gid(Some(0));
        d
    })
    .collect()
}

fn create_devices(bundle: &Bundle, root: &Root, opts: &Options) -> Result<()> {
    let configured = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let mut all = default_devices();
    all.retain(|d| !configured.iter().any(|c| c.path() == d.path()));
    all.extend(configured);
    let dev = root.mkdir_all(Path::new("/dev"))?;
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let result = all
        .iter()
        .try_for_each(|d| create_device(root, d, opts.in_user_ns));
    nix::sys::stat::umask(old_umask);
    result?;
    let shown = |name: &str| root.display(&Path::new("/dev").join(name));
    let exists = |name: &str| fstatat(dev.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok();
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        if !exists(link) {
            symlinkat(target, dev.as_fd(), link).ctx(|| format!("symlink {}", shown(link)))?;
        }
    }
    if Path::new("/proc/kcore").exists() && !exists("core") {
        let _ = symlinkat("/proc/kcore", dev.as_fd(), "core");
    }
    let _ = unlinkat(dev.as_fd(), "ptmx", UnlinkatFlags::NoRemoveDir);
    symlinkat("pts/ptmx", dev.as_fd(), "ptmx").ctx(|| format!("symlink {}", shown("ptmx")))?;
    if opts.terminal {
        make_target(root, Path::new("/dev/console"), false)?;
    }
    Ok(())
}

/// One device node, made in the directory that holds it (resolved inside the
/// root); whatever was there under that name, a symlink included, is replaced.
fn create_device(root: &Root, d: &LinuxDevice, in_user_ns: bool) -> Result<()> {
    let (parent, name) = root.parent_of(d.path())?;
    let shown = root.display(d.path());
    if in_user_ns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let _ = unlinkat(parent.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        let target = nix::fcntl::openat(
            parent.as_fd(),
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .ctx(|| format!("create {shown}"))?;
        return mount(
            Some(d.path()),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(mount_err(
            &d.path().display().to_string(),
            Path::new(&shown),
        ));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::invalid(
                "linux.devices.type",
                "\"a\" is only valid in cgroup rules",
            ));
        }
    };
    let _ = unlinkat(parent.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir);
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    mknodat(
        parent.as_fd(),
        name.as_os_str(),
        kind,
        mode,
        makedev(d.major() as u64, d.minor() as u64),
    )
    .ctx(|| format!("mknod {shown}"))?;
    fchownat(
        parent.as_fd(),
        name.as_os_str(),
        d.uid().map(Uid::from_raw),
        d.gid().map(Gid::from_raw),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx(|| format!("chown {shown}"))?;
    Ok(())
}

/// Switch the process's root to the rootfs and detach the host's tree.
pub(crate) fn pivot(rootfs: &Path) -> Result<()> {
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /".into())?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", rootfs.display()))?;
    fchdir(new.as_fd()).ctx(|| "chdir to rootfs".into())?;
    match pivot_root(".", ".") {
        Ok(()) => {
            // The old root is now stacked on "/": detach it without letting the
            // unmount propagate to the host.
            fchdir(old.as_fd()).ctx(|| "chdir to old root".into())?;
            mount(
                None::<&str>,
                ".",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| "make old root rslave".into())?;
            umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach old root".into())?;
        }
        // pivot_root is impossible when the root is the initramfs: move and chroot.
        Err(nix::errno::Errno::EINVAL) => {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .ctx(|| "move rootfs to /".into())?;
            nix::unistd::chroot(".").ctx(|| "chroot".into())?;
        }
        Err(e) => return Err(e).ctx(|| format!("pivot_root to {}", rootfs.display())),
    }
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// After pivot_root: root propagation, read-only root, masked and read-only paths.
pub(crate) fn finish(bundle: &Bundle) -> Result<()> {
    let linux = bundle.spec.linux().as_ref();
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(parse_propagation)
    {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .ctx(|| "set rootfs propagation".into())?;
    }
    for path in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask(Path::new(path))?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly(Path::new(path))?;
    }
    if bundle
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let keep = locked_flags(Path::new("/"));
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .ctx(|| "remount / read-only".into())?;
    }
    Ok(())
}

fn mask(path: &Path) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("stat masked path {}", path.display())),
    };
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k"),
        )
        .ctx(mount_err("tmpfs mask", path))
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(mount_err("/dev/null mask", path))
    }
}

fn readonly(path: &Path) -> Result<()> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e).ctx(mount_err("read-only bind", path)),
    }
    let keep = locked_flags(path);
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_REC | keep,
        None::<&str>,
    )
    .ctx(mount_err("read-only remount", path))
}

/// Write `linux.sysctl` under /proc/sys (after pivot_root, so the container's /proc).
pub(crate) fn sysctls(bundle: &Bundle) -> Result<()> {
    for (key, value) in bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, value).ctx(|| format!("linux.sysctl: set {key}={value}"))?;
    }
    Ok(())
}

/// Bind the terminal's slave over /dev/console (after pivot_root: the root is `/`).
pub(crate) fn bind_console(slave_path: &Path) -> Result<()> {
    let root = Root::new(Path::new("/"))?;
    let console = make_target(&root, Path::new("/dev/console"), false)?;
    let _ = fs::set_permissions(slave_path, fs::Permissions::from_mode(0o620));
    mount(
        Some(slave_path),
        &fd_path(&console),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(mount_err(
        &slave_path.display().to_string(),
        Path::new("/dev/console"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(
            parse_mount_option("ro").unwrap(),
            MountOpt::Flag {
                flag: MsFlags::MS_RDONLY,
                clear: false
            }
        );
        assert_eq!(
            parse_mount_option("rbind").unwrap(),
            MountOpt::Bind { recursive: true }
        );
        assert_eq!(
            parse_mount_option("mode=755").unwrap(),
            MountOpt::Data("mode=755".into())
        );
        assert!(matches!(
            parse_mount_option("rslave").unwrap(),
            MountOpt::Propagation(_)
        ));
        assert!(parse_mount_option("idmap").is_err());
    }
}
