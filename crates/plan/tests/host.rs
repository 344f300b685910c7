//! Table-driven cases for host roles: each states the config's role and services, the host as
//! it is (a few text lines) and lvsd's record, and checks the exact operations in order, as
//! `lvsd plan` prints them. No kernel, no /proc.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use model::{DestKey, DestSpec, ForwardMethod, ServiceKey, ServiceSpec};
use plan::host::*;
use plan::*;

/// Services as (VIP, forwarding of its reals); the address decides the family.
fn services(list: &[(&str, ForwardMethod)]) -> Desired {
    let mut d = Desired::default();
    for (vip, fwd) in list {
        let addr: std::net::IpAddr = vip.parse().unwrap();
        let family = model::Family::of(&addr);
        let real = if addr.is_ipv4() {
            "172.16.1.101"
        } else {
            "2001:db8::101"
        };
        let mut reals = plan::FlatMap::new();
        reals.insert(
            DestKey {
                addr: real.parse().unwrap(),
                port: 80,
            },
            DestSpec::new(*fwd, 1),
        );
        d.services.insert(
            ServiceKey::tcp(addr, 80),
            DesiredService {
                name: None,
                spec: ServiceSpec::new("wlc", family),
                drain_timeout: 30,
                reals,
                health: Default::default(),
                slow_start: Default::default(),
            },
        );
    }
    d
}

/// The host as lines: `link NAME up|down`, `addr NAME IP/LEN`, `sysctl PATH VALUE`.
fn host(text: &str) -> HostObserved {
    let mut h = HostObserved::default();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["link", name, state] => {
                h.links.insert(
                    (*name).into(),
                    Link {
                        index: i as u32 + 1,
                        up: *state == "up",
                    },
                );
            }
            ["addr", name, cidr] => {
                let (a, len) = cidr.split_once('/').unwrap();
                h.addresses.insert(
                    HostAddr {
                        interface: (*name).into(),
                        addr: a.parse().unwrap(),
                    },
                    len.parse().unwrap(),
                );
            }
            ["sysctl", key, value] => {
                h.sysctls
                    .insert(Sysctl((*key).into()), Some((*value).to_owned()));
            }
            other => panic!("bad host line {other:?}"),
        }
    }
    h
}

/// lvsd's record as lines: `address NAME IP`, `link NAME`, `sysctl PATH ORIGINAL SET`.
fn record(text: &str) -> HostOwned {
    let mut o = HostOwned::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["address", name, a] => {
                o.addresses.insert(HostAddr {
                    interface: (*name).into(),
                    addr: a.parse().unwrap(),
                });
            }
            ["link", name] => {
                o.links_up.insert((*name).into());
            }
            ["sysctl", key, original, set] => {
                o.sysctls.insert(
                    Sysctl((*key).into()),
                    OwnedSysctl {
                        original: (*original).into(),
                        set: (*set).into(),
                    },
                );
            }
            other => panic!("bad record line {other:?}"),
        }
    }
    o
}

fn spec(role: Role, interface: Option<&str>, vips: Option<&[&str]>) -> HostSpec {
    HostSpec {
        role,
        interface: interface.map(Into::into),
        vips: vips.map(|v| v.iter().map(|a| a.parse().unwrap()).collect()),
        ..HostSpec::default()
    }
}

/// A plain Linux host in the seed's lab: eth0 with its own address, defaults everywhere.
const PLAIN: &str = "
    link lo up
    link eth0 up
    addr lo 127.0.0.1/8
    addr eth0 172.16.1.100/16
    sysctl net/ipv4/ip_forward 0
    sysctl net/ipv6/conf/all/forwarding 0
    sysctl net/ipv4/conf/all/arp_ignore 0
    sysctl net/ipv4/conf/all/arp_announce 0
    sysctl net/ipv4/conf/eth0/arp_ignore 0
    sysctl net/ipv4/conf/eth0/arp_announce 0
    sysctl net/ipv4/conf/all/rp_filter 0
";

fn plan_for(spec: &HostSpec, d: &Desired, host_text: &str, owned: &HostOwned) -> HostPlan {
    let want = host_desired(spec, d, None, &Owned::default(), &Default::default());
    plan_host(&want, &host(host_text), owned)
}

fn lines(p: &HostPlan) -> Vec<String> {
    p.ops.iter().map(ToString::to_string).collect()
}

/// Applies a plan to the observed text's state the way the kernel would, for follow-up passes.
fn executed(p: &HostPlan) -> HostOwned {
    let mut o = p.kept.clone();
    for op in &p.ops {
        o.record(op);
    }
    o
}

