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
        Just(("quorum", "1")),
        Just(("on_failure", "remove")),
        Just(("fallback", "10.9.9.9")),
        Just(("flags", "\n      - sh-port")),
        Just(("name", "null")),
        Just(("scheduler", "1.5")),
        Just(("weight", "2")),
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
        Just("weight: -1"),
        Just("weight: x"),
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
        t.push_str(&format!("{pad}  reals:\n"));
        for (r, o) in &s.reals {
            t.push_str(&format!("{pad}    - address: 10.1.0.{r}\n"));
            if let Some(o) = o {
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
            t.remove(a % t.len());
        }
        Damage::Insert(a, s) => t.insert_str(a % (t.len() + 1), s),
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
        if config::fast_reader_takes(&text) {
            TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fast = config::parse(&text, "lvsd.yaml").map_err(|e| e.to_string());
            prop_assert!(slow.is_ok(), "the fast reader took a file serde-saphyr rejects: {:?}\n{}", slow, text);
            prop_assert_eq!(fast, slow, "{}", text);
        } else {
            // Declined (or invalid): the one path reads it, so the results are the same file's.
            prop_assert_eq!(config::parse(&text, "lvsd.yaml").map_err(|e| e.to_string()), slow);
        }
        if damages.is_empty() && !services.is_empty() && config::parse(&text, "lvsd.yaml").is_ok() {
            CLEAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (taken, clean) = (TAKEN.load(std::sync::atomic::Ordering::Relaxed), CLEAN.load(std::sync::atomic::Ordering::Relaxed));
        // The fast reader is really exercised: it takes most valid undamaged files.
        prop_assert!(clean < 100 || taken * 2 > clean, "fast reader took {} of {} clean valid files", taken, clean);
    }
}

#[test]
fn the_fast_reader_takes_the_examples_style_and_declines_the_rest() {
    let plain = "services:\n  - address: 10.0.0.1:80\n    scheduler: wlc\n    reals:\n      - address: 10.1.0.1\n        weight: 2\n";
    assert!(config::fast_reader_takes(plain));
    for declined in [
        "services:\n  - address: \"10.0.0.1:80\"\n",
        "services: [{address: 10.0.0.1:80}]\n",
        "x: &a 1\nservices:\n  - address: 10.0.0.1:80\n",
        "services:\n  - address: 10.0.0.1:80\n    check:\n      type: tcp\n",
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
