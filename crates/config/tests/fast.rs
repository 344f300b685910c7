//! The fast reader must read whatever it accepts exactly as serde-saphyr does: random files in
//! the plain block style, then the same files damaged byte by byte, each compared with a parse
//! that goes through serde-saphyr alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Svc {
    vip: u8,
    opts: Vec<(&'static str, &'static str)>,
    reals: Vec<(u8, Option<&'static str>)>,
}

fn opt() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("scheduler", "wlc")),
        Just(("scheduler", "rr")),
        Just(("scheduler", "sh")),
        Just(("scheduler", "dr")),
        Just(("protocol", "udp")),
        Just(("protocol", "sctp")),
        Just(("name", "web")),
        Just(("name", "api-2")),
        Just(("forward", "nat")),
        Just(("forward", "tunnel")),
        Just(("persistence", "300")),
        Just(("persistence", "5m")),
        Just(("drain_timeout", "0")),
        Just(("drain_timeout", "30s")),
        Just(("slow_start", "20s")),
        Just(("slow_start", "0")),
        Just(("quorum", "1")),
        Just(("on_failure", "remove")),
        Just(("fallback", "10.9.9.9")),
        Just(("flags", "\n      - sh-port")),
        Just(("name", "null")),
        Just(("scheduler", "1.5")),
        Just(("weight", "2")),
        // Problems the validator finds in a file the fast reader reads: reported by either
        // reader, word for word the same.
        Just(("drain_timeout", "1s1s")),
        Just(("drain_timeout", "1500ms")),
        Just(("slow_start", "2h")),
        Just(("slow_start", "soon")),
        Just(("persistence", "010")),
        Just(("persistence", "50d")),
        Just(("quorum", "9")),
        Just(("fallback", "224.0.0.1")),
        Just(("fallback", "2001:db8::1:80")),
        Just(("name", "caf\u{e9}")),
        Just(("name", "a\u{a0}b")),
        Just(("name", "x\u{200b}")),
        Just(("name", "\u{3000}")),
        Just(("flags", "\n      - one-packet")),
        // Health checks in block style, valid and not.
        Just(("check", "\n      type: tcp")),
        Just((
            "check",
            "\n      type: http\n      path: /healthz\n      expect_status:\n        - 200\n        - 300-399\n      interval: 2s\n      rise: 2\n      fall: 3"
        )),
        Just((
            "check",
            "\n      type: https\n      host: www.example.com\n      expect_body: ok\n      timeout: 1500ms"
        )),
        Just((
            "check",
            "\n      type: command\n      command:\n        - /bin/true\n        - x"
        )),
        Just((
            "check",
            "\n      type: tcp\n      port: 8080\n      timeout: 1s\n      initial: up"
        )),
        Just(("check", "\n      type: ping")),
        Just(("check", "\n      port: 99999")),
        Just((
            "check",
            "\n      type: http\n      expect_status:\n        - 99"
        )),
        Just((
            "check",
            "\n      type: http\n      expect_status:\n        - 299-200"
        )),
        Just(("check", "\n      type: tcp\n      interval: 0s")),
        Just(("check", "\n      type: tcp\n      rise: 0")),
        Just(("check", "\n      type: tcp\n      initial: maybe")),
        Just(("check", "\n      type: tcp\n      color: red")),
    ]
}

fn real_opt() -> impl Strategy<Value = Option<&'static str>> {
    proptest::option::of(prop_oneof![
        Just("weight: 3"),
        Just("weight: 0"),
        Just("weight: 007"),
        Just("forward: nat"),
        Just("max_connections: 100"),
        Just("min_connections: 10"),
        Just("slow_start: 1m"),
        Just("slow_start: 0s"),
        Just("slow_start: 61m"),
        Just("weight: -1"),
        Just("weight: x"),
        Just("weight: 1_000"),
        Just("weight: +5"),
        Just("weight:"),
        Just("address: 127.0.0.1"),
        Just("address: 0.0.0.0"),
        Just("check:\n  port: 8081"),
        Just("check:\n  type: tcp\n  fall: 1"),
        Just("check:\n  rise: 0"),
        Just("check:\n  type: http\n  expect_status:\n    - 204"),
    ])
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        1u8..40,
        proptest::collection::vec(opt(), 0..3),
        proptest::collection::vec((1u8..30, real_opt()), 0..4),
    )
        .prop_map(|(vip, opts, reals)| Svc { vip, opts, reals })
}

