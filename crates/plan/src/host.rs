//! Host roles, planned like the table: what the host must look like for its role (VIPs on
//! interfaces, sysctls, tunnel devices), what it looks like now, and what lvsd put there, in;
//! ordered operations out. Pure, so the rules people get wrong by hand — ARP sysctls before the
//! VIP appears on `lo`, the VIP removed before the sysctls are restored, a director's VIP kept
//! while its service still drains, only lvsd's own addresses removed, a sysctl changed by
//! someone else since left alone — are tested as tables of cases.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use model::{ForwardMethod, ServiceKey};

use crate::state::{Desired, Observed, Owned};

/// What this host is in the cluster. One config file serves every host; `--role` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Role {
    /// Manage the IPVS table only; host setup is someone else's (or undone, if lvsd did it).
    #[default]
    None,
    /// Holds the VIPs on its LAN interface, forwards, and runs the IPVS table.
    Director,
    /// Accepts packets for the VIPs without announcing them; never touches IPVS.
    RealServer,
}

impl Role {
    /// Every role by its config name.
    pub const ALL: [(&'static str, Role); 3] = [
        ("none", Role::None),
        ("director", Role::Director),
        ("real-server", Role::RealServer),
    ];

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Director => "director",
            Role::RealServer => "real-server",
        }
    }

    /// Reads a config name (`real_server` and `realserver` too, as people write them).
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "real_server" | "realserver" => Some(Role::RealServer),
            _ => Role::ALL.iter().find(|(n, _)| *n == s).map(|(_, r)| *r),
        }
    }
}

/// The `host` section, validated, with `--role` applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostSpec {
    /// The role.
    pub role: Role,
    /// Director: where VIPs go. Real server: an interface that carries traffic (its ARP
    /// sysctls are set too).
    pub interface: Option<String>,
    /// The VIPs, when not the services' addresses.
    pub vips: Option<Vec<IpAddr>>,
    /// How the VIPs are shared with other directors.
    pub ha: HaMode,
    /// `ipvs.sysctl`: the IPVS sysctls the config sets, by their kernel names (a director's,
    /// and a table-only lvsd's; real servers run no IPVS).
    pub ipvs_sysctls: BTreeMap<String, String>,
}

/// A sysctl by its path under `/proc/sys` (`net/ipv4/conf/all/arp_ignore`), so interface names
/// with dots need no escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sysctl(pub String);

impl Sysctl {
    fn conf(family: &str, interface: &str, name: &str) -> Sysctl {
        Sysctl(format!("net/{family}/conf/{interface}/{name}"))
    }
}

impl fmt::Display for Sysctl {
    /// The `sysctl(8)` spelling: dots between components, a dot inside one written as `/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.split('/').map(|p| p.replace('.', "/")).collect();
        f.write_str(&parts.join("."))
    }
}

/// What a sysctl must be: left alone when its value is one of `ok`, else set to `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The value lvsd writes.
    pub set: String,
    /// Values that already do the job (`arp_ignore=2` hides `lo`'s VIP as well as 1 does).
    pub ok: Vec<String>,
}

impl Want {
    /// Exactly `v`.
    pub fn exactly(v: &str) -> Want {
        Want::any_of(v, &[v])
    }

