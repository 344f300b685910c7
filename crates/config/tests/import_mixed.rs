//! Issue 27, class 8: configs that keepalived and ldirectord take, which lvsd refused. A
//! persistence netmask of 0.0.0.0 (one persistence template for every client, as the kernel
//! allows), and one VIP:port in two `virtual_server` (or `virtual=`) blocks — the published
//! DR+TUN "mixed mode" — which keepalived builds as one service holding both blocks' reals,
//! each with its own block's forwarding method.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::table;

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_zero_ipv4_persistence_netmask_is_one_template_for_every_client() {
    for yaml in [
        "services:\n  - address: 10.0.0.1:80\n    persistence: {timeout: 60s, netmask: 0.0.0.0}\n",
        "services:\n  - address: 10.0.0.1:80\n    persistence:\n      timeout: 60s\n      netmask: 0.0.0.0\n",
    ] {
        let fast = config::parse(yaml, "t.yaml").map_err(|e| e.to_string());
        let slow = config::parse_with_yaml_library(yaml, "t.yaml").map_err(|e| e.to_string());
        assert!(slow.is_ok(), "{slow:?}");
        assert_eq!(fast.is_ok(), slow.is_ok());
        assert_eq!(
            table(yaml),
            sorted(&["-A -t 10.0.0.1:80 -s wlc -p 60 -M 0.0.0.0"])
        );
    }
    // Not a mask at all is still refused; an IPv6 prefix of 0 too (the kernel refuses it).
    let bad = "services:\n  - address: 10.0.0.1:80\n    persistence: {timeout: 60s, netmask: 0.255.0.0}\n";
    assert!(
        config::parse(bad, "t.yaml")
            .unwrap_err()
            .to_string()
            .contains("dotted mask")
    );
    let v6 = "services:\n  - address: \"[2001:db8::1]:80\"\n    persistence: {timeout: 60s, netmask: 0}\n";
    assert!(config::parse(v6, "t.yaml").is_err());
}

#[test]
fn keepalived_persistence_granularity_zero_imports() {
    let conf = "virtual_server 10.0.0.1 80 {\n    lb_algo rr\n    lb_kind DR\n    persistence_timeout 600\n    persistence_granularity 0.0.0.0\n    protocol TCP\n    real_server 10.0.1.1 80 {\n        weight 1\n    }\n}\n";
    let out = config::import::keepalived(conf, std::path::Path::new("k.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        table(&out.yaml),
        sorted(&[
            "-A -t 10.0.0.1:80 -s rr -p 600 -M 0.0.0.0",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1",
        ]),
        "{}",
        out.yaml
    );
}

#[test]
fn ldirectord_netmask_zero_imports() {
    let cf = "virtual=10.0.0.1:80\n\treal=10.0.1.1:80 gate\n\tscheduler=rr\n\tpersistent=600\n\tnetmask=0.0.0.0\n\tprotocol=tcp\n\tchecktype=on\n";
    let out = config::import::ldirectord(cf, std::path::Path::new("l.cf"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        table(&out.yaml),
        sorted(&[
            "-A -t 10.0.0.1:80 -s rr -p 600 -M 0.0.0.0",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1",
        ]),
        "{}",
        out.yaml
    );
}

/// keepalived's "mixed mode": one VIP:port, DR reals in one block, TUN reals in another.
const MIXED: &str = "virtual_server 192.168.200.10 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind DR
    persistence_timeout 50
    protocol TCP
    real_server 192.168.201.1 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 3
        }
    }
}

virtual_server 192.168.200.10 80 {
    delay_loop 6
    lb_algo rr
    lb_kind TUN
    protocol TCP
    real_server 10.20.0.1 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 192.168.201.1 80 {
        weight 7
    }
}
";