#[test]
fn director_adds_the_vip_and_forwarding() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let s = spec(Role::Director, Some("eth0"), None);
    let p = plan_for(&s, &d, PLAIN, &HostOwned::default());
    assert_eq!(
        lines(&p),
        [
            "~ sysctl net.ipv4.ip_forward = 1 (was 0)",
            "+ address 172.16.1.50/32 on eth0",
        ]
    );
    assert!(p.missing.is_empty());
    let o = executed(&p);
    assert_eq!(
        o,
        record("address eth0 172.16.1.50\nsysctl net/ipv4/ip_forward 0 1")
    );
    // Once done, in sync.
    let done = format!("{PLAIN}\naddr eth0 172.16.1.50/32\nsysctl net/ipv4/ip_forward 1");
    assert!(plan_for(&s, &d, &done, &o).is_empty());
}

#[test]
fn director_ipv6_gets_a_host_route_and_ipv6_forwarding() {
    let d = services(&[("2001:db8::50", ForwardMethod::DirectRoute)]);
    let p = plan_for(
        &spec(Role::Director, Some("eth0"), None),
        &d,
        PLAIN,
        &HostOwned::default(),
    );
    assert_eq!(
        lines(&p),
        [
            "~ sysctl net.ipv6.conf.all.forwarding = 1 (was 0)",
            "+ address 2001:db8::50/128 on eth0",
        ]
    );
}

#[test]
fn director_vips_add_to_the_services_addresses() {
    // A fwmark service has no address; its VIP is listed.
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let p = plan_for(
        &spec(Role::Director, Some("eth0"), Some(&["172.16.1.60"])),
        &d,
        "link eth0 up\nsysctl net/ipv4/ip_forward 1",
        &HostOwned::default(),
    );
    assert_eq!(
        lines(&p),
        [
            "+ address 172.16.1.50/32 on eth0",
            "+ address 172.16.1.60/32 on eth0"
        ]
    );
}

#[test]
fn director_keeps_a_draining_services_vip_until_it_is_deleted() {
    let vip = ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80);
    let old = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let owned_table = plan::plan(
        &old,
        &Observed::default(),
        &Owned::default(),
        Options::default(),
    )
    .owned;
    assert!(owned_table.services.contains_key(&vip));
    let s = spec(Role::Director, Some("eth0"), None);
    let on_host = format!("{PLAIN}\naddr eth0 172.16.1.50/32\nsysctl net/ipv4/ip_forward 1");
    let mine = record("address eth0 172.16.1.50\nsysctl net/ipv4/ip_forward 0 1");
    // The service left the file but is still in the table, draining: the VIP stays.
    let mut table = Observed::default();
    table.services.insert(
        vip,
        ObservedService {
            spec: ServiceSpec::new("wlc", model::Family::Inet),
            reals: plan::FlatMap::new(),
        },
    );
    let now = Desired::default();
    let want = host_desired(&s, &now, Some(&table), &owned_table, &Default::default());
    let p = plan_host(&want, &host(&on_host), &mine);
    assert!(p.ops.is_empty(), "{:?}", lines(&p));
    // A foreign service at the same address does not hold it.
    let want = host_desired(
        &s,
        &now,
        Some(&table),
        &Owned::default(),
        &Default::default(),
    );
    let p = plan_host(&want, &host(&on_host), &mine);
    assert_eq!(
        lines(&p),
        [
            "- address 172.16.1.50/32 on eth0",
            "~ sysctl net.ipv4.ip_forward = 0 (restored; lvsd had set 1)",
        ]
    );
    // Deleted from the table: the VIP goes, and forwarding is restored.
    let want = host_desired(
        &s,
        &now,
        Some(&Observed::default()),
        &owned_table,
        &Default::default(),
    );
    let p = plan_host(&want, &host(&on_host), &mine);
    assert_eq!(lines(&p).len(), 2);
    assert!(executed(&p).is_empty());
}

#[test]
fn never_removes_an_address_lvsd_did_not_add() {
    let s = spec(Role::Director, Some("eth0"), None);
    let before = format!("{PLAIN}\naddr eth0 172.16.1.50/32\nsysctl net/ipv4/ip_forward 1");
    // The VIP was there before lvsd: not recorded, so not removed when the service goes.
    let p = plan_for(&s, &Desired::default(), &before, &HostOwned::default());
    assert!(p.ops.is_empty(), "{:?}", lines(&p));
    // Recorded, but someone re-added it with their own prefix: theirs now.
    let theirs = format!("{PLAIN}\naddr eth0 172.16.1.50/24");
    let p = plan_for(
        &s,
        &Desired::default(),
        &theirs,
        &record("address eth0 172.16.1.50"),
    );
    assert!(p.ops.is_empty(), "{:?}", lines(&p));
    assert!(p.kept.addresses.is_empty());
}

#[test]
fn real_server_quiets_arp_before_the_vip_appears_on_lo() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let p = plan_for(
        &spec(Role::RealServer, None, None),
        &d,
        PLAIN,
        &HostOwned::default(),
    );
    assert_eq!(
        lines(&p),
        [
            "~ sysctl net.ipv4.conf.all.arp_announce = 2 (was 0)",
            "~ sysctl net.ipv4.conf.all.arp_ignore = 1 (was 0)",
            "+ address 172.16.1.50/32 on lo",
        ]
    );
}

