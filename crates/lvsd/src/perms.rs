//! Whoever can write the config controls the traffic. Before acting on a config, lvsd checks
//! that the file and the directory it is in can be written only by root or by lvsd's own user
//! (and group), or refuses, naming the path and the fix.
//!
//! Every directory above them counts too, up to `/`, as sshd's StrictModes walks: whoever can
//! write one can rename the directory below it away and put one of their own in its place.
//! One exception, where sshd has none: a directory above that is sticky and belongs to root or
//! lvsd's user (`/tmp`, mode 1777). The sticky bit lets only an entry's owner rename or remove
//! it, so nobody else can replace what lvsd reads through it. The directory holding the config
//! itself gets no such exception: an include pattern (`conf.d/*.yaml`) takes in any new file,
//! and the sticky bit does not stop others adding one.
//!
//! The state directory (`--state-dir`) is held to the same rules, without the override:
//! whoever can write it can plant a link that lvsd would write through, or forge the record of
//! which services lvsd owns (and so have lvsd remove others).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Why `path` may not be trusted, if it may not. Symlinks are followed (a ConfigMap's file is
/// a link through `..data` into a timestamped directory): the real file is checked, and so is
/// every directory that holds a link on the way, since whoever can write one of them can point
/// the link at a file of their own (swap `..data`).
pub fn insecure(path: &Path) -> Option<String> {
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
    for d in &dirs {
        if seen.insert(d.clone()) {
            checked.push(("config directory", d.clone()));
        }
    }
    let found = checked
        .iter()
        .find_map(|(what, p)| verdict(&format!("{what} {}", shown(p)), p, Place::Holder));
    found.or_else(|| above(&dirs, &mut seen, "the config"))
}

/// Why the state directory `dir` may not be trusted, if it may not: only root or lvsd's user
/// (and group) may write it, and every directory above it is held to the config's rules
/// (sticky ones such as `/tmp` allowed). There is no override.
pub fn insecure_state_dir(dir: &Path) -> Option<String> {
    let Ok(real) = std::fs::canonicalize(dir) else {
        return Some(format!(
            "the state directory {} cannot be found; create it, or give another with --state-dir",
            shown(dir)
        ));
    };
    if let Some(why) = verdict(
        &format!("state directory {}", shown(&real)),
        &real,
        Place::State,
    ) {
        return Some(why);
    }
    let mut seen = std::collections::BTreeSet::from([real.clone()]);
    let mut dirs = vec![real];
    // When `dir` is a link, the directory holding the link counts as one above.
    if let Some(p) = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(|p| std::fs::canonicalize(p).ok())
    {
        dirs.push(p);
    }
    above(&dirs, &mut seen, "the state directory")
}

/// The uid of the user the package runs the daemon as (`lvsd`, from sysusers.d), if this host
/// has one.
fn service_user() -> Option<u32> {
    nix::unistd::User::from_name("lvsd")
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// Where a path stands, for what is allowed of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The config file, or a directory holding it or a link to it.
    Holder,
    /// A directory above those (a sticky one may be writable by others).
    Above,
    /// The state directory.
    State,
}

/// `dirs` not yet `seen` and every directory above them, up to `/`, each checked once as
/// directories above `below` (`the config`).
fn above(
    dirs: &[PathBuf],
    seen: &mut std::collections::BTreeSet<PathBuf>,
    below: &str,
) -> Option<String> {
    for d in dirs {
        for a in d.ancestors() {
            if !seen.insert(a.to_path_buf()) {
                continue;
            }
            let what = format!("directory {} above {below}", shown(a));
            if let Some(why) = verdict(&what, a, Place::Above) {
                return Some(why);
            }
        }
    }
    None
}