fn render(services: &[Svc], indent: usize, host: Option<bool>) -> String {
    let pad = " ".repeat(indent);
    let mut t = String::from("# lvsd\n");
    let host_text = "host:\n  role: director\n  interface: eth0\n  vips:\n    - 10.0.0.200\n";
    if host == Some(true) {
        t.push_str(host_text);
    }
    t.push_str("services:\n");
    for s in services {
        t.push_str(&format!("{pad}- address: 10.0.0.{}:80  # vip\n", s.vip));
        for (k, v) in &s.opts {
            let v = v.replace("\n      ", &format!("\n{pad}    "));
            t.push_str(&format!("{pad}  {k}: {v}\n"));
        }
        // No reals: the key left out, or an empty list (`reals:` alone is null, an error);
        // now and then the null itself.
        match (s.reals.is_empty(), s.vip % 3) {
            (true, 0) => {}
            (true, 1) => t.push_str(&format!("{pad}  reals: []\n")),
            _ => t.push_str(&format!("{pad}  reals:\n")),
        }
        for (r, o) in &s.reals {
            t.push_str(&format!("{pad}    - address: 10.1.0.{r}\n"));
            if let Some(o) = o {
                let o = o.replace('\n', &format!("\n{pad}      "));
                t.push_str(&format!("{pad}      {o}\n"));
            }
        }
    }
    if host == Some(false) {
        t.push_str(host_text);
    }
    t
}

#[derive(Debug, Clone)]
enum Damage {
    Delete(usize),
    Insert(usize, &'static str),
    DupLine(usize),
    Indent(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Delete),
        (
            any::<usize>(),
            prop_oneof![
                Just(" "),
                Just("\n"),
                Just(":"),
                Just("- "),
                Just("#"),
                Just("a"),
                Just("1"),
                Just("\t"),
                Just("'"),
                Just("~"),
                Just(": x"),
                Just("\n  "),
                Just("--- "),
                // Every class of character the two readers must agree on (issue 21): C0 and
                // C1 controls, DEL, the byte-order mark, noncharacters, line and paragraph
                // separators, spaces YAML does not take as spaces, and ordinary non-ASCII.
                Just("\0"),
                Just("\u{1b}"),
                Just("\u{b}"),
                Just("\u{c}"),
                Just("\r"),
                Just("\u{7f}"),
                Just("\u{80}"),
                Just("\u{85}"),
                Just("\u{9b}"),
                Just("\u{9f}"),
                Just("\u{a0}"),
                Just("\u{ad}"),
                Just("\u{200b}"),
                Just("\u{202e}"),
                Just("\u{2028}"),
                Just("\u{2029}"),
                Just("\u{3000}"),
                Just("\u{feff}"),
                Just("\u{fffe}"),
                Just("\u{ffff}"),
                Just("\u{fdd0}"),
                Just("\u{e000}"),
                Just("\u{1fffe}"),
                Just("\u{e9}"),
                Just("\u{540d}"),
                Just("\u{1f600}"),
                Just(" \u{a0}"),
                Just("\u{a0}#"),
            ]
        )
            .prop_map(|(a, s)| Damage::Insert(a, s)),
        any::<usize>().prop_map(Damage::DupLine),
        any::<usize>().prop_map(Damage::Indent),
    ]
}

fn hurt(text: &str, d: &Damage) -> String {
    let mut t = text.to_owned();
    match d {
        Damage::Delete(a) if !t.is_empty() => {
            let at = a % t.len();
            let at = (0..=at).rev().find(|i| t.is_char_boundary(*i)).unwrap_or(0);
            t.remove(at);
        }
        Damage::Insert(a, s) => {
            let at = a % (t.len() + 1);
            let at = (0..=at).rev().find(|i| t.is_char_boundary(*i)).unwrap_or(0);
            t.insert_str(at, s);
        }
        Damage::DupLine(a) => {
            let lines: Vec<&str> = t.lines().collect();
            let i = a % lines.len().max(1);
            let mut out: Vec<&str> = lines.clone();
            if let Some(l) = lines.get(i) {
                out.insert(i, l);
            }
            t = out.join("\n") + "\n";
        }
        Damage::Indent(a) => {
            let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
            let n = lines.len().max(1);
            if let Some(l) = lines.get_mut(a % n) {
                l.insert(0, ' ');
            }
            t = lines.join("\n") + "\n";
        }
        _ => {}
    }
    t
}

static TAKEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static CLEAN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static READ_INVALID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]
    #[test]
    fn the_fast_reader_agrees_with_serde_saphyr(
        services in proptest::collection::vec(svc(), 0..6),
        indent in prop_oneof![Just(0usize), Just(2), Just(4)],
        host in proptest::option::of(any::<bool>()),
        damages in proptest::collection::vec(damage(), 0..3),
    ) {
        let mut text = render(&services, indent, host);
        for d in &damages {
            text = hurt(&text, d);
        }
        let slow = config::parse_with_yaml_library(&text, "lvsd.yaml").map_err(|e| e.to_string());
        // `lvsd check`, which keeps no table, says what the full reading says.
        let checked = config::check_text(&text, "lvsd.yaml", None).map_err(|e| e.to_string());
        prop_assert_eq!(checked, slow.as_ref().map(config::Summary::of).map_err(Clone::clone), "{}", text);
        if config::fast_reader_takes(&text) {
            TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fast = config::parse(&text, "lvsd.yaml").map_err(|e| e.to_string());
            prop_assert!(slow.is_ok(), "the fast reader took a file serde-saphyr rejects: {:?}\n{}", slow, text);
            prop_assert_eq!(fast, slow, "{}", text);
        } else {
            // Read but invalid (the fast reader reports the validator's problems itself), or
            // declined (serde-saphyr reads it): the same verdict, word for word.
            if config::fast_reader_reads(&text) {
                READ_INVALID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                prop_assert!(slow.is_err(), "the fast reader refused a file serde-saphyr takes:\n{}", text);
            }
            prop_assert_eq!(config::parse(&text, "lvsd.yaml").map_err(|e| e.to_string()), slow, "{}", text);
        }
        if damages.is_empty() && !services.is_empty() && config::parse(&text, "lvsd.yaml").is_ok() {
            CLEAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (taken, clean) = (TAKEN.load(std::sync::atomic::Ordering::Relaxed), CLEAN.load(std::sync::atomic::Ordering::Relaxed));
        // The fast reader is really exercised: it takes most valid undamaged files, and
        // reports on invalid ones.
        prop_assert!(clean < 100 || taken * 2 > clean, "fast reader took {} of {} clean valid files", taken, clean);
        let read_invalid = READ_INVALID.load(std::sync::atomic::Ordering::Relaxed);
        prop_assert!(clean < 100 || read_invalid > 10, "fast reader reported on {} invalid files", read_invalid);
    }
}

