//! The overlay snapshotter against the real kernel: prepare, mount, diff,
//! commit, garbage collection, concurrency and hostile layers. Root tests.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bosun_image::snapshot::{Active, Layers, SnapshotError, Snapshotter, chain_ids, diff};
use bosun_image::{Compression, ImageStore, apply_layer, sha256_of};
use bosun_oci::{Digest, ImageRef};
use bosun_testkit::require_root;
use common::Layer;
use nix::mount::{MntFlags, umount2};
use oci_spec::image::{Descriptor, ImageConfiguration, MediaType};

/// A data directory with an image store and a snapshotter on it.
struct Store {
    dir: tempfile::TempDir,
    images: ImageStore,
    snapshots: Snapshotter,
}

impl Store {
    fn new() -> Self {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let images = ImageStore::open(dir.path()).unwrap();
        let snapshots = Snapshotter::open(dir.path()).unwrap();
        Self {
            dir,
            images,
            snapshots,
        }
    }

    fn root(&self) -> PathBuf {
        fs::canonicalize(self.dir.path().join("snapshots")).unwrap()
    }

    /// The numbered snapshot directories.
    fn snapshot_dirs(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        names.sort();
        names
    }

    fn temp_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    fn chain_links(&self) -> usize {
        fs::read_dir(self.root().join("chains")).unwrap().count()
    }

    fn import(&self, tar: &[u8], name: &str) -> Digest {
        self.images.import(tar, None, &image_ref(name)).unwrap()
    }

    /// A new image with `template`'s config and its first `keep` layers,
    /// plus `extra` uncompressed layers, each with the diff_id the config
    /// claims for it (its real one unless given).
    fn compose(
        &self,
        template: &Digest,
        keep: usize,
        extra: &[(Vec<u8>, Option<Digest>)],
        name: &str,
    ) -> Digest {
        let content = self.images.content();
        let mut manifest = self.images.image_manifest(template).unwrap();
        let config_digest: Digest = manifest.config().digest().to_string().parse().unwrap();
        let mut config =
            ImageConfiguration::from_reader(&content.get(&config_digest).unwrap()[..]).unwrap();
        manifest.layers_mut().truncate(keep);
        config.rootfs_mut().diff_ids_mut().truncate(keep);
        for (tar, diff_id) in extra {
            let blob = content.put(tar).unwrap();
            let diff_id = diff_id.clone().unwrap_or_else(|| sha256_of(tar));
            manifest.layers_mut().push(Descriptor::new(
                MediaType::ImageLayer,
                tar.len() as u64,
                oci_digest(&blob),
            ));
            config.rootfs_mut().diff_ids_mut().push(diff_id.to_string());
        }
        let config_bytes = config.to_string().unwrap().into_bytes();
        let config_digest = content.put(&config_bytes).unwrap();
        manifest.set_config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            oci_digest(&config_digest),
        ));
        let digest = content
            .put(manifest.to_string().unwrap().as_bytes())
            .unwrap();
        self.images.set_tag(&image_ref(name), &digest).unwrap();
        digest
    }

    fn mount(&self, active: &Active) -> MountGuard {
        let target = tempfile::tempdir().unwrap();
        active.mount(target.path()).unwrap();
        MountGuard { target }
    }
}

/// Unmounts on drop, so that a failing test leaves no mount behind.
struct MountGuard {
    target: tempfile::TempDir,
}

impl MountGuard {
    fn path(&self) -> &Path {
        self.target.path()
    }

    fn unmount(self, active: &Active) {
        active.unmount(self.path()).unwrap();
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        // Fails harmlessly (EINVAL) when the test unmounted it already.
        let _ = umount2(self.target.path(), MntFlags::MNT_DETACH);
    }
}

fn image_ref(name: &str) -> ImageRef {
    name.parse().unwrap()
}

fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.as_str().parse().unwrap()
}

/// A root file system: directories, files, a symlink, owned by root.
fn base_tar() -> Vec<u8> {
    Layer::owned_by(0, 0)
        .dir("etc")
        .file("etc/hostname", b"base\n")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .dir("d")
        .file("d/old", b"old")
        .dir("d/sub")
        .file("d/sub/older", b"older")
        .dir("keep")
        .file("keep/x", b"x")
        .file("gone.txt", b"to be whited out")
        .symlink("link", "etc/hostname")
        .finish()
}

