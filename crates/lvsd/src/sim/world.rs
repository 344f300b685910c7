//! A simulated kernel, host and disk behind the engine's traits ([`crate::io`]), with the real
//! kernel's answers: EEXIST for what exists, ESRCH for a missing service and ENOENT for a
//! missing real, a batch that goes on past a failed request, a mixed-family real refused unless
//! tunnelled, destinations in insertion order, one master and one backup sync daemon, the
//! module unloaded (the table gone, connections opened before stale), connections that keep a
//! drained real busy. It also watches every write for what lvsd must never do: touch a foreign
//! service, or delete a real that carries connections before its drain deadline. The host is
//! simulated too: interfaces, addresses with their prefix, sysctls (read back with whitespace
//! folded, as `/proc/sys` gives `3\t50`), an existing address added again or a missing one
//! removed taken as done (as the rtnetlink host does), an operation refused on demand, and the
//! addresses someone else put there, which lvsd must never remove. A kill stops every write,
//! host operation and record save from its instant on, as SIGKILL would.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use ipvs::{
    BatchResult, Dest, DestKey, DestSpec, Family, ForwardMethod, Request, Service, ServiceKey,
    ServiceSpec, SyncDaemon, Timeouts,
};
use nix::errno::Errno;
use plan::Owned;
use plan::host::{HostAddr, HostObserved, HostOp, HostOwned, Link, Sysctl};

use crate::io::{HostIo, Io, Table};
use crate::state_file::Unreadable;

/// A real server in the simulated table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDest {
    pub key: DestKey,
    pub spec: DestSpec,
    /// Established connections (clients keep them whatever the weight).
    pub active: u32,
}

/// A service in the simulated table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimService {
    pub key: ServiceKey,
    pub spec: ServiceSpec,
    /// Newest first, as the kernel keeps them.
    pub dests: Vec<SimDest>,
}

/// Everything outside the engine.
#[derive(Debug)]
pub struct World {
    pub services: Vec<SimService>,
    pub timeouts: Timeouts,
    pub daemons: Vec<SyncDaemon>,
    /// Seconds since the epoch.
    pub now: u64,
    /// `ip_vs` unloaded: the table is gone and every request fails.
    pub down: bool,
    /// Moves on at every unload: a connection opened before it is stale.
    pub generation: u64,
    /// Writes and saves left before the kill.
    pub kill_in: Option<u32>,
    /// Killed: nothing more is written or saved until the engine is started again.
    pub killed: bool,
    /// The request of the next batch (by index) that the kernel refuses with EIO.
    pub fail_at: Option<usize>,
    /// The disk refuses every save of a record (full, read-only, failing).
    pub save_fails: bool,
    /// The records on disk (`None`: no file).
    pub owned: Option<Owned>,
    pub host: Option<HostOwned>,
    /// The writes the kernel took since the driver last looked.
    pub writes: Vec<Request>,
    /// When lvsd set each real's weight to 0.
    pub drained_at: BTreeMap<(ServiceKey, DestKey), u64>,
    /// Services lvsd must never touch.
    pub foreign: BTreeSet<ServiceKey>,
    /// The drain timeout every simulated service has.
    pub drain_timeout: u64,
    /// What lvsd did that it must never do.
    pub violations: Vec<String>,
    /// Raised at every read of real servers: a config change that arrives while the table is
    /// read (what the daemon's file watch raises, [`crate::engine::Engine::yield_to`]).
    pub raise_on_read: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// How long a listing of the services takes (on tokio's clock), `raise_on_read` raised
    /// as it starts: a change arriving while the kernel answers the listing of a large table.
    pub listing_takes: Option<std::time::Duration>,
    /// A listing of the services arrives in this many parts, each ready at once and taking a
    /// unit of tokio's budget (which then runs out at every poll), `raise_on_read` raised as it
    /// starts.
    pub listing_parts: Option<usize>,
    /// Listings of the services answered whole.
    pub listings: usize,
    /// The host's interfaces.
    pub links: BTreeMap<String, Link>,
    /// The host's addresses, with their prefix length.
    pub addresses: BTreeMap<HostAddr, u8>,
    /// The host's sysctls, as `/proc/sys` reads them back.
    pub sysctls: BTreeMap<Sysctl, String>,
    /// Addresses someone else put on the host: never lvsd's to remove.
    pub foreign_addresses: BTreeSet<HostAddr>,
    /// The sysctls as they would be without lvsd: the host's values before it ran, and what
    /// someone else wrote since to one lvsd does not hold (what giving a role up leaves).
    pub initial_sysctls: BTreeMap<Sysctl, String>,
    /// The next host operation is refused.
    pub host_fail_next: bool,
    /// Saves of the host record since the driver last looked.
    pub host_saves: usize,
    /// The config in force holds the director role: a VIP must stay while a service of
    /// lvsd's on it is in the table (draining, or kept by the removal guard).
    pub director: bool,
    /// ... as an active-active one: a VIP whose service takes no new connection here
    /// (draining, or every real at weight 0) is withdrawn, announced nowhere.
    pub anycast: bool,
}