/// Each class of character, in each place it can stand in a file of the plain style: one
/// verdict, whichever reader reads it, and whether or not a quote elsewhere in the file sends
/// it to serde-saphyr.
#[test]
fn every_character_class_gets_one_verdict() {
    let classes = [
        "\0",
        "\u{1}",
        "\u{8}",
        "\u{b}",
        "\u{c}",
        "\r",
        "\u{e}",
        "\u{1b}",
        "\u{1f}",
        "\u{7f}",
        "\u{80}",
        "\u{85}",
        "\u{9b}",
        "\u{9f}",
        "\u{a0}",
        "\u{ad}",
        "\u{200b}",
        "\u{200e}",
        "\u{202e}",
        "\u{2028}",
        "\u{2029}",
        "\u{2060}",
        "\u{3000}",
        "\u{d7ff}",
        "\u{e000}",
        "\u{fdd0}",
        "\u{feff}",
        "\u{fffd}",
        "\u{fffe}",
        "\u{ffff}",
        "\u{10000}",
        "\u{1fffe}",
        "\u{10ffff}",
        "\u{e9}",
        "\u{540d}",
        "\u{1f600}",
        "\t",
        " ",
    ];
    let places: [fn(&str) -> String; 10] = [
        |c| format!("services:\n  - address: 10.0.0.1:80\n    name: web{c}\n"),
        |c| format!("services:\n  - address: 10.0.0.1:80\n    name: {c}web\n"),
        |c| format!("services:\n  - address: 10.0.0.1:80\n    name: web{c}x\n"),
        |c| format!("services:\n  - address: 10.0.0.1:80{c}\n"),
        |c| format!("services:\n  - address: 10.0.0.1:80 # a{c}b\n"),
        |c| format!("# {c}\nservices:\n  - address: 10.0.0.1:80\n"),
        |c| format!("services:\n  - address: 10.0.0.1:80\n    {c}name: web\n"),
        |c| format!("services:\n  -{c}address: 10.0.0.1:80\n"),
        |c| format!("services:\n  - address: 10.0.0.1:80\n{c}\n"),
        |c| format!("{c}\n"),
    ];
    for c in classes {
        for place in places {
            let text = place(c);
            // The same file with a quoted value elsewhere: serde-saphyr reads all of it.
            let quoted = format!("{text}host:\n  role: \"none\"\n");
            let plain = format!("{text}host:\n  role: none\n");
            for t in [&text, &plain, &quoted] {
                let slow = config::parse_with_yaml_library(t, "t.yaml").map_err(|e| e.to_string());
                let fast = config::parse(t, "t.yaml").map_err(|e| e.to_string());
                assert_eq!(fast, slow, "{t:?}");
                let checked = config::check_text(t, "t.yaml", None).map_err(|e| e.to_string());
                assert_eq!(
                    checked,
                    slow.as_ref().map(config::Summary::of).map_err(Clone::clone),
                    "{t:?}"
                );
            }
            let a = config::parse(&plain, "t.yaml").map_err(|e| e.to_string());
            let b = config::parse(&quoted, "t.yaml").map_err(|e| e.to_string());
            assert_eq!(
                a.is_ok(),
                b.is_ok(),
                "a quote elsewhere changed the verdict: {plain:?}\n{a:?}\n{b:?}"
            );
        }
    }
}

#[test]
fn the_fast_reader_takes_the_examples_style_and_declines_the_rest() {
    let plain = "services:\n  - address: 10.0.0.1:80\n    scheduler: wlc\n    reals:\n      - address: 10.1.0.1\n        weight: 2\n";
    assert!(config::fast_reader_takes(plain));
    let checked = "services:\n  - address: 10.0.0.1:80\n    check:\n      type: http\n      path: /\n      expect_status:\n        - 200-299\n    reals:\n      - address: 10.1.0.1\n        check:\n          port: 8080\n";
    assert!(config::fast_reader_takes(checked));
    for declined in [
        "services:\n  - address: \"10.0.0.1:80\"\n",
        "services: [{address: 10.0.0.1:80}]\n",
        "x: &a 1\nservices:\n  - address: 10.0.0.1:80\n",
        "services:\n  - address: 10.0.0.1:80\n    check: {type: tcp}\n",
        "services:\n  - address: 10.0.0.1:80\n    check:\n      type: tcp\n      expect_status:\n        - 2000-2999\n",
        "services:\n  - address: 10.0.0.1:80\n    name:\n",
        "services:\n  - address: 10.0.0.1:80\n    name: null\n",
        "services:\n  - address: 10.0.0.1:80\n    name: x: y\n",
        "services:\n  - address: 10.0.0.1:80\n    name: .inf\n",
        "services:\n  - address: 10.0.0.1:80\n    name: 1_000\n",
        "services:\n  - address: 10.0.0.1:80\n    name: 0x1f\n",
        "services:\n  - address: 10.0.0.1:80\n    name: 1e5\n",
    ] {
        assert!(!config::fast_reader_takes(declined), "{declined}");
    }
}

#[test]
fn deep_nesting_is_declined_not_recursed_into() {
    let mut deep = String::from("host:\n");
    for i in 0..3_000 {
        deep.push_str(&" ".repeat(i + 1));
        deep.push_str("a:\n");
    }
    assert!(!config::fast_reader_takes(&deep));
    let mut chain = String::from("services:\n");
    for i in 0..3_000 {
        chain.push_str(&" ".repeat(i));
        chain.push_str("- a:\n");
    }
    assert!(!config::fast_reader_takes(&chain));
}