#[test]
fn real_server_sets_the_traffic_interface_too_and_accepts_arp_ignore_2() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let h = PLAIN.replace(
        "sysctl net/ipv4/conf/all/arp_ignore 0",
        "sysctl net/ipv4/conf/all/arp_ignore 2",
    );
    let p = plan_for(
        &spec(Role::RealServer, Some("eth0"), None),
        &d,
        &h,
        &HostOwned::default(),
    );
    assert_eq!(
        lines(&p),
        [
            "~ sysctl net.ipv4.conf.all.arp_announce = 2 (was 0)",
            "~ sysctl net.ipv4.conf.eth0.arp_announce = 2 (was 0)",
            "~ sysctl net.ipv4.conf.eth0.arp_ignore = 1 (was 0)",
            "+ address 172.16.1.50/32 on lo",
        ]
    );
}

#[test]
fn real_server_skips_nat_services_and_takes_listed_vips() {
    let d = services(&[
        ("172.16.1.50", ForwardMethod::Masq),
        ("172.16.1.51", ForwardMethod::DirectRoute),
    ]);
    let s = spec(Role::RealServer, None, None);
    let p = plan_for(&s, &d, PLAIN, &HostOwned::default());
    assert!(lines(&p).contains(&"+ address 172.16.1.51/32 on lo".to_owned()));
    assert!(!lines(&p).iter().any(|l| l.contains("172.16.1.50")));
    // NAT only: nothing at all, not even the ARP sysctls.
    let nat = services(&[("172.16.1.50", ForwardMethod::Masq)]);
    assert!(plan_for(&s, &nat, PLAIN, &HostOwned::default()).is_empty());
    // Listed VIPs replace the default.
    let listed = spec(Role::RealServer, None, Some(&["172.16.1.77"]));
    let p = plan_for(&listed, &d, PLAIN, &HostOwned::default());
    assert_eq!(lines(&p)[2], "+ address 172.16.1.77/32 on lo");
    assert_eq!(lines(&p).len(), 3);
}

#[test]
fn real_server_ipv6_vip_needs_no_arp_sysctls() {
    // IPv6 answers neighbour solicitations only for addresses on the receiving interface.
    let d = services(&[("2001:db8::50", ForwardMethod::DirectRoute)]);
    let p = plan_for(
        &spec(Role::RealServer, None, None),
        &d,
        PLAIN,
        &HostOwned::default(),
    );
    assert_eq!(lines(&p), ["+ address 2001:db8::50/128 on lo"]);
}

#[test]
fn real_server_tunnel_brings_up_tunl0_and_loosens_rp_filter() {
    let d = services(&[("172.16.1.50", ForwardMethod::Tunnel)]);
    let s = spec(Role::RealServer, None, None);
    let strict = PLAIN.replace(
        "sysctl net/ipv4/conf/all/rp_filter 0",
        "sysctl net/ipv4/conf/all/rp_filter 1",
    );
    // No tunl0 yet: created and brought up; its own rp_filter waits for the next pass.
    let p = plan_for(&s, &d, &strict, &HostOwned::default());
    assert_eq!(
        lines(&p),
        [
            "+ link tunl0 (ipip)",
            "~ link tunl0 up",
            "~ sysctl net.ipv4.conf.all.arp_announce = 2 (was 0)",
            "~ sysctl net.ipv4.conf.all.arp_ignore = 1 (was 0)",
            "~ sysctl net.ipv4.conf.all.rp_filter = 2 (was 1)",
            "+ address 172.16.1.50/32 on tunl0",
        ]
    );
    assert!(p.missing.is_empty());
    // The next pass sees tunl0 (down, as the module makes it) with rp_filter on.
    let next = format!("{strict}\nlink tunl0 down\nsysctl net/ipv4/conf/tunl0/rp_filter 1");
    let p = plan_for(&s, &d, &next, &HostOwned::default());
    assert!(lines(&p).contains(&"~ link tunl0 up".to_owned()));
    assert!(lines(&p).contains(&"~ sysctl net.ipv4.conf.tunl0.rp_filter = 0 (was 1)".to_owned()));
    // Loose or off on `all` is left alone.
    let p = plan_for(
        &s,
        &d,
        &format!(
            "{PLAIN}\nlink tunl0 up\nsysctl net/ipv4/conf/tunl0/rp_filter 0\naddr tunl0 172.16.1.50/32"
        ),
        &HostOwned::default(),
    );
    assert_eq!(
        lines(&p),
        [
            "~ sysctl net.ipv4.conf.all.arp_announce = 2 (was 0)",
            "~ sysctl net.ipv4.conf.all.arp_ignore = 1 (was 0)",
        ]
    );
}