/// The layer an application adds on the base, with a whiteout.
fn app_tar() -> Vec<u8> {
    Layer::owned_by(0, 0)
        .dir("app")
        .file_mode("app/run", b"#!/bin/sh\necho app\n", 0o755)
        .file(".wh.gone.txt", b"")
        .finish()
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap()
}

fn exists(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok()
}

#[test]
fn images_sharing_a_base_share_its_snapshot_and_mount_as_their_layers() {
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let app = store.compose(&base, 1, &[(app_tar(), None)], "app");

    let base_layers = store.snapshots.prepare(&store.images, &base).unwrap();
    let app_layers = store.snapshots.prepare(&store.images, &app).unwrap();
    assert_eq!(base_layers.chain_ids().len(), 1);
    assert_eq!(app_layers.chain_ids().len(), 2);
    assert_eq!(app_layers.chain_ids()[0], base_layers.chain_ids()[0]);
    let details = store.images.inspect("app").unwrap();
    let diff_ids: Vec<Digest> = details
        .config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse().unwrap())
        .collect();
    assert_eq!(app_layers.chain_ids(), chain_ids(&diff_ids));
    // Topmost first; the base's directory is the same one.
    assert_eq!(app_layers.lowers()[1], base_layers.lowers()[0]);
    assert_eq!(store.snapshot_dirs(), ["1", "2"]);
    assert!(store.temp_dirs().is_empty());
    // Preparing again extracts nothing.
    assert_eq!(
        store.snapshots.prepare(&store.images, &app).unwrap(),
        app_layers
    );
    assert_eq!(store.snapshot_dirs().len(), 2);

    // The app's own snapshot holds its diff in overlay format.
    let app_dir = &app_layers.lowers()[0];
    let whiteout = fs::symlink_metadata(app_dir.join("gone.txt")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert!(!exists(app_dir, "etc"));

    let active = store.snapshots.create_active("c1", &app_layers).unwrap();
    let mounted = store.mount(&active);
    let root = mounted.path();
    assert_eq!(read(root, "etc/hostname"), "base\n");
    assert_eq!(read(root, "app/run"), "#!/bin/sh\necho app\n");
    assert_eq!(read(root, "link"), "base\n");
    assert!(
        !exists(root, "gone.txt"),
        "the app layer's whiteout hides it"
    );
    mounted.unmount(&active);
    store.snapshots.remove_active("c1").unwrap();
}

/// What the tree holds at every path below the root: type, owner, mode,
/// content or link target, and mtime (directories' included).
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let what = if kind.is_dir() {
                walk(root, &path, out);
                "dir".to_owned()
            } else if kind.is_symlink() {
                format!("symlink {:?}", fs::read_link(&path).unwrap())
            } else if kind.is_file() {
                format!("file {:?}", fs::read(&path).unwrap())
            } else if kind.is_fifo() {
                "fifo".to_owned()
            } else {
                format!("special {}", meta.rdev())
            };
            let mtime = if kind.is_symlink() { 0 } else { meta.mtime() };
            out.insert(
                path.strip_prefix(root).unwrap().to_owned(),
                format!(
                    "{what} {}:{} {:o} mtime {mtime}",
                    meta.uid(),
                    meta.gid(),
                    meta.permissions().mode() & 0o7777
                ),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The entries of a layer tar: name → (type, link target).
fn entries(tar: &[u8]) -> BTreeMap<String, (tar::EntryType, Option<String>, Vec<String>)> {
    let mut archive = tar::Archive::new(tar);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut pax = Vec::new();
        if let Some(extensions) = entry.pax_extensions().unwrap() {
            for ext in extensions {
                pax.push(ext.unwrap().key().unwrap().to_owned());
            }
        }
        let kind = entry.header().entry_type();
        let mut rest = Vec::new();
        entry.read_to_end(&mut rest).unwrap();
        out.insert(name, (kind, link, pax));
    }
    out
}

