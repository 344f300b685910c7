//! Write requests: one variant per IPVS command that changes kernel state. A batch is a slice of
//! these; each maps to exactly one netlink message and gets exactly one result.

use std::fmt;

use crate::*;

/// A change to the kernel's IPVS state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ipvsadm -A`.
    NewService(ServiceKey, ServiceSpec),
    /// `ipvsadm -E`: edit in place, keeping connections and counters.
    SetService(ServiceKey, ServiceSpec),
    /// `ipvsadm -D`.
    DelService(ServiceKey),
    /// `ipvsadm -a`.
    NewDest(ServiceKey, DestKey, DestSpec),
    /// `ipvsadm -e`: edit in place.
    SetDest(ServiceKey, DestKey, DestSpec),
    /// `ipvsadm -d`.
    DelDest(ServiceKey, DestKey),
    /// `ipvsadm -C`.
    Flush,
    /// `ipvsadm -Z [service]`.
    Zero(Option<ServiceKey>),
    /// `ipvsadm --set tcp tcpfin udp`.
    SetTimeouts(Timeouts),
    /// `ipvsadm --start-daemon`.
    NewDaemon(SyncDaemon),
    /// `ipvsadm --stop-daemon`.
    DelDaemon(DaemonState),
}

impl Request {
    /// The service this request concerns, so a failure can be reported against it.
    pub fn service(&self) -> Option<&ServiceKey> {
        match self {
            Request::NewService(k, _)
            | Request::SetService(k, _)
            | Request::DelService(k)
            | Request::NewDest(k, ..)
            | Request::SetDest(k, ..)
            | Request::DelDest(k, _)
            | Request::Zero(Some(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::NewService(k, s) => write!(f, "add service {k} (scheduler {})", s.scheduler),
            Request::SetService(k, s) => write!(f, "edit service {k} (scheduler {})", s.scheduler),
            Request::DelService(k) => write!(f, "delete service {k}"),
            Request::NewDest(k, d, _) => write!(f, "add real server {d} to {k}"),
            Request::SetDest(k, d, _) => write!(f, "edit real server {d} of {k}"),
            Request::DelDest(k, d) => write!(f, "delete real server {d} from {k}"),
            Request::Flush => f.write_str("flush the IPVS table"),
            Request::Zero(None) => f.write_str("zero all counters"),
            Request::Zero(Some(k)) => write!(f, "zero the counters of {k}"),
            Request::SetTimeouts(t) => write!(
                f,
                "set timeouts tcp={} tcpfin={} udp={}",
                t.tcp, t.tcp_fin, t.udp
            ),
            Request::NewDaemon(d) => write!(
                f,
                "start {:?} sync daemon on {} (syncid {})",
                d.state, d.mcast_ifn, d.sync_id
            ),
            Request::DelDaemon(s) => write!(f, "stop {s:?} sync daemon"),
        }
    }
}
