//! The container's file system view: mounts, devices, pivot_root, masked and
//! read-only paths. Runs in the container's new mount namespace, in the child.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{Gid, Uid, chown, fchdir, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use crate::config::Bundle;
use crate::error::{Context, Error, Result};

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

/// Join `path` onto `root` resolving symlinks as if `root` were `/`, so no component
/// of a container-controlled path can lead outside the rootfs.
pub(crate) fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<std::ffi::OsString> =
        path.components().rev().filter_map(component_name).collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() && links < 255 => {
                links += 1;
                let target = fs::read_link(&full).unwrap_or_default();
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(target.components().rev().filter_map(component_name));
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

fn component_name(c: Component<'_>) -> Option<std::ffi::OsString> {
    match c {
        Component::Normal(n) => Some(n.to_owned()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    }
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

    let mut dev_bound = false;
    for (i, m) in bundle.spec.mounts().iter().flatten().enumerate() {
        mount_one(bundle, m, opts).map_err(|e| match e {
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
        create_devices(bundle, opts)?;
    }
    Ok(())
}

fn mount_one(bundle: &Bundle, m: &Mount, opts: &Options) -> Result<()> {
    let r = resolve(m)?;
    let dest = secure_join(&bundle.rootfs, m.destination());
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
        make_target(&dest, meta.is_dir())?;
        let mut flags = MsFlags::MS_BIND;
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(Some(&src), &dest, None::<&str>, flags, None::<&str>)
            .ctx(mount_err(&src.display().to_string(), &dest))?;
        let want = r.flags & !(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_REC);
        if !want.is_empty() {
            let keep = if opts.in_user_ns {
                locked_flags(&dest) & !MsFlags::MS_RDONLY
            } else {
                MsFlags::empty()
            };
            mount(
                None::<&str>,
                &dest,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | want | keep,
                None::<&str>,
            )
            .ctx(mount_err("bind remount", &dest))?;
        }
    } else {
        make_target(&dest, true)?;
        match typ {
            "cgroup" | "cgroup2" => mount_cgroup(&dest, r.flags)?,
            _ => {
                let source = m
                    .source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| typ.to_owned());
                let res = mount(
                    Some(source.as_str()),
                    &dest,
                    Some(typ),
                    r.flags,
                    (!data.is_empty()).then_some(data.as_str()),
                );
                match (typ, res) {
                    (_, Ok(())) => {}
                    // Without a private network (or ipc) namespace sysfs (mqueue) cannot be
                    // mounted fresh; fall back to the host's, as runc does.
                    ("sysfs", Err(nix::errno::Errno::EPERM)) => {
                        bind_fallback("/sys", &dest, r.flags)?
                    }
                    ("mqueue", Err(nix::errno::Errno::EPERM)) => {
                        bind_fallback("/dev/mqueue", &dest, r.flags)?
                    }
                    (_, Err(e)) => return Err(e).ctx(mount_err(typ, &dest)),
                }
            }
        }
    }
    for p in &r.propagation {
        mount(None::<&str>, &dest, None::<&str>, *p, None::<&str>)
            .ctx(mount_err("propagation", &dest))?;
    }
    Ok(())
}

fn bind_fallback(src: &str, dest: &Path, flags: MsFlags) -> Result<()> {
    mount(
        Some(src),
        dest,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(mount_err(src, dest))?;
    if flags.contains(MsFlags::MS_RDONLY) {
        let keep = locked_flags(dest);
        mount(
            None::<&str>,
            dest,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .ctx(mount_err("read-only remount", dest))?;
    }
    Ok(())
}

/// cgroup v2: one cgroup2 mount. v1: a tmpfs with one mount per hierarchy, which
/// inside a cgroup namespace shows the container's own cgroup as the root.
fn mount_cgroup(dest: &Path, flags: MsFlags) -> Result<()> {
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    let hierarchies = crate::cgroups::Cgroup::v1_hierarchies()?;
    if hierarchies.is_empty() {
        return mount(Some("cgroup2"), dest, Some("cgroup2"), flags, None::<&str>)
            .ctx(mount_err("cgroup2", dest));
    }
    mount(
        Some("tmpfs"),
        dest,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .ctx(mount_err("tmpfs for cgroups", dest))?;
    for h in &hierarchies {
        let sub = dest.join(&h.dir_name);
        fs::create_dir_all(&sub).ctx(|| format!("mkdir {}", sub.display()))?;
        mount(
            Some("cgroup"),
            &sub,
            Some("cgroup"),
            flags,
            Some(h.options.as_str()),
        )
        .ctx(mount_err(&format!("cgroup {}", h.options), &sub))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            dest,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
            Some("mode=755"),
        )
        .ctx(mount_err("read-only remount", dest))?;
    }
    Ok(())
}

/// Create the mount point: a directory, or an empty file for a file bind mount.
fn make_target(dest: &Path, dir: bool) -> Result<()> {
    if dir {
        return fs::create_dir_all(dest).ctx(|| format!("mkdir {}", dest.display()));
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).ctx(|| format!("mkdir {}", parent.display()))?;
    }
    if !dest.exists() {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dest)
            .ctx(|| format!("create {}", dest.display()))?;
    }
    Ok(())
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

fn create_devices(bundle: &Bundle, opts: &Options) -> Result<()> {
    let configured = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let mut all = default_devices();
    all.retain(|d| !configured.iter().any(|c| c.path() == d.path()));
    all.extend(configured);
    let dev = secure_join(&bundle.rootfs, Path::new("/dev"));
    fs::create_dir_all(&dev).ctx(|| format!("mkdir {}", dev.display()))?;
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let result = all
        .iter()
        .try_for_each(|d| create_device(&bundle.rootfs, d, opts.in_user_ns));
    nix::sys::stat::umask(old_umask);
    result?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let path = dev.join(link);
        if fs::symlink_metadata(&path).is_err() {
            symlink(target, &path).ctx(|| format!("symlink {}", path.display()))?;
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = symlink("/proc/kcore", dev.join("core"));
    }
    let ptmx = dev.join("ptmx");
    let _ = fs::remove_file(&ptmx);
    symlink("pts/ptmx", &ptmx).ctx(|| format!("symlink {}", ptmx.display()))?;
    if opts.terminal {
        make_target(&dev.join("console"), false)?;
    }
    Ok(())
}

fn create_device(rootfs: &Path, d: &LinuxDevice, in_user_ns: bool) -> Result<()> {
    let dest = secure_join(rootfs, d.path());
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).ctx(|| format!("mkdir {}", parent.display()))?;
    }
    if in_user_ns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        make_target(&dest, false)?;
        return mount(
            Some(d.path()),
            &dest,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(mount_err(&d.path().display().to_string(), &dest));
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
    let _ = fs::remove_file(&dest);
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    mknod(
        &dest,
        kind,
        mode,
        makedev(d.major() as u64, d.minor() as u64),
    )
    .ctx(|| format!("mknod {}", dest.display()))?;
    chown(
        &dest,
        d.uid().map(Uid::from_raw),
        d.gid().map(Gid::from_raw),
    )
    .ctx(|| format!("chown {}", dest.display()))?;
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

/// Bind the terminal's slave over /dev/console.
pub(crate) fn bind_console(slave_path: &Path) -> Result<()> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        make_target(console, false)?;
    }
    let _ = fs::set_permissions(slave_path, fs::Permissions::from_mode(0o620));
    mount(
        Some(slave_path),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(mount_err(&slave_path.display().to_string(), console))
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

    #[test]
    fn secure_join_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/etc", root.join("a/abs")).unwrap();
        symlink("../../../../..", root.join("a/up")).unwrap();
        assert_eq!(secure_join(root, Path::new("/a/b/c")), root.join("a/b/c"));
        assert_eq!(secure_join(root, Path::new("/../../x")), root.join("x"));
        assert_eq!(
            secure_join(root, Path::new("/a/abs/passwd")),
            root.join("etc/passwd")
        );
        assert_eq!(secure_join(root, Path::new("/a/up/etc")), root.join("etc"));
    }
}