#[test]
fn the_diff_of_an_upper_is_the_layer_that_reproduces_the_container() {
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let app = store.compose(&base, 1, &[(app_tar(), None)], "app");
    let layers = store.snapshots.prepare(&store.images, &app).unwrap();
    let active = store.snapshots.create_active("work", &layers).unwrap();
    let mounted = store.mount(&active);
    let root = mounted.path();

    fs::write(root.join("new.txt"), b"new").unwrap();
    fs::hard_link(root.join("new.txt"), root.join("new-link")).unwrap();
    symlink("new.txt", root.join("new-symlink")).unwrap();
    nix::unistd::mkfifo(
        &root.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &root.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    fs::remove_file(root.join("etc/passwd")).unwrap();
    fs::remove_dir_all(root.join("d")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/fresh"), b"fresh").unwrap();
    fs::set_permissions(root.join("etc/hostname"), fs::Permissions::from_mode(0o600)).unwrap();
    xattr::set(root.join("new.txt"), "user.note", b"kept").unwrap();
    // redirect_dir=off: a lower directory cannot be renamed (tools copy).
    let err = fs::rename(root.join("keep"), root.join("kept")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EXDEV), "{err}");
    mounted.unmount(&active);

    let mut layer = Vec::new();
    let stats = diff(active.upper(), &mut layer).unwrap();
    let mut again = Vec::new();
    diff(active.upper(), &mut again).unwrap();
    assert!(layer == again, "the same upper gives the same bytes");
    assert_eq!(
        (
            stats.whiteouts,
            stats.opaques,
            stats.hardlinks,
            stats.fifos,
            stats.devices
        ),
        (1, 1, 1, 1, 1)
    );

    let entries = entries(&layer);
    use tar::EntryType as T;
    assert_eq!(entries["etc/.wh.passwd"].0, T::Regular);
    assert_eq!(entries["d/.wh..wh..opq"].0, T::Regular);
    assert_eq!(entries["d/fresh"].0, T::Regular);
    // "new-link" sorts first, so it holds the data and "new.txt" links to it.
    assert_eq!(entries["new-link"].0, T::Regular);
    assert_eq!(
        entries["new.txt"],
        (T::Link, Some("new-link".to_owned()), vec![])
    );
    assert_eq!(entries["new-link"].2, ["SCHILY.xattr.user.note"]);
    assert_eq!(entries["new-symlink"].1.as_deref(), Some("new.txt"));
    assert_eq!(entries["pipe"].0, T::Fifo);
    assert_eq!(entries["null"].0, T::Char);
    assert_eq!(entries["etc/hostname"].0, T::Regular, "copied up by chmod");
    assert!(!entries.contains_key("keep/x") && !entries.contains_key("app/run"));
    for (name, (_, _, pax)) in &entries {
        assert!(
            pax.iter().all(|k| !k.contains("overlay")),
            "{name}: {pax:?}"
        );
    }

    // The container's view, remounted, against the image unpacked with the
    // diff applied on top: the same tree.
    let unpacked = tempfile::tempdir().unwrap();
    store.images.unpack("app", unpacked.path()).unwrap();
    apply_layer(unpacked.path(), &layer[..], Compression::None).unwrap();
    let mounted = store.mount(&active);
    let container = tree(mounted.path());
    mounted.unmount(&active);
    let applied = tree(unpacked.path());
    assert_eq!(container, applied);
    assert!(container.contains_key(Path::new("keep/x")));
    assert!(!container.contains_key(Path::new("d/old")));
    assert!(!container.contains_key(Path::new("etc/passwd")));
}

#[test]
fn a_committed_upper_is_the_parent_of_the_next_step() {
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let base_layers = store.snapshots.prepare(&store.images, &base).unwrap();

    // Step 1: a RUN over the base.
    let step1 = store
        .snapshots
        .create_active("step1", &base_layers)
        .unwrap();
    let mounted = store.mount(&step1);
    fs::write(mounted.path().join("step1.txt"), b"one").unwrap();
    fs::remove_file(mounted.path().join("keep/x")).unwrap();

    // Not while mounted: the active stays.
    let err = store.snapshots.commit(step1, &sha256_of(b"x")).unwrap_err();
    assert!(matches!(err, SnapshotError::Mounted { .. }), "{err}");
    let step1 = store.snapshots.active("step1").unwrap();
    let err = store.snapshots.remove_active("step1").unwrap_err();
    assert!(matches!(err, SnapshotError::Mounted { .. }), "{err}");
    let err = step1.mount(Path::new("/mnt")).unwrap_err();
    assert!(matches!(err, SnapshotError::Mounted { .. }), "{err}");
    mounted.unmount(&step1);

    let mut tar = Vec::new();
    diff(step1.upper(), &mut tar).unwrap();
    let diff_id = sha256_of(&tar);
    let upper = step1.upper().to_owned();
    let step1_layers = store.snapshots.commit(step1, &diff_id).unwrap();
    assert_eq!(step1_layers.chain_ids()[..1], base_layers.chain_ids()[..]);
    assert_eq!(
        step1_layers.top(),
        chain_ids(&[base_layers.chain_ids()[0].clone(), diff_id.clone()]).last()
    );
    assert!(!upper.exists(), "the upper was moved, not copied");
    assert!(matches!(
        store.snapshots.active("step1"),
        Err(SnapshotError::ActiveNotFound(_))
    ));
    let committed = &step1_layers.lowers()[0];
    let whiteout = fs::symlink_metadata(committed.join("keep/x")).unwrap();
    assert!(whiteout.file_type().is_char_device());

    // Step 2 stacks on step 1 and sees both.
    let step2 = store
        .snapshots
        .create_active("step2", &step1_layers)
        .unwrap();
    let mounted = store.mount(&step2);
    assert_eq!(read(mounted.path(), "step1.txt"), "one");
    assert_eq!(read(mounted.path(), "etc/hostname"), "base\n");
    assert!(!exists(mounted.path(), "keep/x"));
    fs::write(mounted.path().join("step2.txt"), b"two").unwrap();
    assert_eq!(read(mounted.path(), "step2.txt"), "two");
    mounted.unmount(&step2);

    // The same chain committed again (another build made the same layer):
    // nothing new, and this upper is dropped.
    let dirs = store.snapshot_dirs();
    let again = store
        .snapshots
        .create_active("again", &base_layers)
        .unwrap();
    let again_upper = again.upper().to_owned();
    assert_eq!(
        store.snapshots.commit(again, &diff_id).unwrap(),
        step1_layers
    );
    assert_eq!(store.snapshot_dirs(), dirs);
    assert!(!again_upper.exists());
    store.snapshots.remove_active("step2").unwrap();
    assert!(store.temp_dirs().is_empty());
}

#[test]
fn an_image_of_no_layers_mounts_an_empty_root_and_commits() {
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let scratch = store.compose(&base, 0, &[], "scratch");
    let layers = store.snapshots.prepare(&store.images, &scratch).unwrap();
    assert!(layers.is_empty() && layers.lowers().is_empty());
    assert_eq!(layers, Layers::default());

    let active = store.snapshots.create_active("scratch", &layers).unwrap();
    let mounted = store.mount(&active);
    assert_eq!(fs::read_dir(mounted.path()).unwrap().count(), 0);
    fs::write(mounted.path().join("hello"), b"hi").unwrap();
    mounted.unmount(&active);
    assert_eq!(
        fs::read_dir(store.root().join("empty")).unwrap().count(),
        0,
        "the shared empty lower stays empty"
    );
    let mut tar = Vec::new();
    diff(active.upper(), &mut tar).unwrap();
    let diff_id = sha256_of(&tar);
    let committed = store.snapshots.commit(active, &diff_id).unwrap();
    assert_eq!(committed.chain_ids(), [diff_id]);
    assert_eq!(read(&committed.lowers()[0], "hello"), "hi");
}

#[test]
fn unmount_and_keys_are_checked() {
    let store = Store::new();
    let active = store
        .snapshots
        .create_active("k", &Layers::default())
        .unwrap();
    let err = store
        .snapshots
        .create_active("k", &Layers::default())
        .unwrap_err();
    assert!(matches!(err, SnapshotError::ActiveExists(_)), "{err}");
    let err = store
        .snapshots
        .create_active("../k", &Layers::default())
        .unwrap_err();
    assert!(matches!(err, SnapshotError::BadKey { .. }), "{err}");

    let elsewhere = tempfile::tempdir().unwrap();
    let err = active.unmount(elsewhere.path()).unwrap_err();
    assert!(matches!(err, SnapshotError::NotMounted { .. }), "{err}");
    let mounted = store.mount(&active);
    let err = active.unmount(elsewhere.path()).unwrap_err();
    assert!(matches!(err, SnapshotError::NotMounted { .. }), "{err}");
    mounted.unmount(&active);

    // A parent that does not exist.
    let err = store
        .snapshots
        .layers(&[sha256_of(b"never prepared")])
        .unwrap_err();
    assert!(matches!(err, SnapshotError::ChainNotFound(_)), "{err}");
    store.snapshots.remove_active("k").unwrap();
    let err = store.snapshots.remove_active("k").unwrap_err();
    assert!(matches!(err, SnapshotError::ActiveNotFound(_)), "{err}");
}

#[test]
fn concurrent_prepares_of_one_image_make_one_snapshot() {
    let store = Store::new();
    // Big enough that the two extractions overlap.
    let mut big = Layer::owned_by(0, 0);
    for i in 0..400 {
        big = big.file(&format!("f/{i}"), &[b'x'; 4096]);
    }
    let base = store.import(&base_tar(), "base");
    let image = store.compose(&base, 1, &[(big.finish(), None)], "big");
    for _ in 0..3 {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                // A store of its own, as another process would have.
                let images = ImageStore::open(store.dir.path()).unwrap();
                let snapshots = Snapshotter::open(store.dir.path()).unwrap();
                let barrier = Arc::clone(&barrier);
                let image = image.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    snapshots.prepare(&images, &image).unwrap()
                })
            })
            .collect();
        let results: Vec<Layers> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results[0], results[1]);
        assert_eq!(store.snapshot_dirs(), ["1", "2"]);
        assert_eq!(store.chain_links(), 2);
        assert!(store.temp_dirs().is_empty(), "{:?}", store.temp_dirs());
        assert_eq!(
            fs::read_dir(results[0].lowers()[0].join("f"))
                .unwrap()
                .count(),
            400
        );
        // Start over for the next round.
        store.snapshots.gc(&BTreeSet::new()).unwrap();
        assert!(store.snapshot_dirs().is_empty());
    }
}

