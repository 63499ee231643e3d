//! `bosun engine --userns-remap`: every container gets a user namespace whose
//! root is an unprivileged host id taken from a subordinate range in
//! `/etc/subuid` and `/etc/subgid`, as Docker's `--userns-remap` does.
//!
//! `default` means the user and group `bosunremap`, made on first use with a
//! range of 65536 ids in each file (the first free one at or above 100000);
//! a named user or uid uses the ranges it already has. Ranges of a user are
//! mapped one after another from container id 0, in file order.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bosun_image::snapshot::IdRange;

use crate::error::{EngineError, Result};

/// The user and group `--userns-remap default` makes and uses.
pub const DEFAULT_REMAP_USER: &str = "bosunremap";

/// Where a range for a new user starts at the earliest, and how big it is
/// (the `SUB_UID_MIN` and `SUB_UID_COUNT` of login.defs).
const FIRST_ID: u64 = 100_000;
const RANGE: u64 = 65_536;
/// The kernel takes at most this many lines in a uid or gid map.
const MAX_RANGES: usize = 340;

/// `--userns-remap default|USER[:GROUP]|UID[:GID]`, parsed; nothing is
/// looked up yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsRemap {
    user: String,
    group: Option<String>,
    /// `default`: make the user and its ranges when missing.
    create: bool,
}

impl FromStr for UsernsRemap {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        if s == "default" {
            return Ok(Self {
                user: DEFAULT_REMAP_USER.into(),
                group: Some(DEFAULT_REMAP_USER.into()),
                create: true,
            });
        }
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let valid = |n: &str| {
            !n.is_empty()
                && n.len() <= 32
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !valid(user) || group.is_some_and(|g| !valid(g)) {
            return Err(EngineError::Invalid(format!(
                "--userns-remap {s:?}: expected default, USER[:GROUP] or UID[:GID]"
            )));
        }
        Ok(Self {
            user: user.into(),
            group: group.map(str::to_owned),
            create: false,
        })
    }
}

/// A resolved remapping: who, and the ranges the container's ids map to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl Remap {
    /// The host ids of the container's root.
    pub(crate) fn root(&self) -> (u32, u32) {
        (self.uids[0].outside, self.gids[0].outside)
    }
}

/// The files subordinate ids are read from (and, for `default`, written to).
#[derive(Debug, Clone)]
pub(crate) struct SubIdFiles {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
}

impl Default for SubIdFiles {
    fn default() -> Self {
        Self {
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
        }
    }
}

/// Resolves `spec` against the system's users and subordinate id files,
/// making the default user and its ranges first when `spec` is `default`.
pub(crate) fn resolve(spec: &UsernsRemap, files: &SubIdFiles) -> Result<Remap> {
    if spec.create {
        ensure_user(&spec.user)?;
    }
    let (uname, uid) = lookup_user(&spec.user)?;
    let (gname, gid) = match &spec.group {
        Some(g) => lookup_group(g)?,
        // Docker looks the user's ranges up in /etc/subgid too.
        None => (uname.clone(), Some(uid)),
    };
    if spec.create {
        ensure_range(&files.subuid, &uname)?;
        ensure_range(&files.subgid, &gname)?;
    }
    let uids = ranges_of(&files.subuid, &uname, Some(uid))?;
    let gids = ranges_of(&files.subgid, &gname, gid)?;
    Ok(Remap { uids, gids })
}

/// (name, uid) of a user named or numbered `user`. A uid without a passwd
/// entry is still usable: subordinate files may name users by number.
fn lookup_user(user: &str) -> Result<(String, u32)> {
    let found = match user.parse::<u32>() {
        Ok(n) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(n))
            .ok()
            .flatten()
            .map_or_else(|| (n.to_string(), n), |u| (u.name, n)),
        Err(_) => match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => (u.name, u.uid.as_raw()),
            _ => {
                return Err(EngineError::Invalid(format!(
                    "--userns-remap: no user {user:?} on this host"
                )));
            }
        },
    };
    Ok(found)
}

fn lookup_group(group: &str) -> Result<(String, Option<u32>)> {
    match group.parse::<u32>() {
        Ok(n) => Ok(nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(n))
            .ok()
            .flatten()
            .map_or_else(|| (n.to_string(), Some(n)), |g| (g.name, Some(n)))),
        Err(_) => match nix::unistd::Group::from_name(group) {
            Ok(Some(g)) => Ok((g.name, Some(g.gid.as_raw()))),
            _ => Err(EngineError::Invalid(format!(
                "--userns-remap: no group {group:?} on this host"
            ))),
        },
    }
}

/// Makes the system user (and its group) `name` unless it exists, with
/// Debian's `useradd`: a login-less account with no home.
fn ensure_user(name: &str) -> Result<()> {
    let user = || nix::unistd::User::from_name(name).ok().flatten().is_some();
    let both = || user() && nix::unistd::Group::from_name(name).ok().flatten().is_some();
    if both() {
        return Ok(());
    }
    let mut stderr = String::new();
    if !user() {
        let out = std::process::Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .output()
            .map_err(|e| EngineError::internal(format!("run useradd to create {name}"), e))?;
        stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    }
    // Another engine's useradd may be between writing /etc/passwd and
    // /etc/group; only a pair still incomplete after it is an error.
    for _ in 0..100 {
        if both() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(EngineError::Internal(format!(
        "--userns-remap default: could not create the user and group {name}: {stderr}"
    )))
}

/// One line of a subordinate id file: `owner:start:count`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    owner: String,
    start: u64,
    count: u64,
}

