//! Config validation, case by case: each bad file must be refused with the exact location and
//! a message that says how to fix it; good files must produce the expected table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn problems(yaml: &str) -> Vec<String> {
    match config::parse(yaml, "t.yaml") {
        Ok(_) => vec![],
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

fn assert_rejects(yaml: &str, expected: &str) {
    let got = problems(yaml);
    assert!(
        got.iter().any(|l| l.starts_with(expected) || l == expected),
        "expected a problem starting with\n  {expected}\ngot\n  {got:#?}"
    );
}

const SEED: &str = "services:
  - name: web
    address: 172.16.1.50:80
    scheduler: wlc
    forward: dr
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
";

#[test]
fn seed_is_valid_and_means_what_ipvsadm_did() {
    let c = config::parse(SEED, "seed.yaml").unwrap();
    let rules = c.desired.to_rules();
    assert_eq!(
        model::save::format_rules(&rules),
        "-A -t 172.16.1.50:80 -s wlc\n-a -t 172.16.1.50:80 -r 172.16.1.101:80 -g -w 1\n-a -t 172.16.1.50:80 -r 172.16.1.102:80 -g -w 1\n"
    );
}

#[test]
fn the_seed_mistake_gets_a_precise_answer() {
    assert_rejects(
        &SEED.replace("scheduler: wlc", "scheduler: dr"),
        "t.yaml:4:16: `dr` is a forwarding method, not a scheduler; write `forward: dr` and pick a scheduler such as wlc",
    );
    assert_rejects(
        &SEED.replace("scheduler: wlc", "scheduler: nat"),
        "t.yaml:4:16: `nat` is a forwarding method, not a scheduler; write `forward: nat`",
    );
}

#[test]
fn rejections_name_line_column_and_fix() {
    let cases: &[(&str, &str)] = &[
        // Unknown keys, with a suggestion.
        (
            "services:\n  - adress: 1.2.3.4:80\n",
            "t.yaml:2:5: unknown key `adress`; did you mean `address`?",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5\n        wieght: 2\n",
            "t.yaml:5:9: unknown key `wieght`; did you mean `weight`?",
        ),
        (
            "servces: []\n",
            "t.yaml:1:1: unknown key `servces`; did you mean `services`?",
        ),
        // Wrong types.
        (
            "services:\n  - address: 1.2.3.4:80\n    reals: 3\n",
            "t.yaml:3:12: expected a list here",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5\n        weight: heavy\n",
            "t.yaml:5:17:",
        ),
        // Schedulers.
        (
            "services:\n  - address: 1.2.3.4:80\n    scheduler: wlcc\n",
            "t.yaml:3:16: unknown scheduler `wlcc`; did you mean `wlc`? valid schedulers: rr, wrr, lc, wlc",
        ),
        // Ports and addresses.
        (
            "services:\n  - address: 1.2.3.4:99999\n",
            "t.yaml:2:14: port 99999 is out of range",
        ),
        (
            "services:\n  - address: 1.2.3.4\n",
            "t.yaml:2:14: the service address `1.2.3.4` has no port; write it as `1.2.3.4:80`",
        ),
        (
            "services:\n  - address: 2001:db8::1:80\n",
            "t.yaml:2:14: `2001:db8::1:80` is ambiguous: the IPv6 address 2001:db8::1:80, or 2001:db8::1 with port 80; write `[2001:db8::1]:80`, or `[2001:db8::1:80]:PORT`",
        ),
        (
            "services:\n  - address: nothere:80\n",
            "t.yaml:2:14: `nothere` is not an IP address",
        ),
        (
            "services:\n  - reals: []\n",
            "t.yaml:2:5: a service needs `address: VIP:port` (or `fwmark: N`)",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    fwmark: 3\n",
            "t.yaml:3:13: give either `address` or `fwmark`, not both",
        ),
        (
            "services:\n  - address: 1.2.3.4:0\n",
            "t.yaml:2:14: port 0 (all ports) needs `persistence`",
        ),
        // Duplicates.
        (
            "services:\n  - address: 1.2.3.4:80\n  - address: 1.2.3.4:80\n",
            "t.yaml:3:14: duplicate service TCP 1.2.3.4:80 (first defined on line 2)",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5\n      - address: 1.2.3.5:80\n",
            "t.yaml:5:9: duplicate real server 1.2.3.5:80 (first listed on line 4)",
        ),
        (
            "services:\n  - name: a\n    address: 1.2.3.4:80\n  - name: a\n    address: 1.2.3.4:81\n",
            "t.yaml:4:5: duplicate service name `a`",
        ),
        // Families.
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 2001:db8::1\n",
            "t.yaml:4:18: real server 2001:db8::1 is not in the service's address family; only `forward: tunnel` can cross families",
        ),
        // Weight and thresholds.
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5\n        weight: -1\n",
            "t.yaml:5:17: weight -1 is out of range: 0 (drained) to 2147483647",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5\n        weight: 2147483648\n",
            "t.yaml:5:17: weight 2147483648 is out of range",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5\n        max_connections: -5\n",
            "t.yaml:5:26: max_connections -5 is out of range",
        ),
        // DR and tunnel cannot map ports.
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5:8080\n",
            "t.yaml:4:18: with `forward: dr` packets reach the real server unchanged, so its port must be the service's (80); use `forward: nat`",
        ),
        // Flags.
        (
            "services:\n  - address: 1.2.3.4:80\n    scheduler: wlc\n    flags: [sh-port]\n",
            "t.yaml:4:13: flag `sh-port` is used only by the `sh` scheduler, and this service uses `wlc`",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    scheduler: sh\n    flags: [sh-prot]\n",
            "t.yaml:4:13: unknown flag `sh-prot`; did you mean `sh-port`?",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    flags: [one-packet]\n",
            "t.yaml:3:13: `one-packet` scheduling is for UDP services",
        ),
        // Forwarding, protocol, durations, persistence.
        (
            "services:\n  - address: 1.2.3.4:80\n    forward: route\n",
            "t.yaml:3:14: unknown forwarding method `route`: use dr, nat or tunnel; did you mean `dr`?",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    protocol: icmp\n",
            "t.yaml:3:15: unknown protocol `icmp`: use tcp, udp or sctp",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    drain_timeout: soon\n",
            "t.yaml:3:20: drain_timeout: `soon` is not a duration",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    slow_start: 2h\n",
            "t.yaml:3:17: slow_start `2h` is over the limit of 3600s",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    reals:\n      - address: 1.2.3.5\n        slow_start: later\n",
            "t.yaml:5:21: slow_start: `later` is not a duration",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    persistence: 0s\n",
            "t.yaml:3:18: a persistence timeout of 0 turns persistence off",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    persistence: {timeout: 60s, netmask: 255.0.255.0}\n",
            "t.yaml:3:42: an IPv4 persistence netmask is a dotted mask",
        ),
        (
            "services:\n  - address: 1.2.3.4:80\n    persistence: {timout: 60s}\n",
            "t.yaml:3:19: unknown key `timout`; did you mean `timeout`?",
        ),
        (
            "services:\n  - fwmark: 0\n",
            "t.yaml:2:13: fwmark 0 is out of range",
        ),
        (
            "services:\n  - fwmark: 1\n    protocol: tcp\n",
            "t.yaml:3:15: a fwmark service matches packets of every protocol; remove `protocol`",
        ),
        // YAML itself.
        ("services:\n  - address: [1\n", "t.yaml:2:"),
        (
            "services:\n  - address: 1.2.3.4:80\n    address: 1.2.3.4:81\n",
            "t.yaml:3:",
        ),
    ];
    for (yaml, expected) in cases {
        assert_rejects(yaml, expected);
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let yaml = "services:\n  - address: 1.2.3.4:80\n    scheduler: dr\n    reals:\n      - address: 1.2.3.5\n        weight: -1\n";
    assert_eq!(problems(yaml).len(), 2, "{:#?}", problems(yaml));
}

