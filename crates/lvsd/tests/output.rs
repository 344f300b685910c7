//! lvsd's output streams as shells and machines use them: a reader that goes away early
//! (`| head -1`) ends the command quietly, a full disk is an error and a failing exit, every
//! `--json` command prints one JSON document also when it fails, and imported text reaches the
//! terminal escaped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("lvsd-output-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const VALID: &str = "services:\n  - address: 10.0.0.1:80\n    reals:\n      - address: 10.0.1.1\n";

fn lvsd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lvsd"))
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let d = dir("pipe");
    let p = d.join("lvsd.yaml");
    std::fs::write(&p, VALID).unwrap();
    // A pipe whose reader is gone before lvsd writes: every write is EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = lvsd()
        .args(["check", "-c"])
        .arg(&p)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err, "", "nothing said about a reader that left");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_full_disk_is_an_error_and_a_failing_exit() {
    let d = dir("full");
    let p = d.join("lvsd.yaml");
    std::fs::write(&p, VALID).unwrap();
    let p = p.to_str().unwrap();
    for args in [
        &["check", "-c", p][..],
        &["check", "--json", "-c", p][..],
        &["--version"][..],
        &["--help"][..],
        &["completions", "bash"][..],
        &["man"][..],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = lvsd()
            .args(args)
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("lvsd: cannot write to standard output") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

fn json_of(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = lvsd().args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{args:?}: stdout is not one JSON document ({e}): {text:?}; stderr {err:?}")
    });
    (out.status.code().unwrap_or(-1), doc, err)
}

#[test]
fn every_json_command_prints_a_document_also_when_it_fails() {
    let d = dir("json");
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "services:\n  - address: 10.0.0.1:80\n    wieght: 2\n").unwrap();
    let bad = bad.to_str().unwrap();
    let state = d.join("state");
    let state = state.to_str().unwrap();
    for cmd in ["plan", "apply"] {
        let (code, doc, _) = json_of(&[cmd, "--json", "--state-dir", state, "-c", bad]);
        assert_eq!(code, 1, "{cmd}: {doc}");
        assert_eq!(doc["command"], cmd, "{doc}");
        assert_eq!(doc["exit"], 1, "{doc}");
        let e = doc["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{cmd}: {doc}"));
        assert!(
            e.contains("bad.yaml:3:5: unknown key `wieght`"),
            "{cmd}: {e}"
        );
    }
    // A command line lvsd cannot read.
    let (code, doc, err) = json_of(&["plan", "--json", "--no-such-option"]);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(
        (doc["command"].as_str(), doc["exit"].as_u64()),
        (Some("plan"), Some(2)),
        "{doc}"
    );
    assert!(
        doc["error"].as_str().unwrap().contains("--no-such-option"),
        "{doc}"
    );
    assert!(err.contains("--no-such-option"), "{err}");
    // No daemon on this state directory.
    let (code, doc, _) = json_of(&["status", "--json", "--state-dir", state]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["exit"], 1, "{doc}");
    assert!(doc["error"].as_str().is_some(), "{doc}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn import_messages_reach_the_terminal_escaped() {
    let d = dir("import");
    let p = d.join("keepalived.conf");
    std::fs::write(
        &p,
        "virtual_server 10.0.0.1 80 {\n  lb_algo rr\n  weird\u{1b}]0;owned\u{7} 1\n  real_server 10.0.1.1 80 {\n  }\n}\n",
    )
    .unwrap();
    let out = lvsd()
        .args(["import", "--from", "keepalived"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("weird\\u{1b}]0;owned\\u{7}"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_full_disk_under_stderr_changes_no_exit_code() {
    let d = dir("stderr");
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "services:\n  - address: 10.0.0.1:80\n    wieght: 2\n").unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = lvsd()
        .args(["check", "-c"])
        .arg(&bad)
        .stdout(Stdio::null())
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "invalid, said or not; no panic");
    std::fs::remove_dir_all(&d).unwrap();
}
