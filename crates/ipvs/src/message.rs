//! The IPVS generic-netlink messages: one typed enum per attribute space, each ending in
//! `Other(DefaultNla)` so that attributes of newer kernels survive a decode/encode round trip.
//!
//! Layout follows `include/uapi/linux/ip_vs.h` and the kernel's `ip_vs_ctl.c`: addresses travel
//! as 16 bytes (`union nf_inet_addr`) whatever the family, ports in network byte order, and the
//! meaning of an address depends on a sibling `AF` attribute, which is scanned for first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, ErrorContext, NLA_F_NESTED, Nla, NlaBuffer, NlasIterator,
    Parseable, ParseableParametrized, parse_string, parse_u8, parse_u16, parse_u16_be, parse_u32,
    parse_u64,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::constants::*;

/// An IPVS command (`IPVS_CMD_*`). Unknown numbers are kept, never rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpvsCmd {
    /// Add a virtual service.
    NewService,
    /// Edit a virtual service in place.
    SetService,
    /// Delete a virtual service and its destinations.
    DelService,
    /// Get one service, or all with `NLM_F_DUMP`.
    GetService,
    /// Add a destination.
    NewDest,
    /// Edit a destination in place.
    SetDest,
    /// Delete a destination.
    DelDest,
    /// Dump the destinations of a service.
    GetDest,
    /// Start a sync daemon.
    NewDaemon,
    /// Stop a sync daemon.
    DelDaemon,
    /// Dump the running sync daemons.
    GetDaemon,
    /// Set connection timeouts.
    SetConfig,
    /// Get connection timeouts.
    GetConfig,
    /// The command of the `GetInfo` reply.
    SetInfo,
    /// Version and connection table size.
    GetInfo,
    /// Zero counters of one service or all.
    Zero,
    /// Delete every service.
    Flush,
    /// A command number this crate has no name for.
    Other(u8),
}

impl From<u8> for IpvsCmd {
    fn from(raw: u8) -> Self {
        use IpvsCmd::*;
        match raw {
            IPVS_CMD_NEW_SERVICE => NewService,
            IPVS_CMD_SET_SERVICE => SetService,
            IPVS_CMD_DEL_SERVICE => DelService,
            IPVS_CMD_GET_SERVICE => GetService,
            IPVS_CMD_NEW_DEST => NewDest,
            IPVS_CMD_SET_DEST => SetDest,
            IPVS_CMD_DEL_DEST => DelDest,
            IPVS_CMD_GET_DEST => GetDest,
            IPVS_CMD_NEW_DAEMON => NewDaemon,
            IPVS_CMD_DEL_DAEMON => DelDaemon,
            IPVS_CMD_GET_DAEMON => GetDaemon,
            IPVS_CMD_SET_CONFIG => SetConfig,
            IPVS_CMD_GET_CONFIG => GetConfig,
            IPVS_CMD_SET_INFO => SetInfo,
            IPVS_CMD_GET_INFO => GetInfo,
            IPVS_CMD_ZERO => Zero,
            IPVS_CMD_FLUSH => Flush,
            n => Other(n),
        }
    }
}

impl From<IpvsCmd> for u8 {
    fn from(cmd: IpvsCmd) -> u8 {
        use IpvsCmd::*;
        match cmd {
            NewService => IPVS_CMD_NEW_SERVICE,
            SetService => IPVS_CMD_SET_SERVICE,
            DelService => IPVS_CMD_DEL_SERVICE,
            GetService => IPVS_CMD_GET_SERVICE,
            NewDest => IPVS_CMD_NEW_DEST,
            SetDest => IPVS_CMD_SET_DEST,
            DelDest => IPVS_CMD_DEL_DEST,
            GetDest => IPVS_CMD_GET_DEST,
            NewDaemon => IPVS_CMD_NEW_DAEMON,
            DelDaemon => IPVS_CMD_DEL_DAEMON,
            GetDaemon => IPVS_CMD_GET_DAEMON,
            SetConfig => IPVS_CMD_SET_CONFIG,
            GetConfig => IPVS_CMD_GET_CONFIG,
            SetInfo => IPVS_CMD_SET_INFO,
            GetInfo => IPVS_CMD_GET_INFO,
            Zero => IPVS_CMD_ZERO,
            Flush => IPVS_CMD_FLUSH,
            Other(n) => n,
        }
    }
}