    /// `set` when the value is none of `ok`.
    pub fn any_of(set: &str, ok: &[&str]) -> Want {
        Want {
            set: set.to_owned(),
            ok: ok.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    /// Whether `now` already does the job.
    pub fn accepts(&self, now: &str) -> bool {
        self.ok.iter().any(|v| v == now)
    }
}

fn on() -> Want {
    Want::exactly("1")
}
fn arp_ignore() -> Want {
    Want::any_of("1", &["1", "2"])
}
fn arp_announce() -> Want {
    Want::exactly("2")
}
fn rp_off() -> Want {
    Want::exactly("0")
}
/// `all.rp_filter` is combined with the device's by maximum: strict (1) on `all` would drop
/// decapsulated packets whatever `tunl0` says, loose (2) or off (0) does not.
fn rp_not_strict() -> Want {
    Want::any_of("2", &["0", "2"])
}

/// The IPVS sysctl `name` (`net.ipv4.vs.<name>`).
pub fn ipvs_sysctl(name: &str) -> Sysctl {
    Sysctl(format!("net/ipv4/vs/{name}"))
}

/// How several directors share the VIPs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HaMode {
    /// One director: lvsd holds the VIPs on `host.interface` itself.
    #[default]
    Single,
    /// Another engine (keepalived's VRRP, Pacemaker) moves the VIPs between directors: lvsd
    /// neither adds nor removes them.
    ActiveBackup,
    /// Every director serves at once behind a router: lvsd holds the VIP of each service that
    /// can serve on a dummy device a routing daemon announces, and only there.
    ActiveActive {
        /// The dummy device lvsd creates (`lvsd0`).
        device: String,
        /// When a VIP shared by several services (ports) is announced.
        announce: Announce,
    },
}

/// When a VIP shared by several services is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Announce {
    /// While any of its services can serve.
    #[default]
    Any,
    /// Only while all of them can.
    All,
}

/// A VIP as a host address (/32, /128) on an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostAddr {
    /// The interface.
    pub interface: String,
    /// The address.
    pub addr: IpAddr,
}

impl HostAddr {
    /// The prefix length lvsd gives a VIP: one host.
    pub fn prefix_len(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} on {}",
            self.addr,
            self.prefix_len(),
            self.interface
        )
    }
}

/// The fallback tunnel devices that decapsulate what the director's `tunnel` forwarding sends.
pub const TUNL4: &str = "tunl0";
/// The IPv6 one (ip6ip6).
pub const TUNL6: &str = "ip6tnl0";

/// The rtnetlink link kind of a tunnel device lvsd may create.
pub fn tunnel_kind(name: &str) -> &'static str {
    if name == TUNL6 { "ip6tnl" } else { "ipip" }
}

/// What the host must look like for its role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDesired {
    /// Interfaces that must exist (lvsd does not create them).
    pub interfaces: BTreeSet<String>,
    /// Tunnel devices to create when missing and to bring up.
    pub tunnels: BTreeSet<String>,
    /// Dummy devices to create when missing and to bring up (the announce device).
    pub dummies: BTreeSet<String>,
    /// Addresses another engine manages (active-backup): lvsd's record of them is dropped,
    /// never acted on.
    pub leave_alone: BTreeSet<IpAddr>,
    /// VIPs and where they go.
    pub addresses: BTreeSet<HostAddr>,
    /// Sysctls and what they must be.
    pub sysctls: BTreeMap<Sysctl, Want>,
}

/// An interface as seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Administratively up.
    pub up: bool,
}

/// The host as it is: what the planner compares against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostObserved {
    /// Interfaces by name.
    pub links: BTreeMap<String, Link>,
    /// Addresses on those interfaces, with their prefix length: a VIP present with any prefix
    /// is present, but lvsd removes only host-length ones (what it adds).
    pub addresses: BTreeMap<HostAddr, u8>,
    /// Values of the sysctls of interest; `None` when the sysctl does not exist.
    pub sysctls: BTreeMap<Sysctl, Option<String>>,
}

/// A sysctl lvsd changed: what to restore, and what lvsd wrote (to notice someone else's edit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSysctl {
    /// The value before lvsd changed it.
    pub original: String,
    /// The value lvsd wrote.
    pub set: String,
}

/// What lvsd put on the host, so that undoing a role removes exactly that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOwned {
    /// Addresses lvsd added.
    pub addresses: BTreeSet<HostAddr>,
    /// Links lvsd brought up.
    pub links_up: BTreeSet<String>,
    /// Sysctls lvsd changed.
    pub sysctls: BTreeMap<Sysctl, OwnedSysctl>,
}

