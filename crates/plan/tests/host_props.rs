//! Properties of host planning over random hosts, roles and services, with a small model of what
//! the kernel does with each operation: applying a plan converges in at most two passes (the
//! second only for a tunnel device created in the first), a converged host plans nothing, and
//! taking the role away puts every sysctl and address back as it was before lvsd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use model::{DestKey, DestSpec, ForwardMethod, ServiceKey, ServiceSpec};
use plan::host::*;
use plan::*;
use proptest::prelude::*;

/// What the kernel does with an operation.
fn apply(host: &mut HostObserved, op: &HostOp) {
    match op {
        HostOp::CreateTunnel { name } => {
            let index = host.links.len() as u32 + 100;
            host.links.insert(name.clone(), Link { index, up: false });
            // A new device starts with the `default` values; 1 makes rp_filter matter.
            host.sysctls.insert(
                Sysctl(format!("net/ipv4/conf/{name}/rp_filter")),
                Some("1".into()),
            );
        }
        HostOp::CreateDummy { name } => {
            let index = host.links.len() as u32 + 200;
            host.links.insert(name.clone(), Link { index, up: false });
        }
        HostOp::LinkUp { name } => host.links.get_mut(name).unwrap().up = true,
        HostOp::LinkDown { name } => host.links.get_mut(name).unwrap().up = false,
        HostOp::SetSysctl { key, to, .. } | HostOp::RestoreSysctl { key, to, .. } => {
            assert!(
                host.sysctls.contains_key(key),
                "wrote a sysctl that is not there: {key}"
            );
            host.sysctls.insert(key.clone(), Some(to.clone()));
        }
        HostOp::AddAddress(a) => {
            assert!(host.links.contains_key(&a.interface), "no {}", a.interface);
            assert!(
                host.addresses.insert(a.clone(), a.prefix_len()).is_none(),
                "added twice: {a}"
            );
        }
        HostOp::DelAddress(a) => {
            assert!(
                host.addresses.remove(a).is_some(),
                "removed what is not there: {a}"
            );
        }
    }
}

/// One pass as the engine runs it: plan, check, execute, record.
fn pass(want: &HostDesired, host: &mut HostObserved, owned: &mut HostOwned) -> usize {
    let p = plan_host(want, host, owned);
    assert!(p.missing.is_empty(), "{:?}", p.missing);
    let mut kept = p.kept.clone();
    for op in &p.ops {
        apply(host, op);
        kept.record(op);
    }
    *owned = kept;
    p.ops.len()
}