/// Emits an address the way the kernel and ipvsadm do: 16 bytes, IPv4 in the first four.
pub(crate) fn inet_addr_bytes(addr: &IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// Decodes an address attribute in a known family; `None` when the family is unknown, so the
/// caller can keep the raw attribute instead of guessing.
pub(crate) fn parse_inet_addr(
    value: &[u8],
    family: Option<u16>,
) -> Result<Option<IpAddr>, DecodeError> {
    match family {
        Some(AF_INET) => {
            let b: [u8; 4] = value
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| DecodeError::invalid_ip_address(value.len()))?;
            Ok(Some(IpAddr::V4(Ipv4Addr::from(b))))
        }
        Some(AF_INET6) => {
            let b: [u8; 16] = value
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| DecodeError::invalid_ip_address(value.len()))?;
            Ok(Some(IpAddr::V6(Ipv6Addr::from(b))))
        }
        _ => Ok(None),
    }
}

fn emit_str(buffer: &mut [u8], s: &str) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

fn default_nla<T: AsRef<[u8]> + ?Sized>(buf: &NlaBuffer<&T>) -> Result<DefaultNla, DecodeError> {
    DefaultNla::parse(buf)
}

/// Parses every attribute of a nested block with `f`, naming the block on error.
fn parse_nested<T, F>(payload: &[u8], what: &str, mut f: F) -> Result<Vec<T>, DecodeError>
where
    F: FnMut(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
{
    let mut out = Vec::new();
    for nla in NlasIterator::new(payload) {
        let nla = nla.with_context(|| format!("invalid attribute in {what}"))?;
        out.push(f(&nla)?);
    }
    Ok(out)
}

/// Finds the value of a `u16` attribute of kind `kind` without decoding the rest (used for the
/// `AF` that gives an address its meaning). Malformed input simply yields `None`; the full parse
/// reports it.
pub(crate) fn scan_u16(payload: &[u8], kind: u16) -> Option<u16> {
    NlasIterator::new(payload)
        .filter_map(Result::ok)
        .find(|n| n.kind() == kind)
        .and_then(|n| parse_u16(n.value()).ok())
}

/// Which field of a statistics block an attribute carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatsField {
    /// Connections scheduled.
    Conns,
    /// Incoming packets.
    InPkts,
    /// Outgoing packets.
    OutPkts,
    /// Incoming bytes.
    InBytes,
    /// Outgoing bytes.
    OutBytes,
    /// Connection rate.
    Cps,
    /// Incoming packet rate.
    InPps,
    /// Outgoing packet rate.
    OutPps,
    /// Incoming byte rate.
    InBps,
    /// Outgoing byte rate.
    OutBps,
}

impl StatsField {
    fn kind(self) -> u16 {
        use StatsField::*;
        match self {
            Conns => IPVS_STATS_ATTR_CONNS,
            InPkts => IPVS_STATS_ATTR_INPKTS,
            OutPkts => IPVS_STATS_ATTR_OUTPKTS,
            InBytes => IPVS_STATS_ATTR_INBYTES,
            OutBytes => IPVS_STATS_ATTR_OUTBYTES,
            Cps => IPVS_STATS_ATTR_CPS,
            InPps => IPVS_STATS_ATTR_INPPS,
            OutPps => IPVS_STATS_ATTR_OUTPPS,
            InBps => IPVS_STATS_ATTR_INBPS,
            OutBps => IPVS_STATS_ATTR_OUTBPS,
        }
    }

