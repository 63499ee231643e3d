//! `USER` and `--chown` name users the image's own `/etc/passwd` and
//! `/etc/group` know; numbers pass through.

use std::fs;
use std::path::Path;

use super::fs::resolve_in_root;

/// The uid, gid and supplementary gids `spec` (`user[:group]`) means in the
/// root file system at `root`.
pub fn resolve_user(root: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read(root, "/etc/passwd");
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || f[2] == user));
    let uid = match (user.parse::<u32>(), &entry) {
        (Ok(n), _) => n,
        (Err(_), Some(f)) => f[2]
            .parse()
            .map_err(|_| format!("/etc/passwd has a bad uid for {user:?}"))?,
        (Err(_), None) => {
            return Err(format!(
                "unknown user {user:?}: not in the image's /etc/passwd"
            ));
        }
    };
    let groups = read(root, "/etc/group");
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("unknown group {g:?}: not in the image's /etc/group"))?,
        },
        None => entry
            .as_ref()
            .filter(|f| f[2].parse::<u32>().ok() == Some(uid))
            .and_then(|f| f[3].parse().ok())
            .unwrap_or(0),
    };
    // Supplementary groups apply to a user named without an explicit group.
    let mut extra = Vec::new();
    if group.is_none()
        && let Some(f) = &entry
    {
        for line in groups.lines() {
            let g: Vec<_> = line.split(':').collect();
            if g.len() >= 4
                && g[3].split(',').any(|m| m == f[0])
                && let Ok(id) = g[2].parse::<u32>()
                && id != gid
            {
                extra.push(id);
            }
        }
    }
    Ok((uid, gid, extra))
}

fn read(root: &Path, path: &str) -> String {
    resolve_in_root(root, Path::new(path))
        .and_then(fs::read_to_string)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_groups() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            root.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .unwrap();
        let r = root.path();
        assert_eq!(resolve_user(r, "app").unwrap(), (1000, 1000, vec![10]));
        assert_eq!(resolve_user(r, "app:wheel").unwrap(), (1000, 10, vec![]));
        assert_eq!(resolve_user(r, "4242").unwrap(), (4242, 0, vec![]));
        assert_eq!(resolve_user(r, "0:7").unwrap(), (0, 7, vec![]));
        let err = resolve_user(r, "ghost").unwrap_err();
        assert!(err.contains("unknown user"), "{err}");
        assert!(resolve_user(r, "app:nogroup").is_err());
    }
}