#[test]
fn ipv6_tunnel_uses_ip6tnl0() {
    let d = services(&[("2001:db8::50", ForwardMethod::Tunnel)]);
    let p = plan_for(
        &spec(Role::RealServer, None, None),
        &d,
        "link lo up\nlink ip6tnl0 down",
        &HostOwned::default(),
    );
    assert_eq!(
        lines(&p),
        ["~ link ip6tnl0 up", "+ address 2001:db8::50/128 on ip6tnl0"]
    );
}

#[test]
fn removing_the_role_undoes_in_reverse_order() {
    let on = format!(
        "{}\nlink tunl0 up\naddr lo 172.16.1.50/32\naddr tunl0 172.16.1.51/32\nsysctl net/ipv4/conf/tunl0/rp_filter 0",
        PLAIN
            .replace("all/arp_ignore 0", "all/arp_ignore 1")
            .replace("all/arp_announce 0", "all/arp_announce 2")
    );
    let mine = record(
        "address lo 172.16.1.50
         address tunl0 172.16.1.51
         link tunl0
         sysctl net/ipv4/conf/all/arp_ignore 0 1
         sysctl net/ipv4/conf/all/arp_announce 0 2
         sysctl net/ipv4/conf/tunl0/rp_filter 1 0",
    );
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let p = plan_for(&spec(Role::None, None, None), &d, &on, &mine);
    assert_eq!(
        lines(&p),
        [
            "- address 172.16.1.50/32 on lo",
            "- address 172.16.1.51/32 on tunl0",
            "~ sysctl net.ipv4.conf.all.arp_announce = 0 (restored; lvsd had set 2)",
            "~ sysctl net.ipv4.conf.all.arp_ignore = 0 (restored; lvsd had set 1)",
            "~ sysctl net.ipv4.conf.tunl0.rp_filter = 1 (restored; lvsd had set 0)",
            "~ link tunl0 down",
        ]
    );
    assert!(executed(&p).is_empty());
}

#[test]
fn a_sysctl_changed_by_someone_else_is_theirs() {
    // lvsd set arp_ignore to 1; an operator then set 2. The role goes: left at 2, forgotten.
    let h = PLAIN.replace("all/arp_ignore 0", "all/arp_ignore 2");
    let mine = record("sysctl net/ipv4/conf/all/arp_ignore 0 1");
    let p = plan_for(
        &spec(Role::None, None, None),
        &Desired::default(),
        &h,
        &mine,
    );
    assert!(p.ops.is_empty(), "{:?}", lines(&p));
    assert!(p.kept.is_empty());
}

#[test]
fn drift_is_repaired_and_the_original_is_kept() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let s = spec(Role::RealServer, None, None);
    let mine = record(
        "address lo 172.16.1.50
         sysctl net/ipv4/conf/all/arp_ignore 0 1
         sysctl net/ipv4/conf/all/arp_announce 0 2",
    );
    // Someone reset arp_ignore and removed the VIP.
    let h = PLAIN.replace("all/arp_announce 0", "all/arp_announce 2");
    let p = plan_for(&s, &d, &h, &mine);
    assert_eq!(
        lines(&p),
        [
            "~ sysctl net.ipv4.conf.all.arp_ignore = 1 (was 0)",
            "+ address 172.16.1.50/32 on lo",
        ]
    );
    let after = executed(&p);
    assert_eq!(
        after, mine,
        "the original value stays the one from before lvsd"
    );
}

#[test]
fn a_missing_interface_or_sysctl_is_named() {
    let d = services(&[
        ("172.16.1.50", ForwardMethod::DirectRoute),
        ("2001:db8::50", ForwardMethod::DirectRoute),
    ]);
    let no_v6 = "link lo up\nlink eth0 up\nsysctl net/ipv4/ip_forward 0";
    let p = plan_for(
        &spec(Role::Director, Some("ens33"), None),
        &d,
        no_v6,
        &HostOwned::default(),
    );
    assert_eq!(
        p.missing,
        [
            Missing::Interface("ens33".into()),
            Missing::Sysctl(Sysctl("net/ipv6/conf/all/forwarding".into()))
        ]
    );
    assert!(
        p.missing[0].to_string().contains("`ens33` does not exist"),
        "{}",
        p.missing[0]
    );
    // A real server's traffic interface too, reported once (not again for its sysctls).
    let p = plan_for(
        &spec(Role::RealServer, Some("ens33"), None),
        &services(&[("172.16.1.50", ForwardMethod::DirectRoute)]),
        PLAIN,
        &HostOwned::default(),
    );
    assert_eq!(p.missing, [Missing::Interface("ens33".into())]);
}

