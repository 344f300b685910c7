//! The host side of lvsd's roles: reads interfaces and addresses over rtnetlink and sysctls from
//! `/proc/sys` into a [`HostObserved`], and carries out [`HostOp`]s. What to change is decided
//! by the pure planner in `plan::host`; this crate only does it, and never runs `ip` or
//! `sysctl`.

mod error;
pub mod sysctl;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use futures_util::TryStreamExt;
use plan::host::{HostAddr, HostObserved, HostOp, Link, Sysctl, TUNL6};
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{AddressMessageBuilder, Handle, LinkDummy, LinkIp6Tnl, LinkIpIp, LinkUnspec};

pub use error::Error;
pub use sysctl::Sysctls;

/// How long one host read or change may take before the connection is given up: the kernel
/// answers rtnetlink at once, so a silence this long means the connection is gone.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a host read or change with [`TIMEOUT`].
pub async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .unwrap_or(Err(Error::Timeout(TIMEOUT)))
}

/// An rtnetlink connection plus the sysctl tree: everything a role changes.
pub struct Host {
    handle: Handle,
    sysctls: Sysctls,
}

impl Host {
    /// Opens the rtnetlink socket; its connection runs as a task on the current tokio runtime.
    pub fn connect() -> Result<Self, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Connect)?;
        tokio::spawn(conn);
        Ok(Host {
            handle,
            sysctls: Sysctls::default(),
        })
    }

    /// Every interface by name.
    pub async fn links(&self) -> Result<BTreeMap<String, Link>, Error> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list interfaces", e))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let name = m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })?;
                let link = Link {
                    index: m.header.index,
                    up: m.header.flags.contains(LinkFlags::Up),
                };
                Some((name, link))
            })
            .collect())
    }

    /// The host as the planner needs it: interfaces, their addresses, and the values of `keys`.
    pub async fn observe(&self, keys: &BTreeSet<Sysctl>) -> Result<HostObserved, Error> {
        let links = self.links().await?;
        let names: BTreeMap<u32, &String> = links.iter().map(|(n, l)| (l.index, n)).collect();
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list addresses", e))?;
        let mut addresses = BTreeMap::new();
        for m in &msgs {
            let Some(interface) = names.get(&m.header.index) else {
                continue;
            };
            // IPv4 reports the interface's own address as IFA_LOCAL (IFA_ADDRESS is the peer
            // on point-to-point links); IPv6 only as IFA_ADDRESS.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = local.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(addr) = addr {
                let key = HostAddr {
                    interface: (*interface).clone(),
                    addr,
                };
                addresses.insert(key, m.header.prefix_len);
            }
        }
        let mut sysctls = BTreeMap::new();
        for k in keys {
            sysctls.insert(k.clone(), self.sysctls.read(k)?);
        }
        Ok(HostObserved {
            links,
            addresses,
            sysctls,
        })
    }

    async fn index(&self, name: &str, op: &str) -> Result<u32, Error> {
        let links = self.links().await?;
        links
            .get(name)
            .map(|l| l.index)
            .ok_or_else(|| Error::NoInterface {
                op: op.to_owned(),
                interface: name.to_owned(),
            })
    }

    /// Carries out one operation.
    pub async fn execute(&self, op: &HostOp) -> Result<(), Error> {
        let what = op.to_string();
        let what = what.trim_start_matches(['+', '-', '~', ' ']);
        match op {
            HostOp::CreateTunnel { name } => {
                let msg = if name == TUNL6 {
                    LinkIp6Tnl::new(name).build()
                } else {
                    LinkIpIp::new(name).build()
                };
                // Without NLM_F_EXCL: loading the tunnel module (which the kernel does for this
                // request) creates the fallback device itself, and the request then finds it.
                self.handle
                    .link()
                    .add(msg)
                    .set_flags(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
                    .execute()
                    .await
                    .map_err(|e| Error::netlink(format!("create {what}"), e))
            }
            HostOp::CreateDummy { name } => self
                .handle
                .link()
                .add(LinkDummy::new(name).build())
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("create {what}"), e)),
            HostOp::LinkUp { name } | HostOp::LinkDown { name } => {
                let index = self.index(name, what).await?;
                let b = LinkUnspec::new_with_index(index);
                let b = if matches!(op, HostOp::LinkUp { .. }) {
                    b.up()
                } else {
                    b.down()
                };
                self.handle
                    .link()
                    .set(b.build())
                    .execute()
                    .await
                    .map_err(|e| Error::netlink(what, e))
            }
            HostOp::SetSysctl { key, to, .. } | HostOp::RestoreSysctl { key, to, .. } => {
                self.sysctls.write(key, to)
            }
            HostOp::AddAddress(a) => {
                let index = self.index(&a.interface, what).await?;
                let mut req = self.handle.address().add(index, a.addr, a.prefix_len());
                if a.addr.is_ipv6() {
                    // A VIP is on several hosts by design: duplicate address detection would
                    // leave it tentative (unusable) on the director.
                    let m = req.message_mut();
                    m.header.flags |= AddressHeaderFlags::Nodad;
                    m.attributes
                        .push(AddressAttribute::Flags(AddressFlags::Nodad));
                    // Deprecated (preferred lifetime 0, valid forever): it still accepts
                    // traffic, but is never picked as a source address. A /128 VIP would
                    // otherwise win source selection (longest match) for every peer in the
                    // LAN's /64: the director would tunnel from the VIP (which real servers
                    // reject as their own address) and real servers would open connections
                    // from it (whose answers go to the director).
                    let mut life = CacheInfo::default();
                    life.ifa_preferred = 0;
                    life.ifa_valid = u32::MAX;
                    m.attributes.push(AddressAttribute::CacheInfo(life));
                }
                match req.execute().await {
                    Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == EEXIST => {
                        Ok(())
                    }
                    r => r.map_err(|e| Error::netlink(format!("add {what}"), e)),
                }
            }
            HostOp::DelAddress(a) => {
                let index = self.index(&a.interface, what).await?;
                let msg = address_message(index, a.addr, a.prefix_len());
                match self.handle.address().del(msg).execute().await {
                    // Already gone: the goal is reached.
                    Err(rtnetlink::Error::NetlinkError(m))
                        if m.raw_code().abs() == EADDRNOTAVAIL =>
                    {
                        Ok(())
                    }
                    r => r.map_err(|e| Error::netlink(format!("remove {what}"), e)),
                }
            }
        }
    }
}

const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

fn address_message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
    }
}
