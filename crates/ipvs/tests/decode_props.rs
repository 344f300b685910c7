//! The decoder never panics: not on arbitrary bytes, not on real kernel messages that were cut
//! short or had bytes flipped (seeded from the golden fixtures), not on arbitrary attribute blocks.

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

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

    #[test]
    fn ipvsadm_rules_parser_never_panics(text in "[-a-zA-Z0-9:.\\[\\] ,\n]{0,200}") {
        let _ = ipvs::save::parse_rules(&text);
    }
}