impl HostOwned {
    /// Records an operation the host carried out.
    pub fn record(&mut self, op: &HostOp) {
        match op {
            HostOp::CreateTunnel { .. } | HostOp::CreateDummy { .. } => {}
            HostOp::LinkUp { name } => {
                self.links_up.insert(name.clone());
            }
            HostOp::LinkDown { name } => {
                self.links_up.remove(name);
            }
            HostOp::SetSysctl { key, from, to } => {
                self.sysctls
                    .entry(key.clone())
                    .or_insert_with(|| OwnedSysctl {
                        original: from.clone(),
                        set: to.clone(),
                    })
                    .set = to.clone();
            }
            HostOp::RestoreSysctl { key, .. } => {
                self.sysctls.remove(key);
            }
            HostOp::AddAddress(a) => {
                self.addresses.insert(a.clone());
            }
            HostOp::DelAddress(a) => {
                self.addresses.remove(a);
            }
        }
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.links_up.is_empty() && self.sysctls.is_empty()
    }
}

/// One change to the host. The variants are in execution order: devices, then sysctls, then
/// addresses on; addresses off, then sysctls restored, then devices down.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostOp {
    /// Create a missing fallback tunnel device (`tunl0`, `ip6tnl0`).
    CreateTunnel {
        /// Its name.
        name: String,
    },
    /// Create a missing dummy device (the device an active-active director announces from).
    CreateDummy {
        /// Its name.
        name: String,
    },
    /// Bring a tunnel device up.
    LinkUp {
        /// Its name.
        name: String,
    },
    /// Write a sysctl.
    SetSysctl {
        /// Which.
        key: Sysctl,
        /// Its value now (recorded as the original the first time).
        from: String,
        /// The value written.
        to: String,
    },
    /// Add a VIP.
    AddAddress(HostAddr),
    /// Remove a VIP lvsd added.
    DelAddress(HostAddr),
    /// Put a sysctl back as it was before lvsd.
    RestoreSysctl {
        /// Which.
        key: Sysctl,
        /// Its value now (what lvsd wrote).
        from: String,
        /// The original value.
        to: String,
    },
    /// Take down a tunnel device lvsd brought up.
    LinkDown {
        /// Its name.
        name: String,
    },
}

impl HostOp {
    /// A short name of the operation, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            HostOp::CreateTunnel { .. } => "host_create_tunnel",
            HostOp::CreateDummy { .. } => "host_create_dummy",
            HostOp::LinkUp { .. } => "host_link_up",
            HostOp::SetSysctl { .. } => "host_set_sysctl",
            HostOp::AddAddress(_) => "host_add_address",
            HostOp::DelAddress(_) => "host_del_address",
            HostOp::RestoreSysctl { .. } => "host_restore_sysctl",
            HostOp::LinkDown { .. } => "host_link_down",
        }
    }
}

impl fmt::Display for HostOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostOp::CreateTunnel { name } => write!(f, "+ link {name} ({})", tunnel_kind(name)),
            HostOp::CreateDummy { name } => write!(f, "+ link {name} (dummy)"),
            HostOp::LinkUp { name } => write!(f, "~ link {name} up"),
            HostOp::SetSysctl { key, from, to } => write!(f, "~ sysctl {key} = {to} (was {from})"),
            HostOp::AddAddress(a) => write!(f, "+ address {a}"),
            HostOp::DelAddress(a) => write!(f, "- address {a}"),
            HostOp::RestoreSysctl { key, from, to } => {
                write!(f, "~ sysctl {key} = {to} (restored; lvsd had set {from})")
            }
            HostOp::LinkDown { name } => write!(f, "~ link {name} down"),
        }
    }
}

/// Something the role needs that this host lacks; nothing is changed while any is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// An interface the config names.
    Interface(String),
    /// A sysctl (IPv6 disabled, or a read-only `/proc/sys`).
    Sysctl(Sysctl),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Interface(i) => write!(
                f,
                "interface `{i}` does not exist on this host (set host.interface to one of its interfaces)"
            ),
            Missing::Sysctl(s) if s.0.starts_with("net/ipv4/vs/") => write!(
                f,
                "sysctl {s} does not exist on this host (is the ip_vs module loaded? the kernel has a sysctl of this name only once it is)"
            ),
            Missing::Sysctl(s) => write!(
                f,
                "sysctl {s} does not exist on this host (is IPv6 disabled?)"
            ),
        }
    }
}

