//! The control socket of the `lvsd` binary's daemon, run in a user namespace of its own as in
//! `daemon.rs` (every pass fails there, which overrides do not depend on: they are state in the
//! state directory). What must hold: root sets, lists and clears overrides, kept in the state
//! directory and across a restart; a client of the socket's group that is neither root nor in
//! the admin group reads but cannot change; garbage and silence get an error and a closed
//! socket, and the daemon keeps answering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Daemon, lvsd};

impl Daemon {
    fn start(dir: &Path, config: &Path, n: usize) -> Daemon {
        Daemon::start_with(dir, config, n, &[])
    }

    /// The `n`th daemon of a test, once it runs.
    fn start_with(dir: &Path, config: &Path, n: usize, extra: &[&str]) -> Daemon {
        let d = Daemon::spawn(dir, config, &format!("daemon-{n}.log"), extra, &[]);
        assert!(
            d.wait_log("lvsd running", Duration::from_secs(20)),
            "{}",
            d.log()
        );
        d
    }
}

fn workdir(name: &str) -> PathBuf {
    common::workdir("control", name)
}

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("lvsd.yaml");
    std::fs::write(
        &p,
        "services:\n  - name: web\n    address: 10.0.0.1:80\n    reals:\n      - address: 10.200.0.1\n        weight: 5\n      - address: 10.200.0.2\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out: Output = lvsd()
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    outcome(&out)
}

/// A command's exit code, standard output and standard error.
fn outcome(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts the daemon on `cfg`, which must refuse to start: what it said.
fn refused_start(dir: &Path, cfg: &Path) -> String {
    let mut c = lvsd()
        .args(["run", "-c"])
        .arg(cfg)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!c.wait().unwrap().success(), "it started: {err}");
    err
}