#[test]
fn the_guard_stops_an_emptied_file_but_not_a_role_removal() {
    let on = format!("{PLAIN}\naddr lo 172.16.1.50/32\naddr lo 172.16.1.51/32");
    let mine = record("address lo 172.16.1.50\naddress lo 172.16.1.51");
    let rs = spec(Role::RealServer, None, None);
    let one_left = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let p = plan_for(&rs, &one_left, &on, &mine);
    assert_eq!(
        p.guard(rs.role, &mine, Some(&Owned::default())),
        None,
        "half is not more than half"
    );
    let p = plan_for(&rs, &Desired::default(), &on, &mine);
    assert_eq!(
        p.guard(rs.role, &mine, Some(&Owned::default())),
        Some((2, 2))
    );
    let none = spec(Role::None, None, None);
    let p = plan_for(&none, &Desired::default(), &on, &mine);
    assert_eq!(p.guard(none.role, &mine, Some(&Owned::default())), None);
}

/// Two services left the file one after the other (each edit let through), drained, and were
/// deleted in the same pass: their VIPs go, though that is two of the three the director
/// holds. Counting them refused the host for good, with nothing left to change (found by the
/// engine's simulation, the host part). An emptied file still trips the guard: the table's
/// guard refuses to delete its services, so they stay in the record and their VIPs count.
#[test]
fn the_guard_lets_the_vips_of_deleted_services_go_on_a_director() {
    let on = format!(
        "{PLAIN}\naddr eth0 172.16.1.50/32\naddr eth0 172.16.1.51/32\naddr eth0 172.16.1.52/32"
    );
    let mine =
        record("address eth0 172.16.1.50\naddress eth0 172.16.1.51\naddress eth0 172.16.1.52");
    let director = spec(Role::Director, Some("eth0"), None);
    let left = services(&[("172.16.1.52", ForwardMethod::DirectRoute)]);
    let managed = |vips: &[&str]| Owned {
        services: vips
            .iter()
            .map(|v| {
                (
                    ServiceKey::tcp(v.parse().unwrap(), 80),
                    OwnedService::default(),
                )
            })
            .collect(),
        ..Owned::default()
    };
    let p = plan_for(&director, &left, &on, &mine);
    assert_eq!(
        lines(&p)[1..],
        [
            "- address 172.16.1.50/32 on eth0",
            "- address 172.16.1.51/32 on eth0"
        ]
    );
    assert_eq!(
        p.guard(director.role, &mine, Some(&managed(&["172.16.1.52"]))),
        None
    );
    // The same plan while the table's record still has those services: an emptied file.
    let all = managed(&["172.16.1.50", "172.16.1.51", "172.16.1.52"]);
    assert_eq!(p.guard(director.role, &mine, Some(&all)), Some((2, 3)));
    let p = plan_for(&director, &Desired::default(), &on, &mine);
    assert_eq!(p.guard(director.role, &mine, Some(&all)), Some((3, 3)));
    // A record that could not be read, or one with a firewall-mark service (whose VIPs only
    // `host.vips` names): every VIP counts, as before.
    let p = plan_for(&director, &left, &on, &mine);
    assert_eq!(p.guard(director.role, &mine, None), Some((2, 3)));
    let mut with_fwmark = managed(&["172.16.1.52"]);
    with_fwmark.services.insert(
        ServiceKey::Fwmark {
            mark: 7,
            family: model::Family::Inet,
        },
        OwnedService::default(),
    );
    assert_eq!(
        p.guard(director.role, &mine, Some(&with_fwmark)),
        Some((2, 3))
    );
    // A real server has no table: every VIP of its own counts, as before.
    let rs = spec(Role::RealServer, None, None);
    let on_lo = format!("{PLAIN}\naddr lo 172.16.1.50/32\naddr lo 172.16.1.51/32");
    let mine_lo = record("address lo 172.16.1.50\naddress lo 172.16.1.51");
    let p = plan_for(&rs, &Desired::default(), &on_lo, &mine_lo);
    assert_eq!(
        p.guard(rs.role, &mine_lo, Some(&Owned::default())),
        Some((2, 2))
    );
}

/// The table could not be read (or its part of the pass failed): a service that left the file
/// may still be draining there, so a director keeps the VIP of every service in its record.
/// Planned as if the table were empty, the VIP of the draining service went, cutting its
/// connections, and the guard let it through (one VIP of two).
#[test]
fn without_the_table_a_director_keeps_the_vips_of_the_services_in_its_record() {
    let on = format!("{PLAIN}\naddr eth0 172.16.1.50/32\naddr eth0 172.16.1.51/32");
    let mine = record("address eth0 172.16.1.50\naddress eth0 172.16.1.51");
    let director = spec(Role::Director, Some("eth0"), None);
    let left = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let managed = Owned {
        services: ["172.16.1.50", "172.16.1.51"]
            .iter()
            .map(|v| {
                (
                    ServiceKey::tcp(v.parse().unwrap(), 80),
                    OwnedService::default(),
                )
            })
            .collect(),
        ..Owned::default()
    };
    let want = host_desired(&director, &left, None, &managed, &Default::default());
    let p = plan_host(&want, &host(&on), &mine);
    assert!(
        !lines(&p).iter().any(|l| l.starts_with("- address")),
        "{:?}",
        lines(&p)
    );
}

