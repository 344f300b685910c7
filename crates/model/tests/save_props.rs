//! The ipvsadm-save parser never panics, whatever text it is given (moved here with the parser
//! from lvsd-ipvs's decoder property tests).

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn ipvsadm_rules_parser_never_panics(text in "[-a-zA-Z0-9:.\\[\\] ,\n]{0,200}") {
        let _ = model::save::parse_rules(&text);
    }
}
