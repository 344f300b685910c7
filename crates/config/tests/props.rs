//! Property tests: the parser never panics, and `export` output parses back to the same table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use model::{
    DestKey, DestSpec, Family, ForwardMethod, Netmask, Protocol, ServiceFlags, ServiceKey,
    ServiceSpec,
};
use plan::{Observed, normalize_dest, normalize_service};
use proptest::prelude::*;

const SEED: &str = "services:\n  - name: web\n    address: 172.16.1.50:80\n    scheduler: wlc\n    persistence: {timeout: 5m, netmask: 255.255.255.0}\n    check: {type: http, path: /h, expect_status: [200], interval: 500ms, rise: 2}\n    on_failure: drain\n    fallback: 172.16.1.110\n    reals:\n      - address: 172.16.1.101\n        weight: 2\nhost:\n  role: real-server\n  interface: eth0\n  vips: [172.16.1.50, 2001:db8::50]\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn parse_never_panics_on_text(s in "\\PC{0,400}") {
        let _ = config::parse(&s, "t.yaml");
    }

    #[test]
    fn load_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        // Any bytes at all in the file, valid UTF-8 or not: an error or a config, never a panic.
        let p = std::env::temp_dir().join(format!("lvsd-random-{}.yaml", std::process::id()));
        std::fs::write(&p, &bytes).unwrap();
        if let Err(e) = config::load(&p) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_config(pos in 0usize..SEED.len(), byte in any::<u8>(), cut in 0usize..SEED.len()) {
        let mut b = SEED.as_bytes().to_vec();
        b[pos] = byte;
        b.truncate(cut.max(pos + 1));
        let s = String::from_utf8_lossy(&b);
        let _ = config::parse(&s, "t.yaml");
    }

    #[test]
    fn export_round_trips(rules in proptest::collection::vec(rule(), 0..6)) {
        // Distinct service keys, as in a real table.
        let mut rules = rules;
        rules.sort_by_key(|r| r.0);
        rules.dedup_by_key(|r| r.0);
        let observed = Observed::from_rules(&rules);
        let yaml = config::export::to_yaml(&observed.to_rules(), "test");
        let back = config::parse(&yaml, "export.yaml").map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        prop_assert_eq!(back.desired.to_rules(), observed.to_rules(), "{}", yaml);
        // What needs no quotes or flow style is written so the fast reader takes it (a large
        // export applies without the YAML library's cost).
        if !rules.is_empty() && !yaml.contains(['"', '{']) {
            prop_assert!(config::fast_reader_takes(&yaml), "{}", yaml);
        }
    }
}

#[test]
fn an_ipv4_export_is_written_in_the_fast_readers_style() {
    let rules: Vec<model::save::Rule> = (0..200u16)
        .map(|i| {
            let key = ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
                port: 80,
            };
            let mut spec = ServiceSpec::new("wlc", Family::Inet);
            if i % 2 == 0 {
                spec.flags = ServiceFlags::PERSISTENT;
                spec.timeout = 300;
            }
            let dests = (1..=3u8)
                .map(|r| {
                    let dk = DestKey {
                        addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, r)),
                        port: if r == 3 { 8080 } else { 80 },
                    };
                    // A real on another port is NAT: direct routing keeps the port.
                    let forward = if r == 3 {
                        ForwardMethod::Masq
                    } else {
                        ForwardMethod::DirectRoute
                    };
                    (dk, DestSpec::new(forward, u32::from(r)))
                })
                .collect();
            (key, spec, dests)
        })
        .collect();
    let yaml = config::export::to_yaml(&rules, "lvsd export");
    assert!(!yaml.contains('"'), "{yaml}");
    assert!(config::fast_reader_takes(&yaml), "{yaml}");
    let back = config::parse(&yaml, "export.yaml").unwrap();
    assert_eq!(back.desired.services.len(), 200);
}

fn v4() -> impl Strategy<Value = IpAddr> {
    (1u8..=254, 0u8..=3).prop_map(|(a, b)| IpAddr::V4(Ipv4Addr::new(10, 0, b, a)))
}
fn v6() -> impl Strategy<Value = IpAddr> {
    (1u16..=500).prop_map(|a| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, a)))
}

fn rule() -> impl Strategy<Value = model::save::Rule> {
    let key = prop_oneof![
        (
            prop_oneof![
                Just(Protocol::Tcp),
                Just(Protocol::Udp),
                Just(Protocol::Sctp)
            ],
            prop_oneof![v4(), v6()],
            1u16..=65535
        )
            .prop_map(|(protocol, addr, port)| ServiceKey::Addr {
                protocol,
                addr,
                port
            }),
        (
            1u32..=1000,
            prop_oneof![Just(Family::Inet), Just(Family::Inet6)]
        )
            .prop_map(|(mark, family)| ServiceKey::Fwmark { mark, family }),
    ];
    (
        key,
        prop_oneof![Just("wlc"), Just("rr"), Just("sh"), Just("mh")],
        proptest::option::of((1u32..100_000, 8u32..=32)),
        0u32..4,
    )
        .prop_flat_map(|(key, sched, persist, flagbits)| {
            let mut spec = ServiceSpec::new(sched, key.family());
            if let Some((t, bits)) = persist {
                spec.flags = ServiceFlags::PERSISTENT;
                spec.timeout = t;
                spec.netmask = match key.family() {
                    Family::Inet => Netmask::V4(Ipv4Addr::from(u32::MAX << (32 - bits))),
                    Family::Inet6 => Netmask::V6(bits * 4),
                };
            }
            if sched == "sh" || sched == "mh" {
                spec.flags = spec.flags | ServiceFlags(flagbits << 3);
            }
            let spec = normalize_service(spec, key);
            let port = match key {
                ServiceKey::Addr { port, .. } => Some(port),
                _ => None,
            };
            let family = key.family();
            (
                Just(key),
                Just(spec),
                proptest::collection::vec(
                    (
                        0usize..3,
                        1u16..=500,
                        0u32..5,
                        0u32..3,
                        0u32..3,
                        1u16..=65535,
                    ),
                    0..4,
                ),
            )
                .prop_map(move |(key, spec, raw)| {
                    let mut dests = std::collections::BTreeMap::new();
                    for (fw, a, w, up, lo, p) in raw {
                        let forward = [
                            ForwardMethod::DirectRoute,
                            ForwardMethod::Masq,
                            ForwardMethod::Tunnel,
                        ][fw];
                        let addr = match family {
                            Family::Inet => {
                                IpAddr::V4(Ipv4Addr::new(10, 1, (a >> 8) as u8, a as u8))
                            }
                            Family::Inet6 => {
                                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, a))
                            }
                        };
                        let port = match (forward, port) {
                            (ForwardMethod::Masq, _) | (_, None) => p,
                            (_, Some(sp)) => sp,
                        };
                        let mut d = DestSpec::new(forward, w);
                        d.upper_threshold = up * 10;
                        d.lower_threshold = lo;
                        dests.insert(DestKey { addr, port }, normalize_dest(d));
                    }
                    (key, spec, dests.into_iter().collect())
                })
        })
}
