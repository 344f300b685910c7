//! Bad input to the importers (issue 27, classes 1–3): `lvsd import` from keepalived,
//! ldirectord and ipvsadm is bounded as `lvsd check` is (bytes, nesting, macro expansion,
//! includes, linear-time reading), never loses or changes a setting silently, and cites the
//! line of the file the user wrote, never of the converted YAML.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

#[test]
fn keepalived_macros_that_double_are_refused_naming_the_limit() {
    let mut text = String::from("$M0=xxxxxxxxxxxxxxxx\n");
    for i in 1..24 {
        text.push_str(&format!("$M{i}=${{M{}}}${{M{}}}\n", i - 1, i - 1));
    }
    text.push_str("virtual_server 10.0.0.1 80 {\n  lb_algo $M23\n}\n");
    let e = keepalived_err(&text);
    assert!(e.starts_with("k.conf:26:"), "{e}");
    assert!(e.contains("expands to more than"), "{e}");
}

#[test]
fn keepalived_a_definition_that_uses_itself_is_refused() {
    let e = keepalived_err("$A=${B}\n$B=x$A\nvirtual_server $A 80 {\n}\n");
    assert!(e.starts_with("k.conf:3:"), "{e}");
    assert!(e.contains("uses itself"), "{e}");
}

#[test]
fn keepalived_deep_nesting_is_refused_naming_the_limit() {
    let text = "virtual_server 10.0.0.1 80 {\n".to_owned() + &"a {\n".repeat(50_000);
    let e = keepalived_err(&text);
    assert!(e.contains("blocks nest deeper than"), "{e}");
    assert!(e.starts_with("k.conf:"), "{e}");
    assert!(
        e.lines().count() <= 2,
        "one message, not one per brace: {e}"
    );
}

#[test]
fn keepalived_a_long_line_is_read_in_linear_time() {
    // A 10 MiB line of a million words: quadratic reading would not finish.
    let text = format!(
        "virtual_server 10.0.0.1 80 {{\n  notify_up{}\n  real_server 10.0.1.1 80 {{\n  }}\n}}\n",
        " xxxxxxxxx".repeat(1 << 20)
    );
    let _ = config::import::keepalived(&text, Path::new("k.conf"));
    // More words than the limit, on one line: refused as they are read.
    let text = format!(
        "virtual_server 10.0.0.1 80 {{\n  notify_up{}\n}}\n",
        " x".repeat(3 << 20)
    );
    let e = keepalived_err(&text);
    assert!(e.starts_with("k.conf:2:"), "{e}");
    assert!(e.contains("words and braces in all"), "{e}");
    // Many definitions and a long line using them.
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("$D{i}=y\n"));
    }
    text.push_str(&format!(
        "virtual_server 10.0.0.1 80 {{\n  notify_up{}\n}}\n",
        " $D1".repeat(1 << 18)
    ));
    let _ = config::import::keepalived(&text, Path::new("k.conf"));
}

#[test]
fn ldirectord_and_ipvsadm_read_a_long_line_in_linear_time() {
    let words = " xxxxxxxxx".repeat(1 << 20);
    let text = format!(
        "virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate 1 \"{words}\", \"ok\"\n    request=\"{words}\"\n    frobnicate={words}\n"
    );
    let _ = config::import::ldirectord(&text, Path::new("l.cf"));
    let text = format!("-A -t 10.0.0.1:80 -s rr{}\n", " -o".repeat(3 << 20));
    let _ = config::import::ipvsadm(&text, Path::new("rules"));
    let text =
        format!("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1{words}\n");
    let _ = config::import::ipvsadm(&text, Path::new("rules"));
}

#[test]
fn keepalived_includes_that_include_each_other_are_a_cycle() {
    let dir = scratch("cycle");
    for n in ["a", "b", "c", "d"] {
        std::fs::write(dir.join(format!("{n}.conf")), "include *.conf\n").unwrap();
    }
    let main = dir.join("a.conf");
    let text = std::fs::read_to_string(&main).unwrap();
    let e = match config::import::keepalived(&text, &main) {
        Ok(c) => panic!("accepted:\n{}", c.yaml),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("a.conf:1:9: `include` of"), "{e}");
    assert!(e.contains("includes itself"), "{e}");
    assert!(e.len() < 4096, "{} bytes of messages", e.len());
}