/// The interface the simulated director holds its VIPs on.
pub const LAN: &str = "eth0";
/// An active-active director's announce device.
pub const ANNOUNCE: &str = "lvsd0";

impl World {
    /// An empty table at time `now`.
    pub fn new(now: u64, drain_timeout: u64) -> Self {
        World {
            services: vec![],
            timeouts: Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            },
            daemons: vec![],
            now,
            down: false,
            generation: 0,
            kill_in: None,
            killed: false,
            fail_at: None,
            save_fails: false,
            owned: None,
            host: None,
            writes: vec![],
            drained_at: BTreeMap::new(),
            foreign: BTreeSet::new(),
            drain_timeout,
            violations: vec![],
            raise_on_read: None,
            listing_takes: None,
            listing_parts: None,
            listings: 0,
            links: [("lo", 1), (LAN, 2)]
                .into_iter()
                .map(|(name, index)| (name.to_owned(), Link { index, up: true }))
                .collect(),
            addresses: BTreeMap::new(),
            sysctls: BTreeMap::new(),
            foreign_addresses: BTreeSet::new(),
            initial_sysctls: BTreeMap::new(),
            host_fail_next: false,
            host_saves: 0,
            director: false,
            anycast: false,
        }
    }

    /// An address someone else put on the host.
    pub fn foreign_address(&mut self, addr: HostAddr, prefix: u8) {
        self.addresses.insert(addr.clone(), prefix);
        self.foreign_addresses.insert(addr);
    }

    /// A sysctl as the host has it before lvsd runs.
    pub fn sysctl(&mut self, key: &str, value: &str) {
        let key = Sysctl(key.to_owned());
        self.sysctls.insert(key.clone(), value.to_owned());
        self.initial_sysctls.insert(key, value.to_owned());
    }

    /// Carries out one host operation as the rtnetlink host and `/proc/sys` would.
    fn apply_host(&mut self, op: &HostOp) -> Result<(), host::Error> {
        let no_interface = |interface: &str| host::Error::NoInterface {
            op: op.to_string(),
            interface: interface.to_owned(),
        };
        match op {
            HostOp::CreateTunnel { name } | HostOp::CreateDummy { name } => {
                let index = 1 + self.links.values().map(|l| l.index).max().unwrap_or(0);
                self.links
                    .entry(name.clone())
                    .or_insert(Link { index, up: false });
            }
            HostOp::LinkUp { name } | HostOp::LinkDown { name } => {
                let up = matches!(op, HostOp::LinkUp { .. });
                self.links
                    .get_mut(name)
                    .ok_or_else(|| no_interface(name))?
                    .up = up;
            }
            HostOp::SetSysctl { key, to, .. } | HostOp::RestoreSysctl { key, to, .. } => {
                let Some(v) = self.sysctls.get_mut(key) else {
                    return Err(host::Error::Sysctl {
                        op: format!("write {key}"),
                        source: std::io::Error::from_raw_os_error(nix::libc::ENOENT),
                    });
                };
                *v = to.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            HostOp::AddAddress(a) => {
                if !self.links.contains_key(&a.interface) {
                    return Err(no_interface(&a.interface));
                }
                self.addresses
                    .entry(a.clone())
                    .or_insert_with(|| a.prefix_len());
            }
            HostOp::DelAddress(a) => {
                if self.foreign_addresses.contains(a) {
                    self.violations.push(format!(
                        "t={}: removed {} from {}, an address someone else put there",
                        self.now, a.addr, a.interface
                    ));
                }
                let serving = self.services.iter().find(|s| {
                    !self.foreign.contains(&s.key)
                        && matches!(s.key, ServiceKey::Addr { addr, .. } if addr == a.addr)
                });
                // Moved (held on another device: an active-active director leaving rotation or
                // giving active-active up) is not taken away; nor is the VIP an active-active
                // director withdraws while its service takes no new connection here.
                let still_local = self.addresses.keys().any(|b| b.addr == a.addr && b != a);
                let withdrawn = self.anycast
                    && serving.is_some_and(|s| s.dests.iter().all(|d| d.spec.weight == 0));
                if let Some(s) = serving.filter(|_| self.director && !still_local && !withdrawn) {
                    self.violations.push(format!(
                        "t={}: the director took VIP {} away while its service {} is in the table",
                        self.now, a.addr, s.key
                    ));
                }
                self.addresses.remove(a);
            }
        }
        Ok(())
    }

    /// One write or save: false when the process is (now) killed.
    fn tick(&mut self) -> bool {
        if self.killed {
            return false;
        }
        if let Some(n) = self.kill_in {
            if n == 0 {
                self.killed = true;
                self.kill_in = None;
                return false;
            }
            self.kill_in = Some(n - 1);
        }
        true
    }

    /// A record save: an error once the process is killed.
    fn save(&mut self) -> anyhow::Result<()> {
        if !self.tick() {
            anyhow::bail!("the process was killed");
        }
        if self.save_fails {
            anyhow::bail!("the disk refused the save");
        }
        Ok(())
    }

    fn find(&self, key: &ServiceKey) -> Option<usize> {
        self.services.iter().position(|s| s.key == *key)
    }

    /// Service `k` and its real `d`, by position, or the kernel's answer to `op` when either
    /// is missing (ESRCH for the service, ENOENT for the real).
    fn locate(&self, op: &str, k: &ServiceKey, d: &DestKey) -> Result<(usize, usize), ipvs::Error> {
        let missing = |object: String, errno| ipvs::Error::NotFound {
            op: op.to_owned(),
            object,
            errno,
        };
        let i = self
            .find(k)
            .ok_or_else(|| missing(k.to_string(), Errno::ESRCH))?;
        let j = self
            .dest_index(i, d)
            .ok_or_else(|| missing(d.addr.to_string(), Errno::ENOENT))?;
        Ok((i, j))
    }

    /// Where real `d` stands in service `i`.
    fn dest_index(&self, i: usize, d: &DestKey) -> Option<usize> {
        self.services[i].dests.iter().position(|x| x.key == *d)
    }

    /// A real with connections deleted before its drain deadline cuts them.
    fn check_delete(&mut self, service: &ServiceKey, d: &SimDest) {
        if d.active == 0 {
            return;
        }
        let since = self.drained_at.get(&(*service, d.key)).copied();
        match since {
            Some(t) if self.now >= t + self.drain_timeout => {}
            _ => self.violations.push(format!(
                "t={}: real {} of {service} deleted with {} connections, drained at {since:?} (drain_timeout {} s)",
                self.now, d.key.addr, d.active, self.drain_timeout
            )),
        }
    }

    /// The kernel's answer to one request.
    pub fn apply(&mut self, r: &Request) -> Result<(), ipvs::Error> {
        let op = format!("{r:?}");
        let missing = |object: String, errno| ipvs::Error::NotFound {
            op: op.clone(),
            object,
            errno,
        };
        let exists = |object: String| ipvs::Error::Exists {
            op: op.clone(),
            object,
        };
        let key = match r {
            Request::NewService(k, _)
            | Request::SetService(k, _)
            | Request::DelService(k)
            | Request::NewDest(k, ..)
            | Request::SetDest(k, ..)
            | Request::DelDest(k, _) => Some(*k),
            _ => None,
        };
        if let Some(k) = key.filter(|k| self.foreign.contains(k)) {
            self.violations.push(format!(
                "t={}: wrote to foreign service {k}: {r:?}",
                self.now
            ));
        }
        match r {
            Request::NewService(k, spec) => {
                if self.find(k).is_some() {
                    return Err(exists(k.to_string()));
                }
                self.services.push(SimService {
                    key: *k,
                    spec: spec.clone(),
                    dests: vec![],
                });
            }
            Request::SetService(k, spec) => {
                let i = self
                    .find(k)
                    .ok_or_else(|| missing(k.to_string(), Errno::ESRCH))?;
                self.services[i].spec = spec.clone();
            }
            Request::DelService(k) => {
                let i = self
                    .find(k)
                    .ok_or_else(|| missing(k.to_string(), Errno::ESRCH))?;
                let s = self.services.remove(i);
                for d in &s.dests {
                    self.check_delete(k, d);
                    self.drained_at.remove(&(*k, d.key));
                }
            }
            Request::NewDest(k, d, spec) => {
                let i = self
                    .find(k)
                    .ok_or_else(|| missing(k.to_string(), Errno::ESRCH))?;
                if self.services[i].dests.iter().any(|x| x.key == *d) {
                    return Err(exists(d.addr.to_string()));
                }
                if d.family() != k.family() && spec.forward != ForwardMethod::Tunnel {
                    return Err(ipvs::Error::Kernel {
                        op,
                        errno: Errno::EINVAL,
                    });
                }
                // At the head, as the kernel adds a destination (`list_add`): its dumps list
                // the newest first, and `mh`/`sh` map flows by that order.
                self.services[i].dests.insert(
                    0,
                    SimDest {
                        key: *d,
                        spec: *spec,
                        active: 0,
                    },
                );
                self.note_weight(k, d, spec.weight);
            }
            Request::SetDest(k, d, spec) => {
                let (i, j) = self.locate(&op, k, d)?;
                self.services[i].dests[j].spec = *spec;
                self.note_weight(k, d, spec.weight);
            }
            Request::DelDest(k, d) => {
                let (i, j) = self.locate(&op, k, d)?;
                let gone = self.services[i].dests.remove(j);
                self.check_delete(k, &gone);
                self.drained_at.remove(&(*k, *d));
            }
            Request::Flush => self.services.clear(),
            Request::Zero(_) => {}
            Request::SetTimeouts(t) => {
                let keep = |new: u32, old: u32| if new == 0 { old } else { new };
                self.timeouts = Timeouts {
                    tcp: keep(t.tcp, self.timeouts.tcp),
                    tcp_fin: keep(t.tcp_fin, self.timeouts.tcp_fin),
                    udp: keep(t.udp, self.timeouts.udp),
                };
            }
            Request::NewDaemon(d) => {
                if self.daemons.iter().any(|x| x.state == d.state) {
                    return Err(exists(format!("{:?} sync daemon", d.state)));
                }
                self.daemons.push(d.clone());
            }
            Request::DelDaemon(state) => {
                let i = self
                    .daemons
                    .iter()
                    .position(|x| x.state == *state)
                    .ok_or_else(|| missing(format!("{state:?} sync daemon"), Errno::ESRCH))?;
                self.daemons.remove(i);
            }
        }
        self.writes.push(r.clone());
        Ok(())
    }

    /// Remembers when lvsd drained a real (weight 0), and forgets it when it weighs again.
    fn note_weight(&mut self, k: &ServiceKey, d: &DestKey, weight: u32) {
        if weight == 0 {
            self.drained_at.entry((*k, *d)).or_insert(self.now);
        } else {
            self.drained_at.remove(&(*k, *d));
        }
    }

    /// `ip_vs` unloaded: the table, its daemons and settings are gone.
    pub fn unload(&mut self) {
        self.down = true;
        self.generation += 1;
        self.services.clear();
        self.daemons.clear();
        self.drained_at.clear();
    }
}