/// Host changes for one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPlan {
    /// Operations in execution order.
    pub ops: Vec<HostOp>,
    /// What the role needs and the host lacks; when not empty, nothing may be executed.
    pub missing: Vec<Missing>,
    /// The ownership record to start from: stale entries (an address someone removed, a sysctl
    /// someone changed since) dropped. Each executed op is then [`HostOwned::record`]ed.
    pub kept: HostOwned,
    /// The devices VIPs are announced from: health decides what is there, so withdrawals from
    /// them never count for the removal guard.
    pub announce_devices: BTreeSet<String>,
}

impl HostPlan {
    /// In sync.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.missing.is_empty()
    }

    /// The host's removal guard: `(removed, held)` when this plan takes away more than half of
    /// the VIPs lvsd holds while the host keeps a role, which is what an emptied or truncated
    /// file looks like (a real server without its VIPs drops the director's traffic). Taking
    /// the role away (`none`) is deliberate and never trips it.
    ///
    /// On a director, `managed` is lvsd's record of the table: a VIP that no service in it uses
    /// any more (its services left the file, drained and were deleted, or went with the table)
    /// is neither counted nor held. Its removal completes changes the table's guard already let
    /// through; counting it would refuse for good, with nothing left to change, once two such
    /// drains end in the same pass. An emptied file keeps its services in the record (the
    /// table's guard refuses their removal), so their VIPs still count. Every VIP counts, as on
    /// any other host, when the record could not be read (`None`) or holds a firewall-mark
    /// service (its VIPs come from `host.vips`, which no service key names).
    pub fn guard(
        &self,
        role: Role,
        owned: &HostOwned,
        managed: Option<&Owned>,
    ) -> Option<(usize, usize)> {
        let serving: Option<BTreeSet<IpAddr>> = match managed {
            Some(m) if role == Role::Director && !m.services.keys().any(|k| vip(k).is_none()) => {
                Some(m.services.keys().filter_map(vip).collect())
            }
            _ => None,
        };
        let counts = |a: &HostAddr| serving.as_ref().is_none_or(|s| s.contains(&a.addr));
        // A VIP that stays on the host on another device (added by this plan, or already
        // there and kept) moves; it is not removed.
        let deleted: BTreeSet<&HostAddr> = self
            .ops
            .iter()
            .filter_map(|o| match o {
                HostOp::DelAddress(a) => Some(a),
                _ => None,
            })
            .collect();
        let staying: BTreeSet<IpAddr> = self
            .ops
            .iter()
            .filter_map(|o| match o {
                HostOp::AddAddress(a) => Some(a.addr),
                _ => None,
            })
            .chain(
                owned
                    .addresses
                    .iter()
                    .filter(|a| !deleted.contains(a))
                    .map(|a| a.addr),
            )
            .collect();
        let removed = deleted
            .iter()
            .filter(|a| {
                !self.announce_devices.contains(&a.interface)
                    && counts(a)
                    && !staying.contains(&a.addr)
            })
            .count();
        let held = owned.addresses.iter().filter(|a| counts(a)).count();
        (role != Role::None && removed > 0 && removed * 2 > held).then_some((removed, held))
    }
}

/// A service's VIP, if it has one.
fn vip(key: &ServiceKey) -> Option<IpAddr> {
    match key {
        ServiceKey::Addr { addr, .. } => Some(*addr),
        ServiceKey::Fwmark { .. } => None,
    }
}

/// Whether a director takes traffic: `lvsd drain --director` takes it out of rotation (its
/// VIPs are no longer announced, or its health file says it cannot serve) while it keeps
/// serving whatever still reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    /// Serving: VIPs announced while their services can serve.
    #[default]
    In,
    /// Out of rotation: an active-active director holds every VIP on [`HOLD_DEVICE`] instead
    /// of its announce device, so the routing daemon withdraws the routes while the flows the
    /// router still sends (before it converges) are served.
    Out,
}

/// Where an active-active director out of rotation holds its VIPs: local (IPVS sees their
/// packets), never exported by a routing daemon watching the announce device.
pub const HOLD_DEVICE: &str = "lo";

