//! The decoder never panics: not on arbitrary bytes, not on real kernel messages that were cut
//! short or had bytes flipped (seeded from the golden fixtures), not on arbitrary attribute blocks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

fn fixture_messages() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        for line in text.lines() {
            if let Some(hex) = line
                .strip_prefix("request ")
                .or_else(|| line.strip_prefix("reply "))
            {
                out.push(
                    (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                        .collect(),
                );
            }
        }
    }
    assert!(out.len() > 100);
    out
}

/// The destination blocks (IPVS_CMD_ATTR_DEST values) of every captured message.
fn fixture_dest_blocks() -> Vec<Vec<u8>> {
    fixture_dest_blocks_tagged()
        .into_iter()
        .map(|(_, b)| b)
        .collect()
}

/// (from the kernel, block) pairs: the kernel's replies lack NLM_F_REQUEST.
fn fixture_dest_blocks_tagged() -> Vec<(bool, Vec<u8>)> {
    fixture_blocks(ipvs::constants::IPVS_CMD_ATTR_DEST)
}

fn fixture_service_blocks() -> Vec<(bool, Vec<u8>)> {
    fixture_blocks(ipvs::constants::IPVS_CMD_ATTR_SERVICE)
}

/// The blocks of attribute `kind` in the captured IPVS messages, tagged with whether the
/// kernel sent them.
fn fixture_blocks(kind: u16) -> Vec<(bool, Vec<u8>)> {
    let mut out = vec![];
    for m in fixture_messages() {
        // IPVS messages only: errors and acks embed the request they answer.
        // Info replies reuse attribute number 2 for the connection table size.
        if u16::from_ne_bytes([m[4], m[5]]) <= 0x10 || matches!(m.get(16), Some(14 | 15)) {
            continue;
        }
        let Some(attrs) = m.get(20..) else { continue };
        let from_kernel = m[6] & 1 == 0;
        for nla in netlink_packet_core::NlasIterator::new(attrs).flatten() {
            if nla.kind() == kind {
                out.push((from_kernel, nla.value().to_vec()));
            }
        }
    }
    out
}

fn typed_service(b: &[u8]) -> Option<ipvs::Service> {
    ipvs::message::parse_service_attrs(b)
        .and_then(|a| ipvs::convert::service_from_attrs(&a))
        .ok()
}

fn typed_dest(b: &[u8], af: Option<u16>) -> Option<ipvs::Dest> {
    ipvs::message::parse_dest_attrs(b, af)
        .and_then(|a| ipvs::convert::dest_from_attrs(&a))
        .ok()
}

#[test]
fn the_fast_destination_decoder_agrees_on_every_captured_block() {
    let blocks = fixture_dest_blocks_tagged();
    assert!(blocks.len() >= 15, "{}", blocks.len());
    let mut from_kernel = 0;
    for (kernel, b) in &blocks {
        let fast = ipvs::convert::dest_from_bytes(b, None).ok();
        assert_eq!(fast, typed_dest(b, None));
        if *kernel {
            assert!(
                fast.is_some(),
                "every destination the kernel reports decodes"
            );
            from_kernel += 1;
        }
    }
    assert!(from_kernel >= 5, "{from_kernel}");
}

#[test]
fn the_fast_service_decoder_agrees_on_every_captured_block() {
    let blocks = fixture_service_blocks();
    let from_kernel: Vec<_> = blocks.iter().filter(|(k, _)| *k).collect();
    assert!(from_kernel.len() >= 5, "{}", from_kernel.len());
    for (kernel, b) in &blocks {
        let fast = ipvs::convert::service_from_bytes(b).ok();
        assert_eq!(fast, typed_service(b));
        assert!(
            !kernel || fast.is_some(),
            "every service the kernel reports decodes"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_fast_service_decoder_agrees_with_the_typed_one(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let blocks = fixture_service_blocks();
        let mut b = blocks[pick.index(blocks.len())].1.clone();
        for (at, v) in flips {
            let i = at.index(b.len());
            b[i] ^= v;
        }
        b.truncate(cut.index(b.len() + 1));
        prop_assert_eq!(ipvs::convert::service_from_bytes(&b).ok(), typed_service(&b));
    }

    #[test]
    fn the_fast_service_decoder_agrees_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(ipvs::convert::service_from_bytes(&b).ok(), typed_service(&b));
    }

    #[test]
    fn the_fast_destination_decoder_agrees_with_the_typed_one(
        pick in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        af in prop_oneof![Just(None), Just(Some(2u16)), Just(Some(10u16)), Just(Some(7u16))],
    ) {
        let blocks = fixture_dest_blocks();
        let mut b = blocks[pick.index(blocks.len())].clone();
        for (at, v) in flips {
            let i = at.index(b.len());
            b[i] ^= v;
        }
        b.truncate(cut.index(b.len() + 1));
        prop_assert_eq!(ipvs::convert::dest_from_bytes(&b, af).ok(), typed_dest(&b, af));
    }

    #[test]
    fn the_fast_destination_decoder_agrees_on_random_bytes(
        b in proptest::collection::vec(any::<u8>(), 0..200),
        af in prop_oneof![Just(None), Just(Some(2u16)), Just(Some(10u16))],
    ) {
        prop_assert_eq!(ipvs::convert::dest_from_bytes(&b, af).ok(), typed_dest(&b, af));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ipvs::decode_message(&bytes);
    }

    #[test]
    fn arbitrary_attribute_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ipvs::message::parse_service_attrs(&bytes).map(|a| ipvs::convert::service_from_attrs(&a));
        let _ = ipvs::message::parse_dest_attrs(&bytes, Some(2)).map(|a| ipvs::convert::dest_from_attrs(&a));
        let _ = ipvs::message::parse_dest_attrs(&bytes, None);
        let _ = ipvs::message::parse_daemon_attrs(&bytes).map(|a| ipvs::convert::daemon_from_attrs(&a));
    }

    #[test]
    fn mutated_kernel_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let msgs = fixture_messages();
        let mut m = msgs[pick.index(msgs.len())].clone();
        for (at, v) in flips {
            let i = at.index(m.len());
            m[i] ^= v;
        }
        let len = cut.index(m.len() + 1);
        m.truncate(len);
        if let Ok(msg) = ipvs::decode_message(&m) {
            // Whatever decodes must re-encode without panicking too.
            let _ = ipvs::encode_message(msg, 0x20, 0, 0);
        }
    }
}