/// The world as the engine reaches it.
#[derive(Clone)]
pub struct SimIo(pub Rc<RefCell<World>>);

/// A connection to the simulated table.
pub struct SimTable {
    world: Rc<RefCell<World>>,
    generation: u64,
    /// A listing was stopped before its answer was in: as on a real socket, the rest of that
    /// dump would come before any later answer, so this connection answers nothing more.
    stale: bool,
}

/// A connection to the simulated host.
pub struct SimHost(Rc<RefCell<World>>);

fn killed(op: &str) -> ipvs::Error {
    ipvs::Error::Io {
        op: op.to_owned(),
        source: std::io::Error::other("the process was killed"),
    }
}

impl SimTable {
    /// The world, if this connection still reaches it.
    fn world(&self, op: &str) -> Result<std::cell::RefMut<'_, World>, ipvs::Error> {
        let w = self.world.borrow_mut();
        if w.killed {
            return Err(killed(op));
        }
        if w.down {
            return Err(ipvs::Error::ModuleNotLoaded);
        }
        if self.stale {
            return Err(ipvs::Error::Io {
                op: op.to_owned(),
                source: std::io::Error::other("the rest of a stopped dump is still on the socket"),
            });
        }
        if w.generation != self.generation {
            // A family id resolved before the module was loaded again answers nothing.
            return Err(ipvs::Error::Io {
                op: op.to_owned(),
                source: std::io::Error::from_raw_os_error(nix::libc::ENOENT),
            });
        }
        Ok(w)
    }
}

