//! Between the model ([`crate::model`]) and the attribute enums ([`crate::message`]). Requests are
//! laid out as ipvsadm (libipvs) lays them out, so that golden-byte tests can compare them with
//! what ipvsadm really sends.

use std::net::IpAddr;

use netlink_packet_core::{
    DecodeError, ErrorContext, NlasIterator, parse_string, parse_u8, parse_u16, parse_u16_be,
    parse_u32, parse_u64,
};

use crate::message::{
    DaemonAttr, DestAttr, IpvsAttr, IpvsCmd, IpvsMessage, ServiceAttr, StatsAttr, StatsField,
    parse_inet_addr, scan_u16,
};
use crate::model::*;

/// Folds a statistics block into [`Stats`].
pub fn stats_from_attrs(attrs: &[StatsAttr]) -> Stats {
    let mut s = Stats::default();
    for (field, v) in attrs.iter().filter_map(StatsAttr::field) {
        let slot = match field {
            StatsField::Conns => &mut s.conns,
            StatsField::InPkts => &mut s.inpkts,
            StatsField::OutPkts => &mut s.outpkts,
            StatsField::InBytes => &mut s.inbytes,
            StatsField::OutBytes => &mut s.outbytes,
            StatsField::Cps => &mut s.cps,
            StatsField::InPps => &mut s.inpps,
            StatsField::OutPps => &mut s.outpps,
            StatsField::InBps => &mut s.inbps,
            StatsField::OutBps => &mut s.outbps,
        };
        *slot = v;
    }
    s
}

/// The attributes that identify a service: all the kernel needs to find one.
pub fn service_key_attrs(key: &ServiceKey) -> Vec<ServiceAttr> {
    let mut attrs = vec![ServiceAttr::Af(key.family().to_raw())];
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            attrs.push(ServiceAttr::Protocol(protocol.to_raw()));
            attrs.push(ServiceAttr::Addr(*addr));
            attrs.push(ServiceAttr::Port(*port));
        }
        ServiceKey::Fwmark { mark, .. } => attrs.push(ServiceAttr::Fwmark(*mark)),
    }
    attrs
}

/// Every attribute `NEW_SERVICE`/`SET_SERVICE` requires. The flag mask covers every bit, so an
/// edit sets the flags to exactly `spec.flags` (the kernel re-adds `HASHED` itself).
pub fn service_attrs(key: &ServiceKey, spec: &ServiceSpec) -> Vec<ServiceAttr> {
    let mut attrs = service_key_attrs(key);
    attrs.push(ServiceAttr::SchedName(spec.scheduler.clone()));
    if let Some(pe) = &spec.pe_name {
        attrs.push(ServiceAttr::PeName(pe.clone()));
    }
    attrs.push(ServiceAttr::Flags {
        flags: spec.flags.0,
        mask: u32::MAX,
    });
    attrs.push(ServiceAttr::Timeout(spec.timeout));
    attrs.push(ServiceAttr::Netmask(spec.netmask.to_raw()));
    attrs
}

fn missing(what: &str) -> DecodeError {
    DecodeError::from(format!("missing {what}"))
}

/// Reads a service from a dump or get reply.
pub fn service_from_attrs(attrs: &[ServiceAttr]) -> Result<Service, DecodeError> {
    let mut p = ServiceParts::default();
    let (mut stats32, mut stats64) = (None, None);
    for a in attrs {
        match a {
            ServiceAttr::Af(v) => p.af = Some(*v),
            ServiceAttr::Protocol(v) => p.proto = Some(*v),
            ServiceAttr::Addr(v) => p.addr = Some(*v),
            ServiceAttr::Port(v) => p.port = Some(*v),
            ServiceAttr::Fwmark(v) => p.fwmark = Some(*v),
            ServiceAttr::SchedName(v) => p.sched = Some(v.clone()),
            ServiceAttr::Flags { flags: f, .. } => p.flags = Some(*f),
            ServiceAttr::Timeout(v) => p.timeout = Some(*v),
            ServiceAttr::Netmask(v) => p.netmask = Some(*v),
            ServiceAttr::PeName(v) => p.pe = Some(v.clone()),
            ServiceAttr::Stats(v) => stats32 = Some(v),
            ServiceAttr::Stats64(v) => stats64 = Some(v),
            ServiceAttr::Other(_) => {}
        }
    }
    p.stats = stats64
        .or(stats32)
        .map(|s| stats_from_attrs(s))
        .unwrap_or_default();
    finish_service(p)
}