/// Asserts that a failed prepare left nothing: no snapshot, link or temp dir.
fn assert_nothing_left(store: &Store) {
    assert!(
        store.snapshot_dirs().is_empty(),
        "{:?}",
        store.snapshot_dirs()
    );
    assert_eq!(store.chain_links(), 0);
    assert!(store.temp_dirs().is_empty(), "{:?}", store.temp_dirs());
}

#[test]
fn a_hostile_layer_fails_prepare_and_leaves_nothing() {
    let store = Store::new();
    let escape = Layer::owned_by(0, 0)
        .file("ok", b"ok")
        .file("../escape", b"out")
        .finish();
    let image = store.import(&escape, "escape");
    let err = store.snapshots.prepare(&store.images, &image).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Layer { source, .. }
            if matches!(**source, bosun_image::ImageError::Layer { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("../escape"), "{err}");
    assert_eq!(err.kind(), bosun_oci::ErrorKind::Invalid);
    assert_nothing_left(&store);
    assert!(!store.dir.path().join("snapshots/tmp/escape").exists());
}

#[test]
fn a_wrong_diff_id_or_a_corrupt_blob_fails_prepare_and_leaves_nothing() {
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let lying = store.compose(
        &base,
        0,
        &[(app_tar(), Some(sha256_of(b"something else")))],
        "lying",
    );
    let err = store.snapshots.prepare(&store.images, &lying).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Layer { source, .. }
            if matches!(**source, bosun_image::ImageError::DiffIdMismatch { .. })),
        "{err}"
    );
    assert_nothing_left(&store);

    // The base's layer blob damaged on disk (same length, other bytes).
    let manifest = store.images.image_manifest(&base).unwrap();
    let blob: Digest = manifest.layers()[0].digest().to_string().parse().unwrap();
    let path = store
        .dir
        .path()
        .join("content/blobs/sha256")
        .join(blob.hex());
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let err = store.snapshots.prepare(&store.images, &base).unwrap_err();
    assert!(err.to_string().contains("corrupt on disk"), "{err}");
    assert!(err.to_string().contains(blob.hex()), "{err}");
    assert_nothing_left(&store);
}