fn dest_of(d: &SimDest) -> Dest {
    let mut out = Dest::new(d.key, d.spec);
    out.conns.active = d.active;
    out
}

fn digest(dests: &[Dest]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::hash::DefaultHasher::new();
    format!("{dests:?}").hash(&mut h);
    h.finish()
}

impl Table for SimTable {
    async fn services(&mut self) -> Result<Vec<Service>, ipvs::Error> {
        let (takes, parts) = {
            let w = self.world.borrow();
            (w.listing_takes, w.listing_parts)
        };
        if takes.is_some() || parts.is_some() {
            if let Some(flag) = &self.world.borrow().raise_on_read {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            self.stale = true;
            if let Some(takes) = takes {
                tokio::time::sleep(takes).await;
            }
            for _ in 0..parts.unwrap_or(0) {
                tokio::task::coop::consume_budget().await;
            }
            self.stale = false;
        }
        let mut w = self.world("list services")?;
        w.listings += 1;
        Ok(w.services
            .iter()
            .map(|s| Service::new(s.key, s.spec.clone()))
            .collect())
    }

    async fn dests_if_changed<T: Send + 'static>(
        &mut self,
        keys: &[(ServiceKey, Option<u64>)],
        f: fn(Vec<Dest>) -> T,
    ) -> Result<Vec<(u64, Option<T>)>, ipvs::Error> {
        if let Some(flag) = &self.world.borrow().raise_on_read {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let mut out = vec![];
        for (k, prev) in keys {
            let dests = self.dests(k).await?;
            let d = digest(&dests);
            out.push((d, (*prev != Some(d)).then(|| f(dests))));
        }
        Ok(out)
    }

    async fn service(&mut self, key: &ServiceKey) -> Result<Option<Service>, ipvs::Error> {
        let w = self.world("get service")?;
        Ok(w.find(key)
            .map(|i| Service::new(w.services[i].key, w.services[i].spec.clone())))
    }

    async fn dests(&mut self, key: &ServiceKey) -> Result<Vec<Dest>, ipvs::Error> {
        let w = self.world("list real servers")?;
        let i = w.find(key).ok_or_else(|| ipvs::Error::NotFound {
            op: "list real servers".into(),
            object: key.to_string(),
            errno: Errno::ESRCH,
        })?;
        Ok(w.services[i].dests.iter().map(dest_of).collect())
    }

    async fn timeouts(&mut self) -> Result<Timeouts, ipvs::Error> {
        Ok(self.world("get timeouts")?.timeouts)
    }

    async fn daemons(&mut self) -> Result<Vec<SyncDaemon>, ipvs::Error> {
        Ok(self.world("list daemons")?.daemons.clone())
    }

    async fn apply(&mut self, request: Request) -> Result<(), ipvs::Error> {
        self.execute(&[request])
            .await
            .pop()
            .unwrap_or(Err(killed("apply")))
    }

    async fn execute(&mut self, requests: &[Request]) -> BatchResult {
        let mut out = vec![];
        let fail_at = self.world.borrow_mut().fail_at.take();
        for (i, r) in requests.iter().enumerate() {
            let res = match self.world("write") {
                Err(e) => Err(e),
                Ok(mut w) => {
                    if !w.tick() {
                        Err(killed("write"))
                    } else if fail_at == Some(i) {
                        Err(ipvs::Error::Kernel {
                            op: format!("{r:?}"),
                            errno: Errno::EIO,
                        })
                    } else {
                        w.apply(r)
                    }
                }
            };
            out.push(res);
        }
        out
    }
}

fn host_killed() -> host::Error {
    host::Error::Connect(std::io::Error::other("the process was killed"))
}

impl HostIo for SimHost {
    async fn observe(&self, keys: &BTreeSet<Sysctl>) -> Result<HostObserved, host::Error> {
        let w = self.0.borrow();
        if w.killed {
            return Err(host_killed());
        }
        Ok(HostObserved {
            links: w.links.clone(),
            addresses: w.addresses.clone(),
            sysctls: keys
                .iter()
                .map(|k| (k.clone(), w.sysctls.get(k).cloned()))
                .collect(),
        })
    }