#[test]
fn roles_parse_as_operators_write_them() {
    assert_eq!(Role::parse("real-server"), Some(Role::RealServer));
    assert_eq!(Role::parse("real_server"), Some(Role::RealServer));
    assert_eq!(Role::parse("director"), Some(Role::Director));
    assert_eq!(Role::parse("none"), Some(Role::None));
    assert_eq!(Role::parse("master"), None);
    assert_eq!(
        Sysctl("net/ipv4/conf/eth0.100/arp_ignore".into()).to_string(),
        "net.ipv4.conf.eth0/100.arp_ignore"
    );
}

const VS: &str = "
    sysctl net/ipv4/vs/sloppy_tcp 0
    sysctl net/ipv4/vs/sloppy_sctp 0
    sysctl net/ipv4/vs/expire_nodest_conn 0
";

fn ha(mut s: HostSpec, mode: HaMode) -> HostSpec {
    s.ha = mode;
    s
}

fn active_active(announce: Announce) -> HaMode {
    HaMode::ActiveActive {
        device: "lvsd0".into(),
        announce,
    }
}

#[test]
fn active_backup_leaves_the_vips_to_the_other_engine() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let s = ha(
        spec(Role::Director, Some("eth0"), None),
        HaMode::ActiveBackup,
    );
    // keepalived holds the VIP right now, or not: either way lvsd neither adds nor removes it.
    for vip in ["", "addr eth0 172.16.1.50/32"] {
        let now = format!("{PLAIN}\n{vip}");
        let p = plan_for(&s, &d, &now, &HostOwned::default());
        assert_eq!(lines(&p), ["~ sysctl net.ipv4.ip_forward = 1 (was 0)"]);
    }
    // A VIP lvsd added before the pair was set up is forgotten, not taken away.
    let before = record("address eth0 172.16.1.50\nsysctl net/ipv4/ip_forward 0 1");
    let now = format!("{PLAIN}\naddr eth0 172.16.1.50/32\nsysctl net/ipv4/ip_forward 1");
    let p = plan_for(&s, &d, &now, &before);
    assert!(p.ops.is_empty(), "{:?}", lines(&p));
    assert!(p.kept.addresses.is_empty());
    assert!(
        p.guard(Role::Director, &before, Some(&Owned::default()))
            .is_none()
    );
}

#[test]
fn active_active_announces_serving_vips_on_its_own_dummy_device() {
    let d = services(&[
        ("172.16.1.50", ForwardMethod::DirectRoute),
        ("172.16.1.51", ForwardMethod::DirectRoute),
    ]);
    let s = ha(
        spec(Role::Director, Some("eth0"), None),
        active_active(Announce::Any),
    );
    let start = format!("{PLAIN}{VS}");
    let p = plan_for(&s, &d, &start, &HostOwned::default());
    // The device first; its addresses once it exists (the next pass).
    assert_eq!(
        lines(&p),
        [
            "+ link lvsd0 (dummy)",
            "~ link lvsd0 up",
            "~ sysctl net.ipv4.ip_forward = 1 (was 0)",
            "~ sysctl net.ipv4.vs.sloppy_sctp = 1 (was 0)",
            "~ sysctl net.ipv4.vs.sloppy_tcp = 1 (was 0)",
        ]
    );
    let o = executed(&p);
    let now = format!(
        "{PLAIN}\nlink lvsd0 up\nsysctl net/ipv4/ip_forward 1\nsysctl net/ipv4/vs/sloppy_tcp 1\nsysctl net/ipv4/vs/sloppy_sctp 1\nsysctl net/ipv4/vs/expire_nodest_conn 0"
    );
    let p2 = plan_for(&s, &d, &now, &o);
    assert_eq!(
        lines(&p2),
        [
            "+ address 172.16.1.50/32 on lvsd0",
            "+ address 172.16.1.51/32 on lvsd0",
        ]
    );
    // Not on eth0: a VIP lvsd had put there before goes.
    let mut was_single = executed(&p2);
    was_single.addresses.insert(HostAddr {
        interface: "eth0".into(),
        addr: "172.16.1.50".parse().unwrap(),
    });
    let both = format!(
        "{now}\naddr lvsd0 172.16.1.50/32\naddr lvsd0 172.16.1.51/32\naddr eth0 172.16.1.50/32"
    );
    assert_eq!(
        lines(&plan_for(&s, &d, &both, &was_single)),
        ["- address 172.16.1.50/32 on eth0"]
    );
    // .51 cannot serve: withdrawn.
    let announced = format!("{now}\naddr lvsd0 172.16.1.50/32\naddr lvsd0 172.16.1.51/32");
    let unable = [ServiceKey::tcp("172.16.1.51".parse().unwrap(), 80)].into();
    let want = host_desired(&s, &d, None, &Owned::default(), &unable);
    let p3 = plan_host(&want, &host(&announced), &executed(&p2));
    assert_eq!(lines(&p3), ["- address 172.16.1.51/32 on lvsd0"]);
}

