//! `lvsd check` as an operator runs it: the verdict on stdout, a warning on stderr when the
//! file has no services (still exit 0), problems on stderr with exit 1, and nothing read from
//! what is not a regular file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["check", "-c"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("lvsd-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_file_without_services_is_valid_with_a_warning() {
    let d = dir("empty");
    for text in [
        "",
        "# managed by lvsd\n",
        "--- # managed\n",
        "services: []\n",
    ] {
        let p = d.join("lvsd.yaml");
        std::fs::write(&p, text).unwrap();
        let (code, out, err) = check(&p);
        assert_eq!(code, 0, "{text:?}: {err}");
        assert!(
            out.ends_with("valid (0 services, 0 real servers)\n"),
            "{out}"
        );
        assert!(
            err.contains("warning:") && err.contains("has no services"),
            "{text:?}: {err:?}"
        );
    }
    let p = d.join("one.yaml");
    std::fs::write(&p, "services:\n  - address: 10.0.0.1:80\n").unwrap();
    let (code, out, err) = check(&p);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.ends_with("valid (1 services, 0 real servers)\n"),
        "{out}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `mh` without `mh-fallback` drops flows hashed to a drained real: valid, with a warning on
/// stderr (and in `--json`), whichever way the file is read (alone, or with its includes).
#[test]
fn mh_without_mh_fallback_is_valid_with_a_warning() {
    let d = dir("mh");
    let svc = |flags: &str| {
        format!(
            "services:\n  - address: 10.0.0.1:80\n    scheduler: mh\n    flags: [{flags}]\n    reals:\n      - address: 10.0.1.1\n"
        )
    };
    let alone = d.join("alone.yaml");
    std::fs::write(&alone, svc("mh-port")).unwrap();
    std::fs::write(d.join("web.yaml"), svc("mh-port")).unwrap();
    let main = d.join("main.yaml");
    std::fs::write(&main, "include: [web.yaml]\n").unwrap();
    for p in [&alone, &main] {
        let (code, _, err) = check(p);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(
                "warning: service TCP 10.0.0.1:80: scheduler mh without the mh-fallback flag"
            ),
            "{}: {err}",
            p.display()
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["check", "--json", "-c"])
        .arg(&alone)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(1), "{doc}");
    std::fs::write(&alone, svc("mh-fallback, mh-port")).unwrap();
    let (code, _, err) = check(&alone);
    assert_eq!((code, err.as_str()), (0, ""));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn text_that_only_looks_empty_is_an_error() {
    let d = dir("looks-empty");
    for text in [
        "\u{c}\n",
        "\u{a0}\n",
        "\u{3000}\n",
        "---\n---\n",
        "services:\n",
    ] {
        let p = d.join("lvsd.yaml");
        std::fs::write(&p, text).unwrap();
        let (code, out, err) = check(&p);
        assert_eq!(code, 1, "{text:?}: {out}");
        assert!(err.contains("lvsd.yaml:"), "{err}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let d = dir("fifo");
    let p = d.join("lvsd.yaml");
    assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
    let (tx, rx) = std::sync::mpsc::channel();
    let q = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(check(&q));
    });
    let (code, _, err) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("lvsd check blocked on a FIFO");
    assert_eq!(code, 1);
    assert!(
        err.contains("a FIFO (named pipe), not a regular file"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `lvsd import`: a refused conversion is exit 1 with the source's file:line on stderr and
/// nothing on stdout; standard input is read as a file is.
#[test]
fn import_refuses_at_the_source_line_and_writes_nothing() {
    use std::io::Write as _;
    let d = dir("import");
    let p = d.join("rules");
    std::fs::write(
        &p,
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1\n-A -t 10.0.0.1:80 -s wlc\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["import", "--from", "ipvsadm"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("rules:3:1: -t 10.0.0.1:80 is added a second time"),
        "{err}"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .args(["import", "--from", "ipvsadm", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("address: 10.0.0.1:80"), "{yaml}");
}

fn check_with(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lvsd"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A destination directory (the main file and conf.d/ with one valid service file) and a
/// temporary copy of the main file elsewhere, as Ansible's `validate` sees it.
fn destination_and_copy(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let d = dir(name);
    let etc = d.join("etc");
    std::fs::create_dir_all(etc.join("conf.d")).unwrap();
    let main = "include: [conf.d/*.yaml]\nservices:\n  - address: 10.0.0.1:80\n";
    std::fs::write(etc.join("lvsd.yaml"), main).unwrap();
    std::fs::write(
        etc.join("conf.d").join("web.yaml"),
        "services:\n  - address: 10.0.0.2:80\n    reals:\n      - address: 192.168.1.1:80\n",
    )
    .unwrap();
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let copy = tmp.join("tmpa1b2c3");
    std::fs::write(&copy, main).unwrap();
    (etc, copy)
}

#[test]
fn a_copy_checked_as_its_destination_resolves_includes_there() {
    let (etc, copy) = destination_and_copy("as");
    // Without --as, conf.d/ is looked for next to the copy: refused.
    let (code, _, err) = check_with(&["-c".as_ref(), copy.as_os_str()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("conf.d"), "{err}");
    // With it, the files at the destination are read: valid, both services counted.
    let dest = etc.join("lvsd.yaml");
    let (code, out, err) = check_with(&[
        "-c".as_ref(),
        copy.as_os_str(),
        "--as".as_ref(),
        dest.as_os_str(),
    ]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let shown = copy.display().to_string();
    assert!(
        out.starts_with(&format!("{shown}: valid (2 services, 1 real servers")),
        "{out}"
    );
    assert!(out.contains("web.yaml"), "{out}");
    // The destination's own file is not read as an include of itself, even by a pattern
    // that matches it.
    std::fs::write(&copy, "include: ['*.yaml']\n").unwrap();
    let (code, out, err) = check_with(&[
        "-c".as_ref(),
        copy.as_os_str(),
        "--as".as_ref(),
        dest.as_os_str(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid (0 services"), "{out}");
    std::fs::remove_dir_all(etc.parent().unwrap()).unwrap();
}

#[test]
fn a_broken_file_at_the_destination_is_cited_at_its_path_and_line() {
    let (etc, copy) = destination_and_copy("as-broken");
    let broken = etc.join("conf.d").join("web.yaml");
    std::fs::write(
        &broken,
        "services:\n  - address: 10.0.0.2:80\n    scheduler: nosuch\n",
    )
    .unwrap();
    let dest = etc.join("lvsd.yaml");
    let (code, out, err) = check_with(&[
        "-c".as_ref(),
        copy.as_os_str(),
        "--as".as_ref(),
        dest.as_os_str(),
    ]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.starts_with(&format!("{}:3:", broken.display())),
        "{err}"
    );
    // A problem in the copy itself is cited at the copy, with its line.
    std::fs::write(
        &copy,
        "include: [conf.d/*.yaml]\nservices:\n  - address: 10.0.0.1:99999\n",
    )
    .unwrap();
    let (code, _, err) = check_with(&[
        "-c".as_ref(),
        copy.as_os_str(),
        "--as".as_ref(),
        dest.as_os_str(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{}:3:", copy.display())), "{err}");
    std::fs::remove_dir_all(etc.parent().unwrap()).unwrap();
}
