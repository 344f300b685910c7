//! The IPVS object model: identity (what the kernel keys an object by) kept apart from settings
//! (what can be edited in place) and from what the kernel reports (statistics, connection counts).
//!
//! Keeping these apart is what lets a reconciler compare "what should be" with "what is" by plain
//! equality: two [`ServiceSpec`]s that are equal mean there is nothing to write.
//!
//! This crate is the model alone, with no netlink in it: the types, the write [`Request`]s, the
//! `ipvsadm -Sn` text format ([`save`]) and the kernel's numbers ([`constants`]). The pure crates
//! (the planner, the configuration) build on it; `lvsd-ipvs` encodes it for the kernel.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::constants::*;

pub mod constants;
pub mod request;
pub mod save;

pub use request::Request;

/// Address family of a service or destination. Kept explicit because fwmark services carry no
/// address from which it could be inferred, and tunnelled destinations may differ from their service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    Inet,
    /// IPv6 (`AF_INET6`).
    Inet6,
}

impl Family {
    /// The `AF_*` number the kernel uses on the wire.
    pub fn to_raw(self) -> u16 {
        match self {
            Family::Inet => AF_INET,
            Family::Inet6 => AF_INET6,
        }
    }

    /// Maps an `AF_*` number back; `None` for families IPVS does not know.
    pub fn from_raw(raw: u16) -> Option<Self> {
        match raw {
            AF_INET => Some(Family::Inet),
            AF_INET6 => Some(Family::Inet6),
            _ => None,
        }
    }

    /// The family an address belongs to, so callers never pass the two separately by mistake.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }
}

/// Transport protocol of an address-based virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (`IPPROTO_TCP`).
    Tcp,
    /// UDP (`IPPROTO_UDP`).
    Udp,
    /// SCTP (`IPPROTO_SCTP`).
    Sctp,
    /// A protocol number this crate has no name for; kept so decoding never fails on it.
    Other(u16),
}

impl Protocol {
    /// The `IPPROTO_*` number used on the wire.
    pub fn to_raw(self) -> u16 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Sctp => IPPROTO_SCTP,
            Protocol::Other(n) => n,
        }
    }

    /// Maps an `IPPROTO_*` number back, never failing.
    pub fn from_raw(raw: u16) -> Self {
        match raw {
            IPPROTO_TCP => Protocol::Tcp,
            IPPROTO_UDP => Protocol::Udp,
            IPPROTO_SCTP => Protocol::Sctp,
            n => Protocol::Other(n),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("TCP"),
            Protocol::Udp => f.write_str("UDP"),
            Protocol::Sctp => f.write_str("SCTP"),
            Protocol::Other(n) => write!(f, "proto-{n}"),
        }
    }
}

/// What identifies a virtual service in the kernel: either protocol + address + port, or a
/// firewall mark within an address family. Everything else about a service can be edited in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// `-t/-u/--sctp-service VIP:port`.
    Addr {
        /// Transport protocol.
        protocol: Protocol,
        /// Virtual IP.
        addr: IpAddr,
        /// Virtual port (0 = all ports, for persistent services).
        port: u16,
    },
    /// `-f MARK` (with `-6` for IPv6).
    Fwmark {
        /// Firewall mark set by netfilter rules.
        mark: u32,
        /// Family of the packets the mark selects.
        family: Family,
    },
}

impl ServiceKey {
    /// Convenience for the common case, so tests and callers read like `ipvsadm -t`.
    pub fn tcp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr,
            port,
        }
    }

    /// The family of the service, which also defaults the family of its destinations.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => write!(f, "{protocol} {}", SocketDisplay(*addr, *port)),
            ServiceKey::Fwmark { mark, family } => match family {
                Family::Inet => write!(f, "FWM {mark}"),
                Family::Inet6 => write!(f, "FWM {mark} IPv6"),
            },
        }
    }
}

/// Formats `addr:port` with IPv6 in brackets, as ipvsadm does.
#[derive(Debug, Clone, Copy)]
pub struct SocketDisplay(pub IpAddr, pub u16);