/// [`host_desired_in`] for a director in rotation (and every other role).
pub fn host_desired(
    spec: &HostSpec,
    desired: &Desired,
    observed: Option<&Observed>,
    owned: &Owned,
    unable: &BTreeSet<ServiceKey>,
) -> HostDesired {
    host_desired_in(spec, desired, observed, owned, unable, Rotation::In)
}

/// What the host must look like. `observed` and `owned` are the IPVS table and lvsd's record
/// of it: a director keeps the VIP of a managed service that left the file while the service
/// is still in the table (draining), or its open connections would be cut. `unable` are the
/// services that cannot serve now (no healthy real server, or fewer than their quorum): an
/// active-active director does not announce their VIPs, nor those of services the table does
/// not hold yet with a real that takes traffic (a director starting or coming back announces
/// only once its table is programmed). `rotation`: see [`Rotation`].
pub fn host_desired_in(
    spec: &HostSpec,
    desired: &Desired,
    observed: Option<&Observed>,
    owned: &Owned,
    unable: &BTreeSet<ServiceKey>,
    rotation: Rotation,
) -> HostDesired {
    let mut out = HostDesired::default();
    if spec.role != Role::RealServer {
        for (name, value) in &spec.ipvs_sysctls {
            out.sysctls.insert(ipvs_sysctl(name), Want::exactly(value));
        }
    }
    match spec.role {
        Role::None => {}
        Role::Director => {
            let Some(interface) = &spec.interface else {
                return out;
            };
            out.interfaces.insert(interface.clone());
            // Without the table (it could not be read, or its part of the pass failed), every
            // service in lvsd's record may still be there: their VIPs stay.
            let draining: Vec<&ServiceKey> = match observed {
                Some(o) => o
                    .services
                    .keys()
                    .filter(|k| owned.services.contains_key(k))
                    .collect(),
                None => owned.services.keys().collect(),
            };
            let mut vips: BTreeSet<IpAddr> = desired
                .services
                .keys()
                .chain(draining.iter().copied())
                .filter_map(vip)
                .collect();
            vips.extend(spec.vips.iter().flatten());
            let families = desired
                .services
                .keys()
                .map(|k| k.family() == model::Family::Inet6);
            let v6 = vips.iter().any(IpAddr::is_ipv6) || families.clone().any(|v6| v6);
            let v4 = vips.iter().any(IpAddr::is_ipv4) || families.clone().any(|v6| !v6);
            match &spec.ha {
                HaMode::Single => {
                    for addr in vips {
                        out.addresses.insert(HostAddr {
                            interface: interface.clone(),
                            addr,
                        });
                    }
                }
                HaMode::ActiveBackup => out.leave_alone = vips,
                HaMode::ActiveActive { device, announce } => {
                    out.dummies.insert(device.clone());
                    // A VIP is announced while its services can serve (any or all of those
                    // on it). A service of lvsd's still in the table but not in the file counts
                    // by what the table holds: draining (weight 0) it does not take new flows,
                    // but kept by the table's guard (an emptied or truncated file) it serves on,
                    // and its VIP must not be withdrawn.
                    let mut on_vip: BTreeMap<IpAddr, (bool, bool)> = BTreeMap::new();
                    // In the table with a real that takes new connections (when the table is
                    // known: without it, health alone decides, as before the table was read).
                    let programmed = |k: &ServiceKey| {
                        observed.is_none_or(|o| {
                            o.services
                                .get(k)
                                .is_some_and(|s| s.reals.values().any(|r| r.spec.weight > 0))
                        })
                    };
                    for k in desired.services.keys().chain(draining.iter().copied()) {
                        let Some(a) = vip(k) else { continue };
                        let can = !unable.contains(k) && programmed(k);
                        let e = on_vip.entry(a).or_insert((false, true));
                        e.0 |= can;
                        e.1 &= can;
                    }
                    for (addr, (any, all)) in on_vip {
                        let up = match announce {
                            Announce::Any => any,
                            Announce::All => all,
                        };
                        if rotation == Rotation::Out {
                            // Local, not announced: whatever the router still sends is served.
                            out.addresses.insert(HostAddr {
                                interface: HOLD_DEVICE.into(),
                                addr,
                            });
                        } else if up {
                            out.addresses.insert(HostAddr {
                                interface: device.clone(),
                                addr,
                            });
                        }
                    }
                    // Not on the LAN interface (a VIP lvsd put there before goes): only the
                    // router sends the VIPs' traffic, and sloppy TCP/SCTP lets a director take
                    // over the middle of a flow it has never seen.
                    out.sysctls
                        .entry(ipvs_sysctl("sloppy_tcp"))
                        .or_insert_with(on);
                    out.sysctls
                        .entry(ipvs_sysctl("sloppy_sctp"))
                        .or_insert_with(on);
                }
            }
            if v4 {
                out.sysctls
                    .insert(Sysctl("net/ipv4/ip_forward".into()), on());
            }
            if v6 {
                out.sysctls
                    .insert(Sysctl::conf("ipv6", "all", "forwarding"), on());
            }
        }
        Role::RealServer => {
            // A VIP goes on the tunnel device when a service on it tunnels to its reals.
            let tunnelled = |addr: IpAddr| {
                desired.services.iter().any(|(k, s)| {
                    vip(k) == Some(addr)
                        && s.reals.values().any(|r| r.forward == ForwardMethod::Tunnel)
                })
            };
            // NAT services need no VIP on the real servers (the director rewrites it away).
            let vips: BTreeSet<IpAddr> = match &spec.vips {
                Some(v) => v.iter().copied().collect(),
                None => desired
                    .services
                    .iter()
                    .filter(|(_, s)| {
                        s.reals.is_empty()
                            || s.reals.values().any(|r| {
                                matches!(
                                    r.forward,
                                    ForwardMethod::DirectRoute | ForwardMethod::Tunnel
                                )
                            })
                    })
                    .filter_map(|(k, _)| vip(k))
                    .collect(),
            };
            for addr in &vips {
                let interface = match (tunnelled(*addr), addr) {
                    (false, _) => "lo",
                    (true, IpAddr::V4(_)) => TUNL4,
                    (true, IpAddr::V6(_)) => TUNL6,
                };
                if interface != "lo" {
                    out.tunnels.insert(interface.to_owned());
                }
                out.addresses.insert(HostAddr {
                    interface: interface.to_owned(),
                    addr: *addr,
                });
            }
            if vips.iter().any(IpAddr::is_ipv4) {
                let mut on = vec!["all"];
                if let Some(i) = &spec.interface {
                    out.interfaces.insert(i.clone());
                    on.push(i);
                }
                for i in on {
                    out.sysctls
                        .insert(Sysctl::conf("ipv4", i, "arp_ignore"), arp_ignore());
                    out.sysctls
                        .insert(Sysctl::conf("ipv4", i, "arp_announce"), arp_announce());
                }
            } else if let Some(i) = &spec.interface {
                out.interfaces.insert(i.clone());
            }
            if out.tunnels.contains(TUNL4) {
                out.sysctls
                    .insert(Sysctl::conf("ipv4", TUNL4, "rp_filter"), rp_off());
                out.sysctls
                    .insert(Sysctl::conf("ipv4", "all", "rp_filter"), rp_not_strict());
            }
        }
    }
    out
}