    fn from_kind(kind: u16) -> Option<Self> {
        use StatsField::*;
        Some(match kind {
            IPVS_STATS_ATTR_CONNS => Conns,
            IPVS_STATS_ATTR_INPKTS => InPkts,
            IPVS_STATS_ATTR_OUTPKTS => OutPkts,
            IPVS_STATS_ATTR_INBYTES => InBytes,
            IPVS_STATS_ATTR_OUTBYTES => OutBytes,
            IPVS_STATS_ATTR_CPS => Cps,
            IPVS_STATS_ATTR_INPPS => InPps,
            IPVS_STATS_ATTR_OUTPPS => OutPps,
            IPVS_STATS_ATTR_INBPS => InBps,
            IPVS_STATS_ATTR_OUTBPS => OutBps,
            _ => return None,
        })
    }
}

/// One attribute of a statistics block. The 32-bit block (`*_ATTR_STATS`) and the 64-bit one
/// (`*_ATTR_STATS64`) share kinds, so the width is kept to re-emit the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatsAttr {
    /// A 32-bit counter or rate.
    U32(StatsField, u32),
    /// A 64-bit counter or rate.
    U64(StatsField, u64),
    /// Padding or an unknown field.
    Other(DefaultNla),
}

impl StatsAttr {
    /// The value widened to 64 bits, with its field, for folding into [`crate::Stats`].
    pub fn field(&self) -> Option<(StatsField, u64)> {
        match self {
            StatsAttr::U32(f, v) => Some((*f, u64::from(*v))),
            StatsAttr::U64(f, v) => Some((*f, *v)),
            StatsAttr::Other(_) => None,
        }
    }
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        match self {
            StatsAttr::U32(..) => 4,
            StatsAttr::U64(..) => 8,
            StatsAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            StatsAttr::U32(f, _) | StatsAttr::U64(f, _) => f.kind(),
            StatsAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            StatsAttr::U32(_, v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            StatsAttr::U64(_, v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            StatsAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for StatsAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match (StatsField::from_kind(buf.kind()), v.len()) {
            (Some(f), 4) => StatsAttr::U32(f, parse_u32(v)?),
            (Some(f), 8) => StatsAttr::U64(f, parse_u64(v)?),
            _ => StatsAttr::Other(default_nla(buf)?),
        })
    }
}

fn parse_stats(payload: &[u8], what: &str) -> Result<Vec<StatsAttr>, DecodeError> {
    parse_nested(payload, what, |n| StatsAttr::parse(n))
}

/// An attribute nested in `IPVS_CMD_ATTR_SERVICE`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceAttr {
    /// Address family (`AF_INET`/`AF_INET6`).
    Af(u16),
    /// Protocol number.
    Protocol(u16),
    /// Virtual address (its meaning depends on `Af`).
    Addr(IpAddr),
    /// Virtual port (host order here, network order on the wire).
    Port(u16),
    /// Firewall mark.
    Fwmark(u32),
    /// Scheduler name.
    SchedName(String),
    /// Flags and the mask of the bits to change.
    Flags {
        /// Flag values.
        flags: u32,
        /// Which bits of `flags` apply.
        mask: u32,
    },
    /// Persistence timeout (seconds).
    Timeout(u32),
    /// Persistence netmask (IPv4, as raw bytes) or prefix length (IPv6).
    Netmask(u32),
    /// 32-bit statistics.
    Stats(Vec<StatsAttr>),
    /// Persistence engine name.
    PeName(String),
    /// 64-bit statistics.
    Stats64(Vec<StatsAttr>),
    /// Anything else, kept byte for byte.
    Other(DefaultNla),
}