/// The metrics text at `addr`.
fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `bytes` (then nothing more, the connection left open) and reads the answer.
fn raw(dir: &Path, bytes: &[u8]) -> (String, Duration) {
    let mut s = UnixStream::connect(dir.join("state/lvsd.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t = Instant::now();
    s.write_all(bytes).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    (answer, t.elapsed())
}

/// Without a daemon, `lvsd realign` reads the config given and takes the state directory's
/// lock itself; a name the config does not have is refused before the kernel is asked.
#[test]
fn realign_without_a_daemon_reads_the_config_and_takes_the_lock() {
    let dir = workdir("realign");
    let cfg = config(&dir);
    let c = cfg.to_str().unwrap();
    let (code, _, err) = run(&dir, &["realign", "db", "-c", c]);
    assert_eq!(code, 1);
    assert!(err.contains("no service `db`"), "{err}");
    let lock = std::fs::read_to_string(dir.join("state/lock")).unwrap();
    assert!(lock.contains(" realign "), "the lock names realign: {lock}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn root_sets_lists_and_clears_overrides_that_survive_a_restart() {
    let dir = workdir("set");
    let cfg = config(&dir);
    let metrics = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(&dir, &cfg, 0, &["--metrics-listen", &metrics]);
    let (code, out, err) = run(
        &dir,
        &[
            "drain",
            "web",
            "10.200.0.1",
            "--for",
            "1h",
            "--reason",
            "kernel upgrade",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("weight 5 in the file, 0 by drain until"),
        "{out}"
    );
    assert!(out.contains("'kernel upgrade', uid 0"), "{out}");
    assert!(
        d.wait_log(
            "override set: 10.200.0.1:80 of TCP 10.0.0.1:80",
            Duration::from_secs(5)
        ),
        "{}",
        d.log()
    );
    let (code, out, err) = run(&dir, &["weight", "10.0.0.1:80", "10.200.0.2:80", "7"]);
    assert_eq!(code, 0, "{out}{err}");
    // Exported as metrics: the weight given, and when it ends.
    let m = scrape(&metrics);
    for line in [
        "lvsd_override_weight{service=\"TCP 10.0.0.1:80\",real=\"10.200.0.1:80\",action=\"drain\"} 0",
        "lvsd_override_weight{service=\"TCP 10.0.0.1:80\",real=\"10.200.0.2:80\",action=\"weight\"} 7",
        "lvsd_override_expiry_timestamp_seconds{service=\"TCP 10.0.0.1:80\",real=\"10.200.0.2:80\",action=\"weight\"} 0",
        "lvsd_override_changes_total 2",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }
    let (code, out, _) = run(&dir, &["overrides", "--json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = doc["overrides"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{out}");
    assert_eq!(list[0]["weight"], 0);
    assert_eq!(list[0]["file_weight"], 5);
    assert_eq!(list[1]["weight"], 7);
    let (_, status, _) = run(&dir, &["status"]);
    assert!(
        status.contains("override:   web (TCP 10.0.0.1:80) real 10.200.0.1:80"),
        "{status}"
    );
    // A weight is not a drain: undrain refuses it, restore ends it.
    let (code, _, err) = run(&dir, &["undrain", "web", "10.200.0.2"]);
    assert_eq!(code, 1);
    assert!(err.contains("lvsd restore"), "{err}");
    let (code, _, err) = run(&dir, &["restore", "web", "10.200.0.2", "--reason", "done"]);
    assert_eq!(code, 0, "{err}");
    // Unknown names are refused in lvsd's words.
    let (code, _, err) = run(&dir, &["drain", "db"]);
    assert_eq!(code, 1);
    assert!(err.contains("no service `db`"), "{err}");
    // `lvsd realign` goes to the daemon, which resolves the name against the config in force
    // and refuses a service it does not manage (here, where no pass reaches a kernel, none).
    let (code, _, err) = run(&dir, &["realign", "db"]);
    assert_eq!(code, 1);
    assert!(err.contains("no service `db`"), "{err}");
    let (code, _, err) = run(&dir, &["realign", "web", "--force"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("lvsd does not manage TCP 10.0.0.1:80"),
        "{err}"
    );
    assert!(
        d.wait_log("realign refused", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    // Kept in the state directory, and again in force after a restart.
    drop(d);
    let record = std::fs::read_to_string(dir.join("state/overrides")).unwrap();
    assert!(record.contains("kernel upgrade"), "{record}");
    let d = Daemon::start(&dir, &cfg, 1);
    assert!(
        d.log().contains("override kept from before the start"),
        "{}",
        d.log()
    );
    let (_, out, _) = run(&dir, &["overrides"]);
    assert!(
        out.contains("10.200.0.1:80: weight 5 in the file, 0 by drain"),
        "{out}"
    );
    assert!(!out.contains("10.200.0.2"), "{out}");
    drop(d);
    // A damaged record stops the start: it never means "no overrides".
    std::fs::write(dir.join("state/overrides"), "{ not json").unwrap();
    let err = refused_start(&dir, &cfg);
    assert!(err.contains("the overrides record"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_and_silence_get_an_error_and_the_daemon_keeps_answering() {
    let dir = workdir("garbage");
    let cfg = config(&dir);
    let _d = Daemon::start(&dir, &cfg, 0);
    let (answer, _) = raw(&dir, b"\x00\xffhello\n");
    assert!(answer.contains("\"ok\":false"), "{answer}");
    let (answer, _) = raw(&dir, b"{\"op\":\"rm\"}\n");
    assert!(answer.contains("not a request"), "{answer}");
    // Over the size limit, without a newline.
    let (answer, _) = raw(&dir, &vec![b'x'; 70 * 1024]);
    assert!(answer.contains("over"), "{answer}");
    // Nothing at all: an error after the request timeout, not a connection held for ever.
    let (answer, took) = raw(&dir, b"");
    assert!(answer.contains("no request within"), "{answer}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let (code, out, err) = run(&dir, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"table\":"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_client_neither_root_nor_admin_reads_but_cannot_change() {
    // A second uid needs root outside the namespace (setpriv): the test suite runs as root
    // (the README's test command), and a run that cannot do this fails rather than skips.
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root: this test acts as a second uid (setpriv)"
    );
    assert!(
        Command::new("setpriv").arg("--help").output().is_ok(),
        "setpriv (util-linux) is needed to act as a second uid"
    );
    let dir = workdir("unprivileged");
    let cfg = config(&dir);
    let d = Daemon::start(&dir, &cfg, 0);
    let (code, _, err) = run(&dir, &["drain", "web", "10.200.0.2", "--reason", "test"]);
    assert_eq!(code, 0, "{err}");
    // uid 65534 in the socket's group (0): may connect and read.
    let bin = dir.join("lvsd");
    std::fs::copy(env!("CARGO_BIN_EXE_lvsd"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "0", "--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .output()
            .unwrap();
        outcome(&out)
    };
    let (code, out, err) = as_nobody(&["overrides"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 by drain"), "{out}");
    let (code, _, err) = as_nobody(&["restore", "web", "10.200.0.2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("uid 65534 may not change overrides"), "{err}");
    assert!(
        d.wait_log("override refused: uid 65534", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    let (_, out, _) = run(&dir, &["overrides"]);
    assert!(out.contains("0 by drain"), "still drained: {out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_director_leaves_rotation_and_stays_out_across_a_restart_until_it_is_brought_back() {
    let dir = workdir("director");
    // Without `ha` there is no rotation to leave: refused, in lvsd's words.
    let single = config(&dir);
    let d = Daemon::start(&dir, &single, 0);
    let (code, _, err) = run(&dir, &["drain", "--director"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a director"), "{err}");
    drop(d);
    assert!(!dir.join("state/director").exists());
    let cfg = dir.join("ha.yaml");
    std::fs::write(
        &cfg,
        format!(
            "host: {{role: director, interface: eth0}}\nha: {{mode: active-backup, health_file: {}}}\nservices:\n  - name: web\n    address: 10.0.0.1:80\n    reals:\n      - address: 10.200.0.1\n",
            dir.join("health").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = Daemon::start(&dir, &cfg, 1);
    let state = |dir: &Path| {
        let (code, out, err) = run(dir, &["status", "--json"]);
        assert_eq!(code, 0, "{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        doc["director"].clone()
    };
    assert_eq!(state(&dir)["state"], "serving");
    let (code, out, err) = run(
        &dir,
        &["drain", "--director", "--grace", "2s", "--reason", "patch"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("director out of rotation: withdrawing (grace 2 s"),
        "{out}"
    );
    let s = state(&dir);
    assert_eq!(s["state"], "withdrawing", "{s}");
    assert_eq!(s["reason"], "patch", "{s}");
    assert!(
        d.wait_log("director out of rotation", Duration::from_secs(5)),
        "{}",
        d.log()
    );
    // A service, and --director with it, is not a thing to ask.
    let (code, _, _) = run(&dir, &["drain", "web", "--director"]);
    assert_eq!(code, 2);
    // Kept across a restart.
    drop(d);
    let record = std::fs::read_to_string(dir.join("state/director")).unwrap();
    assert!(record.contains("\"patch\""), "{record}");
    let d = Daemon::start(&dir, &cfg, 2);
    assert!(
        d.log()
            .contains("stays out of rotation, as before the start"),
        "{}",
        d.log()
    );
    assert_eq!(state(&dir)["state"], "withdrawing");
    let (_, text, _) = run(&dir, &["status"]);
    assert!(
        text.contains("director:   withdrawing (out of rotation since"),
        "{text}"
    );
    // Back, once; a second undo has nothing to undo.
    let (code, out, err) = run(&dir, &["undrain", "--director", "--reason", "done"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(state(&dir)["state"], "serving");
    let (code, _, err) = run(&dir, &["undrain", "--director"]);
    assert_eq!(code, 1);
    assert!(err.contains("in rotation; nothing to undo"), "{err}");
    drop(d);
    let record = std::fs::read_to_string(dir.join("state/director")).unwrap();
    assert!(record.contains("\"withdrawal\": null"), "{record}");
    // A damaged record stops the start: the director must not come back by itself.
    std::fs::write(dir.join("state/director"), "{ not json").unwrap();
    let err = refused_start(&dir, &cfg);
    assert!(err.contains("the director record"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