/// What a service's attributes said, before the required ones are checked.
#[derive(Default)]
struct ServiceParts {
    af: Option<u16>,
    proto: Option<u16>,
    addr: Option<IpAddr>,
    port: Option<u16>,
    fwmark: Option<u32>,
    sched: Option<String>,
    flags: Option<u32>,
    timeout: Option<u32>,
    netmask: Option<u32>,
    pe: Option<String>,
    stats: Stats,
}

/// The required parts of a service, checked, with the rest: shared by both decoders so that
/// they report a missing attribute the same way.
fn finish_service(p: ServiceParts) -> Result<Service, DecodeError> {
    let raw_af = p.af.ok_or_else(|| missing("IPVS_SVC_ATTR_AF"))?;
    let family = Family::from_raw(raw_af)
        .ok_or_else(|| DecodeError::from(format!("unknown service address family {raw_af}")))?;
    let key = match (p.fwmark, p.proto, p.addr, p.port) {
        (Some(mark), _, _, _) if mark != 0 => ServiceKey::Fwmark { mark, family },
        (_, Some(proto), Some(addr), Some(port)) => ServiceKey::Addr {
            protocol: Protocol::from_raw(proto),
            addr,
            port,
        },
        _ => {
            return Err(missing(
                "service identity (fwmark, or protocol/address/port)",
            ));
        }
    };
    let spec = ServiceSpec {
        scheduler: p.sched.ok_or_else(|| missing("IPVS_SVC_ATTR_SCHED_NAME"))?,
        flags: ServiceFlags(p.flags.ok_or_else(|| missing("IPVS_SVC_ATTR_FLAGS"))?),
        timeout: p.timeout.ok_or_else(|| missing("IPVS_SVC_ATTR_TIMEOUT"))?,
        netmask: Netmask::from_raw(
            p.netmask.ok_or_else(|| missing("IPVS_SVC_ATTR_NETMASK"))?,
            family,
        ),
        pe_name: p.pe.filter(|s| !s.is_empty()),
    };
    Ok(Service {
        key,
        spec,
        stats: p.stats,
    })
}

/// Reads a service straight from the bytes of its attribute block: the table-read hot path.
/// Gives exactly what `service_from_attrs(&parse_service_attrs(payload)?)` gives (a property
/// test holds it to that).
pub fn service_from_bytes(payload: &[u8]) -> Result<Service, DecodeError> {
    use crate::constants::*;
    let scanned_af = scan_u16(payload, IPVS_SVC_ATTR_AF);
    let mut p = ServiceParts::default();
    let (mut stats32, mut stats64) = (None, None);
    for nla in NlasIterator::new(payload) {
        let nla = nla.with_context(|| "invalid attribute in service".to_string())?;
        let v = nla.value();
        match nla.kind() {
            IPVS_SVC_ATTR_AF => p.af = Some(parse_u16(v)?),
            IPVS_SVC_ATTR_PROTOCOL => p.proto = Some(parse_u16(v)?),
            IPVS_SVC_ATTR_ADDR => {
                if let Some(a) = parse_inet_addr(v, scanned_af)? {
                    p.addr = Some(a);
                }
            }
            IPVS_SVC_ATTR_PORT => p.port = Some(parse_u16_be(v)?),
            IPVS_SVC_ATTR_FWMARK => p.fwmark = Some(parse_u32(v)?),
            IPVS_SVC_ATTR_SCHED_NAME => p.sched = Some(parse_string(v)?),
            IPVS_SVC_ATTR_FLAGS => {
                if v.len() != 8 {
                    return Err(DecodeError::from(
                        "invalid IPVS_SVC_ATTR_FLAGS: not 8 bytes",
                    ));
                }
                p.flags = Some(parse_u32(&v[..4])?);
            }
            IPVS_SVC_ATTR_TIMEOUT => p.timeout = Some(parse_u32(v)?),
            IPVS_SVC_ATTR_NETMASK => p.netmask = Some(parse_u32(v)?),
            IPVS_SVC_ATTR_STATS => stats32 = Some(stats_from_bytes(v)?),
            IPVS_SVC_ATTR_STATS64 => stats64 = Some(stats_from_bytes(v)?),
            IPVS_SVC_ATTR_PE_NAME => p.pe = Some(parse_string(v)?),
            _ => {}
        }
    }
    p.stats = stats64.or(stats32).unwrap_or_default();
    finish_service(p)
}

