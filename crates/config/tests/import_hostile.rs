//! Bad input to the importers (issue 27, classes 1–3): `lvsd import` from keepalived,
//! ldirectord and ipvsadm is bounded as `lvsd check` is (bytes, nesting, macro expansion,
//! includes, linear-time reading), never loses or changes a setting silently, and cites the
//! line of the file the user wrote, never of the converted YAML.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::Path;

use proptest::prelude::*;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lvsd-import-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keepalived_err(text: &str) -> String {
    match config::import::keepalived(text, Path::new("k.conf")) {
        Ok(c) => panic!("accepted:\n{}", c.yaml),
        Err(e) => e.to_string(),
    }
}

fn ldirectord_err(text: &str) -> String {
    match config::import::ldirectord(text, Path::new("l.cf")) {
        Ok(c) => panic!("accepted:\n{}", c.yaml),
        Err(e) => e.to_string(),
    }
}

fn ipvsadm_err(text: &str) -> String {
    match config::import::ipvsadm(text, Path::new("rules")) {
        Ok(c) => panic!("accepted:\n{}", c.yaml),
        Err(e) => e.to_string(),
    }
}

const VS: &str =
    "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.1.1 80 {\n  }\n}\n";

// Class 1: limits.

// Class 2: nothing lost or changed silently.

#[test]
fn ipvsadm_a_service_added_twice_is_an_error_naming_both_lines() {
    let e = ipvsadm_err(
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1\n-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 10.0.1.2:80 -g -w 1\n",
    );
    assert!(e.starts_with("rules:3:"), "{e}");
    assert!(e.contains("line 1"), "{e}");
    let e = ipvsadm_err(
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 5\n",
    );
    assert!(e.starts_with("rules:3:"), "{e}");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn ipvsadm_a_scheduler_lvsd_does_not_take_is_an_error_at_its_line() {
    let e = ipvsadm_err("-A -t 10.0.0.1:80 -s [x]\n");
    assert!(e.starts_with("rules:1:"), "{e}");
    assert!(e.contains("scheduler"), "{e}");
    let e = ipvsadm_err("\n-A -t 10.0.0.1:80 -s \u{1b}[2J\n");
    assert!(e.starts_with("rules:2:"), "{e}");
    assert!(!e.contains('\u{1b}'), "raw escape in {e:?}");
}

// Class 3: errors at the source's lines.

#[test]
fn keepalived_a_duplicate_service_is_cited_at_its_virtual_server() {
    let text = format!("{VS}\n{VS}");
    let e = keepalived_err(&text);
    assert!(!e.contains("converted"), "{e}");
    assert!(e.starts_with("k.conf:7:"), "{e}");
    assert!(e.contains("k.conf:1"), "the first one is named too: {e}");
}

#[test]
fn ldirectord_a_duplicate_service_is_cited_at_its_virtual() {
    let text = "virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\nvirtual=10.0.0.1:80\n    real=10.0.1.2:80 gate\n";
    let e = ldirectord_err(text);
    assert!(!e.contains("converted"), "{e}");
    assert!(e.starts_with("l.cf:3:"), "{e}");
}

#[test]
fn ipvsadm_what_lvsd_refuses_is_cited_at_its_rule() {
    let e = ipvsadm_err("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 0.0.0.0:80 -g -w 1\n");
    assert!(!e.contains("converted"), "{e}");
    assert!(e.starts_with("rules:"), "{e}");
}

// The rule for every importer: what it writes passes `lvsd check`, and its errors cite the
// source.

fn fixture(p: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(p),
    )
    .unwrap()
}

const IPVSADM: &str = "\
-A -t 172.16.1.50:80 -s wrr -p 60
-a -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 3
-a -t 172.16.1.50:80 -r 172.16.1.102:8080 -m -w 1 -x 100 -y 10
-A -u [2001:db8::50]:53 -s sh -b sh-port
-a -u [2001:db8::50]:53 -r [2001:db8::101]:53 -i -w 2 --tun-type gue --tun-port 6080
-A -f 7 -s rr -o
-a -f 7 -r 172.16.1.101 -g -w 1
";

/// `text` with one line replaced, removed, duplicated or garbled.
fn mutate(text: &str, op: u8, at: usize, junk: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        return junk.to_owned();
    }
    let i = at % lines.len();
    match op % 5 {
        0 => lines[i] = junk.to_owned(),
        1 => {
            lines.remove(i);
        }
        2 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        3 => {
            let l = &lines[i];
            let cut = l
                .char_indices()
                .nth(at % (l.chars().count() + 1))
                .map_or(l.len(), |(b, _)| b);
            lines[i] = format!("{}{junk}{}", &l[..cut], &l[cut..]);
        }
        _ => {
            let words: Vec<&str> = lines[i].split_whitespace().collect();
            if !words.is_empty() {
                let w = at % words.len();
                let mut ws: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
                ws[w] = junk.to_owned();
                lines[i] = format!("    {}", ws.join(" "));
            }
        }
    }
    lines.join("\n") + "\n"
}

#[track_caller]
fn holds(
    what: &str,
    input: &str,
    out: Result<config::import::Converted, config::Error>,
) -> Result<(), TestCaseError> {
    match out {
        Ok(c) => {
            if let Err(e) = config::parse(&c.yaml, "out.yaml") {
                return Err(TestCaseError::fail(format!(
                    "{what}: output refused by lvsd check: {e}\n--- input\n{input}\n--- output\n{}",
                    c.yaml
                )));
            }
        }
        Err(e) => {
            let e = e.to_string();
            prop_assert!(
                !e.contains("(converted)"),
                "{what}: {e}\n--- input\n{input}"
            );
            prop_assert!(!e.contains('\u{1b}'), "{what}: raw escape in {e:?}");
        }
    }
    Ok(())
}

fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("\"".to_owned()),
        Just("[x]".to_owned()),
        Just("a: b".to_owned()),
        Just("\u{1b}[2J".to_owned()),
        Just("0.0.0.0".to_owned()),
        Just("255.255.255.255:80".to_owned()),
        Just("10.0.0.1:80".to_owned()),
        Just("$X".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn keepalived_output_always_passes_check(op: u8, at: usize, op2: u8, at2: usize, j in junk(), j2 in junk()) {
        let text = mutate(&mutate(&fixture("keepalived/keepalived.conf"), op, at, &j), op2, at2, &j2);
        // Without the fixture's directory the includes are missing: read it where it is.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keepalived/keepalived.conf");
        let out = config::import::keepalived(&text, &path);
        holds("keepalived", &text, out)?;
    }

    #[test]
    fn ldirectord_output_always_passes_check(op: u8, at: usize, op2: u8, at2: usize, j in junk(), j2 in junk()) {
        let text = mutate(&mutate(&fixture("ldirectord/ldirectord.cf"), op, at, &j), op2, at2, &j2);
        let out = config::import::ldirectord(&text, Path::new("l.cf"));
        holds("ldirectord", &text, out)?;
    }

    #[test]
    fn ipvsadm_output_always_passes_check(op: u8, at: usize, op2: u8, at2: usize, j in junk(), j2 in junk()) {
        let text = mutate(&mutate(IPVSADM, op, at, &j), op2, at2, &j2);
        let out = config::import::ipvsadm(&text, Path::new("rules"));
        holds("ipvsadm", &text, out)?;
    }
}