#[test]
fn gc_keeps_live_chains_and_parents_of_actives() {
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let app = store.compose(&base, 1, &[(app_tar(), None)], "app");
    let app_layers = store.snapshots.prepare(&store.images, &app).unwrap();
    let [base_chain, app_chain] = app_layers.chain_ids() else {
        panic!("two layers");
    };

    // An active over the app keeps both its layers, with nothing live.
    let pin = store.snapshots.create_active("pin", &app_layers).unwrap();
    let stats = store.snapshots.gc(&BTreeSet::new()).unwrap();
    assert!(stats.removed.is_empty(), "{stats:?}");
    assert_eq!(store.snapshot_dirs().len(), 2);
    let mounted = store.mount(&pin);
    assert_eq!(read(mounted.path(), "app/run"), "#!/bin/sh\necho app\n");
    mounted.unmount(&pin);
    store.snapshots.remove_active("pin").unwrap();

    // Leftovers of crashed processes: a temp dir nobody holds, a snapshot
    // directory no chain names. A temp dir still held is kept.
    let tmp = store.root().join("tmp");
    fs::create_dir_all(tmp.join("4000000-0/fs/etc")).unwrap();
    fs::create_dir_all(store.root().join("77/fs")).unwrap();
    fs::create_dir(tmp.join("4000000-1")).unwrap();
    let held = File::open(tmp.join("4000000-1")).unwrap();
    held.lock().unwrap();

    // Only the base is live now.
    let live = BTreeSet::from([base_chain.clone()]);
    let stats = store.snapshots.gc(&live).unwrap();
    assert_eq!(stats.removed, std::slice::from_ref(app_chain));
    assert_eq!((stats.orphans, stats.temp_dirs), (1, 1));
    assert_eq!(store.snapshot_dirs(), ["1"]);
    assert_eq!(store.temp_dirs(), [tmp.join("4000000-1")]);
    assert_eq!(
        store
            .snapshots
            .layers(std::slice::from_ref(base_chain))
            .unwrap()
            .lowers()
            .len(),
        1
    );
    assert!(matches!(
        store.snapshots.layers(app_layers.chain_ids()),
        Err(SnapshotError::ChainNotFound(c)) if c == *app_chain
    ));
    drop(held);

    // Nothing live: all gone, and preparing again brings the image back.
    store.snapshots.gc(&BTreeSet::new()).unwrap();
    assert!(store.snapshot_dirs().is_empty() && store.temp_dirs().is_empty());
    assert_eq!(store.chain_links(), 0);
    let again = store.snapshots.prepare(&store.images, &app).unwrap();
    assert_eq!(again.chain_ids(), app_layers.chain_ids());
}

