//! What the tests that run the `lvsd` binary's daemon share: the daemon in a user namespace of
//! its own (`unshare --user --map-root-user`: root there, without CAP_NET_ADMIN in the initial
//! namespace, so every pass fails and nothing touches the host's table), its log, and a
//! working directory per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `lvsd run`, killed when dropped.
pub struct Daemon {
    /// The process (`unshare` execs lvsd in place: the same pid).
    pub child: Child,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Daemon {
    /// `lvsd run -c config --state-dir dir/state` with `extra` arguments and `env` variables,
    /// logging to `dir/log_name`.
    pub fn spawn(
        dir: &Path,
        config: &Path,
        log_name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let log = dir.join(log_name);
        let out = std::fs::File::create(&log).unwrap();
        let child = lvsd()
            .args(["run", "-c"])
            .arg(config)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .env("LVSD_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it logs `what` within `within`.
    pub fn wait_log(&self, what: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// How it exited, if it did within `within`.
    pub fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lvsd binary, in a user namespace of its own.
pub fn lvsd() -> Command {
    let mut c = Command::new("unshare");
    c.args(["--user", "--map-root-user", "--"])
        .arg(env!("CARGO_BIN_EXE_lvsd"));
    c
}

/// A fresh directory for test `name` of the test file `file`, readable by all (the daemon's
/// state directory check).
pub fn workdir(file: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lvsd-{file}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}
