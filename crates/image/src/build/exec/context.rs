//! The build context: a directory on the host, seen through its
//! `.dockerignore` (or `.containerignore`), from which COPY and ADD take
//! their sources. Sources are matched (globs allowed) and hashed here, so a
//! step's cache key covers the content it reads.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::build::ignore::IgnoreRules;

/// A context directory and its ignore rules.
#[derive(Debug)]
pub(crate) struct Context {
    root: PathBuf,
    ignore: IgnoreRules,
}

/// A matched source: its host path and its path relative to the context.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) host: PathBuf,
    pub(crate) rel: PathBuf,
    /// Downloaded by `ADD URL`: never unpacked, mode 0600 (as in Docker).
    pub(crate) remote: bool,
}

impl Context {
    /// Opens `root` with the ignore file next to `containerfile`
    /// (`<file>.dockerignore`) or at the context root (`.containerignore`,
    /// then `.dockerignore`).
    pub(crate) fn open(root: &Path, containerfile: &Path) -> Result<Self, String> {
        let mut candidates = Vec::new();
        if let Some(name) = containerfile.file_name() {
            let mut own = name.to_os_string();
            own.push(".dockerignore");
            candidates.push(containerfile.with_file_name(own));
        }
        candidates.push(root.join(".containerignore"));
        candidates.push(root.join(".dockerignore"));
        let mut ignore = IgnoreRules::parse("").map_err(|e| e.to_string())?;
        for path in candidates {
            match fs::read_to_string(&path) {
                Ok(text) => {
                    ignore = IgnoreRules::parse(&text)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            ignore,
        })
    }

    /// Whether `rel` (relative to the context) is visible to the build.
    pub(crate) fn keeps(&self, rel: &Path) -> bool {
        let rel = rel.to_string_lossy();
        rel.is_empty() || !self.ignore.is_excluded(&rel)
    }

    /// The sources a COPY pattern names. A pattern that matches nothing is an
    /// error, as in Docker; so is one that leaves the context.
    pub(crate) fn matches(&self, pattern: &str) -> Result<Vec<Source>, String> {
        match_sources(&self.root, pattern, &|rel| self.keeps(rel))
    }
}

/// Matches `pattern` (a path with optional `*`, `?`, `[...]` in any
/// component) under `root`, returning visible paths, sorted.
pub(crate) fn match_sources(
    root: &Path,
    pattern: &str,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<Vec<Source>, String> {
    let mut parts = Vec::new();
    for c in Path::new(pattern).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir if parts.pop().is_none() => {
                return Err(format!("{pattern:?} is outside the build context"));
            }
            _ => {}
        }
    }
    let mut found = vec![PathBuf::new()];
    for part in &parts {
        let mut next = Vec::new();
        for rel in found {
            if !has_wildcard(part) {
                next.push(rel.join(part));
                continue;
            }
            let dir = within(root, &rel).map_err(|e| format!("{pattern:?}: {e}"))?;
            let Ok(entries) = fs::read_dir(root.join(&dir)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if wildcard_match(part, &name) {
                    next.push(rel.join(name));
                }
            }
        }
        found = next;
    }
    // Symlinks on the way to a source are followed as if the context were `/`,
    // never out of it (a link to `/etc` in the context names the context's
    // `etc`); a source that is itself a symlink is copied as the link.
    let mut confined = Vec::with_capacity(found.len());
    for rel in found {
        confined.push(match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => within(root, parent)
                .map_err(|e| format!("{pattern:?}: {e}"))?
                .join(name),
            _ => rel,
        });
    }
    let sources: Vec<Source> = confined
        .into_iter()
        .filter(|rel| keep(rel))
        .filter(|rel| fs::symlink_metadata(root.join(rel)).is_ok())
        .map(|rel| Source {
            host: root.join(&rel),
            rel,
            remote: false,
        })
        .collect();
    if sources.is_empty() {
        return Err(format!(
            "{pattern:?}: no such file or directory in the context"
        ));
    }
    Ok(sources)
}