/// Why `p` (the `what` of the message) may not be trusted, if it may not.
fn verdict(what: &str, p: &Path, place: Place) -> Option<String> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let m = std::fs::metadata(p).ok()?;
    let mode = m.mode() & 0o7777;
    let shown = shown(p);
    let (whose, fix_more) = match place {
        Place::Holder => (
            "whoever can write it controls the traffic",
            ", or pass --allow-insecure-config",
        ),
        Place::Above => (
            "whoever can write it can put a config of their own in place of the one below it, and so controls the traffic",
            " (or make it sticky, as /tmp is), or pass --allow-insecure-config",
        ),
        Place::State => (
            "whoever can write it can plant a link there that lvsd would write through, or forge the record of which services lvsd owns",
            " (or give lvsd a directory of its own with --state-dir)",
        ),
    };
    // The state directory may also be the service user's: the package runs the daemon as
    // `lvsd`, which owns /run/lvsd, and root's `apply` works in it too.
    let owner_ok = m.uid() == 0
        || m.uid() == euid
        || (place == Place::State && service_user() == Some(m.uid()));
    let owner = || {
        format!(
            "the {what} belongs to user {}, not root or lvsd's user: {whose}. `chown root {shown}`{fix_more}",
            m.uid()
        )
    };
    // A sticky directory above: only an entry's owner (and the directory's) can rename or
    // remove it, so it is safe when it is root's or lvsd's.
    let sticky_bit = place == Place::Above && mode & 0o1000 != 0;
    if sticky_bit && !owner_ok {
        return Some(owner());
    }
    let sticky = sticky_bit && owner_ok;
    if mode & 0o002 != 0 && !sticky {
        return Some(format!(
            "the {what} is writable by every user (mode {mode:o}): {whose}. `chmod o-w {shown}`{fix_more}"
        ));
    }
    if mode & 0o020 != 0 && m.gid() != 0 && m.gid() != egid && !sticky {
        return Some(format!(
            "the {what} is writable by group {} (mode {mode:o}): {whose}. `chmod g-w {shown}`{fix_more}",
            m.gid()
        ));
    }
    if !owner_ok {
        return Some(owner());
    }
    None
}

/// A path as it may be printed (a name can hold a terminal escape).
fn shown(p: &Path) -> String {
    config::printable(&p.display().to_string()).into_owned()
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
    fn a_directory_above_that_others_can_write_is_refused_unless_sticky() {
        // top (the mode under test) / sub / lvsd.yaml: whoever writes top can rename sub
        // away and put a directory of their own in its place.
        let (top, _) = setup("above");
        let sub = top.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = sub.join("lvsd.yaml");
        std::fs::write(&f, "services: []\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(insecure(&f), None);
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = insecure(&f).expect("a world-writable directory above");
        assert!(
            why.starts_with(&format!(
                "the directory {} above the config is writable by every user (mode 777)",
                top.display()
            )),
            "{why}"
        );
        // Sticky and ours (as /tmp is root's): nobody else can rename `sub`.
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(insecure(&f), None);
        // The directory holding the config gets no such exception: a pattern would take in
        // any file another user adds there.
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(insecure(&f).unwrap().starts_with("the config directory"));
        // The state directory: never writable by others, sticky or not; sticky above is fine.
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(insecure_state_dir(&sub), None);
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            insecure_state_dir(&sub)
                .unwrap()
                .starts_with("the state directory")
        );
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            insecure_state_dir(&sub)
                .unwrap()
                .contains("above the state directory")
        );
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(insecure_state_dir(&sub), None);
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

    #[test]
    fn a_directory_above_owned_by_another_user_is_refused_sticky_or_not() {
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root; CI runs as root
        }
        let (top, _) = setup("above-owner");
        let sub = top.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = sub.join("lvsd.yaml");
        std::fs::write(&f, "services: []\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Its owner can rename `sub` away, sticky bit or not.
        for mode in [0o755, 0o1777] {
            std::os::unix::fs::chown(&top, Some(1000), None).unwrap();
            std::fs::set_permissions(&top, std::fs::Permissions::from_mode(mode)).unwrap();
            let why = insecure(&f).unwrap();
            assert!(
                why.contains("above the config belongs to user 1000"),
                "{why}"
            );
        }
        // Writable by a group other than root's and lvsd's: refused unless sticky.
        std::os::unix::fs::chown(&top, Some(0), Some(1000)).unwrap();
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(insecure(&f).unwrap().contains("writable by group 1000"));
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o1775)).unwrap();
        assert_eq!(insecure(&f), None);
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&top).unwrap();
    }
}