#[test]
fn keepalived_mixed_mode_is_one_service_with_each_blocks_forwarding() {
    let out = config::import::keepalived(MIXED, std::path::Path::new("k.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    // keepalived: the first block makes the service (wrr, persistent 50); the second block's
    // `ipvsadm -A` fails with "exists" and is ignored; its reals are added with -i; the real
    // in both blocks keeps the first block's entry.
    assert_eq!(
        table(&out.yaml),
        sorted(&[
            "-A -t 192.168.200.10:80 -s wrr -p 50",
            "-a -t 192.168.200.10:80 -r 192.168.201.1:80 -g -w 2",
            "-a -t 192.168.200.10:80 -r 10.20.0.1:80 -i -w 1",
        ]),
        "{}",
        out.yaml
    );
    let summary = out.summary.join("\n");
    assert!(summary.contains("k.conf:15"), "{summary}");
    assert!(summary.contains("k.conf:1"), "{summary}");
    assert!(summary.contains("scheduler rr"), "{summary}");
    assert!(summary.contains("192.168.201.1:80"), "{summary}");
}

#[test]
fn keepalived_mixed_mode_with_a_quorum_is_an_error_naming_both_blocks() {
    let text = MIXED.replacen("    protocol TCP\n", "    protocol TCP\n    quorum 2\n", 1);
    let e = config::import::keepalived(&text, std::path::Path::new("k.conf"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("k.conf:16:"), "{e}");
    assert!(e.contains("k.conf:1"), "{e}");
    assert!(e.contains("quorum"), "{e}");
}

#[test]
fn keepalived_mixed_mode_checks_stay_with_their_reals() {
    let text = MIXED.replace(
        "            connect_timeout 3\n        }\n    }\n    real_server 192.168.201.1",
        "            connect_timeout 9\n        }\n    }\n    real_server 192.168.201.1",
    );
    let out = config::import::keepalived(&text, std::path::Path::new("k.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    let c = config::parse(&out.yaml, "c.yaml").unwrap_or_else(|e| panic!("{e}\n{}", out.yaml));
    let svc = &c.desired.services[&model::ServiceKey::tcp("192.168.200.10".parse().unwrap(), 80)];
    assert_eq!(svc.health.checks.len(), 2, "{}", out.yaml);
}

#[test]
fn ldirectord_refuses_a_repeated_virtual_as_ldirectord_does() {
    // ldirectord's reader stops at the second block: "duplicate virtual server".
    let cf = "virtual=10.0.0.1:80\n\treal=10.0.1.1:80 gate\n\tprotocol=tcp\nvirtual=10.0.0.1:80\n\treal=10.0.1.2:80 ipip\n\tprotocol=tcp\n";
    let e = config::import::ldirectord(cf, std::path::Path::new("l.cf"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("l.cf:4:"), "{e}");
    assert!(e.contains("ldirectord"), "{e}");
}

#[test]
fn keepalived_a_comment_sign_inside_a_word_starts_a_comment_as_keepalived_reads_it() {
    // keepalived's parser (decomment) ends the line at an unquoted `#` or `!` wherever it is;
    // `\#` is a `#`. Seen in the corpus: `delay_before_retry 3#...`.
    let conf = "virtual_server 10.0.0.1 80 {\n    lb_algo rr#round robin\n    lb_kind DR!direct\n    protocol TCP\n    real_server 10.0.1.1 80 {\n        weight 2#two\n        HTTP_GET {\n            url {\n                path /a\\#b\n            }\n            delay_before_retry 3#retry\n        }\n    }\n}\n";
    let out = config::import::keepalived(conf, std::path::Path::new("k.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        table(&out.yaml),
        sorted(&[
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 2"
        ]),
        "{}",
        out.yaml
    );
    assert!(out.yaml.contains("/a#b"), "{}", out.yaml);
}

#[test]
fn keepalived_persistence_timeout_0_is_ignored_as_keepalived_ignores_it() {
    // keepalived: "persistence_timeout invalid", the line ignored: no persistence. Seen in
    // the corpus. Said in the summary, at its line.
    let conf = "virtual_server 10.0.0.1 80 {\n    lb_algo rr\n    lb_kind DR\n    persistence_timeout 0\n    protocol TCP\n    real_server 10.0.1.1 80 {\n    }\n}\n";
    let out = config::import::keepalived(conf, std::path::Path::new("k.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        table(&out.yaml),
        sorted(&[
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 1"
        ]),
        "{}",
        out.yaml
    );
    let summary = out.summary.join("\n");
    assert!(
        summary.contains("k.conf:4") && summary.contains("persistence_timeout 0"),
        "{summary}"
    );
}

#[test]
fn keepalived_mixed_mode_tunnels_keep_their_blocks_kind() {
    let conf = "virtual_server 10.0.0.1 80 {\n    lb_algo rr\n    lb_kind TUN type gue port 6080\n    protocol TCP\n    real_server 10.0.1.1 80 {\n    }\n}\nvirtual_server 10.0.0.1 80 {\n    lb_kind TUN\n    protocol TCP\n    real_server 10.0.1.2 80 {\n    }\n}\nvirtual_server 10.0.0.1 80 {\n    lb_kind DR\n    protocol TCP\n    real_server 10.0.1.3 80 {\n    }\n}\n";
    let out = config::import::keepalived(conf, std::path::Path::new("k.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        table(&out.yaml),
        sorted(&[
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -i -w 1 --tun-type gue --tun-port 6080",
            "-a -t 10.0.0.1:80 -r 10.0.1.2:80 -i -w 1",
            "-a -t 10.0.0.1:80 -r 10.0.1.3:80 -g -w 1",
        ]),
        "{}",
        out.yaml
    );
}