#[test]
fn keepalived_included_files_are_counted() {
    // Ten files each including the next ten: 10^8 reads without a limit.
    let dir = scratch("fan");
    for level in 0..8 {
        for i in 0..10 {
            std::fs::write(
                dir.join(format!("l{level}-{i}.conf")),
                format!("include l{}-*.conf\n", level + 1),
            )
            .unwrap();
        }
    }
    let main = dir.join("l0-0.conf");
    let text = std::fs::read_to_string(&main).unwrap();
    let e = match config::import::keepalived(&text, &main) {
        Ok(c) => panic!("accepted:\n{}", c.yaml),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("files in all"), "{e}");
    assert!(e.len() < 4096, "{} bytes of messages", e.len());
}

#[test]
fn text_over_the_size_limit_is_refused_by_every_importer() {
    let text = "#".repeat(config::MAX_FILE_BYTES as usize + 1);
    for e in [
        config::import::keepalived(&text, Path::new("k.conf")).map(|_| ()),
        config::import::ldirectord(&text, Path::new("k.conf")).map(|_| ()),
        config::import::ipvsadm(&text, Path::new("k.conf")).map(|_| ()),
    ] {
        let e = e.unwrap_err().to_string();
        assert!(e.contains("the limit is 16777216 bytes"), "{e}");
    }
}

// Class 2: nothing lost or changed silently.

#[test]
fn keepalived_imports_the_same_way_every_time() {
    let mut text = String::from("$A0=10.0.0.1\n");
    for i in 1..12 {
        text.push_str(&format!("$A{i}=${{A{}}}\n", i - 1));
    }
    text.push_str("$X=$A11 80\n");
    text.push_str("virtual_server $X {\n  protocol TCP\n  real_server 10.0.1.1 80 {\n  }\n}\n");
    let first = config::import::keepalived(&text, Path::new("k.conf"))
        .map(|c| c.yaml)
        .map_err(|e| e.to_string());
    assert!(
        first.as_ref().is_ok_and(|y| y.contains("10.0.0.1:80")),
        "{first:?}"
    );
    for _ in 0..20 {
        let again = config::import::keepalived(&text, Path::new("k.conf"))
            .map(|c| c.yaml)
            .map_err(|e| e.to_string());
        assert_eq!(again, first);
    }
}

#[test]
fn keepalived_definitions_are_read_as_keepalived_reads_them() {
    // `$AB` is not `$A` followed by B; `$A:80` is not replaced (keepalived wants a space after
    // an unbraced name), `${A}:80` is.
    let out = config::import::keepalived(
        "$A=10.0.0.1\n$P=80\nvirtual_server ${A} $P {\n  protocol TCP\n  real_server $A 8080 {\n  }\n}\n",
        Path::new("k.conf"),
    )
    .unwrap();
    assert!(out.yaml.contains("10.0.0.1:80"), "{}", out.yaml);
    let out = config::import::keepalived(
        "$A=10.0.0.1\nvirtual_server $A 80 {\n  protocol TCP\n  real_server 10.0.1.1 80 {\n    notify_up $A/x ${A}/y\n  }\n}\n",
        Path::new("k.conf"),
    )
    .unwrap();
    assert!(
        out.summary
            .iter()
            .any(|l| l.contains("notify_up $A/x 10.0.0.1/y")),
        "{:?}",
        out.summary
    );
    let e = keepalived_err(
        "$A=10.0.0.1\nvirtual_server $AB 80 {\n  real_server 10.0.1.1 80 {\n  }\n}\n",
    );
    assert!(e.contains("`$AB` is not an IP address"), "{e}");
}

#[test]
fn keepalived_an_include_that_matches_nothing_is_in_the_summary() {
    let dir = scratch("nomatch");
    let main = dir.join("keepalived.conf");
    let out = config::import::keepalived("include conf.d/*.conf\n", &main).unwrap();
    assert!(
        out.summary
            .iter()
            .any(|l| l.contains("keepalived.conf:1") && l.contains("matches no file")),
        "{:?}",
        out.summary
    );
}