impl Nla for ServiceAttr {
    fn value_len(&self) -> usize {
        use ServiceAttr::*;
        match self {
            Af(_) | Protocol(_) | Port(_) => 2,
            Addr(_) => 16,
            Fwmark(_) | Timeout(_) | Netmask(_) => 4,
            SchedName(s) | PeName(s) => s.len() + 1,
            Flags { .. } => 8,
            Stats(s) | Stats64(s) => s.as_slice().buffer_len(),
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use ServiceAttr::*;
        match self {
            Af(_) => IPVS_SVC_ATTR_AF,
            Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            Addr(_) => IPVS_SVC_ATTR_ADDR,
            Port(_) => IPVS_SVC_ATTR_PORT,
            Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            SchedName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            Flags { .. } => IPVS_SVC_ATTR_FLAGS,
            Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            Stats(_) => IPVS_SVC_ATTR_STATS,
            PeName(_) => IPVS_SVC_ATTR_PE_NAME,
            Stats64(_) => IPVS_SVC_ATTR_STATS64,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use ServiceAttr::*;
        match self {
            Af(v) | Protocol(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            Port(v) => buffer.copy_from_slice(&v.to_be_bytes()),
            Addr(a) => buffer.copy_from_slice(&inet_addr_bytes(a)),
            Fwmark(v) | Timeout(v) | Netmask(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            SchedName(s) | PeName(s) => emit_str(buffer, s),
            Flags { flags, mask } => {
                buffer[..4].copy_from_slice(&flags.to_ne_bytes());
                buffer[4..8].copy_from_slice(&mask.to_ne_bytes());
            }
            Stats(s) | Stats64(s) => s.as_slice().emit(buffer),
            Other(n) => n.emit_value(buffer),
        }
    }
}

/// Parses the attributes of a service block.
pub fn parse_service_attrs(payload: &[u8]) -> Result<Vec<ServiceAttr>, DecodeError> {
    let af = scan_u16(payload, IPVS_SVC_ATTR_AF);
    parse_nested(payload, "service", |nla| {
        let v = nla.value();
        use ServiceAttr::*;
        Ok(match nla.kind() {
            IPVS_SVC_ATTR_AF => Af(parse_u16(v).context("invalid IPVS_SVC_ATTR_AF")?),
            IPVS_SVC_ATTR_PROTOCOL => {
                Protocol(parse_u16(v).context("invalid IPVS_SVC_ATTR_PROTOCOL")?)
            }
            IPVS_SVC_ATTR_ADDR => {
                match parse_inet_addr(v, af).context("invalid IPVS_SVC_ATTR_ADDR")? {
                    Some(a) => Addr(a),
                    None => Other(default_nla(nla)?),
                }
            }
            IPVS_SVC_ATTR_PORT => Port(parse_u16_be(v).context("invalid IPVS_SVC_ATTR_PORT")?),
            IPVS_SVC_ATTR_FWMARK => Fwmark(parse_u32(v).context("invalid IPVS_SVC_ATTR_FWMARK")?),
            IPVS_SVC_ATTR_SCHED_NAME => {
                SchedName(parse_string(v).context("invalid IPVS_SVC_ATTR_SCHED_NAME")?)
            }
            IPVS_SVC_ATTR_FLAGS if v.len() == 8 => Flags {
                flags: parse_u32(&v[..4])?,
                mask: parse_u32(&v[4..])?,
            },
            IPVS_SVC_ATTR_FLAGS => {
                return Err(DecodeError::from(
                    "invalid IPVS_SVC_ATTR_FLAGS: not 8 bytes",
                ));
            }
            IPVS_SVC_ATTR_TIMEOUT => {
                Timeout(parse_u32(v).context("invalid IPVS_SVC_ATTR_TIMEOUT")?)
            }
            IPVS_SVC_ATTR_NETMASK => {
                Netmask(parse_u32(v).context("invalid IPVS_SVC_ATTR_NETMASK")?)
            }
            IPVS_SVC_ATTR_STATS => Stats(parse_stats(v, "service stats")?),
            IPVS_SVC_ATTR_PE_NAME => {
                PeName(parse_string(v).context("invalid IPVS_SVC_ATTR_PE_NAME")?)
            }
            IPVS_SVC_ATTR_STATS64 => Stats64(parse_stats(v, "service stats64")?),
            _ => Other(default_nla(nla)?),
        })
    })
}

/// An attribute nested in `IPVS_CMD_ATTR_DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestAttr {
    /// Real server address (meaning from `AddrFamily`, else the service's family).
    Addr(IpAddr),
    /// Real server port.
    Port(u16),
    /// Forwarding method (`IP_VS_CONN_F_*` masked to the method).
    FwdMethod(u32),
    /// Weight.
    Weight(u32),
    /// Upper threshold.
    UThresh(u32),
    /// Lower threshold.
    LThresh(u32),
    /// Active connections (reply only).
    ActiveConns(u32),
    /// Inactive connections (reply only).
    InactConns(u32),
    /// Persistent connections (reply only).
    PersistConns(u32),
    /// 32-bit statistics.
    Stats(Vec<StatsAttr>),
    /// Address family of `Addr`.
    AddrFamily(u16),
    /// 64-bit statistics.
    Stats64(Vec<StatsAttr>),
    /// Tunnel type.
    TunType(u8),
    /// Tunnel port (host order here, network order on the wire).
    TunPort(u16),
    /// Tunnel flags.
    TunFlags(u16),
    /// Anything else, kept byte for byte.
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        use DestAttr::*;
        match self {
            Addr(_) => 16,
            Port(_) | AddrFamily(_) | TunPort(_) | TunFlags(_) => 2,
            FwdMethod(_) | Weight(_) | UThresh(_) | LThresh(_) | ActiveConns(_) | InactConns(_)
            | PersistConns(_) => 4,
            TunType(_) => 1,
            Stats(s) | Stats64(s) => s.as_slice().buffer_len(),
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use DestAttr::*;
        match self {
            Addr(_) => IPVS_DEST_ATTR_ADDR,
            Port(_) => IPVS_DEST_ATTR_PORT,
            FwdMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            UThresh(_) => IPVS_DEST_ATTR_U_THRESH,
            LThresh(_) => IPVS_DEST_ATTR_L_THRESH,
            ActiveConns(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            InactConns(_) => IPVS_DEST_ATTR_INACT_CONNS,
            PersistConns(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            Stats(_) => IPVS_DEST_ATTR_STATS,
            AddrFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            Stats64(_) => IPVS_DEST_ATTR_STATS64,
            TunType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            TunPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            TunFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use DestAttr::*;
        match self {
            Addr(a) => buffer.copy_from_slice(&inet_addr_bytes(a)),
            Port(v) | TunPort(v) => buffer.copy_from_slice(&v.to_be_bytes()),
            AddrFamily(v) | TunFlags(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            FwdMethod(v) | Weight(v) | UThresh(v) | LThresh(v) | ActiveConns(v) | InactConns(v)
            | PersistConns(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            TunType(v) => buffer[0] = *v,
            Stats(s) | Stats64(s) => s.as_slice().emit(buffer),
            Other(n) => n.emit_value(buffer),
        }
    }
}

/// Parses a destination block; `service_af` is the family of the enclosing service, used when the
/// block carries no `AddrFamily` of its own (kernels before 4.x).
pub fn parse_dest_attrs(
    payload: &[u8],
    service_af: Option<u16>,
) -> Result<Vec<DestAttr>, DecodeError> {
    let af = scan_u16(payload, IPVS_DEST_ATTR_ADDR_FAMILY).or(service_af);
    parse_nested(payload, "destination", |nla| {
        let v = nla.value();
        use DestAttr::*;
        Ok(match nla.kind() {
            IPVS_DEST_ATTR_ADDR => {
                match parse_inet_addr(v, af).context("invalid IPVS_DEST_ATTR_ADDR")? {
                    Some(a) => Addr(a),
                    None => Other(default_nla(nla)?),
                }
            }
            IPVS_DEST_ATTR_PORT => Port(parse_u16_be(v).context("invalid IPVS_DEST_ATTR_PORT")?),
            IPVS_DEST_ATTR_FWD_METHOD => {
                FwdMethod(parse_u32(v).context("invalid IPVS_DEST_ATTR_FWD_METHOD")?)
            }
            IPVS_DEST_ATTR_WEIGHT => Weight(parse_u32(v).context("invalid IPVS_DEST_ATTR_WEIGHT")?),
            IPVS_DEST_ATTR_U_THRESH => {
                UThresh(parse_u32(v).context("invalid IPVS_DEST_ATTR_U_THRESH")?)
            }
            IPVS_DEST_ATTR_L_THRESH => {
                LThresh(parse_u32(v).context("invalid IPVS_DEST_ATTR_L_THRESH")?)
            }
            IPVS_DEST_ATTR_ACTIVE_CONNS => {
                ActiveConns(parse_u32(v).context("invalid IPVS_DEST_ATTR_ACTIVE_CONNS")?)
            }
            IPVS_DEST_ATTR_INACT_CONNS => {
                InactConns(parse_u32(v).context("invalid IPVS_DEST_ATTR_INACT_CONNS")?)
            }
            IPVS_DEST_ATTR_PERSIST_CONNS => {
                PersistConns(parse_u32(v).context("invalid IPVS_DEST_ATTR_PERSIST_CONNS")?)
            }
            IPVS_DEST_ATTR_STATS => Stats(parse_stats(v, "destination stats")?),
            IPVS_DEST_ATTR_ADDR_FAMILY => {
                AddrFamily(parse_u16(v).context("invalid IPVS_DEST_ATTR_ADDR_FAMILY")?)
            }
            IPVS_DEST_ATTR_STATS64 => Stats64(parse_stats(v, "destination stats64")?),
            IPVS_DEST_ATTR_TUN_TYPE => {
                TunType(parse_u8(v).context("invalid IPVS_DEST_ATTR_TUN_TYPE")?)
            }
            IPVS_DEST_ATTR_TUN_PORT => {
                TunPort(parse_u16_be(v).context("invalid IPVS_DEST_ATTR_TUN_PORT")?)
            }
            IPVS_DEST_ATTR_TUN_FLAGS => {
                TunFlags(parse_u16(v).context("invalid IPVS_DEST_ATTR_TUN_FLAGS")?)
            }
            _ => Other(default_nla(nla)?),
        })
    })
}

/// An attribute nested in `IPVS_CMD_ATTR_DAEMON`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaemonAttr {
    /// Master or backup.
    State(u32),
    /// Multicast interface.
    McastIfn(String),
    /// Sync ID.
    SyncId(u32),
    /// Maximum UDP payload.
    SyncMaxlen(u16),
    /// IPv4 multicast group.
    McastGroup(Ipv4Addr),
    /// IPv6 multicast group.
    McastGroup6(Ipv6Addr),
    /// Multicast base port (host order on the wire, as the kernel reads it).
    McastPort(u16),
    /// Multicast TTL.
    McastTtl(u8),
    /// Anything else, kept byte for byte.
    Other(DefaultNla),
}

impl Nla for DaemonAttr {
    fn value_len(&self) -> usize {
        use DaemonAttr::*;
        match self {
            State(_) | SyncId(_) | McastGroup(_) => 4,
            McastIfn(s) => s.len() + 1,
            SyncMaxlen(_) | McastPort(_) => 2,
            McastGroup6(_) => 16,
            McastTtl(_) => 1,
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use DaemonAttr::*;
        match self {
            State(_) => IPVS_DAEMON_ATTR_STATE,
            McastIfn(_) => IPVS_DAEMON_ATTR_MCAST_IFN,
            SyncId(_) => IPVS_DAEMON_ATTR_SYNC_ID,
            SyncMaxlen(_) => IPVS_DAEMON_ATTR_SYNC_MAXLEN,
            McastGroup(_) => IPVS_DAEMON_ATTR_MCAST_GROUP,
            McastGroup6(_) => IPVS_DAEMON_ATTR_MCAST_GROUP6,
            McastPort(_) => IPVS_DAEMON_ATTR_MCAST_PORT,
            McastTtl(_) => IPVS_DAEMON_ATTR_MCAST_TTL,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use DaemonAttr::*;
        match self {
            State(v) | SyncId(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            McastIfn(s) => emit_str(buffer, s),
            SyncMaxlen(v) | McastPort(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            McastGroup(a) => buffer.copy_from_slice(&a.octets()),
            McastGroup6(a) => buffer.copy_from_slice(&a.octets()),
            McastTtl(v) => buffer[0] = *v,
            Other(n) => n.emit_value(buffer),
        }
    }
}

/// Parses a sync-daemon block.
pub fn parse_daemon_attrs(payload: &[u8]) -> Result<Vec<DaemonAttr>, DecodeError> {
    parse_nested(payload, "sync daemon", |nla| {
        let v = nla.value();
        use DaemonAttr::*;
        Ok(match nla.kind() {
            IPVS_DAEMON_ATTR_STATE => {
                State(parse_u32(v).context("invalid IPVS_DAEMON_ATTR_STATE")?)
            }
            IPVS_DAEMON_ATTR_MCAST_IFN => {
                McastIfn(parse_string(v).context("invalid IPVS_DAEMON_ATTR_MCAST_IFN")?)
            }
            IPVS_DAEMON_ATTR_SYNC_ID => {
                SyncId(parse_u32(v).context("invalid IPVS_DAEMON_ATTR_SYNC_ID")?)
            }
            IPVS_DAEMON_ATTR_SYNC_MAXLEN => {
                SyncMaxlen(parse_u16(v).context("invalid IPVS_DAEMON_ATTR_SYNC_MAXLEN")?)
            }
            IPVS_DAEMON_ATTR_MCAST_GROUP => match <[u8; 4]>::try_from(v) {
                Ok(b) => McastGroup(Ipv4Addr::from(b)),
                Err(_) => return Err(DecodeError::invalid_ip_address(v.len())),
            },
            IPVS_DAEMON_ATTR_MCAST_GROUP6 => match <[u8; 16]>::try_from(v) {
                Ok(b) => McastGroup6(Ipv6Addr::from(b)),
                Err(_) => return Err(DecodeError::invalid_ip_address(v.len())),
            },
            IPVS_DAEMON_ATTR_MCAST_PORT => {
                McastPort(parse_u16(v).context("invalid IPVS_DAEMON_ATTR_MCAST_PORT")?)
            }
            IPVS_DAEMON_ATTR_MCAST_TTL => {
                McastTtl(parse_u8(v).context("invalid IPVS_DAEMON_ATTR_MCAST_TTL")?)
            }
            _ => Other(default_nla(nla)?),
        })
    })
}

/// A first-level attribute of an IPVS message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsAttr {
    /// `IPVS_CMD_ATTR_SERVICE`.
    Service(Vec<ServiceAttr>),
    /// `IPVS_CMD_ATTR_DEST`.
    Dest(Vec<DestAttr>),
    /// `IPVS_CMD_ATTR_DAEMON`.
    Daemon(Vec<DaemonAttr>),
    /// TCP timeout (seconds).
    TimeoutTcp(u32),
    /// TCP FIN timeout (seconds).
    TimeoutTcpFin(u32),
    /// UDP timeout (seconds).
    TimeoutUdp(u32),
    /// `IPVS_INFO_ATTR_VERSION` (only in `GetInfo`/`SetInfo` messages).
    InfoVersion(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (only in `GetInfo`/`SetInfo` messages).
    InfoConnTabSize(u32),
    /// Anything else, kept byte for byte.
    Other(DefaultNla),
}

impl Nla for IpvsAttr {
    fn value_len(&self) -> usize {
        use IpvsAttr::*;
        match self {
            Service(a) => a.as_slice().buffer_len(),
            Dest(a) => a.as_slice().buffer_len(),
            Daemon(a) => a.as_slice().buffer_len(),
            TimeoutTcp(_) | TimeoutTcpFin(_) | TimeoutUdp(_) | InfoVersion(_)
            | InfoConnTabSize(_) => 4,
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use IpvsAttr::*;
        match self {
            // Nested blocks carry NLA_F_NESTED, as libnl sets it; the kernel accepts either.
            Service(_) => IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED,
            Dest(_) => IPVS_CMD_ATTR_DEST | NLA_F_NESTED,
            Daemon(_) => IPVS_CMD_ATTR_DAEMON | NLA_F_NESTED,
            TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            InfoVersion(_) => IPVS_INFO_ATTR_VERSION,
            InfoConnTabSize(_) => IPVS_INFO_ATTR_CONN_TAB_SIZE,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use IpvsAttr::*;
        match self {
            Service(a) => a.as_slice().emit(buffer),
            Dest(a) => a.as_slice().emit(buffer),
            Daemon(a) => a.as_slice().emit(buffer),
            TimeoutTcp(v) | TimeoutTcpFin(v) | TimeoutUdp(v) | InfoVersion(v)
            | InfoConnTabSize(v) => buffer.copy_from_slice(&v.to_ne_bytes()),
            Other(n) => n.emit_value(buffer),
        }
    }
}

/// An IPVS generic-netlink message: a command and its attributes. Request or reply alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command.
    pub cmd: IpvsCmd,
    /// First-level attributes.
    pub attrs: Vec<IpvsAttr>,
}

impl IpvsMessage {
    /// A message of `cmd` with `attrs`.
    pub fn new(cmd: IpvsCmd, attrs: Vec<IpvsAttr>) -> Self {
        IpvsMessage { cmd, attrs }
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }
    fn command(&self) -> u8 {
        self.cmd.into()
    }
    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let cmd = IpvsCmd::from(header.cmd);
        let info = matches!(cmd, IpvsCmd::GetInfo | IpvsCmd::SetInfo);
        // A destination block may rely on the family of the service block beside it.
        let service_af = NlasIterator::new(buf)
            .filter_map(Result::ok)
            .find(|n| n.kind() == IPVS_CMD_ATTR_SERVICE)
            .and_then(|n| scan_u16(n.value(), IPVS_SVC_ATTR_AF));
        let attrs = parse_nested(buf, "IPVS message", |nla| {
            let v = nla.value();
            use IpvsAttr::*;
            Ok(match (info, nla.kind()) {
                (true, IPVS_INFO_ATTR_VERSION) => {
                    InfoVersion(parse_u32(v).context("invalid IPVS_INFO_ATTR_VERSION")?)
                }
                (true, IPVS_INFO_ATTR_CONN_TAB_SIZE) => {
                    InfoConnTabSize(parse_u32(v).context("invalid IPVS_INFO_ATTR_CONN_TAB_SIZE")?)
                }
                (false, IPVS_CMD_ATTR_SERVICE) => Service(parse_service_attrs(v)?),
                (false, IPVS_CMD_ATTR_DEST) => Dest(parse_dest_attrs(v, service_af)?),
                (false, IPVS_CMD_ATTR_DAEMON) => Daemon(parse_daemon_attrs(v)?),
                (false, IPVS_CMD_ATTR_TIMEOUT_TCP) => {
                    TimeoutTcp(parse_u32(v).context("invalid IPVS_CMD_ATTR_TIMEOUT_TCP")?)
                }
                (false, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN) => {
                    TimeoutTcpFin(parse_u32(v).context("invalid IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?)
                }
                (false, IPVS_CMD_ATTR_TIMEOUT_UDP) => {
                    TimeoutUdp(parse_u32(v).context("invalid IPVS_CMD_ATTR_TIMEOUT_UDP")?)
                }
                _ => Other(default_nla(nla)?),
            })
        })?;
        Ok(IpvsMessage { cmd, attrs })
    }
}