#[test]
fn a_shared_vip_is_announced_while_any_or_all_of_its_services_can_serve() {
    let mut d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let mut other = d.services.values().next().unwrap().clone();
    other.name = Some("tls".into());
    let tls = ServiceKey::tcp("172.16.1.50".parse().unwrap(), 443);
    d.services.insert(tls, other);
    let unable = [tls].into();
    let now = format!("{PLAIN}{VS}\nlink lvsd0 up");
    for (announce, announced) in [(Announce::Any, true), (Announce::All, false)] {
        let s = ha(
            spec(Role::Director, Some("eth0"), None),
            active_active(announce),
        );
        let want = host_desired(&s, &d, None, &Owned::default(), &unable);
        let p = plan_host(&want, &host(&now), &HostOwned::default());
        assert_eq!(
            lines(&p).contains(&"+ address 172.16.1.50/32 on lvsd0".to_owned()),
            announced,
            "{announce:?}: {:?}",
            lines(&p)
        );
    }
}

#[test]
fn ipvs_sysctls_are_a_directors_and_a_table_onlys_not_a_real_servers() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let start = format!("{PLAIN}{VS}");
    for role in [Role::Director, Role::None, Role::RealServer] {
        let mut s = spec(role, Some("eth0"), None);
        s.ipvs_sysctls
            .insert("expire_nodest_conn".into(), "1".into());
        let p = plan_for(&s, &d, &start, &HostOwned::default());
        let set =
            lines(&p).contains(&"~ sysctl net.ipv4.vs.expire_nodest_conn = 1 (was 0)".to_owned());
        assert_eq!(set, role != Role::RealServer, "{role:?}: {:?}", lines(&p));
    }
    // Set, then out of the file: restored.
    let mut s = spec(Role::None, None, None);
    s.ipvs_sysctls
        .insert("expire_nodest_conn".into(), "1".into());
    let o = executed(&plan_for(&s, &d, &start, &HostOwned::default()));
    let now = start.replace("expire_nodest_conn 0", "expire_nodest_conn 1");
    assert_eq!(
        lines(&plan_for(&spec(Role::None, None, None), &d, &now, &o)),
        ["~ sysctl net.ipv4.vs.expire_nodest_conn = 0 (restored; lvsd had set 1)"]
    );
    // Without ip_vs loaded the sysctl does not exist: said so.
    let p = plan_for(&s, &d, PLAIN, &HostOwned::default());
    assert_eq!(p.missing.len(), 1);
    assert!(
        p.missing[0]
            .to_string()
            .contains("is the ip_vs module loaded?"),
        "{}",
        p.missing[0]
    );
}

/// The table as the kernel would hold `d` once written, each real at `weight`.
fn programmed(d: &Desired, weight: u32) -> Observed {
    let mut t = Observed::default();
    for (k, s) in &d.services {
        let reals = s
            .reals
            .iter()
            .map(|(r, spec)| {
                let mut spec = *spec;
                spec.weight = weight;
                (*r, ObservedReal::new(spec))
            })
            .collect();
        t.services.insert(
            *k,
            ObservedService {
                spec: s.spec.clone(),
                reals,
            },
        );
    }
    t
}

#[test]
fn an_active_active_director_announces_only_once_its_table_takes_traffic() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let s = ha(
        spec(Role::Director, Some("eth0"), None),
        active_active(Announce::Any),
    );
    let now = format!("{PLAIN}{VS}\nlink lvsd0 up");
    let none = Default::default();
    let announce = "+ address 172.16.1.50/32 on lvsd0".to_owned();
    for (table, announced) in [
        (Observed::default(), false),
        (programmed(&d, 0), false),
        (programmed(&d, 1), true),
    ] {
        let want = host_desired(&s, &d, Some(&table), &Owned::default(), &none);
        let p = plan_host(&want, &host(&now), &HostOwned::default());
        assert_eq!(lines(&p).contains(&announce), announced, "{:?}", lines(&p));
    }
}