#[test]
fn keepalived_timers_lvsd_cannot_carry_are_errors_at_their_line() {
    for (setting, line) in [
        ("delay_loop 0", 2),
        ("connect_timeout 0", 2),
        ("delay_loop 7200", 2),
        ("connect_timeout 0.0001", 2),
    ] {
        let text = format!(
            "virtual_server 10.0.0.1 80 {{\n  {setting}\n  protocol TCP\n  real_server 10.0.1.1 80 {{\n    TCP_CHECK {{\n    }}\n  }}\n}}\n"
        );
        let e = keepalived_err(&text);
        assert!(e.starts_with(&format!("k.conf:{line}:")), "{setting}: {e}");
        let word = setting.split(' ').next().unwrap();
        assert!(e.contains(word), "{setting}: {e}");
    }
    // What lvsd can carry is carried exactly.
    let text = "virtual_server 10.0.0.1 80 {\n  delay_loop 3600\n  connect_timeout 1.5\n  protocol TCP\n  real_server 10.0.1.1 80 {\n    TCP_CHECK {\n    }\n  }\n}\n";
    let out = config::import::keepalived(text, Path::new("k.conf")).unwrap();
    assert!(out.yaml.contains("interval: 3600s"), "{}", out.yaml);
    assert!(out.yaml.contains("timeout: 1500ms"), "{}", out.yaml);
}

#[test]
fn keepalived_numbers_too_large_for_lvsd_are_errors() {
    let e = keepalived_err(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.1.1 80 {\n    uthreshold 4294967296\n  }\n}\n",
    );
    assert!(e.starts_with("k.conf:4:"), "{e}");
    let e = keepalived_err(
        "virtual_server_group G {\n  fwmark 4294967297\n}\nvirtual_server group G {\n  real_server 10.0.1.1 80 {\n  }\n}\n",
    );
    assert!(e.starts_with("k.conf:2:"), "{e}");
    // keepalived ignores a persistence_timeout out of its range (class 8): named, at its line.
    let out = config::import::keepalived(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  persistence_timeout 0\n  real_server 10.0.1.1 80 {\n  }\n}\n",
        Path::new("k.conf"),
    )
    .unwrap();
    assert!(
        out.summary.iter().any(|s| s.contains("k.conf:3")),
        "{:?}",
        out.summary
    );
    assert!(!out.yaml.contains("persistence:"), "{}", out.yaml);
    // A retry lvsd cannot count is named, not just clamped.
    let out = config::import::keepalived(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.1.1 80 {\n    TCP_CHECK {\n      retry 500\n    }\n  }\n}\n",
        Path::new("k.conf"),
    );
    match out {
        Ok(c) => assert!(
            c.summary.iter().any(|s| s.contains("retry 500")),
            "{:?}",
            c.summary
        ),
        Err(e) => assert!(e.to_string().contains("retry"), "{e}"),
    }
}

#[test]
fn keepalived_persistence_settings_are_not_copied_into_yaml_raw() {
    let e = keepalived_err(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  persistence_timeout 60\n  persistence_granularity 255.0.0.0,x:1\n  real_server 10.0.1.1 80 {\n  }\n}\n",
    );
    assert!(e.starts_with("k.conf:4:"), "{e}");
    assert!(!e.contains("converted"), "{e}");
}

#[test]
fn ldirectord_numbers_that_do_not_read_are_errors_at_their_line() {
    for (setting, indented) in [
        ("checktimeout=abc", false),
        ("checkinterval=-3", false),
        ("checktimeout=abc", true),
        ("checkinterval=-3", true),
        ("failurecount=x", true),
        ("persistent=ten", true),
        ("checkport=http", true),
        ("negotiatetimeout=0", true),
    ] {
        let text = if indented {
            format!("virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n    {setting}\n")
        } else {
            format!("{setting}\nvirtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n")
        };
        let line = if indented { 3 } else { 1 };
        let e = ldirectord_err(&text);
        assert!(e.starts_with(&format!("l.cf:{line}:")), "{setting}: {e}");
    }
}

#[test]
fn a_million_bad_lines_are_a_hundred_messages_and_a_count() {
    let text = "virtual=10.0.0.1:80\n".to_owned() + &"real=10.0.1.1:80 gate\n".repeat(200_000);
    let e = ldirectord_err(&text);
    assert!(e.lines().count() <= 101, "{} lines", e.lines().count());
    assert!(
        e.contains("199900 more problems not shown"),
        "{}",
        e.lines().last().unwrap_or_default()
    );
}

