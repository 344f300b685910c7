//! What the kernel's hashing schedulers (`mh`, `sh`) hash on, as one short fingerprint, and the
//! warnings about how a hashing service is set up.
//!
//! Directors that share VIPs (active-active behind ECMP) send a flow to the same real server
//! only when their `mh`/`sh` tables are built from the same input: the scheduler, its flags,
//! and the real servers with their weights in the kernel's list order (new destinations go to
//! the head of the list; `mh` and `sh` walk it from there). Each director publishes the
//! fingerprint of that input, so monitoring compares directors across hosts with one string.
//! Connection counts and statistics change every second and hash on nothing: they are left out.

use model::{DestKey, DestSpec, ServiceFlags, ServiceKey, ServiceSpec};

use crate::op::{flag_names, forward_name};

/// Whether `scheduler` maps flows by hashing over the list of real servers, so that its
/// mapping depends on their order (`mh`: Maglev; `sh`: source hashing).
pub fn hashes_on_order(scheduler: &str) -> bool {
    matches!(scheduler, "mh" | "sh")
}

/// The canonical text a fingerprint is taken over: `scheduler NAME`, `flags A,B` (the config's
/// words, sorted as [`flag_names`] gives them), then one `dest ADDR:PORT weight W fwd F` line
/// per real server in the order given (the kernel's). Published so that a person can see why
/// two fingerprints differ.
pub fn canonical<'a>(
    spec: &ServiceSpec,
    dests: impl IntoIterator<Item = (&'a DestKey, &'a DestSpec)>,
) -> String {
    use std::fmt::Write as _;
    let flags = spec.flags.without_kernel_bits();
    let mut out = format!(
        "scheduler {}\nflags {}\n",
        spec.scheduler,
        flag_names(flags, &spec.scheduler).join(",")
    );
    for (k, d) in dests {
        let _ = writeln!(
            out,
            "dest {k} weight {} fwd {}",
            d.weight,
            forward_name(d.forward)
        );
    }
    out
}

/// The fingerprint of a hashing service as the kernel holds it: 16 hex digits of FNV-1a (64
/// bits) over [`canonical`]. `dests` must be in the kernel's order (a dump's order), never a
/// sorted map's: the order is what the fingerprint is for. FNV-1a rather than a cryptographic
/// hash: nobody forges a table to match another's, the value must be the same on every host
/// and every lvsd version, and the planner stays free of dependencies.
pub fn fingerprint<'a>(
    spec: &ServiceSpec,
    dests: impl IntoIterator<Item = (&'a DestKey, &'a DestSpec)>,
) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = canonical(spec, dests)
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{h:016x}")
}