fn host_strategy() -> impl Strategy<Value = HostObserved> {
    let keys = [
        "net/ipv4/ip_forward",
        "net/ipv6/conf/all/forwarding",
        "net/ipv4/conf/all/arp_ignore",
        "net/ipv4/conf/all/arp_announce",
        "net/ipv4/conf/all/rp_filter",
        "net/ipv4/conf/eth0/arp_ignore",
        "net/ipv4/conf/eth0/arp_announce",
        "net/ipv4/vs/sloppy_tcp",
        "net/ipv4/vs/sloppy_sctp",
        "net/ipv4/vs/expire_nodest_conn",
    ];
    (
        proptest::collection::vec(0u8..=2, keys.len()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(values, tunl0, tunl0_up, vip_there)| {
            let mut h = HostObserved::default();
            h.links.insert("lo".into(), Link { index: 1, up: true });
            h.links.insert("eth0".into(), Link { index: 2, up: true });
            for (k, v) in keys.iter().zip(values) {
                h.sysctls.insert(Sysctl((*k).into()), Some(v.to_string()));
            }
            if tunl0 {
                h.links.insert(
                    "tunl0".into(),
                    Link {
                        index: 3,
                        up: tunl0_up,
                    },
                );
                h.sysctls.insert(
                    Sysctl("net/ipv4/conf/tunl0/rp_filter".into()),
                    Some("1".into()),
                );
            }
            if vip_there {
                // Somebody's address that happens to be a VIP: used, never removed.
                h.addresses.insert(
                    HostAddr {
                        interface: "eth0".into(),
                        addr: "10.0.0.1".parse().unwrap(),
                    },
                    24,
                );
            }
            h
        })
}

fn services_strategy() -> impl Strategy<Value = Desired> {
    let one = (
        prop_oneof![
            (1u8..=4).prop_map(|n| format!("10.0.0.{n}")),
            (1u8..=3).prop_map(|n| format!("2001:db8::{n}")),
        ],
        prop_oneof![
            Just(ForwardMethod::DirectRoute),
            Just(ForwardMethod::Tunnel),
            Just(ForwardMethod::Masq)
        ],
        80u16..=82,
    );
    proptest::collection::vec(one, 0..5).prop_map(|list| {
        let mut d = Desired::default();
        for (vip, fwd, port) in list {
            let addr: IpAddr = vip.parse().unwrap();
            let mut reals = plan::FlatMap::new();
            reals.insert(
                DestKey {
                    addr: if addr.is_ipv4() {
                        "10.1.0.1".parse().unwrap()
                    } else {
                        "2001:db8:1::1".parse().unwrap()
                    },
                    port,
                },
                DestSpec::new(fwd, 1),
            );
            d.services.insert(
                ServiceKey::tcp(addr, port),
                DesiredService {
                    name: None,
                    spec: ServiceSpec::new("rr", model::Family::of(&addr)),
                    drain_timeout: 0,
                    reals,
                    health: Default::default(),
                    slow_start: Default::default(),
                },
            );
        }
        d
    })
}

fn role_strategy() -> impl Strategy<Value = HostSpec> {
    (
        prop_oneof![Just(Role::Director), Just(Role::RealServer)],
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(1u8..=5, 0..3)),
        prop_oneof![
            Just(HaMode::Single),
            Just(HaMode::ActiveBackup),
            Just(HaMode::ActiveActive {
                device: "lvsd0".into(),
                announce: Announce::Any
            }),
            Just(HaMode::ActiveActive {
                device: "lvsd0".into(),
                announce: Announce::All
            }),
        ],
        proptest::option::of(0u8..=1),
    )
        .prop_map(|(role, iface, vips, ha, nodest)| {
            let active_active = matches!(ha, HaMode::ActiveActive { .. });
            HostSpec {
                role,
                interface: (role == Role::Director || iface).then(|| "eth0".to_owned()),
                // Active-active announces the services' VIPs only.
                vips: vips.filter(|_| !active_active).map(|v| {
                    v.into_iter()
                        .map(|n| format!("10.0.0.{n}").parse().unwrap())
                        .collect::<std::collections::BTreeSet<IpAddr>>()
                        .into_iter()
                        .collect()
                }),
                ha,
                ipvs_sysctls: nodest
                    .map(|v| ("expire_nodest_conn".to_owned(), v.to_string()))
                    .into_iter()
                    .collect(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn converges_then_undoes_exactly(
        start in host_strategy(),
        desired in services_strategy(),
        spec in role_strategy(),
    ) {
        let want = host_desired(&spec, &desired, None, &Owned::default(), &Default::default());
        let mut host = start.clone();
        let mut owned = HostOwned::default();
        pass(&want, &mut host, &mut owned);
        pass(&want, &mut host, &mut owned);
        // Converged: nothing more to do, and every want holds.
        let again = plan_host(&want, &host, &owned);
        prop_assert!(again.ops.is_empty(), "not converged: {:?}", again.ops);
        for (k, w) in &want.sysctls {
            let v = host.sysctls[k].clone().unwrap();
            prop_assert!(w.accepts(&v), "{k} = {v}");
        }
        for a in &want.addresses {
            prop_assert!(host.addresses.contains_key(a), "missing {a}");
        }
        // The role goes: back to the start, except tunnel devices lvsd had to create (they
        // stay, down: the fallback devices cannot be deleted).
        let none = host_desired(&HostSpec::default(), &desired, None, &Owned::default(), &Default::default());
        pass(&none, &mut host, &mut owned);
        prop_assert!(owned.is_empty(), "record not empty: {owned:?}");
        prop_assert_eq!(&host.addresses, &start.addresses);
        for (k, v) in &start.sysctls {
            prop_assert_eq!(&host.sysctls[k], v, "{}", k);
        }
        for (name, l) in &start.links {
            prop_assert_eq!(host.links[name].up, l.up, "{}", name);
        }
    }
}