/// `rel` (relative to `root`) with its symlinks resolved inside `root`.
fn within(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let host = super::fs::resolve_in_root(root, rel)?;
    Ok(host
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_default())
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one component: `*`, `?`, `[a-z]`, `[^a]`, `\x`.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| match_from(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && match_from(&p[1..], &n[1..]),
        Some('[') => {
            let Some(c) = n.first() else { return false };
            let Some(end) = p.iter().skip(1).position(|&x| x == ']').map(|i| i + 1) else {
                return false;
            };
            let class = &p[1..end];
            let (negate, class) = match class.first() {
                Some('^' | '!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= *c && *c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && match_from(&p[end + 1..], &n[1..])
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && match_from(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && match_from(&p[1..], &n[1..]),
    }
}

/// A hash of everything a copy of `sources` would carry: relative names,
/// types, modes, link targets and file contents (not times or owners: COPY
/// sets the owner, and Docker keeps mtimes out of its cache key too).
pub(crate) fn hash_sources(
    sources: &[Source],
    keep: &dyn Fn(&Path) -> bool,
    hasher: &mut Sha256,
) -> io::Result<()> {
    for s in sources {
        hasher.update(s.rel.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hash_entry(&s.host, &s.rel, keep, hasher)?;
    }
    Ok(())
}

fn hash_entry(
    host: &Path,
    rel: &Path,
    keep: &dyn Fn(&Path) -> bool,
    hasher: &mut Sha256,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(host)?;
    hasher.update(meta.mode().to_le_bytes());
    let ft = meta.file_type();
    if ft.is_symlink() {
        hasher.update(fs::read_link(host)?.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        hasher.update(meta.len().to_le_bytes());
        let mut f = fs::File::open(host)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    } else if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(host)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child = rel.join(&name);
            if !keep(&child) {
                continue;
            }
            hasher.update(name.as_encoded_bytes());
            hasher.update([0]);
            hash_entry(&host.join(&name), &child, keep, hasher)?;
        }
        hasher.update([1]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_go_filepath_match() {
        assert!(wildcard_match("*.txt", "a.txt"));
        assert!(!wildcard_match("*.txt", "a.txt.bak"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(wildcard_match("[a-c]x", "bx"));
        assert!(!wildcard_match("[^a-c]x", "bx"));
        assert!(wildcard_match("\\*", "*"));
        assert!(!wildcard_match("\\*", "a"));
    }

    #[test]
    fn sources_match_globs_skip_ignored_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("src/sub")).unwrap();
        fs::write(r.join("src/a.c"), b"a").unwrap();
        fs::write(r.join("src/b.c"), b"b").unwrap();
        fs::write(r.join("src/b.h"), b"h").unwrap();
        let keep = |p: &Path| p != Path::new("src/b.c");
        let got: Vec<_> = match_sources(r, "src/*.c", &keep)
            .unwrap()
            .into_iter()
            .map(|s| s.rel)
            .collect();
        assert_eq!(got, [PathBuf::from("src/a.c")]);
        assert!(match_sources(r, "../etc/passwd", &keep).is_err());
        let err = match_sources(r, "nope/*", &keep).unwrap_err();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn the_hash_sees_content_and_modes_but_not_times() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::write(r.join("f"), b"one").unwrap();
        let hash = || {
            let mut h = Sha256::new();
            let src = match_sources(r, "f", &|_| true).unwrap();
            hash_sources(&src, &|_| true, &mut h).unwrap();
            h.finalize()
        };
        let first = hash();
        let f = fs::File::options().write(true).open(r.join("f")).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(std::time::SystemTime::UNIX_EPOCH))
            .unwrap();
        assert_eq!(hash(), first);
        fs::write(r.join("f"), b"two").unwrap();
        assert_ne!(hash(), first);
    }
}

#[cfg(test)]
mod escape_tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A context, and beside it a host directory holding a secret.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        let secret = dir.path().join("secret");
        fs::create_dir_all(ctx.join("etc")).unwrap();
        fs::create_dir_all(&secret).unwrap();
        fs::write(secret.join("passwd"), "host secret").unwrap();
        fs::write(ctx.join("etc/passwd"), "context passwd").unwrap();
        symlink(&secret, ctx.join("out")).unwrap();
        symlink("chain2", ctx.join("chain1")).unwrap();
        symlink("out", ctx.join("chain2")).unwrap();
        symlink(
            format!("{}{}", "../".repeat(16), secret.display()),
            ctx.join("up"),
        )
        .unwrap();
        (dir, ctx, secret)
    }

    fn sources(ctx: &Path, pattern: &str) -> Result<Vec<Source>, String> {
        match_sources(ctx, pattern, &|_| true)
    }

    #[test]
    fn parent_paths_are_refused() {
        let (_dir, ctx, _) = setup();
        for p in ["../secret/passwd", "a/../../x", "/../x"] {
            let err = sources(&ctx, p).unwrap_err();
            assert!(err.contains("outside the build context"), "{p}: {err}");
        }
    }

    #[test]
    fn absolute_paths_name_the_context() {
        let (_dir, ctx, _) = setup();
        let found = sources(&ctx, "/etc/passwd").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].host, ctx.join("etc/passwd"));
    }

    #[test]
    fn symlinks_on_the_way_never_leave_the_context() {
        let (_dir, ctx, secret) = setup();
        // Guard absent: the host follows each of these links to the secret.
        for link in ["out", "chain1", "up"] {
            assert_eq!(
                fs::read_to_string(ctx.join(link).join("passwd")).unwrap(),
                "host secret"
            );
        }
        for p in [
            "out/passwd",
            "chain1/passwd",
            "up/passwd",
            "out/*",
            "chain1/pass*",
        ] {
            match sources(&ctx, p) {
                Err(e) => assert!(e.contains("no such file"), "{p}: {e}"),
                Ok(found) => panic!("{p} matched {found:?}"),
            }
        }
        // Resolved as if the context were `/`: a copy of the secret's path made
        // inside the context is what they name.
        let inside = ctx.join(secret.strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        fs::write(inside.join("passwd"), "context copy").unwrap();
        for p in ["out/passwd", "chain1/passwd", "up/passwd", "out/*"] {
            let found = sources(&ctx, p).unwrap();
            assert_eq!(found.len(), 1, "{p}");
            assert_eq!(found[0].host, inside.join("passwd"), "{p}");
        }
    }

    #[test]
    fn a_symlink_source_is_the_link_itself() {
        let (_dir, ctx, _) = setup();
        let found = sources(&ctx, "out").unwrap();
        assert_eq!(found[0].host, ctx.join("out"));
        assert!(
            fs::symlink_metadata(&found[0].host)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