impl fmt::Display for SocketDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Service flags (`IP_VS_SVC_F_*`). A plain bit set so that unknown bits from newer kernels are
/// kept rather than rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// Persistent service: a client sticks to one real for `timeout` seconds.
    pub const PERSISTENT: Self = Self(IP_VS_SVC_F_PERSISTENT);
    /// Set by the kernel on every service in its table; never meaningful in a request.
    pub const HASHED: Self = Self(IP_VS_SVC_F_HASHED);
    /// One-packet scheduling (UDP: schedule every datagram).
    pub const ONE_PACKET: Self = Self(IP_VS_SVC_F_ONEPACKET);
    /// Scheduler flag 1: `sh-fallback` for sh, `mh-fallback` for mh.
    pub const SCHED1: Self = Self(IP_VS_SVC_F_SCHED1);
    /// Scheduler flag 2: `sh-port` for sh, `mh-port` for mh.
    pub const SCHED2: Self = Self(IP_VS_SVC_F_SCHED2);
    /// Scheduler flag 3 (unused by the schedulers the kernel ships today).
    pub const SCHED3: Self = Self(IP_VS_SVC_F_SCHED3);
    /// `sh-fallback`: try the next server when the hashed one is unavailable.
    pub const SH_FALLBACK: Self = Self::SCHED1;
    /// `sh-port`: hash the source port too.
    pub const SH_PORT: Self = Self::SCHED2;
    /// `mh-fallback`.
    pub const MH_FALLBACK: Self = Self::SCHED1;
    /// `mh-port`.
    pub const MH_PORT: Self = Self::SCHED2;

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags without the bits only the kernel sets, for comparing desired and observed state.
    pub fn without_kernel_bits(self) -> Self {
        Self(self.0 & !IP_VS_SVC_F_HASHED)
    }
}

impl std::ops::BitOr for ServiceFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Persistence granularity: which client addresses share one persistence entry.
/// IPv4 uses a netmask, IPv6 a prefix length — the kernel reads the same 32-bit field both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Netmask {
    /// IPv4 netmask, e.g. 255.255.255.255 (the default).
    V4(Ipv4Addr),
    /// IPv6 prefix length, 1..=128 (128 is the default).
    V6(u32),
}

impl Netmask {
    /// The default for a family: one entry per client address.
    pub fn host(family: Family) -> Self {
        match family {
            Family::Inet => Netmask::V4(Ipv4Addr::BROADCAST),
            Family::Inet6 => Netmask::V6(128),
        }
    }

    /// The 32-bit value as it travels in `IPVS_SVC_ATTR_NETMASK` (host order on x86).
    pub fn to_raw(self) -> u32 {
        match self {
            Netmask::V4(m) => u32::from_ne_bytes(m.octets()),
            Netmask::V6(plen) => plen,
        }
    }

    /// Decodes the wire value in the service's family.
    pub fn from_raw(raw: u32, family: Family) -> Self {
        match family {
            Family::Inet => Netmask::V4(Ipv4Addr::from(raw.to_ne_bytes())),
            Family::Inet6 => Netmask::V6(raw),
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::V4(m) => write!(f, "{m}"),
            Netmask::V6(p) => write!(f, "{p}"),
        }
    }
}

/// The editable settings of a virtual service (`ipvsadm -E` can change every one of them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceSpec {
    /// Scheduler name: `rr`, `wlc`, `sh`, … (the kernel loads `ip_vs_<name>`).
    pub scheduler: String,
    /// Service flags; `HASHED` is set by the kernel and ignored in requests.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (only meaningful with `PERSISTENT`).
    pub timeout: u32,
    /// Persistence granularity.
    pub netmask: Netmask,
    /// Persistence engine (`sip`), if any.
    pub pe_name: Option<String>,
}

impl ServiceSpec {
    /// A non-persistent service with the given scheduler and the family's default netmask.
    pub fn new(scheduler: impl Into<String>, family: Family) -> Self {
        ServiceSpec {
            scheduler: scheduler.into(),
            flags: ServiceFlags::default(),
            timeout: 0,
            netmask: Netmask::host(family),
            pe_name: None,
        }
    }
}

/// Counters and rates the kernel keeps per service and per destination. Read from the 64-bit
/// attribute when present, else from the older 32-bit one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Incoming packets.
    pub inpkts: u64,
    /// Outgoing packets (0 for DR/tunnel: replies bypass the director).
    pub outpkts: u64,
    /// Incoming bytes.
    pub inbytes: u64,
    /// Outgoing bytes.
    pub outbytes: u64,
    /// Connection rate (per second).
    pub cps: u64,
    /// Incoming packet rate.
    pub inpps: u64,
    /// Outgoing packet rate.
    pub outpps: u64,
    /// Incoming byte rate.
    pub inbps: u64,
    /// Outgoing byte rate.
    pub outbps: u64,
}

