//! The `lvsd` binary's daemon, each run in a user namespace of its own (`unshare --user
//! --map-root-user`): root there, but without CAP_NET_ADMIN in the initial namespace, which the
//! kernel's IPVS interface demands of every command. So every pass fails and is retried, on
//! any host, with or without `ip_vs` loaded, and nothing is ever written to the host's table:
//! exactly the daemon under failure. What must hold regardless: a SIGHUP during start-up is a
//! reload, not a death; one daemon per state directory; the metrics and status servers answer
//! while other clients stall and while a large config is read; a lost config reader ends the
//! daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{Daemon, lvsd};

impl Daemon {
    fn start(dir: &Path, config: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with(dir, config, extra, &[])
    }

    /// [`Daemon::start`] with more variables in its environment.
    fn start_with(dir: &Path, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(
            dir,
            config,
            &format!("daemon-{}.log", extra.len()),
            extra,
            env,
        )
    }
}

fn workdir(name: &str) -> PathBuf {
    common::workdir("daemon", name)
}

/// A config of `n` services with two reals each.
fn config(dir: &Path, name: &str, n: usize) -> PathBuf {
    let mut text = String::from("services:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - address: 10.{}.{}.{}:80\n    reals:\n      - address: 10.200.0.1\n      - address: 10.200.0.2\n",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// Whether process `pid` catches `sig` (its `SigCgt` in `/proc`), waiting up to `within`. The
/// child is `unshare`, which execs lvsd in place: the same pid.
fn catches(pid: u32, sig: nix::sys::signal::Signal, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (sig as u32 - 1)) != 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn signal(d: &Daemon, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.child.id() as i32), sig).unwrap();
}