#[test]
fn ldirectord_a_real_at_the_left_margin_is_an_error() {
    let e = ldirectord_err("virtual=10.0.0.1:80\nreal=10.0.1.1:80 gate\n");
    assert!(e.starts_with("l.cf:2:"), "{e}");
    assert!(e.contains("indent"), "{e}");
    let e =
        ldirectord_err("virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n  real=10.0.1.2:80 gate\n");
    assert!(e.starts_with("l.cf:3:"), "{e}");
}

#[test]
fn ldirectord_settings_are_not_copied_into_yaml_raw() {
    let e = ldirectord_err(
        "virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n    persistent=60\n    netmask=255.0.0.0, engine: sip\n",
    );
    assert!(e.starts_with("l.cf:4:"), "{e}");
    let e = ldirectord_err("virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate 99999999999\n");
    assert!(e.starts_with("l.cf:2:"), "{e}");
}

#[test]
fn text_from_the_file_is_escaped_in_the_summary_and_errors() {
    let out = config::import::ldirectord(
        "bad\u{1b}[2Jkey=1\nvirtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n",
        Path::new("l.cf"),
    )
    .unwrap();
    assert!(
        out.summary.iter().all(|l| !l.contains('\u{1b}')),
        "{:?}",
        out.summary
    );
    assert!(
        out.summary.iter().any(|l| l.contains("\\u{1b}")),
        "{:?}",
        out.summary
    );
    let e = keepalived_err("virtual_server 10.0.0.1 80 {\n  lb_algo \u{1b}[2J\n}\n");
    assert!(!e.contains('\u{1b}'), "{e:?}");
    let e =
        ldirectord_err("virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n    scheduler=\u{1b}[2J\n");
    assert!(!e.contains('\u{1b}'), "{e:?}");
}

#[test]
fn a_million_unconverted_settings_are_not_a_million_lines() {
    let text = "virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n".to_owned()
        + &"    frobnicate=1\n".repeat(100_000);
    let out = config::import::ldirectord(&text, Path::new("l.cf")).unwrap();
    assert!(out.summary.len() <= 1001, "{} lines", out.summary.len());
    assert!(
        out.summary.last().unwrap().contains("99000 more"),
        "{:?}",
        out.summary.last()
    );
}

#[test]
fn ldirectord_a_real_listed_twice_is_named() {
    let out = config::import::ldirectord(
        "virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n    real=10.0.1.1:80 gate 5\n",
        Path::new("l.cf"),
    )
    .unwrap();
    assert!(
        out.summary
            .iter()
            .any(|s| s.contains("l.cf:3") && s.contains("listed twice")),
        "{:?}",
        out.summary
    );
}

#[test]
fn keepalived_what_is_converted_with_a_difference_is_in_the_summary() {
    let summary = |text: &str| {
        config::import::keepalived(text, Path::new("k.conf"))
            .unwrap_or_else(|e| panic!("{e}"))
            .summary
    };
    let s = summary(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  sorry_server 10.0.1.1 80\n  real_server 10.0.1.1 80 {\n    TCP_CHECK {\n    }\n  }\n}\n",
    );
    assert!(
        s.iter()
            .any(|l| l.contains("k.conf:3") && l.contains("sorry_server")),
        "{s:?}"
    );
    let s = summary(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  quorum 5\n  real_server 10.0.1.1 80 {\n    TCP_CHECK {\n    }\n  }\n  real_server 10.0.1.2 80 {\n    TCP_CHECK {\n    }\n  }\n}\n",
    );
    assert!(
        s.iter()
            .any(|l| l.contains("k.conf:3") && l.contains("quorum 5")),
        "{s:?}"
    );
    let s = summary(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.1.1 80 {\n    inhibit_on_failure\n    TCP_CHECK {\n    }\n  }\n  real_server 10.0.1.2 80 {\n    TCP_CHECK {\n    }\n  }\n}\n",
    );
    assert!(s.iter().any(|l| l.contains("inhibit_on_failure")), "{s:?}");
}