    async fn execute(&self, op: &HostOp) -> Result<(), host::Error> {
        let mut w = self.0.borrow_mut();
        if !w.tick() {
            return Err(host_killed());
        }
        if std::mem::take(&mut w.host_fail_next) {
            return Err(host::Error::Netlink {
                op: op.to_string(),
                source: std::io::Error::from_raw_os_error(nix::libc::EPERM),
            });
        }
        w.apply_host(op)
    }
}

impl Io for SimIo {
    type Table = SimTable;
    type Host = SimHost;

    async fn connect_table(&mut self) -> Result<SimTable, ipvs::Error> {
        let w = self.0.borrow();
        if w.killed {
            return Err(killed("connect"));
        }
        if w.down {
            return Err(ipvs::Error::ModuleNotLoaded);
        }
        Ok(SimTable {
            world: self.0.clone(),
            generation: w.generation,
            stale: false,
        })
    }

    fn connect_host(&mut self) -> Result<SimHost, host::Error> {
        if self.0.borrow().killed {
            return Err(host_killed());
        }
        Ok(SimHost(self.0.clone()))
    }

    fn load_owned(&mut self) -> Result<Owned, Unreadable> {
        Ok(self.0.borrow().owned.clone().unwrap_or_default())
    }

    fn load_host(&mut self) -> Result<HostOwned, Unreadable> {
        Ok(self.0.borrow().host.clone().unwrap_or_default())
    }

    fn save_owned(&mut self, owned: &Owned) -> anyhow::Result<()> {
        let mut w = self.0.borrow_mut();
        w.save()?;
        w.owned = Some(owned.clone());
        Ok(())
    }

    fn save_host(&mut self, owned: &HostOwned) -> anyhow::Result<()> {
        let mut w = self.0.borrow_mut();
        w.save()?;
        w.host_saves += 1;
        w.host = Some(owned.clone());
        Ok(())
    }

    fn now(&self) -> u64 {
        self.0.borrow().now
    }
}

/// A service key and family the schedules use.
pub fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: ipvs::Protocol::Tcp,
        addr: addr.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        port,
    }
}

/// A foreign service as someone else set it up.
pub fn foreign_service(key: ServiceKey, real: &str) -> SimService {
    SimService {
        key,
        spec: ServiceSpec::new("rr", Family::Inet),
        dests: vec![SimDest {
            key: DestKey {
                addr: real.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
                port: 80,
            },
            spec: DestSpec::new(ForwardMethod::DirectRoute, 1),
            active: 0,
        }],
    }
}