/// A virtual service as read from or written to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Identity.
    pub key: ServiceKey,
    /// Editable settings.
    pub spec: ServiceSpec,
    /// Kernel-reported statistics; ignored when writing.
    pub stats: Stats,
}

impl Service {
    /// A service to write: statistics are zero and ignored by the kernel.
    pub fn new(key: ServiceKey, spec: ServiceSpec) -> Self {
        Service {
            key,
            spec,
            stats: Stats::default(),
        }
    }
}

/// How packets reach a real server (`IP_VS_CONN_F_FWD_MASK` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForwardMethod {
    /// NAT (`-m`).
    Masq,
    /// Local node.
    Local,
    /// IP-in-IP / GUE / GRE tunnelling (`-i`).
    Tunnel,
    /// Direct routing (`-g`), the default of ipvsadm.
    DirectRoute,
    /// Cache bypass.
    Bypass,
    /// A value this crate has no name for.
    Other(u32),
}

impl ForwardMethod {
    /// Wire value.
    pub fn to_raw(self) -> u32 {
        match self {
            ForwardMethod::Masq => IP_VS_CONN_F_MASQ,
            ForwardMethod::Local => IP_VS_CONN_F_LOCALNODE,
            ForwardMethod::Tunnel => IP_VS_CONN_F_TUNNEL,
            ForwardMethod::DirectRoute => IP_VS_CONN_F_DROUTE,
            ForwardMethod::Bypass => IP_VS_CONN_F_BYPASS,
            ForwardMethod::Other(n) => n,
        }
    }

    /// Decodes a wire value, never failing.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            IP_VS_CONN_F_MASQ => ForwardMethod::Masq,
            IP_VS_CONN_F_LOCALNODE => ForwardMethod::Local,
            IP_VS_CONN_F_TUNNEL => ForwardMethod::Tunnel,
            IP_VS_CONN_F_DROUTE => ForwardMethod::DirectRoute,
            IP_VS_CONN_F_BYPASS => ForwardMethod::Bypass,
            n => ForwardMethod::Other(n),
        }
    }
}

impl fmt::Display for ForwardMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardMethod::Masq => f.write_str("Masq"),
            ForwardMethod::Local => f.write_str("Local"),
            ForwardMethod::Tunnel => f.write_str("Tunnel"),
            ForwardMethod::DirectRoute => f.write_str("Route"),
            ForwardMethod::Bypass => f.write_str("Bypass"),
            ForwardMethod::Other(n) => write!(f, "fwd-{n}"),
        }
    }
}

/// Encapsulation used by tunnel forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum TunnelType {
    /// IP-in-IP (the default, and the only one kernels before 5.2 know).
    #[default]
    Ipip,
    /// Generic UDP Encapsulation (needs `tun_port`).
    Gue,
    /// GRE.
    Gre,
    /// A value this crate has no name for.
    Other(u8),
}

impl TunnelType {
    /// Wire value.
    pub fn to_raw(self) -> u8 {
        match self {
            TunnelType::Ipip => IP_VS_CONN_F_TUNNEL_TYPE_IPIP,
            TunnelType::Gue => IP_VS_CONN_F_TUNNEL_TYPE_GUE,
            TunnelType::Gre => IP_VS_CONN_F_TUNNEL_TYPE_GRE,
            TunnelType::Other(n) => n,
        }
    }

    /// Decodes a wire value, never failing.
    pub fn from_raw(raw: u8) -> Self {
        match raw {
            IP_VS_CONN_F_TUNNEL_TYPE_IPIP => TunnelType::Ipip,
            IP_VS_CONN_F_TUNNEL_TYPE_GUE => TunnelType::Gue,
            IP_VS_CONN_F_TUNNEL_TYPE_GRE => TunnelType::Gre,
            n => TunnelType::Other(n),
        }
    }
}

/// What identifies a destination within its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestKey {
    /// Real server address (its family may differ from the service's only with tunnelling).
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
}

impl DestKey {
    /// The destination's own address family.
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }
}