#[test]
fn keepalived_a_real_server_or_status_that_does_not_read_is_an_error() {
    let e =
        keepalived_err("virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server {\n  }\n}\n");
    assert!(e.starts_with("k.conf:3:"), "{e}");
    let e = keepalived_err(
        "virtual_server 10.0.0.1 80 {\n  protocol TCP\n  real_server 10.0.1.1 80 {\n    HTTP_GET {\n      url {\n        status_code 200,500\n      }\n    }\n  }\n}\n",
    );
    assert!(e.starts_with("k.conf:6:"), "{e}");
}

#[test]
fn ldirectord_a_fallback_converted_with_a_difference_is_in_the_summary() {
    let out = config::import::ldirectord(
        "virtual=10.0.0.1:80\n    real=10.0.1.1:80 gate\n    fallback=nonsense\n",
        Path::new("l.cf"),
    )
    .unwrap();
    assert!(
        out.summary
            .iter()
            .any(|l| l.contains("l.cf:3") && l.contains("fallback")),
        "{:?}",
        out.summary
    );
}

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
    // Two blocks for one service are merged as keepalived merges them (class 8), unless one
    // has a sorry server or quorum, which keepalived keeps per block.
    let text = format!("{VS}\n{VS}");
    let out = config::import::keepalived(&text, Path::new("k.conf")).unwrap();
    assert!(
        out.summary.join("\n").contains("k.conf:7"),
        "{:?}",
        out.summary
    );
    let text = format!(
        "{VS}\n{}",
        VS.replace("protocol TCP", "protocol TCP\n  sorry_server 10.0.9.9 80")
    );
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
            for l in &c.summary {
                prop_assert!(!l.contains('\u{1b}'), "{what}: raw escape in {l:?}");
            }
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
    fn random_text_never_crashes_an_importer_and_what_it_writes_passes_check(
        words in prop::collection::vec(prop_oneof![
            Just("virtual_server"), Just("real_server"), Just("virtual_server_group"),
            Just("10.0.0.1"), Just("10.0.0.1-3"), Just("80"), Just("{"), Just("}"),
            Just("\n"), Just("\n    "), Just("lb_algo"), Just("rr"), Just("protocol"),
            Just("TCP"), Just("TCP_CHECK"), Just("delay_loop"), Just("1.5"), Just("$A"),
            Just("$A=$A$A"), Just("\"x"), Just("#"), Just("!"), Just("\\"),
            Just("virtual=10.0.0.1:80"), Just("real=10.0.1.1:80"), Just("gate"), Just("masq"),
            Just("checktype=connect"), Just("-A"), Just("-a"), Just("-t"), Just("10.0.0.1:80"),
            Just("-r"), Just("-s"), Just("-w"), Just("5"), Just("-m"), Just("fwmark"), Just("7"),
        ], 0..60)
    ) {
        let text = words.join(" ");
        holds("keepalived", &text, config::import::keepalived(&text, Path::new("k.conf")))?;
        holds("ldirectord", &text, config::import::ldirectord(&text, Path::new("l.cf")))?;
        holds("ipvsadm", &text, config::import::ipvsadm(&text, Path::new("rules")))?;
    }

    #[test]
    fn ipvsadm_output_always_passes_check(op: u8, at: usize, op2: u8, at2: usize, j in junk(), j2 in junk()) {
        let text = mutate(&mutate(IPVSADM, op, at, &j), op2, at2, &j2);
        let out = config::import::ipvsadm(&text, Path::new("rules"));
        holds("ipvsadm", &text, out)?;
    }
}

#[test]
fn keepalived_groups_that_make_millions_of_services_are_refused() {
    let mut text = String::from("virtual_server_group G {\n");
    for i in 0..8 {
        text.push_str(&format!("  10.{i}.0.0/16 80\n"));
    }
    text.push_str(
        "}\nvirtual_server group G {\n  protocol TCP\n  real_server 10.200.0.1 80 {\n  }\n}\n",
    );
    let e = keepalived_err(&text);
    assert!(e.starts_with("k.conf:11:"), "{e}");
    assert!(e.contains("services and real servers in all"), "{e}");
    // The groups themselves are bounded, used or not.
    let mut text = String::from("virtual_server_group G {\n");
    for i in 0..64 {
        text.push_str(&format!("  10.{i}.0.0/16 80\n"));
    }
    text.push_str("}\n");
    let e = keepalived_err(&text);
    assert!(e.starts_with("k.conf:17:"), "{e}");
    assert!(e.contains("addresses in all"), "{e}");
}