/// For an `mh` service without `mh-fallback`: why that drops traffic. `mh` maps each flow to
/// one real server whatever its weight; without the flag, a flow hashed to a real at weight 0
/// (drained by an operator, or down by its health check) is dropped instead of going to the
/// next real (the same as kubernetes issue #138688). `None` for other schedulers or with the
/// flag.
pub fn mh_without_fallback(key: &ServiceKey, spec: &ServiceSpec) -> Option<String> {
    if spec.scheduler != "mh" || spec.flags.contains(ServiceFlags::MH_FALLBACK) {
        return None;
    }
    Some(format!(
        "service {key}: scheduler mh without the mh-fallback flag: flows that hash to a real server at weight 0 (drained, or down by its health check) are dropped instead of going to the next real server; add `flags: [mh-fallback]` to the service"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use model::{Family, ForwardMethod};

    fn real(n: u8) -> DestKey {
        DestKey {
            addr: format!("10.0.0.{n}").parse().unwrap(),
            port: 80,
        }
    }

    fn mh(flags: ServiceFlags) -> ServiceSpec {
        let mut s = ServiceSpec::new("mh", Family::Inet);
        s.flags = flags;
        s
    }

    fn table(list: &[(u8, u32)]) -> Vec<(DestKey, DestSpec)> {
        list.iter()
            .map(|(n, w)| (real(*n), DestSpec::new(ForwardMethod::DirectRoute, *w)))
            .collect()
    }

    fn fp(spec: &ServiceSpec, t: &[(DestKey, DestSpec)]) -> String {
        fingerprint(spec, t.iter().map(|(k, d)| (k, d)))
    }

    #[test]
    fn the_canonical_text_is_what_the_kernel_hashes_on() {
        let t = table(&[(3, 1), (1, 2)]);
        let s = mh(ServiceFlags::MH_FALLBACK | ServiceFlags::MH_PORT | ServiceFlags::HASHED);
        assert_eq!(
            canonical(&s, t.iter().map(|(k, d)| (k, d))),
            "scheduler mh\nflags mh-fallback,mh-port\ndest 10.0.0.3:80 weight 1 fwd dr\ndest 10.0.0.1:80 weight 2 fwd dr\n"
        );
    }

    #[test]
    fn fingerprints_are_equal_for_the_same_table_and_differ_for_another() {
        let s = mh(ServiceFlags::MH_FALLBACK);
        let a = table(&[(3, 1), (2, 1), (1, 1)]);
        let f = fp(&s, &a);
        assert_eq!(f.len(), 16);
        assert!(f.chars().all(|c| c.is_ascii_hexdigit()));
        // The same on every call and every host: pinned (FNV-1a computed independently).
        assert_eq!(f, fp(&s, &a.clone()));
        assert_eq!(f, "49905e965427e2ef");
        // Another order.
        assert_ne!(f, fp(&s, &table(&[(1, 1), (3, 1), (2, 1)])));
        // Another weight.
        assert_ne!(f, fp(&s, &table(&[(3, 1), (2, 2), (1, 1)])));
        // Another flag, another scheduler.
        assert_ne!(f, fp(&mh(ServiceFlags::default()), &a));
        let mut sh = s.clone();
        sh.scheduler = "sh".into();
        assert_ne!(f, fp(&sh, &a));
        // The kernel's own bit does not count.
        assert_eq!(
            f,
            fp(&mh(ServiceFlags::MH_FALLBACK | ServiceFlags::HASHED), &a)
        );
    }

    #[test]
    fn connection_counts_and_statistics_do_not_count() {
        let s = mh(ServiceFlags::MH_FALLBACK);
        let quiet: Vec<model::Dest> = table(&[(2, 1), (1, 1)])
            .into_iter()
            .map(|(k, d)| model::Dest::new(k, d))
            .collect();
        let mut busy = quiet.clone();
        busy[0].conns.active = 40;
        busy[1].conns.inactive = 7;
        busy[1].conns.persistent = 3;
        busy[0].stats.conns = 1_000;
        let of = |v: &[model::Dest]| fingerprint(&s, v.iter().map(|d| (&d.key, &d.spec)));
        assert_eq!(of(&quiet), of(&busy));
    }

    #[test]
    fn only_order_hashing_schedulers_are_fingerprinted() {
        assert!(hashes_on_order("mh"));
        assert!(hashes_on_order("sh"));
        for s in ["rr", "wlc", "dh", "lblc"] {
            assert!(!hashes_on_order(s), "{s}");
        }
    }

    #[test]
    fn mh_without_fallback_is_named_with_the_fix() {
        let key = ServiceKey::tcp("10.99.0.50".parse().unwrap(), 80);
        let why = mh_without_fallback(&key, &mh(ServiceFlags::MH_PORT)).unwrap();
        assert!(why.contains("TCP 10.99.0.50:80"), "{why}");
        assert!(why.contains("flags: [mh-fallback]"), "{why}");
        assert_eq!(
            mh_without_fallback(&key, &mh(ServiceFlags::MH_FALLBACK)),
            None
        );
        // Only mh is warned about (the case the kubernetes issue is about).
        let mut sh = mh(ServiceFlags::default());
        sh.scheduler = "sh".into();
        assert_eq!(mh_without_fallback(&key, &sh), None);
        let rr = ServiceSpec::new("rr", Family::Inet);
        assert_eq!(mh_without_fallback(&key, &rr), None);
    }
}
