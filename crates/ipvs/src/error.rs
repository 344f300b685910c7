//! Errors that keep what the kernel said (the errno) and what was being done (the operation), so
//! that callers can both retry sensibly and tell a person what to do.

use netlink_packet_core::DecodeError;
use nix::errno::Errno;

/// An IPVS operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The generic-netlink family "IPVS" does not exist: the module is not loaded.
    #[error("the ip_vs kernel module is not loaded (modprobe ip_vs)")]
    ModuleNotLoaded,
    /// EPERM: the caller lacks CAP_NET_ADMIN in the initial user namespace.
    #[error(
        "{op}: permission denied: IPVS needs CAP_NET_ADMIN (run as root or grant the capability)"
    )]
    PermissionDenied {
        /// What was being done.
        op: String,
    },
    /// ENOENT when adding or editing a service: the kernel could not load the scheduler module.
    #[error(
        "{op}: scheduler `{scheduler}` is not available: the kernel module ip_vs_{scheduler} is missing (modprobe ip_vs_{scheduler}){}",
        forwarding_hint(scheduler)
    )]
    SchedulerMissing {
        /// What was being done.
        op: String,
        /// The scheduler asked for.
        scheduler: String,
    },
    /// EEXIST.
    #[error("{op}: {object} already exists")]
    Exists {
        /// What was being done.
        op: String,
        /// The object that exists.
        object: String,
    },
    /// ESRCH (no such service) or ENOENT (no such destination).
    #[error("{op}: {object} does not exist")]
    NotFound {
        /// What was being done.
        op: String,
        /// The object that is missing.
        object: String,
        /// ESRCH or ENOENT.
        errno: Errno,
    },
    /// The kernel refused, for a reason its errno alone does not say (a sync daemon with a
    /// mixed-family real server in the table, an interface that does not exist, ...).
    #[error("{op}: {why}")]
    Explained {
        /// What was being done.
        op: String,
        /// The kernel's answer.
        errno: Errno,
        /// What it means here, and what to do.
        why: String,
    },
    /// Any other errno from the kernel.
    #[error("{op}: {errno} ({})", errno.desc())]
    Kernel {
        /// What was being done.
        op: String,
        /// The kernel's answer.
        errno: Errno,
    },
    /// The socket itself failed.
    #[error("{op}: netlink socket: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's reply could not be decoded.
    #[error("{op}: cannot decode the kernel's reply: {source}")]
    Decode {
        /// What was being done.
        op: String,
        /// Why.
        #[source]
        source: DecodeError,
    },
}

/// The seed's classic mistake, `ipvsadm -s dr`: a forwarding method given as the scheduler.
fn forwarding_hint(scheduler: &str) -> String {
    match scheduler {
        "dr" | "droute" | "route" | "gatewaying" | "nat" | "masq" | "masquerading" | "tun"
        | "tunnel" | "ipip" => format!(
            "; `{scheduler}` is a forwarding method, not a scheduler: set the forwarding method on the real servers and pick a scheduler such as wlc"
        ),
        _ => String::new(),
    }
}

impl Error {
    /// The same error, naming the operation as `op` says (the hot paths name it only when
    /// something fails).
    pub fn with_op(mut self, op: impl FnOnce() -> String) -> Self {
        match &mut self {
            Error::ModuleNotLoaded => {}
            Error::PermissionDenied { op: o }
            | Error::SchedulerMissing { op: o, .. }
            | Error::Exists { op: o, .. }
            | Error::NotFound { op: o, .. }
            | Error::Explained { op: o, .. }
            | Error::Kernel { op: o, .. }
            | Error::Io { op: o, .. }
            | Error::Decode { op: o, .. } => *o = op(),
        }
        self
    }

    /// The errno behind this error, when the kernel or the socket gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::ModuleNotLoaded => Some(Errno::ENOENT),
            Error::PermissionDenied { .. } => Some(Errno::EPERM),
            Error::SchedulerMissing { .. } => Some(Errno::ENOENT),
            Error::Exists { .. } => Some(Errno::EEXIST),
            Error::NotFound { errno, .. }
            | Error::Kernel { errno, .. }
            | Error::Explained { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            Error::Decode { .. } => None,
        }
    }

    /// Whether trying the same thing again later can succeed without anyone changing anything
    /// (out of memory, a busy socket) — as opposed to a request that is wrong or not permitted.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.errno(),
            Some(Errno::ENOMEM | Errno::ENOBUFS | Errno::EAGAIN | Errno::EBUSY | Errno::EINTR)
        )
    }
}