mod encoder {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use ipvs::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
            any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        ]
    }

    fn key() -> impl Strategy<Value = ServiceKey> {
        prop_oneof![
            (
                addr(),
                any::<u16>(),
                prop_oneof![
                    Just(Protocol::Tcp),
                    Just(Protocol::Udp),
                    Just(Protocol::Sctp)
                ]
            )
                .prop_map(|(addr, port, protocol)| ServiceKey::Addr {
                    protocol,
                    addr,
                    port
                }),
            (any::<u32>(), any::<bool>()).prop_map(|(mark, v6)| ServiceKey::Fwmark {
                mark,
                family: if v6 { Family::Inet6 } else { Family::Inet },
            }),
        ]
    }

    fn service_spec() -> impl Strategy<Value = ServiceSpec> {
        (
            "[a-z]{1,15}",
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of("[a-z]{1,15}"),
        )
            .prop_map(|(scheduler, flags, timeout, mask, pe_name)| ServiceSpec {
                scheduler,
                flags: ServiceFlags(flags),
                timeout,
                netmask: Netmask::V6(mask),
                pe_name,
            })
    }

    fn dest_spec() -> impl Strategy<Value = DestSpec> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(f, weight, u, l, tt, tp, tf)| DestSpec {
                forward: ForwardMethod::from_raw(f % 6),
                weight,
                upper_threshold: u,
                lower_threshold: l,
                tunnel_type: TunnelType::from_raw(tt),
                tunnel_port: tp,
                tunnel_flags: tf,
            })
    }

    fn dkey() -> impl Strategy<Value = DestKey> {
        (addr(), any::<u16>()).prop_map(|(addr, port)| DestKey { addr, port })
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (key(), service_spec()).prop_map(|(k, s)| Request::NewService(k, s)),
            (key(), service_spec()).prop_map(|(k, s)| Request::SetService(k, s)),
            key().prop_map(Request::DelService),
            (key(), dkey(), dest_spec()).prop_map(|(k, d, s)| Request::NewDest(k, d, s)),
            (key(), dkey(), dest_spec()).prop_map(|(k, d, s)| Request::SetDest(k, d, s)),
            (key(), dkey()).prop_map(|(k, d)| Request::DelDest(k, d)),
            Just(Request::Flush),
            proptest::option::of(key()).prop_map(Request::Zero),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(tcp, tcp_fin, udp)| {
                Request::SetTimeouts(Timeouts { tcp, tcp_fin, udp })
            }),
            (
                "[a-z0-9]{1,15}",
                any::<u32>(),
                proptest::option::of(any::<u16>()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(any::<u128>()),
                proptest::option::of(any::<u16>()),
                proptest::option::of(any::<u8>()),
            )
                .prop_map(|(ifn, id, maxlen, g4, g6, port, ttl)| Request::NewDaemon(
                    SyncDaemon {
                        state: DaemonState::Backup,
                        mcast_ifn: ifn,
                        sync_id: id,
                        sync_maxlen: maxlen,
                        mcast_group: g4.map(Ipv4Addr::from),
                        mcast_group6: g6.map(Ipv6Addr::from),
                        mcast_port: port,
                        mcast_ttl: ttl,
                    }
                )),
            Just(Request::DelDaemon(DaemonState::Master)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The batch writer's bytes are the typed encoder's bytes, and decode back to the request.
        #[test]
        fn the_fast_encoder_writes_what_the_typed_encoder_writes(req in request(), seq in any::<u32>()) {
            let fast = encode_request(&req, 0x20, 5, seq);
            let typed = encode_message(ipvs::convert::request_message(&req), 0x20, 5, seq);
            prop_assert_eq!(&fast, &typed);
            prop_assert_eq!(decode_message(&fast).expect("decodes"), ipvs::convert::request_message(&req));
        }

        /// The table reader's destination-dump request is the typed one.
        #[test]
        fn the_dest_dump_request_is_the_typed_request(k in key(), seq in any::<u32>()) {
            let mut fast = Vec::new();
            ipvs::wire::push_get_dests(&mut fast, &k, 0x20, 0x301, seq);
            let typed = encode_message(
                IpvsMessage::new(
                    IpvsCmd::GetDest,
                    vec![IpvsAttr::Service(ipvs::convert::service_key_attrs(&k))],
                ),
                0x20,
                0x301,
                seq,
            );
            prop_assert_eq!(fast, typed);
        }
    }
}