#[test]
fn a_layer_with_an_opaque_root_hides_every_layer_below() {
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let replace = Layer::owned_by(0, 0)
        .file(".wh..wh..opq", b"")
        .file("only", b"only")
        .finish();
    let image = store.compose(&base, 1, &[(replace, None), (app_tar(), None)], "replace");
    let layers = store.snapshots.prepare(&store.images, &image).unwrap();
    assert_eq!(layers.chain_ids().len(), 3);
    assert_eq!(layers.lowers().len(), 2, "the base is not stacked");
    let active = store.snapshots.create_active("c", &layers).unwrap();
    let mounted = store.mount(&active);
    let mut names: Vec<String> = fs::read_dir(mounted.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["app", "only"]);
    mounted.unmount(&active);
    // Unpacked (merged) the image looks the same.
    let unpacked = tempfile::tempdir().unwrap();
    store.images.unpack("replace", unpacked.path()).unwrap();
    let mut names: Vec<String> = fs::read_dir(unpacked.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["app", "only"]);
}

#[test]
fn diff_refuses_what_a_layer_cannot_say_and_drops_overlay_bookkeeping() {
    require_root();
    let upper = tempfile::tempdir().unwrap();
    let root = upper.path();
    fs::write(root.join("file"), b"f").unwrap();
    xattr::set(root.join("file"), "trusted.overlay.origin", b"\0fh").unwrap();
    xattr::set(root.join("file"), "user.overlay.x", b"1").unwrap();
    xattr::set(root.join("file"), "trusted.other", b"kept").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let mut tar = Vec::new();
    let stats = diff(root, &mut tar).unwrap();
    assert_eq!((stats.files, stats.skipped, stats.xattrs), (1, 1, 1));
    let entries = entries(&tar);
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["file"]);
    assert_eq!(entries["file"].2, ["SCHILY.xattr.trusted.other"]);

    let refused = |setup: &dyn Fn(&Path), what: &str| {
        let upper = tempfile::tempdir().unwrap();
        setup(upper.path());
        let err = diff(upper.path(), std::io::sink()).unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Unsupported { path, .. } if path.starts_with(upper.path())),
            "{what}: {err}"
        );
        assert!(err.to_string().contains(what), "{what}: {err}");
    };
    refused(
        &|root| {
            fs::create_dir(root.join("moved")).unwrap();
            xattr::set(root.join("moved"), "trusted.overlay.redirect", b"/orig").unwrap();
        },
        "redirect_dir",
    );
    refused(
        &|root| {
            fs::write(root.join("meta"), b"").unwrap();
            xattr::set(root.join("meta"), "trusted.overlay.metacopy", b"").unwrap();
        },
        "metacopy",
    );
    refused(
        &|root| fs::write(root.join(".wh.sneaky"), b"").unwrap(),
        "whiteout",
    );
}