/// The interface a `net/<family>/conf/<interface>/…` sysctl belongs to.
fn sysctl_interface(key: &Sysctl) -> Option<&str> {
    let mut parts = key.0.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("net"), Some(_), Some("conf"), Some(i)) if i != "all" && i != "default" => Some(i),
        _ => None,
    }
}

/// Host changes that take `observed` to `desired`, undoing what `owned` records and the
/// desired state no longer wants.
pub fn plan_host(desired: &HostDesired, observed: &HostObserved, owned: &HostOwned) -> HostPlan {
    // An active-active director's VIPs move between its announce device and the hold device
    // as it leaves rotation and comes back: neither move is a removal to guard against.
    let mut announce_devices = desired.dummies.clone();
    if !announce_devices.is_empty() {
        announce_devices.insert(HOLD_DEVICE.into());
    }
    let mut plan = HostPlan {
        kept: owned.clone(),
        announce_devices,
        ..HostPlan::default()
    };
    for i in &desired.interfaces {
        if !observed.links.contains_key(i) {
            plan.missing.push(Missing::Interface(i.clone()));
        }
    }
    for t in &desired.tunnels {
        match observed.links.get(t) {
            None => {
                plan.ops.push(HostOp::CreateTunnel { name: t.clone() });
                plan.ops.push(HostOp::LinkUp { name: t.clone() });
            }
            Some(l) if !l.up => plan.ops.push(HostOp::LinkUp { name: t.clone() }),
            Some(_) => {}
        }
    }
    for d in &desired.dummies {
        match observed.links.get(d) {
            None => {
                plan.ops.push(HostOp::CreateDummy { name: d.clone() });
                plan.ops.push(HostOp::LinkUp { name: d.clone() });
            }
            Some(l) if !l.up => plan.ops.push(HostOp::LinkUp { name: d.clone() }),
            Some(_) => {}
        }
    }
    for (key, want) in &desired.sysctls {
        match observed.sysctls.get(key).cloned().flatten() {
            Some(now) if want.accepts(&now) => {}
            Some(now) => plan.ops.push(HostOp::SetSysctl {
                key: key.clone(),
                from: now,
                to: want.set.clone(),
            }),
            // A tunnel device created in this pass has no sysctls yet: the next pass sets them.
            None if sysctl_interface(key).is_some_and(|i| {
                desired.tunnels.contains(i) && !observed.links.contains_key(i)
            }) => {}
            // The interface is missing: reported once, as the interface.
            None if sysctl_interface(key).is_some_and(|i| !observed.links.contains_key(i)) => {}
            None => plan.missing.push(Missing::Sysctl(key.clone())),
        }
    }
    // VIPs whose device is created in this pass: added by the next round, once it exists;
    // until then they stay where they are (a move never leaves a gap).
    let mut waiting: BTreeSet<IpAddr> = BTreeSet::new();
    for a in &desired.addresses {
        let device_yet =
            !desired.dummies.contains(&a.interface) || observed.links.contains_key(&a.interface);
        if !device_yet {
            waiting.insert(a.addr);
        } else if !observed.addresses.contains_key(a) {
            plan.ops.push(HostOp::AddAddress(a.clone()));
        }
    }
    for a in &owned.addresses {
        if desired.addresses.contains(a) || waiting.contains(&a.addr) {
            continue;
        }
        if desired.leave_alone.contains(&a.addr) {
            // Another engine moves this VIP now: lvsd forgets it ever added it, and never
            // takes it away from under that engine.
            plan.kept.addresses.remove(a);
            continue;
        }
        if observed.addresses.get(a) == Some(&a.prefix_len()) {
            plan.ops.push(HostOp::DelAddress(a.clone()));
        } else {
            plan.kept.addresses.remove(a);
        }
    }
    for (key, o) in &owned.sysctls {
        if desired.sysctls.contains_key(key) {
            continue;
        }
        match observed.sysctls.get(key).cloned().flatten() {
            Some(now) if now == o.set && now != o.original => {
                plan.ops.push(HostOp::RestoreSysctl {
                    key: key.clone(),
                    from: now,
                    to: o.original.clone(),
                });
            }
            // Someone changed it since (or it is gone with its interface): theirs now.
            _ => {
                plan.kept.sysctls.remove(key);
            }
        }
    }
    for name in &owned.links_up {
        if desired.tunnels.contains(name) || desired.dummies.contains(name) {
            continue;
        }
        match observed.links.get(name) {
            Some(l) if l.up => plan.ops.push(HostOp::LinkDown { name: name.clone() }),
            _ => {
                plan.kept.links_up.remove(name);
            }
        }
    }
    plan.ops.sort();
    plan
}

/// The sysctls a pass must read: the desired ones and the recorded ones.
pub fn sysctls_of_interest(desired: &HostDesired, owned: &HostOwned) -> BTreeSet<Sysctl> {
    desired
        .sysctls
        .keys()
        .chain(owned.sysctls.keys())
        .cloned()
        .collect()
}