#[test]
fn defaults_and_the_long_forms() {
    let yaml = "services:
  - address: \"[2001:db8::50]:443\"
    protocol: tcp
    scheduler: sh
    flags: [sh-port, sh-fallback]
    persistence: {timeout: 5m, netmask: 64}
    drain_timeout: 1m
    reals:
      - address: 2001:db8::1
      - address: \"[2001:db8::2]:8443\"
        forward: nat
        weight: 0
        max_connections: 100
        min_connections: 10
      - address: 10.0.0.9
        forward: tunnel
  - fwmark: 7
    family: ipv6
    scheduler: mh
    reals: [{address: 2001:db8::3}]
  - address: 10.1.1.1:53
    protocol: udp
    flags: [one-packet]
    persistence: 300
";
    let c = config::parse(yaml, "t.yaml").unwrap();
    let text = model::save::format_rules(&c.desired.to_rules());
    assert_eq!(
        text,
        "-A -t [2001:db8::50]:443 -s sh -p 300 -M 64 -b sh-fallback,sh-port
-a -t [2001:db8::50]:443 -r 10.0.0.9:443 -i -w 1
-a -t [2001:db8::50]:443 -r [2001:db8::1]:443 -g -w 1
-a -t [2001:db8::50]:443 -r [2001:db8::2]:8443 -m -w 0 -x 100 -y 10
-A -u 10.1.1.1:53 -s wlc -p 300 -o
-A -f 7 -6 -s mh
-a -f 7 -6 -r [2001:db8::3]:0 -g -w 1
"
    );
    let web = &c.desired.services.values().next().unwrap();
    assert_eq!(web.drain_timeout, 60);
}

