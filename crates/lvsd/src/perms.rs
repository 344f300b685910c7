//! Whoever can write the config controls the traffic. Before acting on a config, lvsd checks
//! that the file and the directory it is in can be written only by root or by lvsd's own user
//! (and group), or refuses, naming the path and the fix.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Why `path` may not be trusted, if it may not. Symlinks are followed (a ConfigMap's file is
/// a link through `..data` into a timestamped directory): the real file is checked, and so is
/// every directory that holds a link on the way, since whoever can write one of them can point
/// the link at a file of their own (swap `..data`).
pub fn insecure(path: &Path) -> Option<String> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let real = std::fs::canonicalize(path).ok()?;
    let mut checked: Vec<(&str, PathBuf)> = vec![("config file", real.clone())];
    let mut dirs: Vec<PathBuf> = real.parent().map(Path::to_path_buf).into_iter().collect();
    let mut hop = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let dir = hop
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        if let Ok(d) = std::fs::canonicalize(&dir) {
            dirs.push(d);
        }
        match std::fs::read_link(&hop) {
            Ok(target) => hop = dir.join(target),
            Err(_) => break,
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in dirs {
        if seen.insert(d.clone()) {
            checked.push(("config directory", d));
        }
    }
    for (what, p) in &checked {
        let Ok(m) = std::fs::metadata(p) else {
            continue;
        };
        let mode = m.mode() & 0o7777;
        let shown = p.display();
        if mode & 0o002 != 0 {
            return Some(format!(
                "the {what} {shown} is writable by every user (mode {mode:o}): whoever can write it controls the traffic. `chmod o-w {shown}`, or pass --allow-insecure-config"
            ));
        }
        if mode & 0o020 != 0 && m.gid() != 0 && m.gid() != egid {
            return Some(format!(
                "the {what} {shown} is writable by group {} (mode {mode:o}): whoever can write it controls the traffic. `chmod g-w {shown}`, or pass --allow-insecure-config",
                m.gid()
            ));
        }
        if m.uid() != 0 && m.uid() != euid {
            return Some(format!(
                "the {what} {shown} belongs to user {}, not root or lvsd's user: whoever can write it controls the traffic. `chown root {shown}`, or pass --allow-insecure-config",
                m.uid()
            ));
        }
    }
    None
}

/// Links followed at most (the kernel's own limit for a path).
const MAX_LINKS: usize = 40;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn setup(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("lvsd-perms-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("lvsd.yaml");
        std::fs::write(&f, "services: []\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        (dir, f)
    }

    #[test]
    fn private_files_pass_and_writable_ones_are_named() {
        let (dir, f) = setup("a");
        assert_eq!(insecure(&f), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o646)).unwrap();
        let why = insecure(&f).unwrap();
        assert!(why.contains("writable by every user (mode 646)"), "{why}");
        assert!(why.contains(&f.display().to_string()), "{why}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = insecure(&f).unwrap();
        assert!(why.starts_with("the config directory"), "{why}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Through a symlink, the real file is what counts.
        let link = dir.join("link.yaml");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(insecure(&link), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_holding_a_configmap_link_counts() {
        // A ConfigMap mount: lvsd.yaml -> ..data/lvsd.yaml, ..data -> ..2026_12_01, and the
        // file in the timestamped directory. Whoever writes the top directory can swap ..data.
        let (top, _) = setup("c");
        std::fs::remove_file(top.join("lvsd.yaml")).unwrap();
        let stamped = top.join("..2026_12_01");
        std::fs::create_dir(&stamped).unwrap();
        std::fs::set_permissions(&stamped, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(stamped.join("lvsd.yaml"), "services: []\n").unwrap();
        std::fs::set_permissions(
            stamped.join("lvsd.yaml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::os::unix::fs::symlink("..2026_12_01", top.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/lvsd.yaml", top.join("lvsd.yaml")).unwrap();
        let f = top.join("lvsd.yaml");
        assert_eq!(insecure(&f), None);
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = insecure(&f).expect("the top directory is writable by everyone");
        assert!(
            why.contains(&format!(
                "config directory {}",
                top.canonicalize().unwrap().display()
            )),
            "{why}"
        );
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn another_owner_or_group_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root; CI runs as root
        }
        let (dir, f) = setup("b");
        std::os::unix::fs::chown(&f, Some(1000), None).unwrap();
        assert!(insecure(&f).unwrap().contains("belongs to user 1000"));
        std::os::unix::fs::chown(&f, Some(0), Some(1000)).unwrap();
        assert_eq!(insecure(&f), None, "group 1000 cannot write 0644");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(insecure(&f).unwrap().contains("writable by group 1000"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