/// The attributes that identify a destination (for `DEL_DEST`).
pub fn dest_key_attrs(key: &DestKey) -> Vec<DestAttr> {
    vec![
        DestAttr::AddrFamily(key.family().to_raw()),
        DestAttr::Addr(key.addr),
        DestAttr::Port(key.port),
    ]
}

/// Every attribute `NEW_DEST`/`SET_DEST` takes, in libipvs's order.
pub fn dest_attrs(key: &DestKey, spec: &DestSpec) -> Vec<DestAttr> {
    let mut attrs = dest_key_attrs(key);
    attrs.extend([
        DestAttr::FwdMethod(spec.forward.to_raw()),
        DestAttr::Weight(spec.weight),
        DestAttr::TunType(spec.tunnel_type.to_raw()),
        DestAttr::TunPort(spec.tunnel_port),
        DestAttr::TunFlags(spec.tunnel_flags),
        DestAttr::UThresh(spec.upper_threshold),
        DestAttr::LThresh(spec.lower_threshold),
    ]);
    attrs
}

/// Reads a destination from a dump reply.
pub fn dest_from_attrs(attrs: &[DestAttr]) -> Result<Dest, DecodeError> {
    let (mut addr, mut port, mut fwd, mut weight) = (None, None, None, None);
    let mut spec = DestSpec::new(ForwardMethod::DirectRoute, 0);
    let mut conns = DestConns::default();
    let (mut stats32, mut stats64) = (None, None);
    for a in attrs {
        match a {
            DestAttr::Addr(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::FwdMethod(v) => fwd = Some(*v),
            DestAttr::Weight(v) => weight = Some(*v),
            DestAttr::UThresh(v) => spec.upper_threshold = *v,
            DestAttr::LThresh(v) => spec.lower_threshold = *v,
            DestAttr::ActiveConns(v) => conns.active = *v,
            DestAttr::InactConns(v) => conns.inactive = *v,
            DestAttr::PersistConns(v) => conns.persistent = *v,
            DestAttr::Stats(v) => stats32 = Some(v),
            DestAttr::Stats64(v) => stats64 = Some(v),
            DestAttr::TunType(v) => spec.tunnel_type = TunnelType::from_raw(*v),
            DestAttr::TunPort(v) => spec.tunnel_port = *v,
            DestAttr::TunFlags(v) => spec.tunnel_flags = *v,
            DestAttr::AddrFamily(_) | DestAttr::Other(_) => {}
        }
    }
    let stats = stats64
        .or(stats32)
        .map(|s| stats_from_attrs(s))
        .unwrap_or_default();
    finish_dest(addr, port, fwd, weight, spec, conns, stats)
}

/// The attributes of `NEW_DAEMON`, in libipvs's order.
pub fn daemon_attrs(d: &SyncDaemon) -> Vec<DaemonAttr> {
    let mut attrs = vec![
        DaemonAttr::State(d.state.to_raw()),
        DaemonAttr::McastIfn(d.mcast_ifn.clone()),
        DaemonAttr::SyncId(d.sync_id),
    ];
    if let Some(v) = d.sync_maxlen {
        attrs.push(DaemonAttr::SyncMaxlen(v));
    }
    if let Some(v) = d.mcast_port {
        attrs.push(DaemonAttr::McastPort(v));
    }
    if let Some(v) = d.mcast_ttl {
        attrs.push(DaemonAttr::McastTtl(v));
    }
    if let Some(v) = d.mcast_group {
        attrs.push(DaemonAttr::McastGroup(v));
    }
    if let Some(v) = d.mcast_group6 {
        attrs.push(DaemonAttr::McastGroup6(v));
    }
    attrs
}

/// Reads a sync daemon from a `GET_DAEMON` reply.
pub fn daemon_from_attrs(attrs: &[DaemonAttr]) -> Result<SyncDaemon, DecodeError> {
    let (mut state, mut ifn, mut id) = (None, None, None);
    let mut d = SyncDaemon::new(DaemonState::Master, "", 0);
    for a in attrs {
        match a {
            DaemonAttr::State(v) => state = Some(*v),
            DaemonAttr::McastIfn(v) => ifn = Some(v.clone()),
            DaemonAttr::SyncId(v) => id = Some(*v),
            DaemonAttr::SyncMaxlen(v) => d.sync_maxlen = Some(*v),
            DaemonAttr::McastGroup(v) => d.mcast_group = Some(*v),
            DaemonAttr::McastGroup6(v) => d.mcast_group6 = Some(*v),
            DaemonAttr::McastPort(v) => d.mcast_port = Some(*v),
            DaemonAttr::McastTtl(v) => d.mcast_ttl = Some(*v),
            DaemonAttr::Other(_) => {}
        }
    }
    d.state = DaemonState::from_raw(state.ok_or_else(|| missing("IPVS_DAEMON_ATTR_STATE"))?);
    d.mcast_ifn = ifn.ok_or_else(|| missing("IPVS_DAEMON_ATTR_MCAST_IFN"))?;
    d.sync_id = id.ok_or_else(|| missing("IPVS_DAEMON_ATTR_SYNC_ID"))?;
    Ok(d)
}

/// Folds a raw statistics block into `s` without building the attribute list; fields of a width
/// other than 4 or 8 bytes are ignored, as [`StatsAttr`] keeps them as `Other`.
fn stats_from_bytes(payload: &[u8]) -> Result<Stats, DecodeError> {
    use crate::constants::*;
    let mut s = Stats::default();
    for nla in NlasIterator::new(payload) {
        let nla = nla.with_context(|| "invalid attribute in stats".to_string())?;
        let v = nla.value();
        let value = match v.len() {
            4 => u64::from(parse_u32(v)?),
            8 => parse_u64(v)?,
            _ => continue,
        };
        let slot = match nla.kind() {
            IPVS_STATS_ATTR_CONNS => &mut s.conns,
            IPVS_STATS_ATTR_INPKTS => &mut s.inpkts,
            IPVS_STATS_ATTR_OUTPKTS => &mut s.outpkts,
            IPVS_STATS_ATTR_INBYTES => &mut s.inbytes,
            IPVS_STATS_ATTR_OUTBYTES => &mut s.outbytes,
            IPVS_STATS_ATTR_CPS => &mut s.cps,
            IPVS_STATS_ATTR_INPPS => &mut s.inpps,
            IPVS_STATS_ATTR_OUTPPS => &mut s.outpps,
            IPVS_STATS_ATTR_INBPS => &mut s.inbps,
            IPVS_STATS_ATTR_OUTBPS => &mut s.outbps,
            _ => continue,
        };
        *slot = value;
    }
    Ok(s)
}

/// Reads a destination straight from the bytes of its attribute block: the dump hot path, with
/// no intermediate attribute list. Gives exactly what
/// `dest_from_attrs(&parse_dest_attrs(payload, service_af)?)` gives (a property test holds it to that).
pub fn dest_from_bytes(payload: &[u8], service_af: Option<u16>) -> Result<Dest, DecodeError> {
    use crate::constants::*;
    let af = scan_u16(payload, IPVS_DEST_ATTR_ADDR_FAMILY).or(service_af);
    let (mut addr, mut port, mut fwd, mut weight) = (None, None, None, None);
    let mut spec = DestSpec::new(ForwardMethod::DirectRoute, 0);
    let mut conns = DestConns::default();
    let (mut stats32, mut stats64) = (None, None);
    for nla in NlasIterator::new(payload) {
        let nla = nla.with_context(|| "invalid attribute in destination".to_string())?;
        let v = nla.value();
        match nla.kind() {
            IPVS_DEST_ATTR_ADDR => {
                if let Some(a) = parse_inet_addr(v, af).context("invalid IPVS_DEST_ATTR_ADDR")? {
                    addr = Some(a);
                }
            }
            IPVS_DEST_ATTR_PORT => port = Some(parse_u16_be(v)?),
            IPVS_DEST_ATTR_FWD_METHOD => fwd = Some(parse_u32(v)?),
            IPVS_DEST_ATTR_WEIGHT => weight = Some(parse_u32(v)?),
            IPVS_DEST_ATTR_U_THRESH => spec.upper_threshold = parse_u32(v)?,
            IPVS_DEST_ATTR_L_THRESH => spec.lower_threshold = parse_u32(v)?,
            IPVS_DEST_ATTR_ACTIVE_CONNS => conns.active = parse_u32(v)?,
            IPVS_DEST_ATTR_INACT_CONNS => conns.inactive = parse_u32(v)?,
            IPVS_DEST_ATTR_PERSIST_CONNS => conns.persistent = parse_u32(v)?,
            IPVS_DEST_ATTR_STATS => stats32 = Some(stats_from_bytes(v)?),
            IPVS_DEST_ATTR_STATS64 => stats64 = Some(stats_from_bytes(v)?),
            IPVS_DEST_ATTR_ADDR_FAMILY => {
                parse_u16(v)?;
            }
            IPVS_DEST_ATTR_TUN_TYPE => spec.tunnel_type = TunnelType::from_raw(parse_u8(v)?),
            IPVS_DEST_ATTR_TUN_PORT => spec.tunnel_port = parse_u16_be(v)?,
            IPVS_DEST_ATTR_TUN_FLAGS => spec.tunnel_flags = parse_u16(v)?,
            _ => {}
        }
    }
    let stats = stats64.or(stats32).unwrap_or_default();
    finish_dest(addr, port, fwd, weight, spec, conns, stats)
}

/// Folds one destination block (the value of an `IPVS_CMD_ATTR_DEST`) into `h`: every
/// attribute but the counters, and for the connection counts only whether each is zero. Two
/// reads of a real whose settings did not change fold alike however much traffic it carries,
/// and whether a drained real is idle still shows (what deleting it waits on).
pub fn fold_dest_digest(h: &mut u64, payload: &[u8]) -> Result<(), DecodeError> {
    use crate::constants::*;
    for nla in NlasIterator::new(payload) {
        let nla = nla.with_context(|| "invalid attribute in destination".to_string())?;
        let kind = nla.kind();
        match kind {
            IPVS_DEST_ATTR_STATS | IPVS_DEST_ATTR_STATS64 => {}
            IPVS_DEST_ATTR_ACTIVE_CONNS
            | IPVS_DEST_ATTR_INACT_CONNS
            | IPVS_DEST_ATTR_PERSIST_CONNS => {
                let zero = nla.value().iter().all(|b| *b == 0);
                fnv(h, &[kind as u8, u8::from(zero)]);
            }
            _ => {
                fnv(h, &kind.to_ne_bytes());
                fnv(h, nla.value());
            }
        }
    }
    // A separator: two reals never fold like one.
    fnv(h, &[0xff]);
    Ok(())
}

/// FNV-1a, folded into `h`.
fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= u64::from(*b);
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// The FNV-1a offset basis: where a digest starts.
pub const DIGEST_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The required parts of a destination, checked, with the rest: shared by both decoders so that
/// they report a missing attribute the same way.
fn finish_dest(
    addr: Option<IpAddr>,
    port: Option<u16>,
    fwd: Option<u32>,
    weight: Option<u32>,
    mut spec: DestSpec,
    conns: DestConns,
    stats: Stats,
) -> Result<Dest, DecodeError> {
    spec.forward =
        ForwardMethod::from_raw(fwd.ok_or_else(|| missing("IPVS_DEST_ATTR_FWD_METHOD"))?);
    spec.weight = weight.ok_or_else(|| missing("IPVS_DEST_ATTR_WEIGHT"))?;
    let key = DestKey {
        addr: addr.ok_or_else(|| missing("IPVS_DEST_ATTR_ADDR (or its address family)"))?,
        port: port.ok_or_else(|| missing("IPVS_DEST_ATTR_PORT"))?,
    };
    Ok(Dest {
        key,
        spec,
        conns,
        stats,
    })
}

/// The netlink message for a write request: one request, one message, laid out as ipvsadm lays
/// it out. (A free function because [`Request`] lives in the netlink-free model crate.)
pub fn request_message(request: &Request) -> IpvsMessage {
    use IpvsAttr as A;
    use IpvsCmd as C;
    let svc = |k: &ServiceKey| A::Service(service_key_attrs(k));
    match request {
        Request::NewService(k, s) => {
            IpvsMessage::new(C::NewService, vec![A::Service(service_attrs(k, s))])
        }
        Request::SetService(k, s) => {
            IpvsMessage::new(C::SetService, vec![A::Service(service_attrs(k, s))])
        }
        Request::DelService(k) => IpvsMessage::new(C::DelService, vec![svc(k)]),
        Request::NewDest(k, d, s) => {
            IpvsMessage::new(C::NewDest, vec![svc(k), A::Dest(dest_attrs(d, s))])
        }
        Request::SetDest(k, d, s) => {
            IpvsMessage::new(C::SetDest, vec![svc(k), A::Dest(dest_attrs(d, s))])
        }
        Request::DelDest(k, d) => {
            IpvsMessage::new(C::DelDest, vec![svc(k), A::Dest(dest_key_attrs(d))])
        }
        Request::Flush => IpvsMessage::new(C::Flush, vec![]),
        Request::Zero(None) => IpvsMessage::new(C::Zero, vec![]),
        Request::Zero(Some(k)) => IpvsMessage::new(C::Zero, vec![svc(k)]),
        Request::SetTimeouts(t) => IpvsMessage::new(
            C::SetConfig,
            vec![
                A::TimeoutTcp(t.tcp),
                A::TimeoutTcpFin(t.tcp_fin),
                A::TimeoutUdp(t.udp),
            ],
        ),
        Request::NewDaemon(d) => IpvsMessage::new(C::NewDaemon, vec![A::Daemon(daemon_attrs(d))]),
        Request::DelDaemon(s) => IpvsMessage::new(
            C::DelDaemon,
            vec![A::Daemon(vec![DaemonAttr::State(s.to_raw())])],
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn service_round_trips_through_attrs() {
        for key in [
            ServiceKey::tcp(IpAddr::V4(Ipv4Addr::new(172, 16, 1, 50)), 80),
            ServiceKey::Addr {
                protocol: Protocol::Sctp,
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 443,
            },
            ServiceKey::Fwmark {
                mark: 7,
                family: Family::Inet6,
            },
        ] {
            let mut spec = ServiceSpec::new("sh", key.family());
            spec.flags = ServiceFlags::PERSISTENT | ServiceFlags::SH_PORT;
            spec.timeout = 300;
            spec.pe_name = Some("sip".into());
            let svc = service_from_attrs(&service_attrs(&key, &spec)).expect("decodes");
            assert_eq!(svc.key, key);
            assert_eq!(svc.spec, spec);
        }
    }

    #[test]
    fn dest_round_trips_through_attrs() {
        let key = DestKey {
            addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            port: 8080,
        };
        let mut spec = DestSpec::new(ForwardMethod::Tunnel, 7);
        spec.tunnel_type = TunnelType::Gue;
        spec.tunnel_port = 6080;
        spec.upper_threshold = 100;
        spec.lower_threshold = 10;
        let d = dest_from_attrs(&dest_attrs(&key, &spec)).expect("decodes");
        assert_eq!((d.key, d.spec), (key, spec));
    }

    #[test]
    fn service_without_identity_is_an_error_not_a_panic() {
        let err = service_from_attrs(&[ServiceAttr::Af(2)]).expect_err("must fail");
        assert!(err.to_string().contains("identity"), "{err}");
    }
}

#[cfg(test)]
mod digest_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::constants::*;

    fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }

    fn dest(weight: u32, active: u32, inactive: u32, packets: u32) -> Vec<u8> {
        let mut d = vec![];
        nla(
            &mut d,
            IPVS_DEST_ATTR_ADDR,
            &[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        nla(&mut d, IPVS_DEST_ATTR_PORT, &80u16.to_be_bytes());
        nla(&mut d, IPVS_DEST_ATTR_WEIGHT, &weight.to_ne_bytes());
        nla(&mut d, IPVS_DEST_ATTR_ACTIVE_CONNS, &active.to_ne_bytes());
        nla(&mut d, IPVS_DEST_ATTR_INACT_CONNS, &inactive.to_ne_bytes());
        let mut stats = vec![];
        nla(&mut stats, IPVS_STATS_ATTR_INPKTS, &packets.to_ne_bytes());
        nla(&mut d, IPVS_DEST_ATTR_STATS, &stats);
        d
    }

    fn digest(blocks: &[Vec<u8>]) -> u64 {
        let mut h = DIGEST_START;
        for b in blocks {
            fold_dest_digest(&mut h, b).unwrap();
        }
        h
    }

    #[test]
    fn a_digest_follows_settings_and_idleness_not_traffic() {
        let base = digest(&[dest(1, 3, 7, 100)]);
        // Counters and connection counts move with traffic: the same digest.
        assert_eq!(base, digest(&[dest(1, 5, 2, 100_000)]));
        // A setting changes it.
        assert_ne!(base, digest(&[dest(2, 3, 7, 100)]));
        // So does a real going idle (what deleting a drained one waits on).
        assert_ne!(base, digest(&[dest(1, 0, 7, 100)]));
        assert_ne!(base, digest(&[dest(1, 3, 0, 100)]));
        // And the order of the reals (mh's table depends on it), and their number.
        let a = dest(1, 1, 1, 1);
        let b = dest(2, 1, 1, 1);
        assert_ne!(
            digest(&[a.clone(), b.clone()]),
            digest(&[b.clone(), a.clone()])
        );
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[a.clone(), a]));
        // A damaged block is an error, not a digest.
        let mut h = DIGEST_START;
        assert!(fold_dest_digest(&mut h, &[9, 0, 1]).is_err());
    }
}
