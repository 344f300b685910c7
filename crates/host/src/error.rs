//! Why a host change failed: the operation in the operator's words, and the errno.

use std::io;

/// A failed host read or change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No rtnetlink socket (no CAP_NET_ADMIN is not this; that fails on the first change).
    #[error("cannot open an rtnetlink socket: {0}")]
    Connect(#[source] io::Error),
    /// The kernel refused an rtnetlink request.
    #[error("{op}: {source}")]
    Netlink {
        /// What lvsd was doing, e.g. `add address 172.16.1.50/32 on eth0`.
        op: String,
        /// The kernel's errno (or a decoding problem).
        #[source]
        source: io::Error,
    },
    /// A sysctl could not be read or written.
    #[error("{op}: {source}{}", hint(source))]
    Sysctl {
        /// What lvsd was doing, e.g. `write net.ipv4.ip_forward`.
        op: String,
        /// The file system's errno.
        #[source]
        source: io::Error,
    },
    /// The kernel did not answer in time (the rtnetlink connection is given up).
    #[error("the kernel did not answer an rtnetlink request within {}s", .0.as_secs())]
    Timeout(std::time::Duration),
    /// An interface an operation needs is gone.
    #[error("{op}: interface `{interface}` does not exist")]
    NoInterface {
        /// What lvsd was doing.
        op: String,
        /// The interface.
        interface: String,
    },
}

/// What to do about the errors operators meet in containers.
fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(30) => {
            " (/proc/sys is mounted read-only: in a container, run privileged or set the sysctls with the container runtime)"
        }
        Some(13) | Some(1) => " (needs root, or CAP_NET_ADMIN and a writable /proc/sys)",
        _ => "",
    }
}

impl Error {
    /// The errno, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Connect(e)
            | Error::Netlink { source: e, .. }
            | Error::Sysctl { source: e, .. } => e.raw_os_error(),
            Error::NoInterface { .. } | Error::Timeout(_) => None,
        }
    }

    /// The connection itself failed or hung (rather than the kernel refusing a request): the
    /// next attempt should open a new one.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Connect(_) | Error::Timeout(_) => true,
            Error::Netlink { source, .. } => source.raw_os_error().is_none(),
            Error::Sysctl { .. } | Error::NoInterface { .. } => false,
        }
    }

    pub(crate) fn netlink(op: impl Into<String>, e: rtnetlink::Error) -> Error {
        let source = match e {
            rtnetlink::Error::NetlinkError(m) => m.to_io(),
            other => io::Error::other(other.to_string()),
        };
        Error::Netlink {
            op: op.into(),
            source,
        }
    }
}