impl fmt::Display for DestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketDisplay(self.addr, self.port).fmt(f)
    }
}

/// Editable settings of a destination (`ipvsadm -e` can change every one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DestSpec {
    /// Forwarding method.
    pub forward: ForwardMethod,
    /// Scheduling weight, 0..=i32::MAX; 0 takes no new connections.
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0 = none).
    pub lower_threshold: u32,
    /// Tunnel encapsulation (tunnel forwarding only).
    pub tunnel_type: TunnelType,
    /// Tunnel destination port (GUE).
    pub tunnel_port: u16,
    /// Tunnel flags (`IP_VS_TUNNEL_ENCAP_FLAG_*`).
    pub tunnel_flags: u16,
}

impl DestSpec {
    /// Direct routing with the given weight and no thresholds: the seed's `-g` real server.
    pub fn new(forward: ForwardMethod, weight: u32) -> Self {
        DestSpec {
            forward,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
            tunnel_type: TunnelType::Ipip,
            tunnel_port: 0,
            tunnel_flags: 0,
        }
    }
}

/// Connection counts the kernel reports per destination; what drain-before-delete waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DestConns {
    /// Established connections.
    pub active: u32,
    /// Other connections (e.g. TIME_WAIT).
    pub inactive: u32,
    /// Persistence templates.
    pub persistent: u32,
}

/// A destination (real server) as read from or written to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// Identity within its service.
    pub key: DestKey,
    /// Editable settings.
    pub spec: DestSpec,
    /// Kernel-reported connection counts; ignored when writing.
    pub conns: DestConns,
    /// Kernel-reported statistics; ignored when writing.
    pub stats: Stats,
}

impl Dest {
    /// A destination to write.
    pub fn new(key: DestKey, spec: DestSpec) -> Self {
        Dest {
            key,
            spec,
            conns: DestConns::default(),
            stats: Stats::default(),
        }
    }
}

/// `IPVS_CMD_GET_INFO`: what `ipvsadm` prints as its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Version code, e.g. 0x010201 for 1.2.1.
    pub version: u32,
    /// Size of the connection hash table.
    pub conn_tab_size: u32,
}

impl Info {
    /// The version as `major.minor.patch`.
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}

/// Connection timeouts in seconds (`ipvsadm --set tcp tcpfin udp`); 0 in a request leaves one as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP.
    pub tcp: u32,
    /// TCP after FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

/// Which connection-sync daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DaemonState {
    /// Sends connection state.
    Master,
    /// Receives connection state.
    Backup,
    /// A value this crate has no name for.
    Other(u32),
}

impl DaemonState {
    /// Wire value.
    pub fn to_raw(self) -> u32 {
        match self {
            DaemonState::Master => IP_VS_STATE_MASTER,
            DaemonState::Backup => IP_VS_STATE_BACKUP,
            DaemonState::Other(n) => n,
        }
    }

    /// Decodes a wire value, never failing.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            IP_VS_STATE_MASTER => DaemonState::Master,
            IP_VS_STATE_BACKUP => DaemonState::Backup,
            n => DaemonState::Other(n),
        }
    }
}

/// A connection-sync daemon (`ipvsadm --start-daemon`), with the optional attributes newer kernels
/// accept; `None` leaves the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemon {
    /// Master or backup.
    pub state: DaemonState,
    /// Interface for the multicast traffic.
    pub mcast_ifn: String,
    /// Sync ID (0..=255) shared by master and backups.
    pub sync_id: u32,
    /// Maximum UDP payload.
    pub sync_maxlen: Option<u16>,
    /// IPv4 multicast group.
    pub mcast_group: Option<Ipv4Addr>,
    /// IPv6 multicast group.
    pub mcast_group6: Option<Ipv6Addr>,
    /// Multicast base port.
    pub mcast_port: Option<u16>,
    /// Multicast TTL.
    pub mcast_ttl: Option<u8>,
}

impl SyncDaemon {
    /// A daemon with the kernel's defaults for everything optional.
    pub fn new(state: DaemonState, mcast_ifn: impl Into<String>, sync_id: u32) -> Self {
        SyncDaemon {
            state,
            mcast_ifn: mcast_ifn.into(),
            sync_id,
            sync_maxlen: None,
            mcast_group: None,
            mcast_group6: None,
            mcast_port: None,
            mcast_ttl: None,
        }
    }
}