#[test]
fn slow_start_is_the_services_for_its_reals_unless_a_real_says_otherwise() {
    let c = config::parse(
        "services:
  - address: 1.2.3.4:80
    slow_start: 20s
    reals:
      - address: 1.2.3.5
      - address: 1.2.3.6
        slow_start: 1500ms
      - address: 1.2.3.7
        slow_start: 0
  - address: 1.2.3.4:443
    reals:
      - address: 1.2.3.5
",
        "t.yaml",
    )
    .unwrap();
    let mut s = c.desired.services.values();
    let web = s.next().unwrap();
    let got: Vec<(String, std::time::Duration)> = web
        .slow_start
        .iter()
        .map(|(k, d)| (k.to_string(), *d))
        .collect();
    assert_eq!(
        got,
        [
            ("1.2.3.5:80".to_owned(), std::time::Duration::from_secs(20)),
            (
                "1.2.3.6:80".to_owned(),
                std::time::Duration::from_millis(1500)
            ),
        ]
    );
    assert!(s.next().unwrap().slow_start.is_empty());
}

#[test]
fn empty_file_means_no_services() {
    assert!(
        config::parse("", "t.yaml")
            .unwrap()
            .desired
            .services
            .is_empty()
    );
    assert!(
        config::parse("# nothing yet\n", "t.yaml")
            .unwrap()
            .desired
            .services
            .is_empty()
    );
    assert!(
        config::parse("services: []\n", "t.yaml")
            .unwrap()
            .desired
            .services
            .is_empty()
    );
}

#[test]
fn durations() {
    for (s, v) in [
        ("300", 300),
        ("300s", 300),
        ("5m", 300),
        ("1h", 3600),
        ("1m30s", 90),
    ] {
        assert_eq!(
            config::parse_duration(s),
            Ok(std::time::Duration::from_secs(v)),
            "{s}"
        );
    }
    for s in ["", "s", "5x", "-1", "1.5m", "m5"] {
        assert!(config::parse_duration(s).is_err(), "{s}");
    }
}

