//! `lvsd apply` (and `lvsd run`, at its start) refuses what others can write before it touches
//! anything: an included file whatever its name holds, and a directory anywhere above the
//! config (as sshd's StrictModes walks up to `/`), and a state directory others can write
//! (they could plant a link there that lvsd would write through, or forge its records).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lvsd-perms-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    chmod(&d, 0o755);
    d
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, text: &str, mode: u32) {
    std::fs::write(p, text).unwrap();
    chmod(p, mode);
}

fn apply(config: &Path, state: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["apply", "--lock-timeout", "1s", "-c"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SVC: &str = "services:\n  - address: 10.0.0.2:80\n    reals:\n      - address: 10.0.1.2\n";

#[test]
fn an_included_file_others_can_write_is_refused_whatever_its_name() {
    for name in ["a\u{a0}b.yaml", "a\tb.yaml", "a\u{1b}b.yaml", "plain.yaml"] {
        let d = dir(&format!("name-{}", name.len()));
        std::fs::create_dir(d.join("conf.d")).unwrap();
        chmod(&d.join("conf.d"), 0o755);
        write(&d.join("lvsd.yaml"), "include: [conf.d/*.yaml]\n", 0o644);
        write(&d.join("conf.d").join(name), SVC, 0o666);
        let (code, err) = apply(&d.join("lvsd.yaml"), &d.join("state"));
        assert_eq!(code, 1, "{name:?}: {err}");
        assert!(err.contains("is writable by every user"), "{name:?}: {err}");
        assert!(!d.join("state").exists(), "{name:?}: nothing done");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn a_state_directory_others_can_write_is_refused_and_links_there_are_not_followed() {
    let d = dir("state");
    write(&d.join("lvsd.yaml"), SVC, 0o644);
    let victim = d.join("victim");
    write(&victim, "precious\n", 0o644);
    // A world-writable state directory (sticky or not) with a link planted as `lock`.
    let state = d.join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::symlink(&victim, state.join("lock")).unwrap();
    for mode in [0o777, 0o1777] {
        chmod(&state, mode);
        let (code, err) = apply(&d.join("lvsd.yaml"), &state);
        assert_eq!(code, 1, "{mode:o}: {err}");
        assert!(
            err.contains(&format!("the state directory {}", state.display()))
                && err.contains("writable by every user"),
            "{mode:o}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }
    // A state directory only lvsd's user and group can write (the group is the test's own,
    // as lvsd's is) with a planted link: refused, the link not followed.
    for mode in [0o755, 0o775] {
        chmod(&state, mode);
        let (code, err) = apply(&d.join("lvsd.yaml"), &state);
        assert_eq!(code, 1, "{mode:o}: {err}");
        assert!(err.contains("is a symbolic link"), "{mode:o}: {err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_daemon_refuses_at_its_start_an_included_file_others_can_write() {
    let d = dir("run-include");
    std::fs::create_dir(d.join("conf.d")).unwrap();
    chmod(&d.join("conf.d"), 0o755);
    write(&d.join("lvsd.yaml"), "include: [conf.d/*.yaml]\n", 0o644);
    write(&d.join("conf.d").join("web.yaml"), SVC, 0o666);
    // In a user namespace of its own: were it to start, it could not reach the host's IPVS.
    let mut child = Command::new("unshare")
        .args(["--user", "--map-root-user", "--"])
        .arg(env!("CARGO_BIN_EXE_lvsd"))
        .args(["run", "-c"])
        .arg(d.join("lvsd.yaml"))
        .arg("--state-dir")
        .arg(d.join("state"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        status.is_some_and(|s| s.code() == Some(1)),
        "lvsd run started on a config others can write: {err}"
    );
    assert!(err.contains("is writable by every user"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