/// A file large enough to be read by several threads.
fn large(n: usize) -> String {
    let mut t = String::from("services:\n");
    for i in 0..n {
        t.push_str(&format!(
            "  - address: 10.{}.{}.{}:80\n    name: s{i}\n    scheduler: {}\n    reals:\n      - address: 10.200.0.1\n        weight: {}\n      - address: 10.200.0.2\n",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256,
            ["wlc", "rr", "sh"][i % 3],
            i % 7,
        ));
    }
    t.push_str("host:\n  role: director\n  interface: eth0\n");
    t
}

#[test]
fn a_large_file_read_in_parts_equals_the_yaml_librarys_reading() {
    let text = large(5000);
    assert!(config::fast_reader_takes(&text));
    let fast = config::parse(&text, "lvsd.yaml").unwrap();
    assert_eq!(fast.desired.services.len(), 5000);
    assert_eq!(
        fast,
        config::parse_with_yaml_library(&text, "lvsd.yaml").unwrap()
    );
    // A duplicate across parts (the first entry's address again at the end, and a name used
    // in two parts) is reported as the YAML library reports it.
    for dup in [
        text.replace("10.0.19.135:80", "10.0.0.0:80"),
        text.replace("name: s4990\n", "name: s3\n"),
    ] {
        assert!(!config::fast_reader_takes(&dup));
        let e = config::parse(&dup, "lvsd.yaml").unwrap_err().to_string();
        assert_eq!(
            e,
            config::parse_with_yaml_library(&dup, "lvsd.yaml")
                .unwrap_err()
                .to_string()
        );
        assert!(e.contains("duplicate"), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    /// The read spread over threads (the lines cut into a run per thread wherever the cut
    /// falls, the services into parts from two on) says what the sequential read says, word
    /// for word: the config, or every problem with its file, line and column.
    #[test]
    fn the_spread_read_equals_the_sequential_one(
        services in proptest::collection::vec(svc(), 0..8),
        indent in prop_oneof![Just(0usize), Just(2), Just(4)],
        host in proptest::option::of(any::<bool>()),
        damages in proptest::collection::vec(damage(), 0..3),
        workers in 2usize..5,
    ) {
        let mut text = render(&services, indent, host);
        for d in &damages {
            text = hurt(&text, d);
        }
        let one = config::parse_sequentially(&text, "lvsd.yaml").map_err(|e| e.to_string());
        let spread = config::parse_spread(&text, "lvsd.yaml", workers).map_err(|e| e.to_string());
        prop_assert_eq!(&spread, &one, "{}", text);
        prop_assert_eq!(config::parse(&text, "lvsd.yaml").map_err(|e| e.to_string()), one, "{}", text);
    }
}

/// A large file (past the size from which its lines are cut into runs) read spread and
/// sequentially: the same config, and the same problems at the same places when it is
/// damaged near a cut, at its start and at its end.
#[test]
fn a_large_file_read_spread_equals_the_sequential_read() {
    let text = large(12_000);
    assert!(text.len() > 1 << 20, "{} bytes", text.len());
    let same = |t: &str| {
        let one = config::parse_sequentially(t, "lvsd.yaml").map_err(|e| e.to_string());
        for workers in [2, 3] {
            let spread = config::parse_spread(t, "lvsd.yaml", workers).map_err(|e| e.to_string());
            assert_eq!(spread, one, "{workers} workers");
        }
        assert_eq!(
            config::parse(t, "lvsd.yaml").map_err(|e| e.to_string()),
            one
        );
        one
    };
    assert!(same(&text).is_ok());
    let (half, third) = (text.len() / 2, text.len() / 3);
    for at in [half, third, text.len() - 3] {
        // A line end before the cut, one after it, and a bad value and a bad key there.
        let cut = text[..at].rfind('\n').map_or(0, |i| i + 1);
        for damage in ["        weight: heavy\n", "      - address: 10.200.0.1\n"] {
            let mut t = text.clone();
            t.insert_str(cut, damage);
            let e = same(&t).expect_err("damaged");
            assert!(e.contains("lvsd.yaml:"), "{e}");
        }
    }
}