#[test]
fn a_sighup_during_start_up_is_a_reload_not_a_death() {
    let dir = workdir("hup");
    // Large enough that reading it takes far longer than the signal's delay below.
    let cfg = config(&dir, "lvsd.yaml", 30_000);
    let mut d = Daemon::start(&dir, &cfg, &[]);
    // Once lvsd has its handler (its first step): on a loaded machine a fixed delay could send
    // the signal before lvsd even ran, and the default action would end it.
    assert!(
        catches(
            d.child.id(),
            nix::sys::signal::Signal::SIGHUP,
            Duration::from_secs(20)
        ),
        "lvsd never installed its SIGHUP handler: {}",
        d.log()
    );
    assert!(
        !d.log().contains("lvsd running"),
        "the start must still be under way (the config read): make the file larger"
    );
    signal(&d, nix::sys::signal::Signal::SIGHUP);
    assert!(
        d.wait_log("lvsd running", Duration::from_secs(60)),
        "{}",
        d.log()
    );
    assert!(d.alive(), "the daemon survived the SIGHUP: {}", d.log());
    assert!(
        d.wait_log("SIGHUP: reloading the config", Duration::from_secs(10)),
        "{}",
        d.log()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_daemon_or_an_apply_beside_it_is_refused_naming_the_first() {
    let dir = workdir("lock");
    let cfg = config(&dir, "lvsd.yaml", 2);
    let d = Daemon::start(&dir, &cfg, &[]);
    assert!(
        d.wait_log("lvsd running", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    let pid = d.child.id();
    let run = |args: &[&str]| {
        lvsd()
            .args(args)
            .arg("-c")
            .arg(&cfg)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .output()
            .unwrap()
    };
    let second = run(&["run"]);
    let said = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(second.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("lvsd run (pid {pid}) already manages")),
        "{said}"
    );
    let apply = run(&["apply"]);
    let said = String::from_utf8_lossy(&apply.stderr).into_owned();
    assert_eq!(apply.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("pid {pid}")), "{said}");
    // The first daemon still answers on its own status socket.
    let status = lvsd()
        .args(["status", "--json", "--state-dir"])
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(json.contains(&format!("\"pid\":{pid}")), "{json}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads a whole HTTP answer to `GET path` from `addr`, within `limit`.
fn get(addr: &str, path: &str, limit: Duration) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn clients_that_stall_do_not_stall_a_scrape() {
    let dir = workdir("metrics");
    let cfg = config(&dir, "lvsd.yaml", 2);
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start(&dir, &cfg, &["--metrics-listen", &addr]);
    assert!(
        d.wait_log("metrics on", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    // Three clients that connect and never send a request, one that sends half of one.
    let mut stalled: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /metr").unwrap();
    stalled.push(half);
    let answer = get(&addr, "/metrics", Duration::from_secs(60)).expect("a scrape answered");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    // lvsd's own metrics (whether the first pass has ended yet or not).
    assert!(answer.contains("lvsd_reconcile_passes"), "{answer}");
    // Answered while every stalled client still holds its connection: a server that served
    // them in turn would have had to time each of them out (and close it) first.
    for s in &mut stalled {
        s.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let still_open = matches!(
            s.read(&mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        assert!(
            still_open,
            "a stalled client was dealt with before the scrape"
        );
    }
    let missing = get(&addr, "/", Duration::from_secs(60)).unwrap();
    assert!(missing.contains(" 404 "), "{missing}");
    drop(stalled);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn status_answers_while_a_large_config_is_read() {
    let dir = workdir("status");
    let cfg = config(&dir, "lvsd.yaml", 2);
    let d = Daemon::start(&dir, &cfg, &[]);
    assert!(
        d.wait_log("lvsd running", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    let big = config(&dir, "big.yaml", 140_000);
    std::fs::rename(&big, &cfg).unwrap();
    // What the daemon says once it has read the file (it cannot check it against a table it
    // may not read, so it keeps the last good config).
    let read = "cannot check the new config";
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !d.log().contains(read),
        "the read must still be under way: make the file larger"
    );
    let status = lvsd()
        .args(["status", "--json", "--state-dir"])
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let log_when_answered = d.log();
    let json = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(json.contains("\"table\":"), "{json}");
    assert!(
        !log_when_answered.contains(read),
        "status answered only after the config was read: {log_when_answered}"
    );
    assert!(d.wait_log(read, Duration::from_secs(120)), "{}", d.log());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_reader_lost_to_a_panic_ends_the_daemon_for_its_supervisor_to_restart() {
    let dir = workdir("lost-reader");
    let cfg = config(&dir, "lvsd.yaml", 2);
    // The reload's reader panics (LVSD_FAULT=reload-panic); the start's reader does not.
    let mut d = Daemon::start_with(&dir, &cfg, &[], &[("LVSD_FAULT", "reload-panic")]);
    assert!(
        d.wait_log("lvsd running", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    let next = config(&dir, "next.yaml", 3);
    std::fs::rename(&next, &cfg).unwrap();
    // Not a daemon that goes on pinging the watchdog with its config gone: an exit, non-zero.
    let status = d.exited(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{status:?}: {}",
        d.log()
    );
    assert!(
        d.log().contains("the config reader was lost"),
        "{}",
        d.log()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A config of `n` services whose reals are checked (tcp, every second): the daemon writes
/// their health lines at its first pass.
fn config_with_checks(dir: &Path, name: &str, n: usize) -> PathBuf {
    let mut text = String::from("services:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - address: 10.100.0.{}:80\n    check: {{type: tcp, interval: 1s, timeout: 1s}}\n    reals:\n      - address: 10.200.0.1\n",
            i + 1
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// A disk that hangs under the health lines (written for `lvsd plan` at every change of the
/// health picture, and fsync'd) holds up their write and nothing else: the loop goes on
/// reading edits and running passes, and the lines are written once the disk answers. With
/// the write on the loop, as before, the first pass stopped there and the edit was never read.
#[test]
fn a_hung_write_of_the_health_lines_holds_up_no_pass() {
    let dir = workdir("hung-write");
    let cfg = config_with_checks(&dir, "lvsd.yaml", 2);
    let hold = dir.join("hold");
    std::fs::write(&hold, "").unwrap();
    let d = Daemon::start_with(
        &dir,
        &cfg,
        &[],
        &[
            ("LVSD_FAULT", "health-lines-write"),
            ("LVSD_FAULT_HOLD", hold.to_str().unwrap()),
        ],
    );
    assert!(
        d.wait_log("LVSD_FAULT: holding this write", Duration::from_secs(20)),
        "{}",
        d.log()
    );
    let next = config_with_checks(&dir, "next.yaml", 3);
    std::fs::rename(&next, &cfg).unwrap();
    // Read, and (with no table to check it against here) kept waiting: the loop is not held.
    assert!(
        d.wait_log("cannot check the new config", Duration::from_secs(20)),
        "the edit was not read while the health lines' write hung: {}",
        d.log()
    );
    let lines = dir.join("state").join("health");
    assert!(!lines.exists(), "the write was held");
    std::fs::remove_file(&hold).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while !lines.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        lines.exists(),
        "written once the disk answered: {}",
        d.log()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