fn parse_entries(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            Some(Entry {
                owner: owner.to_owned(),
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .collect()
}

/// The ranges `name` (or its number) owns in `file`, mapped one after
/// another from container id 0.
fn ranges_of(file: &Path, name: &str, id: Option<u32>) -> Result<Vec<IdRange>> {
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(EngineError::internal(file.display(), e)),
    };
    let number = id.map(|n| n.to_string());
    let mut out = Vec::new();
    let mut inside: u64 = 0;
    for e in parse_entries(&text) {
        if e.owner != name && Some(&e.owner) != number.as_ref() {
            continue;
        }
        let fits = |v: u64| u32::try_from(v).is_ok();
        if e.count == 0 || !fits(e.start + e.count - 1) || !fits(inside + e.count - 1) {
            return Err(EngineError::Invalid(format!(
                "{}: range {}:{}:{} of {name} does not fit in 32-bit ids",
                file.display(),
                e.owner,
                e.start,
                e.count
            )));
        }
        out.push(IdRange {
            inside: inside as u32,
            outside: e.start as u32,
            count: e.count as u32,
        });
        inside += e.count;
    }
    if out.is_empty() {
        return Err(EngineError::Invalid(format!(
            "--userns-remap: {name} has no subordinate range in {}; add one \
             (for example `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}`)",
            file.display()
        )));
    }
    if out.len() > MAX_RANGES {
        return Err(EngineError::Invalid(format!(
            "--userns-remap: {name} has {} ranges in {}; the kernel maps at most {MAX_RANGES}",
            out.len(),
            file.display()
        )));
    }
    Ok(out)
}

/// The first `RANGE` ids at or above `FIRST_ID` that no entry overlaps.
fn first_free(entries: &[Entry]) -> u64 {
    let mut taken: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (e.start, e.start.saturating_add(e.count)))
        .collect();
    taken.sort();
    let mut start = FIRST_ID;
    for (lo, hi) in taken {
        if lo >= start.saturating_add(RANGE) {
            break;
        }
        start = start.max(hi);
    }
    start
}

/// Gives `name` a range in `file` unless it has one. The file is replaced
/// atomically (a temp file beside it, fsynced, renamed over it) under an
/// exclusive flock of the file, so concurrent engines add one entry.
fn ensure_range(file: &Path, name: &str) -> Result<()> {
    let io = |e: std::io::Error| EngineError::internal(file.display(), e);
    loop {
        let locked = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(file)
            .map_err(io)?;
        locked.lock().map_err(io)?;
        // A writer that renamed a new file in while we waited: lock that one.
        let current = fs::metadata(file).map_err(io)?;
        let held = locked.metadata().map_err(io)?;
        if (current.dev(), current.ino()) != (held.dev(), held.ino()) {
            continue;
        }
        let text = fs::read_to_string(file).map_err(io)?;
        let entries = parse_entries(&text);
        if entries.iter().any(|e| e.owner == name) {
            return Ok(());
        }
        let mut new = text.clone();
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str(&format!("{name}:{}:{RANGE}\n", first_free(&entries)));
        let mut tmp_name = file.as_os_str().to_owned();
        tmp_name.push(format!(".bosun-{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let written = (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(held.mode() & 0o7777))?;
            f.write_all(new.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, file)?;
            if let Some(dir) = file.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        return written.map_err(io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_like_dockers() {
        let d: UsernsRemap = "default".parse().unwrap();
        assert_eq!(d.user, DEFAULT_REMAP_USER);
        assert!(d.create);
        let u: UsernsRemap = "app:staff".parse().unwrap();
        assert_eq!(
            (u.user.as_str(), u.group.as_deref()),
            ("app", Some("staff"))
        );
        assert!(!u.create);
        let n: UsernsRemap = "1000".parse().unwrap();
        assert_eq!((n.user.as_str(), n.group), ("1000", None));
        for bad in ["", ":", "a:", ":b", "a:b:c", "a b", "a/b"] {
            let e = bad.parse::<UsernsRemap>().unwrap_err();
            assert!(e.to_string().contains("--userns-remap"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_first_free_range_skips_every_overlap() {
        let e = |start, count| Entry {
            owner: "x".into(),
            start,
            count,
        };
        assert_eq!(first_free(&[]), 100_000);
        assert_eq!(first_free(&[e(100_000, 65_536)]), 165_536);
        assert_eq!(first_free(&[e(165_536, 10), e(100_000, 65_536)]), 165_546);
        // A hole big enough is used; one too small is not.
        assert_eq!(first_free(&[e(300_000, 10)]), 100_000);
        assert_eq!(first_free(&[e(150_000, 10)]), 150_010);
        assert_eq!(first_free(&[e(0, 1000)]), 100_000);
    }

    #[test]
    fn a_range_is_added_once_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        fs::write(&file, "alice:100000:65536\n# comment\nbob:1000000:10").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        ensure_range(&file, "remap").unwrap();
        ensure_range(&file, "remap").unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            "alice:100000:65536\n# comment\nbob:1000000:10\nremap:165536:65536\n"
        );
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file is left");
        assert_eq!(
            ranges_of(&file, "remap", None).unwrap(),
            [IdRange {
                inside: 0,
                outside: 165_536,
                count: 65_536
            }]
        );
        // Several ranges, by name or by number, follow each other inside.
        fs::write(&file, "7:500000:10\nseven:600000:5\n").unwrap();
        assert_eq!(
            ranges_of(&file, "seven", Some(7)).unwrap(),
            [
                IdRange {
                    inside: 0,
                    outside: 500_000,
                    count: 10
                },
                IdRange {
                    inside: 10,
                    outside: 600_000,
                    count: 5
                },
            ]
        );
        let e = ranges_of(&file, "nobody-here", None).unwrap_err();
        assert!(e.to_string().contains("no subordinate range"), "{e}");
        assert_eq!(e.kind(), bosun_oci::ErrorKind::Invalid);
    }
}
