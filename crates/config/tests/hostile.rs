//! Bad input tried as a hostile or careless user would (issue 21): each class of file that was
//! accepted although dangerous, or refused with a poor answer. Nothing dangerous is accepted,
//! and every refusal names its place, says what is wrong in lvsd's words and how to fix it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

/// The problems `yaml` gets, one per line; empty when it is valid. `lvsd check`, which keeps
/// no table, must say exactly the same.
fn problems(yaml: &str) -> Vec<String> {
    let full = config::parse(yaml, "t.yaml");
    let checked = config::check_text(yaml, "t.yaml", None);
    assert_eq!(
        checked.map_err(|e| e.to_string()),
        full.as_ref()
            .map(config::Summary::of)
            .map_err(ToString::to_string),
        "check and the full reading differ on {yaml:?}"
    );
    match full {
        Ok(_) => vec![],
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// `yaml` is refused, and one problem starts with `expected`.
#[track_caller]
fn refused(yaml: &str, expected: &str) {
    let got = problems(yaml);
    assert!(
        got.iter().any(|l| l.starts_with(expected)),
        "for {yaml:?}\nexpected a problem starting with\n  {expected}\ngot\n  {got:#?}"
    );
}

/// Words of the YAML library or of Rust that must never reach a user.
const JARGON: &[&str] = &[
    "invalid i64",
    "invalid u64",
    "budget breached",
    "Documents {",
    "Aliases {",
    "use Option<",
    "cannot deserialize",
    "weak recursion",
    "simple key expected",
    "DuplicateKeyPolicy",
    "while scanning",
    "while parsing",
    "invalid type",
    "invalid value",
];

#[track_caller]
fn plain_words(lines: &[String]) {
    for l in lines {
        for j in JARGON {
            assert!(!l.contains(j), "library words `{j}` in: {l}");
        }
    }
}

const ONE: &str = "services:\n  - address: 10.0.0.1:80\n    reals:\n      - address: 10.1.0.1\n";

// 1. Reading a config that is not a regular file.

/// Runs `f` on another thread and fails the test if it does not finish in time (a FIFO used
/// to block forever, a device to be read without end).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: still reading after 10 s"))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lvsd-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn only_a_regular_file_is_read() {
    let dir = scratch("files");
    let fifo = dir.join("fifo.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let link = dir.join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let fifo_link = dir.join("fifo-link.yaml");
    std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
    for (path, kind) in [
        (fifo.clone(), "a FIFO (named pipe)"),
        (fifo_link, "a FIFO (named pipe)"),
        ("/dev/zero".into(), "a character device"),
        ("/dev/urandom".into(), "a character device"),
        (link, "a character device"),
        (dir.clone(), "a directory"),
    ] {
        let shown = path.display().to_string();
        let p = path.clone();
        let e = within(&shown, move || config::load(&p).unwrap_err().to_string());
        assert_eq!(
            e,
            format!(
                "{shown}: the config is {kind}, not a regular file; point lvsd at the file itself"
            )
        );
        // The daemon's reread goes through the same reader.
        let p = path.clone();
        let e = within(&shown, move || {
            let mut buf = Vec::new();
            config::read_bytes_into(&p, &mut buf)
                .unwrap_err()
                .to_string()
        });
        assert!(e.contains(kind), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_daemons_reread_refuses_what_is_not_a_file_and_keeps_its_config() {
    let dir = scratch("reread");
    let path = dir.join("lvsd.yaml");
    std::fs::write(&path, ONE).unwrap();
    let mut loaded = config::Loaded::load(&path, None, &mut config::Stamp::default()).unwrap();
    let before = loaded.config.clone();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    let p = path.clone();
    let (e, loaded) = within("reread of /dev/zero", move || {
        let e = loaded
            .reread_file(&p, None, &mut config::Stamp::default())
            .unwrap_err()
            .to_string();
        (e, loaded)
    });
    assert!(e.contains("a character device"), "{e}");
    assert_eq!(loaded.config, before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_over_the_limit_is_refused_from_its_size() {
    let dir = scratch("size");
    let big = dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(config::MAX_FILE_BYTES + 1).unwrap();
    let e = config::load(&big).unwrap_err().to_string();
    assert!(e.ends_with("the limit is 16777216 bytes"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// 2. VIPs that must never be VIPs.

#[test]
fn addresses_nothing_can_reach_are_never_service_addresses() {
    for (addr, what) in [
        ("0.0.0.0:80", "`0.0.0.0` is the unspecified address"),
        ("0.1.2.3:80", "`0.1.2.3` is in 0.0.0.0/8"),
        ("224.0.0.5:80", "`224.0.0.5` is a multicast address"),
        ("239.1.1.1:80", "`239.1.1.1` is a multicast address"),
        (
            "255.255.255.255:80",
            "`255.255.255.255` is the broadcast address",
        ),
        ("\"[::]:80\"", "`::` is the unspecified address"),
        ("\"[ff02::1]:80\"", "`ff02::1` is a multicast address"),
        (
            "\"[::ffff:10.0.0.1]:80\"",
            "`::ffff:10.0.0.1` is an IPv4-mapped IPv6 address, which cannot be a service address (a VIP); write the IPv4 address 10.0.0.1",
        ),
    ] {
        for role in ["", "host:\n  role: director\n  interface: eth0\n"] {
            refused(
                &format!("{role}services:\n  - address: {addr}\n"),
                &format!("t.yaml:{}:14: {what}", if role.is_empty() { 2 } else { 5 }),
            );
        }
    }
}

#[test]
fn loopback_and_link_local_addresses_are_never_put_on_an_interface() {
    let director = "host:\n  role: director\n  interface: eth0\n";
    let real_server = "host:\n  role: real-server\n";
    for (addr, kind) in [
        ("127.0.0.1:80", "a loopback address"),
        ("127.1.2.3:80", "a loopback address"),
        ("169.254.169.254:80", "a link-local address"),
        ("\"[::1]:80\"", "a loopback address"),
        ("\"[fe80::1]:80\"", "a link-local address"),
    ] {
        let svc = format!("services:\n  - address: {addr}\n");
        let ip = addr.trim_matches('"').trim_start_matches('[');
        let ip = ip.rsplit_once(':').unwrap().0.trim_end_matches(']');
        refused(
            &format!("{director}{svc}"),
            &format!(
                "t.yaml:5:14: `{ip}` is {kind}, which must not be a VIP: with role director lvsd would add it to `eth0`"
            ),
        );
        refused(
            &format!("{real_server}{svc}"),
            &format!(
                "t.yaml:4:14: `{ip}` is {kind}, which must not be a VIP: with role real-server lvsd would add it to `lo`"
            ),
        );
        // --role on the command line, for the same file.
        let e = config::parse_as(&svc, "t.yaml", Some(plan::host::Role::RealServer))
            .unwrap_err()
            .to_string();
        assert!(e.contains("which must not be a VIP"), "{e}");
        // The IPVS table alone (no role) may serve this host's own clients; so may a host
        // that lists its VIPs.
        assert_eq!(problems(&svc), Vec::<String>::new());
        let listed = format!("{director}  vips: [10.9.9.9]\n{svc}");
        assert_eq!(problems(&listed), Vec::<String>::new());
    }
    for (vip, what) in [
        ("255.255.255.255", "it is the broadcast address"),
        ("169.254.0.1", "it is a link-local address"),
        ("fe80::1", "it is a link-local address"),
        ("0.0.0.1", "it is in 0.0.0.0/8"),
        (
            "\"::ffff:10.0.0.1\"",
            "it is an IPv4-mapped IPv6 address; write the IPv4 address 10.0.0.1",
        ),
        ("::1", "it is a loopback address"),
        ("ff05::2", "it is a multicast address"),
    ] {
        let shown = vip.trim_matches('"');
        refused(
            &format!("host:\n  vips: [{vip}]\n"),
            &format!("t.yaml:2:10: `{shown}` cannot be a VIP: {what}"),
        );
    }
}

#[test]
fn real_servers_the_kernel_cannot_send_to_are_refused() {
    for (svc, real, what) in [
        ("10.0.0.1:80", "0.0.0.0", "the unspecified address"),
        ("10.0.0.1:80", "224.0.0.1", "a multicast address"),
        ("10.0.0.1:80", "255.255.255.255", "the broadcast address"),
        (
            "\"[2001:db8::1]:80\"",
            "\"::ffff:10.0.0.1\"",
            "an IPv4-mapped IPv6 address",
        ),
        (
            "\"[2001:db8::1]:80\"",
            "fe80::2",
            "an IPv6 link-local address",
        ),
        (
            "\"[2001:db8::1]:80\"",
            "\"[ff02::1]\"",
            "a multicast address",
        ),
    ] {
        let shown = real.trim_matches('"').trim_matches(['[', ']']);
        refused(
            &format!("services:\n  - address: {svc}\n    reals:\n      - address: {real}\n"),
            &format!(
                "t.yaml:4:18: real server `{shown}` is {what}, which the kernel cannot send connections to"
            ),
        );
        refused(
            &format!("services:\n  - address: {svc}\n    fallback: {real}\n"),
            &format!("t.yaml:3:15: real server `{shown}` is {what}"),
        );
    }
    // The director itself (the kernel's local node) is a real server IPVS knows.
    assert_eq!(
        problems("services:\n  - address: 10.0.0.1:80\n    reals:\n      - address: 127.0.0.1\n"),
        Vec::<String>::new()
    );
}

#[test]
fn an_ipv6_address_that_also_reads_with_a_port_is_ambiguous() {
    refused(
        "services:\n  - address: 2001:db8::1:80\n",
        "t.yaml:2:14: `2001:db8::1:80` is ambiguous: the IPv6 address 2001:db8::1:80, or 2001:db8::1 with port 80; write `[2001:db8::1]:80`, or `[2001:db8::1:80]:PORT`",
    );
    let svc = "services:\n  - address: \"[2001:db8::1]:80\"\n    reals:\n      - address: ";
    refused(
        &format!("{svc}2001:db8::5:8080\n"),
        "t.yaml:4:18: `2001:db8::5:8080` is ambiguous: the IPv6 address 2001:db8::5:8080, or 2001:db8::5 with port 8080; write `[2001:db8::5]:8080`, or `[2001:db8::5:8080]` for that address on the service's port",
    );
    // Not ambiguous: the part before the last `:` is no address, or it is bracketed.
    for ok in [
        "2001:db8::10",
        "\"[2001:db8::5:8080]\"",
        "2001:db8:0:0:0:0:5:80",
    ] {
        assert_eq!(
            problems(&format!("{svc}{ok}\n")),
            Vec::<String>::new(),
            "{ok}"
        );
    }
}

// 3. Documents that mean "empty".

#[test]
fn what_yaml_does_not_read_as_blank_is_not_an_empty_file() {
    // Rust's trim() strips these; YAML does not: a file of them is not empty.
    for (text, what) in [
        ("\u{c}\n", "U+000C"),
        ("\u{b}\n", "U+000B"),
        ("\u{a0}\n", "U+00A0"),
        ("\u{85}\n", "U+0085"),
        ("\u{3000}\n", "U+3000"),
        ("\u{2028}\n", "U+2028"),
        ("\n\u{a0}\n\n", "U+00A0"),
    ] {
        let got = problems(text);
        assert!(
            got.len() == 1 && got[0].contains(what),
            "{text:?} must be refused, naming {what}: {got:#?}"
        );
        plain_words(&got);
    }
    // What YAML does read as blank, with its comments.
    for text in [
        "",
        "\n\n",
        "  \n\t\n",
        "# managed by lvsd\n",
        "\u{feff}# bom\n",
    ] {
        assert_eq!(problems(text), Vec::<String>::new(), "{text:?}");
    }
}

#[test]
fn one_document_with_its_markers_is_read_and_more_are_refused() {
    for text in [
        "---\n",
        "--- # managed\n",
        "---\n...\n",
        "--- # managed\nservices: []\n",
        "---\nservices:\n  - address: 10.0.0.1:80\n...\n",
    ] {
        assert_eq!(problems(text), Vec::<String>::new(), "{text:?}");
    }
    for (text, line) in [
        ("---\n---\n", 2),
        ("---\n---\n---\n", 2),
        ("# a\n---\n...\n---\n", 4),
        ("services: []\n---\nservices: []\n", 2),
    ] {
        refused(
            text,
            &format!(
                "t.yaml:{line}:1: the file holds more than one YAML document (a `---` line starts another): lvsd reads one, so remove the extra `---` lines"
            ),
        );
    }
}

#[test]
fn an_empty_value_never_means_no_services_or_reals() {
    refused(
        "services:\n",
        "t.yaml:1:9: `services` is empty (null); write `services: []` for no services",
    );
    refused(
        "services: ~\n",
        "t.yaml:1:11: `services` is empty (null); write `services: []`",
    );
    refused(
        "services:\n  -\n  - address: 10.0.0.1:80\n",
        "t.yaml:2:4: an empty entry in `services`",
    );
    refused(
        "services:\n  - address: 10.0.0.1:80\n    reals:\n",
        "t.yaml:3:10: `reals` is empty (null); write `reals: []`",
    );
    refused(
        "services:\n  - address: 10.0.0.1:80\n    reals:\n      -\n",
        "t.yaml:4:8: an empty entry in `reals`",
    );
    refused(
        "host:\n",
        "t.yaml:1:5: `host` is empty (null); give its `role`, `interface` or `vips`",
    );
    refused(
        "services:\n  - address: 10.0.0.1:80\n    check:\n",
        "t.yaml:3:10: `check` is empty (null)",
    );
    assert_eq!(problems("services: []\n"), Vec::<String>::new());
}

// 4. Null and sloppy scalars.

#[test]
fn a_null_value_is_never_the_default() {
    let real = "services:\n  - address: 10.0.0.1:80\n    reals:\n      - address: 10.1.0.1\n";
    for null in ["", " null", " ~", " Null", " NULL"] {
        for key in [
            "weight",
            "max_connections",
            "min_connections",
            "forward",
            "check",
        ] {
            let got = problems(&format!("{real}        {key}:{null}\n"));
            assert!(
                got.len() == 1 && got[0].contains(&format!("`{key}` is empty (null)")),
                "{key}:{null} {got:#?}"
            );
        }
        for key in [
            "name",
            "scheduler",
            "protocol",
            "forward",
            "persistence",
            "flags",
            "drain_timeout",
            "on_failure",
            "fallback",
            "quorum",
        ] {
            let got = problems(&format!("{ONE}    {key}:{null}\n"));
            assert!(
                got.len() == 1 && got[0].contains(&format!("`{key}` is empty (null)")),
                "{key}:{null} {got:#?}"
            );
        }
        let got = problems(&format!("services:\n  - address:{null}\n"));
        assert!(
            got.len() == 1 && got[0].contains("`address` is empty (null)"),
            "{got:#?}"
        );
        let got = problems(&format!(
            "{ONE}    check:\n      type: tcp\n      interval:{null}\n"
        ));
        assert!(
            got.len() == 1 && got[0].contains("`interval` is empty"),
            "{got:#?}"
        );
        let got = problems(&format!("host:\n  role: director\n  interface:{null}\n"));
        assert!(
            got.len() == 1 && got[0].contains("`interface` is empty"),
            "an empty interface is said once, without a second problem for the director: {got:#?}"
        );
    }
    // A quoted "null" is text: a name, not a null.
    assert_eq!(
        problems(&format!("{ONE}    name: \"null\"\n")),
        Vec::<String>::new()
    );
}

#[test]
fn numbers_are_plain_decimal_integers_and_nothing_else() {
    let real = "services:\n  - address: 10.0.0.1:80\n    reals:\n      - address: 10.1.0.1\n        weight: ";
    for (v, why) in [
        (
            "\"5\"",
            "`weight: \"5\"` is quoted, which makes it text; write the number without quotes",
        ),
        ("'5'", "`weight: \"5\"` is quoted"),
        ("1_000", "weight: write 1000 without the `_`"),
        ("+5", "weight: write 5 without the `+`"),
        (
            "010",
            "weight: `010` has a leading zero, which some YAML readers take as octal; write 10",
        ),
        ("0x1f", "weight: `0x1f` is not decimal"),
        ("0o17", "weight: `0o17` is not decimal"),
        (
            "1e3",
            "weight: `1e3` is not a whole number as written; write 1000",
        ),
        (
            "2.0",
            "weight: `2.0` is not a whole number as written; write 2",
        ),
        ("2.5", "weight: `2.5` is not a whole number"),
        (".inf", "weight: `.inf` is not a number"),
        (".nan", "weight: `.nan` is not a number"),
        ("true", "weight: `true` is not a number"),
        ("yes", "weight: `yes` is not a number"),
        ("1:30", "weight: `1:30` is not a number"),
        ("heavy", "weight: `heavy` is not a number"),
    ] {
        let got = problems(&format!("{real}{v}\n"));
        assert_eq!(got.len(), 1, "{v}: {got:#?}");
        assert!(
            got[0].starts_with(&format!("t.yaml:5:17: {why}"))
                && got[0].ends_with("weight is a whole number from 0 (drained) to 2147483647"),
            "{v}: {got:#?}"
        );
        plain_words(&got);
    }
    // Every numeric key follows the one rule.
    let check = |k: &str| format!("{ONE}    check:\n      type: http\n      {k}: 010\n");
    for (yaml, key) in [
        ("services:\n  - fwmark: \"7\"\n".to_owned(), "fwmark"),
        (format!("{ONE}    quorum: +1\n"), "quorum"),
        (check("port"), "port"),
        (check("rise"), "rise"),
        (check("fall"), "fall"),
        (
            format!("{ONE}    check:\n      type: http\n      expect_status: [\"200\"]\n"),
            "expect_status",
        ),
        (
            format!("{ONE}        max_connections: 1_000\n"),
            "max_connections",
        ),
        (
            "services:\n  - address: \"[2001:db8::1]:80\"\n    persistence: {timeout: 5m, netmask: \"64\"}\n".to_owned(),
            "netmask",
        ),
    ] {
        let got = problems(&yaml);
        assert!(
            got.len() == 1 && got[0].contains(key) && !got[0].contains("invalid"),
            "{key}: {got:#?}"
        );
    }
    // Ports after an address are plain decimal too.
    refused(
        "services:\n  - address: 10.0.0.1:+80\n",
        "t.yaml:2:14: `+80` is not a port number",
    );
    refused(
        "services:\n  - address: 10.0.0.1:080\n",
        "t.yaml:2:14: port `080` has a leading zero; write 80",
    );
    refused(
        "services:\n  - address: 10.0.0.1:80\n    reals:\n      - address: 10.1.0.1:0x50\n",
        "t.yaml:4:18: `0x50` is not a port number",
    );
    // A netmask is a mask or a prefix length, not `//64`.
    refused(
        "services:\n  - address: \"[2001:db8::1]:80\"\n    persistence: {timeout: 5m, netmask: //64}\n",
        "t.yaml:3:41: netmask: `//64` is not a number",
    );
    // What stays valid.
    let ok = format!(
        "{real}0\n        max_connections: 4294967295\n  - fwmark: 7\n    persistence: 300\n"
    );
    assert_eq!(problems(&ok), Vec::<String>::new());
}

#[test]
fn durations_are_strict_and_whole_seconds_where_the_kernel_counts_seconds() {
    let svc = "services:\n  - address: 10.0.0.1:80\n    drain_timeout: ";
    for (v, why) in [
        (
            "1s1s",
            "`s` appears twice; give each unit once, as in 1m30s",
        ),
        ("30s1m", "`m` comes after `s`; write the larger units first"),
        ("1.5m", "fractions are not taken"),
        ("5M", "`M` is not a unit; use ms, s, m, h or d (lowercase)"),
        ("1m30", "`30` at the end has no unit"),
        ("-5s", "a duration has no sign"),
        ("010", "`010` has a leading zero"),
        ("soon", "`soon` has no number before it"),
    ] {
        refused(
            &format!("{svc}{v}\n"),
            &format!("t.yaml:3:20: drain_timeout: `{v}` is not a duration ({why}"),
        );
    }
    refused(
        &format!("{svc}\"30\"\n"),
        "t.yaml:3:20: `drain_timeout: \"30\"` is quoted, which makes it text; write 30s, or 30 without quotes",
    );
    // The kernel (persistence) and the state file (drain_timeout) count whole seconds: a
    // fraction is an error, never rounded.
    refused(
        &format!("{svc}1500ms\n"),
        "t.yaml:3:20: drain_timeout: `1500ms` is not a whole number of seconds, and drain_timeout is counted in seconds; write 1s or 2s",
    );
    refused(
        "services:\n  - address: 10.0.0.1:80\n    persistence: 500ms\n",
        "t.yaml:3:18: persistence: `500ms` is not a whole number of seconds, and persistence is counted in seconds; write 1s",
    );
    refused(
        "services:\n  - address: 10.0.0.1:80\n    persistence: {timeout: 2500ms}\n",
        "t.yaml:3:28: persistence timeout: `2500ms` is not a whole number of seconds",
    );
    // YAML types a bare persistence timeout; only the plain decimal it prints as is taken.
    for v in ["0x12c", "+300", "3e2", "0xF4240", "0o454"] {
        refused(
            &format!("services:\n  - address: 10.0.0.1:80\n    persistence: {v}\n"),
            "t.yaml:3:18: persistence: write the timeout as plain seconds (300) or with a unit (300s, 5m)",
        );
    }
    // Beyond 49 days the kernel's jiffies wrap around.
    refused(
        "services:\n  - address: 10.0.0.1:80\n    persistence: 50d\n",
        "t.yaml:3:18: a persistence timeout above 4294967s (49 days) wraps around in the kernel",
    );
    // What stays valid: whole seconds, and sub-second checks.
    let c = config::parse(
        "services:\n  - address: 10.0.0.1:80\n    persistence: 1h\n    drain_timeout: 2000ms\n    check: {type: tcp, interval: 1s500ms, timeout: 250ms}\n    reals:\n      - address: 10.1.0.1\n",
        "t.yaml",
    )
    .unwrap();
    let s = c.desired.services.values().next().unwrap();
    assert_eq!((s.spec.timeout, s.drain_timeout), (3600, 2));
    let check = s.health.checks.values().next().unwrap();
    assert_eq!(check.interval, Duration::from_millis(1500));
    assert_eq!(check.timeout, Duration::from_millis(250));
}

// 5. Control characters in names and interfaces.

#[test]
fn names_and_labels_hold_no_control_or_invisible_characters() {
    for (name, shown, what) in [
        ("web\\0", "web\\0", "U+0000 (a control character)"),
        ("web\\e[2J", "web\\u{1b}[2J", "U+001B (a control character)"),
        ("web\\nINFO fake line", "web\\nINFO fake line", "U+000A"),
        ("web\\r", "web\\r", "U+000D"),
        ("web\\x85", "web\\u{85}", "U+0085"),
        (
            "web\\u202e",
            "web\\u{202e}",
            "U+202E (an invisible character)",
        ),
        (
            "web\\u200b",
            "web\\u{200b}",
            "U+200B (an invisible character)",
        ),
        (
            "web\\ufeff",
            "web\\u{feff}",
            "U+FEFF (an invisible character)",
        ),
        (
            "web\\u00a0x",
            "web\\u{a0}x",
            "U+00A0 (a space other than the ordinary one)",
        ),
        ("web\\t1", "web\\t1", "U+0009"),
    ] {
        let got = problems(&format!("{ONE}    name: \"{name}\"\n"));
        assert_eq!(got.len(), 1, "{name}: {got:#?}");
        assert!(
            got[0].starts_with(&format!("t.yaml:5:11: name `{shown}` contains {what}")),
            "{name}: {got:#?}"
        );
        // Nothing raw reaches the terminal.
        assert!(
            !got[0].chars().any(|c| c.is_control()),
            "{name}: {:?}",
            got[0]
        );
    }
    refused(
        &format!("{ONE}    name: \" web\"\n"),
        "t.yaml:5:11: name ` web` starts or ends with a space",
    );
    refused(
        &format!("{ONE}    name: \"\"\n"),
        "t.yaml:5:11: `name` is empty",
    );
    refused(
        &format!("{ONE}    name: {}\n", "x".repeat(256)),
        "t.yaml:5:11: name is 256 bytes long; the limit is 255",
    );
    // Names in any script are fine.
    assert_eq!(
        problems(&format!("{ONE}    name: Zürich 名前 web-1\n")),
        Vec::<String>::new()
    );
}

#[test]
fn interface_names_follow_the_kernels_rules() {
    let host = |i: &str| format!("host:\n  role: director\n  interface: {i}\n");
    for (i, why) in [
        (
            "\"eth\\e[31m0\"",
            "`eth\\u{1b}[31m0` is not an interface name: it contains U+001B",
        ),
        (
            "\"eth\\n0\"",
            "`eth\\n0` is not an interface name: it contains U+000A",
        ),
        (
            "\"eth\\x000\"",
            "`eth\\00` is not an interface name: it contains U+0000",
        ),
        (
            "\"eth\\u00a00\"",
            "`eth\\u{a0}0` is not an interface name: it contains U+00A0",
        ),
        (
            "\"eth 0\"",
            "`eth 0` is not an interface name (no `/`, `:` or spaces",
        ),
        ("eth0:1", "`eth0:1` is not an interface name"),
        ("a/b", "`a/b` is not an interface name"),
        ("\"..\"", "`..` is not an interface name"),
        (
            "à0",
            "`à0` is not an interface name: `à` is encoded with the byte 0xa0",
        ),
        (
            "averyveryverylongname",
            "`averyveryverylongname` is longer than an interface name can be (15 bytes)",
        ),
        ("\"\"", "the interface name is empty"),
    ] {
        let got = problems(&host(i));
        // One problem: no second, spurious "the director role needs `host.interface`".
        assert_eq!(got.len(), 1, "{i}: {got:#?}");
        assert!(
            got[0].starts_with(&format!("t.yaml:3:14: {why}")),
            "{i}: {got:#?}"
        );
    }
    for ok in [
        "eth0",
        "bond0.100",
        "br-lan",
        "enp3s0f1",
        "veth_1",
        "vxlan.calico",
    ] {
        assert_eq!(problems(&host(ok)), Vec::<String>::new(), "{ok}");
    }
}

#[test]
fn check_fields_that_reach_the_wire_or_a_program_are_clean() {
    let check = |f: &str| format!("{ONE}    check: {{type: http, {f}}}\n");
    refused(
        &check("path: \"/h\\r\\nX-Evil: 1\""),
        "t.yaml:5:31: `/h\\r\\nX-Evil: 1`: the path must start with `/` and have no spaces or control characters",
    );
    refused(
        &check("path: \"/h\\e\""),
        "t.yaml:5:31: `/h\\u{1b}`: the path must start with `/`",
    );
    refused(
        &check("host: \"a\\x07b\""),
        "t.yaml:5:31: `a\\u{7}b` is not a host name",
    );
    refused(
        &check("expect_body: \"ok\\e[0m\""),
        "t.yaml:5:38: expect_body contains U+001B (a control character)",
    );
    assert_eq!(
        problems(&check("expect_body: \"ok\\n\\tyes\"")),
        Vec::<String>::new()
    );
    refused(
        &format!("{ONE}    check: {{type: exec, command: [/bin/check, \"a\\0b\"]}}\n"),
        "t.yaml:5:47: `a\\0b` contains a NUL character, which cannot be passed to a program",
    );
}

#[test]
fn text_from_the_file_is_escaped_in_every_message() {
    for yaml in [
        format!("{ONE}    scheduler: \"w\\e[2Jlc\"\n"),
        format!("{ONE}    protocol: \"t\\ecp\"\n"),
        format!("{ONE}    forward: \"d\\er\"\n"),
        format!("{ONE}    on_failure: \"\\e]0;x\\a\"\n"),
        format!("{ONE}    flags: [\"\\e\"]\n"),
        format!("{ONE}    check: {{type: \"\\e\"}}\n"),
        format!("{ONE}    \"\\e[2J\": 1\n"),
        "host:\n  role: \"dir\\nector\"\n".to_owned(),
        "host:\n  vips: [\"10.0.0.1\\e\"]\n".to_owned(),
        "services:\n  - address: \"10.0.0.1\\e:80\"\n".to_owned(),
        "services:\n  - address: 10.0.0.1:80\n    persistence: {timeout: 5m, engine: \"s\\eip\"}\n"
            .to_owned(),
    ] {
        let e = config::parse(&yaml, "t.yaml").unwrap_err().to_string();
        assert!(
            !e.chars().any(|c| c.is_control() && c != '\n'),
            "raw control character in: {e:?}"
        );
        assert!(
            e.contains("\\u{1b}") || e.contains("\\n") || e.contains("\\u{7}"),
            "{e}"
        );
    }
    // A path from the command line too.
    let e = config::parse("services:\n", "a\u{1b}[2J.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("a\\u{1b}[2J.yaml:1:9: "), "{e}");
}

// Refused, but badly explained.

#[test]
fn yaml_errors_are_said_in_lvsds_words() {
    let mut bomb = String::from("services:\n  - &a {address: 10.0.0.1:80}\n");
    for _ in 0..10_001 {
        bomb.push_str("  - *a\n");
    }
    let tab = "services:\n  - address: 10.0.0.1:80\n\tscheduler: wlc\n";
    for (yaml, expected) in [
        (
            "---\n---\n".to_owned(),
            "t.yaml:2:1: the file holds more than one YAML document",
        ),
        (bomb, "more than 10000 aliases (`*name`)"),
        (
            "services: &x [*x]\n".to_owned(),
            "t.yaml:1:15: this alias refers to a value that contains it (a loop)",
        ),
        (
            "services:\n  - address: 10.0.0.1:80\nhost\n".to_owned(),
            "t.yaml:3:1: expected `key: value` here",
        ),
        (
            "services: *nowhere\n".to_owned(),
            "t.yaml:1:11: this alias (`*name`) refers to no anchor",
        ),
        (
            format!("{ONE}    name: a\n    name: b\n"),
            "t.yaml:6:5: `name` is given twice here; keep one",
        ),
        (
            format!("{ONE}    name: !!int 5\n"),
            "t.yaml:5:17: tags (`!!int`, `!name`) mean nothing",
        ),
        (
            format!("{ONE}    name: \"unclosed\n"),
            "t.yaml:5:11: a quote is not closed",
        ),
        (
            "services: [{address: 10.0.0.1:80}\n".to_owned(),
            "t.yaml:1:11: `[` is not closed",
        ),
        (
            "services:\n  - address: 10.0.0.1:80\n    reals: 3\n".to_owned(),
            "t.yaml:3:12: expected a list here",
        ),
        // A tab is reported on its own line, not the one before.
        (
            tab.to_owned(),
            "t.yaml:3:1: a tab indents this line, and YAML indents with spaces only",
        ),
        (
            "services:\n\t- address: 10.0.0.1:80\n".to_owned(),
            "t.yaml:2:1: a tab indents this line",
        ),
        (
            format!("{ONE}    name: a\u{0}b\n"),
            "t.yaml:5:12: the file holds U+0000 (a control character), which YAML does not allow in a file: delete it",
        ),
        (
            format!("{ONE}    name: \u{feff}a\n"),
            "t.yaml:5:11: a byte-order mark (U+FEFF) stands here",
        ),
    ] {
        let got = problems(&yaml);
        assert!(
            got.iter()
                .any(|l| l.starts_with(expected) || l.contains(expected)),
            "expected\n  {expected}\ngot\n  {got:#?}"
        );
        plain_words(&got);
    }
}

#[test]
fn damaged_files_get_lvsds_words_never_the_librarys() {
    let seed = "services:\n  - name: web\n    address: 172.16.1.50:80\n    scheduler: wlc\n    persistence: {timeout: 5m, netmask: 255.255.255.0}\n    check: {type: http, path: /h, expect_status: [200], interval: 500ms, rise: 2}\n    flags: [sh-port]\n    reals:\n      - address: 172.16.1.101\n        weight: 2\nhost:\n  role: real-server\n  interface: eth0\n  vips: [172.16.1.50, 2001:db8::50]\n";
    let damage = [
        "~", "null", "[", "]", "{", "}", ":", ": ", "- ", "&a ", "*a", "!!int ", "!x ", "\"", "'",
        "\n", "\n  ", "\t", "#", ",", "?", "|", ">", "%", "@", "`", "---\n", "...\n", "<<: ", "\\",
        "0x", "-", "1e5", ".inf", "\u{a0}", "\u{feff}", "\u{85}", "\u{c}",
    ];
    let mut refused = 0;
    for pos in (0..seed.len()).step_by(2) {
        for d in damage {
            let text = format!("{}{d}{}", &seed[..pos], &seed[pos..]);
            let Err(e) = config::parse(&text, "t.yaml") else {
                continue;
            };
            refused += 1;
            let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
            plain_words(&lines);
            for l in &lines {
                assert!(
                    !l.contains("the parser says") && l.starts_with("t.yaml:"),
                    "untranslated: {l}\nfor {text:?}"
                );
            }
        }
    }
    assert!(refused > 5_000, "{refused}");
}

#[test]
fn a_key_with_an_invisible_character_is_shown_escaped() {
    refused(
        &format!("{ONE}    \u{a0}scheduler: wlc\n"),
        "t.yaml:5:5: unknown key `\\u{a0}scheduler`; did you mean `scheduler`?",
    );
    refused(
        &format!("{ONE}    schedu\u{200b}ler: wlc\n"),
        "t.yaml:5:5: unknown key `schedu\\u{200b}ler`; did you mean `scheduler`?",
    );
}

#[test]
fn a_hundred_thousand_bad_services_are_a_hundred_lines_and_a_count() {
    let mut yaml = String::from("services:\n");
    for i in 0..100_000u32 {
        yaml.push_str(&format!(
            "  - address: 10.{}.{}.{}:80\n    scheduler: wlcc\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    for e in [
        config::parse(&yaml, "t.yaml").unwrap_err(),
        config::parse_with_yaml_library(&yaml, "t.yaml").unwrap_err(),
    ] {
        let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), config::MAX_SHOWN + 1);
        assert!(lines[0].starts_with("t.yaml:3:16: unknown scheduler `wlcc`; did you mean `wlc`?"));
        assert!(lines[99].starts_with("t.yaml:201:16: unknown scheduler"));
        assert_eq!(
            lines[100],
            "t.yaml: 99900 more problems not shown (the first 100 are above)"
        );
    }
    // Each problem once: a service's check is checked for each of its reals.
    let mut yaml = String::from("services:\n");
    for i in 0..300u32 {
        yaml.push_str(&format!(
            "  - address: 10.0.{}.{}:80\n    check: {{type: tcp, rise: 0}}\n    reals:\n      - address: 10.1.0.1\n      - address: 10.1.0.2\n",
            i >> 8,
            i & 255
        ));
    }
    let e = config::parse(&yaml, "t.yaml").unwrap_err().to_string();
    assert!(
        e.ends_with("t.yaml: 200 more problems not shown (the first 100 are above)"),
        "{e}"
    );
}

/// Issue 27: a fwmark as iptables and nft print it (`MARK set 0x7`, `meta mark 0x00000007`)
/// is the same mark as its decimal; still refused: quoted, out of range, not hex.
#[test]
fn a_fwmark_in_hex_as_iptables_prints_it_is_taken() {
    for (written, mark) in [
        ("0x7", 7),
        ("0X1f", 31),
        ("0x00000007", 7),
        ("0xffffffff", u32::MAX),
    ] {
        let yaml =
            format!("services:\n  - fwmark: {written}\n    reals:\n      - address: 10.0.1.1:80\n");
        assert_eq!(problems(&yaml), Vec::<String>::new(), "{written}");
        let c = config::parse(&yaml, "t.yaml").unwrap();
        let key = model::ServiceKey::Fwmark {
            mark,
            family: model::Family::Inet,
        };
        assert!(c.desired.services.contains_key(&key), "{written}");
        // Both readers read it alike, and the fast one reads it itself.
        assert!(config::fast_reader_takes(&yaml), "{written}");
        assert_eq!(
            config::parse_with_yaml_library(&yaml, "t.yaml")
                .unwrap()
                .desired,
            c.desired,
            "{written}"
        );
    }
    let svc = |m: &str| format!("services:\n  - fwmark: {m}\n");
    refused(&svc("0x0"), "t.yaml:2:13: fwmark 0x0 is out of range");
    refused(
        &svc("0x100000000"),
        "t.yaml:2:13: fwmark 0x100000000 is out of range",
    );
    refused(
        &svc("0xg"),
        "t.yaml:2:13: fwmark: `0xg` is not a hex number",
    );
    refused(&svc("0x"), "t.yaml:2:13: fwmark: `0x` is not a hex number");
    refused(
        &svc("0x10000000000000000000"),
        "t.yaml:2:13: fwmark 0x10000000000000000000 is out of range",
    );
    refused(&svc("\"0x7\""), "t.yaml:2:13: `fwmark: \"0x7\"` is quoted");
}