#[test]
fn yaml_bombs_are_refused_quickly() {
    // Classic billion laughs under a key that would accept the list.
    let mut y = String::from("services:\n  - address: 1.1.1.1:80\n    reals: &r0\n");
    for i in 0..60 {
        y += &format!("      - address: 10.0.0.{}\n", i + 1);
    }
    for s in 0..3000 {
        y += &format!(
            "  - address: 2.2.{}.{}:80\n    reals: *r0\n",
            s / 250,
            s % 250 + 1
        );
    }
    let got = problems(&y);
    assert!(
        got.iter()
            .any(|l| l.contains("aliases expand to more than lvsd accepts")),
        "{got:#?}"
    );
    // Deep nesting.
    let deep = format!("services: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(!problems(&deep).is_empty());
    // A file over the size limit is refused before parsing.
    let big = "#".repeat(config::MAX_FILE_BYTES as usize + 1);
    assert!(matches!(
        config::parse(&big, "t.yaml"),
        Err(config::Error::TooLarge { .. })
    ));
}

#[test]
fn host_section() {
    let with_host = |host: &str| format!("{SEED}host:\n{host}");
    let c = config::parse(
        &with_host("  role: director\n  interface: eth0\n"),
        "t.yaml",
    )
    .unwrap();
    assert_eq!(c.host.role, plan::host::Role::Director);
    assert_eq!(c.host.interface.as_deref(), Some("eth0"));
    // The same file, for a real server: --role wins over host.role.
    let rs = config::parse_as(
        &with_host("  role: director\n  interface: eth0\n  vips: [172.16.1.50]\n"),
        "t.yaml",
        Some(plan::host::Role::RealServer),
    )
    .unwrap();
    assert_eq!(rs.host.role, plan::host::Role::RealServer);
    assert_eq!(rs.host.vips, Some(vec!["172.16.1.50".parse().unwrap()]));
    // No host section: manage the table only.
    let none = config::parse(SEED, "t.yaml").unwrap();
    assert_eq!(none.host, plan::host::HostSpec::default());
    let cases: &[(&str, &str)] = &[
        (
            "  role: directr\n",
            "t.yaml:10:9: unknown role `directr`; did you mean `director`? valid roles: none, director, real-server",
        ),
        (
            "  role: director\n",
            "t.yaml:10:3: the director role needs `host.interface`: the interface facing the clients",
        ),
        (
            "  role: real-server\n  interface: eth0:1\n",
            "t.yaml:11:14: `eth0:1` is not an interface name",
        ),
        (
            "  role: real-server\n  interface: averyveryverylongname\n",
            "t.yaml:11:14: `averyveryverylongname` is longer than an interface name can be (15 bytes)",
        ),
        (
            "  vips: [172.16.1.50:80]\n",
            "t.yaml:10:10: `172.16.1.50:80` is not an IP address (a VIP is an address without a port)",
        ),
        (
            "  vips: [172.16.1.50, 172.16.1.50]\n",
            "t.yaml:10:23: duplicate VIP 172.16.1.50 (first listed on line 10)",
        ),
        (
            "  vips: [127.0.0.1]\n",
            "t.yaml:10:10: `127.0.0.1` cannot be a VIP",
        ),
        (
            "  rol: director\n",
            "t.yaml:10:3: unknown key `rol`; did you mean `role`?",
        ),
    ];
    for (host, expected) in cases {
        assert_rejects(&with_host(host), expected);
    }
    // --role director on a file without a host section: located at the top.
    match config::parse_as(SEED, "t.yaml", Some(plan::host::Role::Director)) {
        Err(e) => assert!(
            e.to_string()
                .starts_with("t.yaml:1:1: the director role needs `host.interface`"),
            "{e}"
        ),
        Ok(_) => panic!("a director without an interface was accepted"),
    }
}

#[test]
fn health_checks() {
    let yaml = "services:
  - name: web
    address: 172.16.1.50:80
    check: {type: http, path: /healthz, interval: 500ms, timeout: 300ms, rise: 1, fall: 2}
    on_failure: remove
    fallback: 172.16.1.110
    quorum: 1
    reals:
      - address: 172.16.1.101
      - address: 172.16.1.102
        check: {port: 8080}
      - address: 172.16.1.103
        check: {type: none}
";
    let c = config::parse(yaml, "t.yaml").unwrap();
    let svc = c.desired.services.values().next().unwrap();
    let h = &svc.health;
    assert_eq!(h.checks.len(), 2, "the real with `type: none` has no check");
    let r102 = h
        .checks
        .iter()
        .find(|(k, _)| k.addr.to_string() == "172.16.1.102")
        .unwrap()
        .1;
    assert_eq!(
        r102.port,
        Some(8080),
        "a real's fields override the service's"
    );
    assert_eq!(r102.interval, std::time::Duration::from_millis(500));
    assert_eq!((r102.rise, r102.fall), (1, 2));
    assert_eq!(h.on_failure, plan::health::OnFailure::Remove);
    assert_eq!(h.fallback.unwrap().0.to_string(), "172.16.1.110:80");
    assert_eq!(h.quorum, Some(1));
    let with = |check: &str| {
        format!(
            "services:\n  - address: 172.16.1.50:80\n    {check}\n    reals:\n      - address: 172.16.1.101\n      - address: 172.16.1.102\n"
        )
    };
    let cases: &[(&str, &str)] = &[
        (
            "check: {type: htp}",
            "t.yaml:3:19: unknown check type `htp`; did you mean `http`?",
        ),
        ("check: {port: 80}", "t.yaml:3:12: a check needs `type`"),
        (
            "check: {type: tcp, path: /x}",
            "t.yaml:3:30: `path` is for http and https checks, and this one is `type: tcp`",
        ),
        (
            "check: {type: exec}",
            "t.yaml:3:19: an exec check needs `command`",
        ),
        (
            "check: {type: exec, command: [check-db]}",
            "t.yaml:3:35: `check-db`: give the program's absolute path",
        ),
        (
            "check: {type: http, expect_status: [700]}",
            "t.yaml:3:41: 700 is not an HTTP status",
        ),
        (
            "check: {type: tcp, interval: 0s}",
            "t.yaml:3:34: interval must be a duration from 1ms to 1h",
        ),
        (
            "check: {type: tcp, fall: 0}",
            "t.yaml:3:30: fall 0 is out of range",
        ),
        (
            "check: {type: tcp, initial: maybe}",
            "t.yaml:3:33: initial: `maybe` is neither `up` nor `down`",
        ),
        (
            "on_failure: delete",
            "t.yaml:3:17: on_failure: `delete`; use `drain`",
        ),
        ("quorum: 3", "t.yaml:3:13: quorum 3 cannot be met"),
        (
            "fallback: 172.16.1.101",
            "t.yaml:3:15: the fallback 172.16.1.101:80 is also a real server",
        ),
        (
            "fallback: 172.16.1.110:8080",
            "t.yaml:3:15: with `forward: dr` packets reach the real server unchanged",
        ),
    ];
    for (check, expected) in cases {
        assert_rejects(&with(check), expected);
    }
    // A service-level problem is said once, not once per real.
    let got = problems(&with("check: {type: tcp, rise: 200}"));
    assert_eq!(got.len(), 1, "{got:#?}");
}

#[test]
fn hostile_files_are_clear_errors_fast() {
    let dir = std::env::temp_dir().join(format!("lvsd-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 100 MiB (sparse): refused from its size, before a byte is read.
    let big = dir.join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    let e = config::load(&big).unwrap_err().to_string();
    assert!(e.contains("the limit is 16777216 bytes"), "{e}");
    // Its whole size is in the message: judged from the file's size (a read stops one byte
    // past the limit, and would say 16777217).
    assert!(e.contains("104857600"), "{e}");
    // Invalid UTF-8: located.
    let bad = dir.join("latin1.yaml");
    std::fs::write(&bad, b"services:\n  - name: caf\xe9\n").unwrap();
    let e = config::load(&bad).unwrap_err().to_string();
    assert!(
        e.ends_with("latin1.yaml:2:14: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"),
        "{e}"
    );
    // Deep nesting far past the limit: an error, no stack overflow.
    let deep = format!("services: {}\n", "[".repeat(100_000));
    assert!(!problems(&deep).is_empty());
    let deep_map = format!("services: {}\n", "{a: ".repeat(50_000));
    assert!(!problems(&deep_map).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