/// Set in the child process of the crash test: the data directory.
const CRASH_CHILD: &str = "BOSUN_SNAPSHOT_CRASH_CHILD";

#[test]
fn a_prepare_killed_mid_extract_leaves_a_temp_dir_that_gc_removes() {
    if let Ok(dir) = std::env::var(CRASH_CHILD) {
        // The child: prepare until killed.
        let images = ImageStore::open(Path::new(&dir)).unwrap();
        let snapshots = Snapshotter::open(Path::new(&dir)).unwrap();
        let image = images.resolve("big").unwrap();
        snapshots.prepare(&images, &image).unwrap();
        return;
    }
    let store = Store::new();
    let mut big = Layer::owned_by(0, 0);
    for i in 0..5_000 {
        big = big.file(&format!("f/{i}"), b"x");
    }
    store.import(&big.finish(), "big");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_prepare_killed_mid_extract_leaves_a_temp_dir_that_gc_removes",
        ])
        .env(CRASH_CHILD, store.dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child is writing files into its temp dir.
    let started = std::time::Instant::now();
    let extracting = loop {
        let busy = store
            .temp_dirs()
            .into_iter()
            .find(|t| fs::read_dir(t.join("fs/f")).is_ok_and(|mut files| files.nth(100).is_some()));
        if let Some(temp) = busy {
            break temp;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the child never started extracting"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    // SIGKILL: nothing of the child runs after this.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        store.snapshot_dirs().is_empty(),
        "it was killed before publishing"
    );
    assert_eq!(store.chain_links(), 0);
    assert_eq!(store.temp_dirs(), [extracting]);

    let stats = store.snapshots.gc(&BTreeSet::new()).unwrap();
    assert_eq!(stats.temp_dirs, 1);
    assert!(store.temp_dirs().is_empty());
}

#[test]
fn an_idmapped_mount_shows_the_image_as_the_mapped_root_and_leaves_the_layers_alone() {
    use bosun_image::snapshot::{IdMap, IdRange};
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let app = store.compose(&base, 1, &[(app_tar(), None)], "app");
    let layers = store.snapshots.prepare(&store.images, &app).unwrap();
    let range = |outside| {
        vec![IdRange {
            inside: 0,
            outside,
            count: 65536,
        }]
    };
    let map = IdMap::new(range(200_000), range(300_000)).unwrap();
    assert_eq!(map.root(), (200_000, 300_000));
    let active = store.snapshots.create_active("c1", &layers).unwrap();
    let target = tempfile::tempdir().unwrap();
    active.mount_idmapped(target.path(), &map).unwrap();
    let guard = MountGuard { target };
    let root = guard.path();
    let owner = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    // Seen from the host, the image belongs to the mapped root...
    assert_eq!(read(root, "etc/hostname"), "base\n");
    assert_eq!(owner(&root.join("etc/hostname")), (200_000, 300_000));
    assert_eq!(owner(&root.join("app/run")), (200_000, 300_000));
    assert_eq!(owner(root), (200_000, 300_000));
    assert!(!exists(root, "gone.txt"));
    // ...while the layers on disk keep the image's own ids.
    assert_eq!(owner(&layers.lowers()[1].join("etc/hostname")), (0, 0));
    // A copy-up keeps the mapped owner in the upper.
    fs::write(root.join("etc/hostname"), "changed\n").unwrap();
    assert_eq!(
        owner(&active.upper().join("etc/hostname")),
        (200_000, 300_000)
    );
    assert_eq!(read(&layers.lowers()[1], "etc/hostname"), "base\n");
    // The idmapped lowers were only attached while the overlay mounted.
    let idmap = store.root().join("idmap");
    assert_eq!(fs::read_dir(&idmap).unwrap().count(), 0);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .collect();
    assert!(
        !points
            .iter()
            .any(|p| p.starts_with(idmap.to_str().unwrap())),
        "{mountinfo}"
    );
    guard.unmount(&active);
    store.snapshots.remove_active("c1").unwrap();

    // A map without the container's root is refused before anything is made.
    let err = IdMap::new(
        vec![IdRange {
            inside: 1,
            outside: 200_000,
            count: 10,
        }],
        range(300_000),
    )
    .unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
}

/// A layer of many owners and kinds, for the copies of the remap fallback:
/// a user's files, a set-uid binary, a hard link, a fifo, an opaque
/// directory and a whiteout.
fn mixed_tar() -> Vec<u8> {
    Layer::owned_by(1000, 1001)
        .dir("home")
        .file("home/notes", b"mine")
        .file_mode("home/su", b"#!/bin/sh\n", 0o4755)
        .hardlink("home/again", "home/notes")
        .special(tar::EntryType::Fifo, "home/pipe")
        .symlink("home/link", "notes")
        .dir("d")
        .file("d/.wh..wh..opq", b"")
        .file("d/new", b"new")
        .file(".wh.gone.txt", b"")
        .finish()
}

#[test]
fn copied_layers_show_the_image_as_the_mapped_root_once_per_mapping() {
    use bosun_image::snapshot::{IdMap, IdRange, LayerMapping};
    let store = Store::new();
    let base = store.import(&base_tar(), "base");
    let app = store.compose(&base, 1, &[(mixed_tar(), None)], "app");
    let layers = store.snapshots.prepare(&store.images, &app).unwrap();
    let range = |outside| {
        vec![IdRange {
            inside: 0,
            outside,
            count: 65536,
        }]
    };
    let map = || {
        IdMap::new(range(200_000), range(300_000))
            .unwrap()
            .with_layers(LayerMapping::Copy)
    };
    let owner = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    let first = map();
    assert!(first.copies_layers());
    let active = store.snapshots.create_active("c1", &layers).unwrap();
    let target = tempfile::tempdir().unwrap();
    active.mount_idmapped(target.path(), &first).unwrap();
    let guard = MountGuard { target };
    let root = guard.path();
    // The container's ids, shifted: root's files are the mapped root's, the
    // user's are its mapped ids; kinds, modes, links and whiteouts survive.
    assert_eq!(read(root, "etc/hostname"), "base\n");
    assert_eq!(owner(&root.join("etc/hostname")), (200_000, 300_000));
    assert_eq!(owner(root), (200_000, 300_000));
    assert_eq!(owner(&root.join("home/notes")), (201_000, 301_001));
    assert_eq!(owner(&root.join("home/link")), (201_000, 301_001));
    let su = fs::metadata(root.join("home/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755, "chown must not drop set-uid");
    assert_eq!(
        fs::metadata(root.join("home/again")).unwrap().ino(),
        fs::metadata(root.join("home/notes")).unwrap().ino(),
        "a hard link stays one file"
    );
    assert!(
        fs::symlink_metadata(root.join("home/pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        fs::read_link(root.join("home/link")).unwrap(),
        Path::new("notes")
    );
    assert!(!exists(root, "gone.txt"), "the whiteout still hides it");
    assert!(
        !exists(root, "d/old"),
        "the opaque directory still hides the base's"
    );
    assert_eq!(read(root, "d/new"), "new");
    // The snapshots on disk keep the image's own ids; the copies are apart.
    assert_eq!(owner(&layers.lowers()[1].join("etc/hostname")), (0, 0));
    assert_eq!(owner(&layers.lowers()[0].join("home/notes")), (1000, 1001));
    let remap = store.root().join("remap");
    let keys: Vec<PathBuf> = fs::read_dir(&remap)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let copies = || -> BTreeMap<String, u64> {
        fs::read_dir(&keys[0])
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().ino(),
                )
            })
            .collect()
    };
    let made = copies();
    assert_eq!(made.len(), 2, "one copy per layer: {made:?}");
    guard.unmount(&active);

    // A second container with the same mapping (another engine's IdMap too)
    // uses the same copies: nothing is copied again.
    let active2 = store.snapshots.create_active("c2", &layers).unwrap();
    let target = tempfile::tempdir().unwrap();
    active2.mount_idmapped(target.path(), &map()).unwrap();
    let guard = MountGuard { target };
    assert_eq!(owner(&guard.path().join("home/notes")), (201_000, 301_001));
    assert_eq!(copies(), made);
    guard.unmount(&active2);
    store.snapshots.remove_active("c1").unwrap();
    store.snapshots.remove_active("c2").unwrap();

    // The copies go with their snapshots, and nothing is left in tmp.
    store.snapshots.gc(&BTreeSet::new()).unwrap();
    assert!(store.snapshot_dirs().is_empty());
    assert_eq!(fs::read_dir(&keys[0]).unwrap().count(), 0);
    assert!(store.temp_dirs().is_empty());
}