#[test]
fn out_of_rotation_an_active_active_director_holds_its_vips_locally_unannounced() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let s = ha(
        spec(Role::Director, Some("eth0"), None),
        active_active(Announce::Any),
    );
    let table = programmed(&d, 1);
    let none = Default::default();
    let base = format!(
        "{PLAIN}{VS}\nlink lvsd0 up\nsysctl net/ipv4/ip_forward 1\nsysctl net/ipv4/vs/sloppy_tcp 1\nsysctl net/ipv4/vs/sloppy_sctp 1"
    );
    let serving = format!("{base}\naddr lvsd0 172.16.1.50/32");
    let mine = record("address lvsd0 172.16.1.50");
    let out = host_desired_in(
        &s,
        &d,
        Some(&table),
        &Owned::default(),
        &none,
        Rotation::Out,
    );
    let p = plan_host(&out, &host(&serving), &mine);
    // Held on lo before it leaves the announce device (adds run first): never not local.
    assert_eq!(
        lines(&p),
        [
            "+ address 172.16.1.50/32 on lo",
            "- address 172.16.1.50/32 on lvsd0"
        ]
    );
    // Moving it is not a removal the guard stops, either way.
    assert_eq!(
        p.guard(Role::Director, &mine, Some(&Owned::default())),
        None
    );
    let held = format!("{base}\naddr lo 172.16.1.50/32");
    let mine = executed(&p);
    let back = host_desired(&s, &d, Some(&table), &Owned::default(), &none);
    let p = plan_host(&back, &host(&held), &mine);
    assert_eq!(
        lines(&p),
        [
            "+ address 172.16.1.50/32 on lvsd0",
            "- address 172.16.1.50/32 on lo"
        ]
    );
    assert_eq!(
        p.guard(Role::Director, &mine, Some(&Owned::default())),
        None
    );
}

#[test]
fn an_active_active_director_keeps_announcing_services_an_emptied_file_left_in_the_table() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let s = ha(
        spec(Role::Director, Some("eth0"), None),
        active_active(Announce::Any),
    );
    let owned_table = plan::plan(
        &d,
        &Observed::default(),
        &Owned::default(),
        Options::default(),
    )
    .owned;
    let announced = format!(
        "{PLAIN}{VS}\nlink lvsd0 up\nsysctl net/ipv4/ip_forward 1\nsysctl net/ipv4/vs/sloppy_tcp 1\nsysctl net/ipv4/vs/sloppy_sctp 1\naddr lvsd0 172.16.1.50/32"
    );
    let mine = record("address lvsd0 172.16.1.50");
    let none = Default::default();
    // The table's guard kept the service (weights as they were): still announced.
    let want = host_desired(
        &s,
        &Desired::default(),
        Some(&programmed(&d, 1)),
        &owned_table,
        &none,
    );
    let p = plan_host(&want, &host(&announced), &mine);
    assert!(
        !lines(&p).contains(&"- address 172.16.1.50/32 on lvsd0".to_owned()),
        "{:?}",
        lines(&p)
    );
    // Left the file on purpose and draining (weight 0): withdrawn.
    let want = host_desired(
        &s,
        &Desired::default(),
        Some(&programmed(&d, 0)),
        &owned_table,
        &none,
    );
    let p = plan_host(&want, &host(&announced), &mine);
    assert!(
        lines(&p).contains(&"- address 172.16.1.50/32 on lvsd0".to_owned()),
        "{:?}",
        lines(&p)
    );
}

#[test]
fn a_vip_moving_to_a_device_created_in_this_pass_stays_until_it_exists() {
    let d = services(&[("172.16.1.50", ForwardMethod::DirectRoute)]);
    let s = ha(
        spec(Role::Director, Some("eth0"), None),
        active_active(Announce::Any),
    );
    let single = format!("{PLAIN}{VS}\nsysctl net/ipv4/ip_forward 1\naddr eth0 172.16.1.50/32");
    let mine = record("address eth0 172.16.1.50\nsysctl net/ipv4/ip_forward 0 1");
    let table = programmed(&d, 1);
    let none = Default::default();
    let want = host_desired(&s, &d, Some(&table), &Owned::default(), &none);
    let p = plan_host(&want, &host(&single), &mine);
    // lvsd0 is created; the VIP stays on eth0 meanwhile (no gap), and nothing is "removed".
    assert!(
        lines(&p).contains(&"+ link lvsd0 (dummy)".to_owned()),
        "{:?}",
        lines(&p)
    );
    assert!(
        !lines(&p).iter().any(|l| l.contains("172.16.1.50")),
        "{:?}",
        lines(&p)
    );
    assert_eq!(
        p.guard(Role::Director, &mine, Some(&Owned::default())),
        None
    );
    // Next round, the device exists: added there, then taken off eth0; a move, not a removal.
    let created = format!("{single}\nlink lvsd0 up");
    let p = plan_host(&want, &host(&created), &executed(&p));
    let l = lines(&p);
    let add = l
        .iter()
        .position(|x| x == "+ address 172.16.1.50/32 on lvsd0");
    let del = l
        .iter()
        .position(|x| x == "- address 172.16.1.50/32 on eth0");
    assert!(matches!((add, del), (Some(a), Some(b)) if a < b), "{l:?}");
    assert_eq!(
        p.guard(Role::Director, &mine, Some(&Owned::default())),
        None
    );
}
