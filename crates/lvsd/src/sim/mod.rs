//! Deterministic simulation of the engine, as FoundationDB and TigerBeetle test theirs: the real
//! engine ([`Engine`]) against a simulated kernel and disk ([`world`]), driven through a
//! schedule drawn from one seed: config edits (some the removal guard must refuse), changes
//! made behind lvsd's back, clients holding connections, the clock moving on, the kernel
//! refusing a request, `ip_vs` unloaded and loaded again, and kills at any write or record
//! save, after which a new engine starts from the records on disk. After every step and after a
//! quiet period at the end it checks what must always hold:
//! - no write to a foreign service, ever;
//! - no real with connections deleted before its drain deadline;
//! - after a kill, every service lvsd made is in its record (else the next lvsd would call it
//!   foreign and leave it forever);
//! - no address someone else put on the host removed, ever;
//! - after a kill, every address lvsd put on the host and every sysctl it changed is in the
//!   host's record, with the sysctl's value from before lvsd (else giving the role up later
//!   leaves them behind);
//! - an emptied config is refused by the guard and deletes nothing;
//! - once quiet, the table is the config in force plus the foreign services, the host has the
//!   role's VIPs and sysctls (and nothing else of lvsd's), and a pass over a converged table
//!   writes nothing (no write loop).
//!
//! The same seed gives the same schedule and the same outcome: a failure prints its seed, and
//! `LVSD_SIM_SEED=<seed> cargo test -p lvsd sim:: -- --nocapture` replays it with its trace.

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod bench;
mod daemon;
pub(crate) mod world;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;

use ipvs::{Request, ServiceKey};

use plan::host::{HostAddr, Sysctl};

use self::world::{ANNOUNCE, LAN, SimIo, World, foreign_service, tcp};
use crate::engine::{Engine, Mutation, Outcome, Pass, PassSpec};

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.below(items.len() as u64) as usize).copied()
    }
}

/// The config as the generator keeps it: service n is 10.1.0.n:80, real r is 10.0.0.r; a
/// director holds the VIPs on [`LAN`], or as an active-active one (`anycast`) on [`ANNOUNCE`]
/// while in rotation and on `lo` while out of it (`out`: `lvsd drain --director`, which the
/// daemon keeps beside the file); IPVS sysctls by name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    services: BTreeMap<u8, (&'static str, BTreeMap<u8, u32>)>,
    director: bool,
    anycast: bool,
    out: bool,
    sysctls: BTreeMap<&'static str, &'static str>,
}

/// IPVS sysctls the generator sets, with the values it picks from (`sync_threshold` is the
/// two-number value of the shipped pair config).
const SYSCTLS: [(&str, [&str; 2]); 2] = [
    ("expire_nodest_conn", ["1", "0"]),
    ("sync_threshold", ["3 50", "4 60"]),
];

/// The sysctls on the simulated host before lvsd runs.
const HOST_SYSCTLS: [(&str, &str); 5] = [
    ("net/ipv4/ip_forward", "0"),
    ("net/ipv4/vs/expire_nodest_conn", "0"),
    ("net/ipv4/vs/sync_threshold", "3 50"),
    ("net/ipv4/vs/sloppy_tcp", "0"),
    ("net/ipv4/vs/sloppy_sctp", "0"),
];

fn vip(n: u8) -> HostAddr {
    HostAddr {
        interface: LAN.to_owned(),
        addr: std::net::IpAddr::from([10, 1, 0, n]),
    }
}

const SCHEDULERS: [&str; 3] = ["wlc", "rr", "sh"];
/// The drain timeout of every service.
const DRAIN: u64 = 10;

impl Model {
    fn initial(rng: &mut Rng) -> Model {
        let mut m = Model {
            services: BTreeMap::new(),
            director: rng.below(2) == 0,
            anycast: rng.below(3) == 0,
            out: false,
            sysctls: BTreeMap::new(),
        };
        for n in 1..=(2 + rng.below(2) as u8) {
            m.add_service(n, rng);
        }
        m
    }

    fn add_service(&mut self, n: u8, rng: &mut Rng) {
        let mut reals = BTreeMap::new();
        for _ in 0..(1 + rng.below(3)) {
            reals.insert(1 + rng.below(6) as u8, 1 + rng.below(5) as u32);
        }
        let sched = rng.pick(&SCHEDULERS).unwrap_or("wlc");
        self.services.insert(n, (sched, reals));
    }

    /// One change, as an operator makes them: a service or a real added or removed, a weight
    /// or a scheduler changed, the director role taken or given up, active-active taken or
    /// given up, the director out of rotation or back, an IPVS sysctl set, changed or dropped.
    fn edit(&self, rng: &mut Rng) -> Model {
        let mut m = self.clone();
        let present: Vec<u8> = m.services.keys().copied().collect();
        let Some(n) = rng.pick(&present) else {
            m.add_service(1, rng);
            return m;
        };
        match rng.below(10) {
            6 => m.director = !m.director,
            8 => m.anycast = !m.anycast,
            9 => m.out = !m.out,
            7 => {
                let (name, values) = SYSCTLS[rng.below(SYSCTLS.len() as u64) as usize];
                match rng.below(3) {
                    2 => {
                        m.sysctls.remove(name);
                    }
                    i => {
                        m.sysctls.insert(name, values[i as usize]);
                    }
                }
            }
            0 => {
                let free: Vec<u8> = (1..=6).filter(|k| !m.services.contains_key(k)).collect();
                if let Some(k) = rng.pick(&free) {
                    m.add_service(k, rng);
                }
            }
            1 if present.len() > 2 => {
                m.services.remove(&n);
            }
            2 => {
                let r = 1 + rng.below(6) as u8;
                let w = 1 + rng.below(5) as u32;
                if let Some((_, reals)) = m.services.get_mut(&n) {
                    reals.insert(r, w);
                }
            }
            3 => {
                if let Some((_, reals)) = m.services.get_mut(&n) {
                    let keys: Vec<u8> = reals.keys().copied().collect();
                    if keys.len() > 1 {
                        if let Some(r) = rng.pick(&keys) {
                            reals.remove(&r);
                        }
                    }
                }
            }
            4 => {
                if let Some((_, reals)) = m.services.get_mut(&n) {
                    let keys: Vec<u8> = reals.keys().copied().collect();
                    if let Some(r) = rng.pick(&keys) {
                        reals.insert(r, 1 + rng.below(5) as u32);
                    }
                }
            }
            _ => {
                let sched = rng.pick(&SCHEDULERS).unwrap_or("rr");
                if let Some((s, _)) = m.services.get_mut(&n) {
                    *s = sched;
                }
            }
        }
        m
    }

    fn yaml(&self) -> String {
        let mut out = String::new();
        if self.director {
            out += &format!("host:\n  role: director\n  interface: {LAN}\n");
            if self.anycast {
                out += &format!("ha:\n  mode: active-active\n  announce_device: {ANNOUNCE}\n");
            }
        }
        if !self.sysctls.is_empty() {
            out += "ipvs:\n  sysctl:\n";
            for (name, value) in &self.sysctls {
                if value.contains(' ') {
                    out += &format!("    {name}: \"{value}\"\n");
                } else {
                    out += &format!("    {name}: {value}\n");
                }
            }
        }
        if self.services.is_empty() {
            return out + "services: []\n";
        }
        out += "services:\n";
        for (n, (sched, reals)) in &self.services {
            out += &format!(
                "  - name: s{n}\n    address: 10.1.0.{n}:80\n    scheduler: {sched}\n    drain_timeout: {DRAIN}s\n    reals:\n"
            );
            for (r, w) in reals {
                out += &format!("      - address: 10.0.0.{r}\n        weight: {w}\n");
            }
        }
        out
    }

    fn config(&self) -> Result<config::Config, String> {
        config::parse(&self.yaml(), "sim.yaml").map_err(|e| {
            format!(
                "the generator wrote an invalid config: {e}\n{}",
                self.yaml()
            )
        })
    }

    /// The services whose entries differ between two models.
    fn touched(&self, other: &Model) -> BTreeSet<ServiceKey> {
        let keys: BTreeSet<u8> = self
            .services
            .keys()
            .chain(other.services.keys())
            .copied()
            .collect();
        keys.into_iter()
            .filter(|k| self.services.get(k) != other.services.get(k))
            .map(|k| tcp(&format!("10.1.0.{k}"), 80))
            .collect()
    }

    /// The host once this config is carried out: the role's VIPs next to everyone else's
    /// addresses, its sysctls over the host's own values.
    fn host(&self, w: &World) -> (BTreeSet<HostAddr>, BTreeMap<Sysctl, String>) {
        let mut addresses = w.foreign_addresses.clone();
        let mut sysctls = w.initial_sysctls.clone();
        if self.director {
            let on = match (self.anycast, self.out) {
                (false, _) => LAN,
                (true, false) => ANNOUNCE,
                (true, true) => plan::host::HOLD_DEVICE,
            };
            addresses.extend(self.services.keys().map(|n| HostAddr {
                interface: on.to_owned(),
                ..vip(*n)
            }));
            sysctls.insert(Sysctl("net/ipv4/ip_forward".into()), "1".into());
            if self.anycast {
                for s in ["sloppy_tcp", "sloppy_sctp"] {
                    sysctls.insert(Sysctl(format!("net/ipv4/vs/{s}")), "1".into());
                }
            }
        }
        for (name, value) in &self.sysctls {
            sysctls.insert(Sysctl(format!("net/ipv4/vs/{name}")), (*value).to_owned());
        }
        (addresses, sysctls)
    }
}

/// What a run did, for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub passes: usize,
    pub writes: usize,
    pub kills: usize,
    pub faults: usize,
    pub refused: usize,
}

/// One schedule's state.
struct Sim {
    world: Rc<RefCell<World>>,
    engine: Engine<SimIo>,
    mutation: Mutation,
    trace: Vec<String>,
    tally: Tally,
    /// The foreign services as they must stay (gone after an unload).
    foreign: Vec<world::SimService>,
    /// The last pass's writes, and how many of them removed or drained something.
    last_writes: usize,
    last_destructive: usize,
    /// Configs parsed, by their text: a schedule comes back to the same config often, and
    /// parsing is most of a step's cost in a debug build.
    parsed: BTreeMap<String, Rc<config::Config>>,
}

/// A pass as the daemon asks for it: `scope` (`None`: the whole table), table and host, parts
/// independent, everything allowed; `may_yield` as the daemon's resync sets it.
fn daemon_spec(scope: Option<&BTreeSet<ServiceKey>>, may_yield: bool) -> PassSpec<'_> {
    static NO_SERVICES: BTreeSet<ServiceKey> = BTreeSet::new();
    PassSpec {
        table: Some(scope),
        host: true,
        force: false,
        strict: false,
        allow: &|_| true,
        allow_host: true,
        unable: &NO_SERVICES,
        may_yield,
    }
}

fn engine(world: &Rc<RefCell<World>>, mutation: Mutation) -> Engine<SimIo> {
    let mut e = Engine::with_io(SimIo(world.clone()), PathBuf::from("/sim"), false);
    e.mutation = mutation;
    e
}

/// What a killed lvsd must have left on disk: every service it made in the table's record, and
/// every address it put on the host and every sysctl it changed (with the value from before it)
/// in the host's record; else the next lvsd takes them for someone else's and never undoes them.
fn records_cover(w: &World) -> Result<(), String> {
    let owned = w.owned.clone().unwrap_or_default();
    for s in &w.services {
        if !w.foreign.contains(&s.key) && !owned.services.contains_key(&s.key) {
            return Err(format!(
                "t={}: killed with service {} in the table but not in lvsd's record: the next lvsd takes it for foreign and never removes it",
                w.now, s.key
            ));
        }
    }
    let host = w.host.clone().unwrap_or_default();
    for a in w.addresses.keys() {
        if !w.foreign_addresses.contains(a) && !host.addresses.contains(a) {
            return Err(format!(
                "t={}: killed with {} on {}, put there by lvsd but not in its host record: giving the role up leaves it behind",
                w.now, a.addr, a.interface
            ));
        }
    }
    for (key, initial) in &w.initial_sysctls {
        let now = w.sysctls.get(key).unwrap_or(initial);
        if now != initial && host.sysctls.get(key).map(|s| &s.original) != Some(initial) {
            return Err(format!(
                "t={}: killed with {key} changed by lvsd ({initial} -> {now}) but its original value not in the host record",
                w.now
            ));
        }
    }
    Ok(())
}

impl Sim {
    fn new(world: Rc<RefCell<World>>, mutation: Mutation, foreign: Vec<world::SimService>) -> Sim {
        Sim {
            engine: engine(&world, mutation),
            world,
            mutation,
            trace: vec![],
            tally: Tally::default(),
            foreign,
            last_writes: 0,
            last_destructive: 0,
            parsed: BTreeMap::new(),
        }
    }

    /// A full pass over `m`.
    async fn pass_model(&mut self, m: &Model) -> Result<Pass, String> {
        let cfg = self.config(m)?;
        Ok(self.pass(&cfg, None).await)
    }

    /// `m` parsed (once per schedule), and the director's rotation set as `m` has it (the
    /// daemon keeps it beside the file, and sets it before each pass).
    fn config(&mut self, m: &Model) -> Result<Rc<config::Config>, String> {
        self.engine.rotation = if m.out {
            plan::host::Rotation::Out
        } else {
            plan::host::Rotation::In
        };
        let yaml = m.yaml();
        if let Some(c) = self.parsed.get(&yaml) {
            return Ok(c.clone());
        }
        let c = Rc::new(m.config()?);
        self.parsed.insert(yaml, c.clone());
        Ok(c)
    }

    fn note(&mut self, what: String) {
        let now = self.world.borrow().now;
        self.trace.push(format!("t={now} {what}"));
    }

    /// One pass of the engine as the daemon runs it (table and host, parts independent).
    async fn pass(&mut self, cfg: &config::Config, scope: Option<&BTreeSet<ServiceKey>>) -> Pass {
        let spec = daemon_spec(scope, false);
        {
            let mut w = self.world.borrow_mut();
            w.writes.clear();
            w.director = cfg.host.role == plan::host::Role::Director;
            w.anycast = matches!(cfg.host.ha, plan::host::HaMode::ActiveActive { .. });
        }
        let pass = self.engine.converge(cfg, &cfg.desired, &spec).await;
        self.tally.passes += 1;
        let writes = std::mem::take(&mut self.world.borrow_mut().writes);
        self.tally.writes += writes.len();
        self.last_writes = writes.len();
        self.last_destructive = writes
            .iter()
            .filter(|r| match r {
                Request::DelService(_) | Request::DelDest(..) => true,
                Request::SetDest(_, _, spec) => spec.weight == 0,
                _ => false,
            })
            .count();
        let outcome = match &pass.table {
            Outcome::NotRun => "not run".to_owned(),
            Outcome::Done(t) => format!(
                "done: {} applied, {} failed, {} writes",
                t.applied.len(),
                t.failed.len(),
                writes.len()
            ),
            Outcome::Refused(_) => "refused".to_owned(),
            Outcome::Failed(e) => format!("failed: {e:#}"),
            Outcome::Yielded => "gave way".to_owned(),
        };
        let host = match &pass.host {
            Outcome::NotRun => "not run".to_owned(),
            Outcome::Done(h) => format!(
                "{:?}{}{}",
                h.applied
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                match &h.failed {
                    Some((op, e)) => format!(", {op} failed: {e}"),
                    None => String::new(),
                },
                if h.after.is_empty() {
                    String::new()
                } else {
                    format!(", pending {:?} {:?}", h.after.ops, h.after.missing)
                }
            ),
            Outcome::Refused(e) => format!("refused: {e}"),
            Outcome::Failed(e) => format!("failed: {e:#}"),
            Outcome::Yielded => "gave way".to_owned(),
        };
        self.note(format!("  pass: {outcome}; host: {host}"));
        pass
    }

    /// After a kill: what lvsd made must be in its record; then a new engine from the records.
    fn restart(&mut self) -> Result<(), String> {
        let mut w = self.world.borrow_mut();
        if !w.killed {
            return Ok(());
        }
        records_cover(&w)?;
        w.killed = false;
        w.kill_in = None;
        drop(w);
        self.tally.kills += 1;
        self.note("  killed; a new engine starts from the records".into());
        self.engine = engine(&self.world, self.mutation);
        Ok(())
    }

    fn violations(&self) -> Result<(), String> {
        let w = self.world.borrow();
        match w.violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    /// Clients come and go: new connections on lvsd's weighted reals (the kernel sends none
    /// to weight 0), old ones closing (foreign services are not lvsd's concern).
    fn traffic(&mut self, rng: &mut Rng) {
        let mut w = self.world.borrow_mut();
        let foreign = w.foreign.clone();
        for s in w.services.iter_mut().filter(|s| !foreign.contains(&s.key)) {
            for d in &mut s.dests {
                match rng.below(4) {
                    0 if d.spec.weight > 0 => d.active += 1 + rng.below(3) as u32,
                    1 => d.active = 0,
                    _ => {}
                }
            }
        }
        drop(w);
        self.note("traffic".into());
    }

    /// A change behind lvsd's back, to one of its services: a weight, a real or the service.
    fn behind_the_back(&mut self, rng: &mut Rng) {
        let mut w = self.world.borrow_mut();
        let ours: Vec<usize> = (0..w.services.len())
            .filter(|i| !w.foreign.contains(&w.services[*i].key))
            .collect();
        let what = rng.below(5);
        if what >= 3 {
            let what = if what == 3 {
                let lvsds: Vec<HostAddr> = w
                    .addresses
                    .keys()
                    .filter(|a| !w.foreign_addresses.contains(*a))
                    .cloned()
                    .collect();
                let Some(i) = rng.pick(&(0..lvsds.len()).collect::<Vec<_>>()) else {
                    return;
                };
                w.addresses.remove(&lvsds[i]);
                format!("ip addr del {} dev {}", lvsds[i].addr, lvsds[i].interface)
            } else {
                let key = Sysctl("net/ipv4/ip_forward".into());
                let value = if w.sysctls.get(&key).map(String::as_str) == Some("1") {
                    "0"
                } else {
                    "1"
                };
                // Not lvsd's (by its record): the host's own value from now on.
                if !w
                    .host
                    .as_ref()
                    .is_some_and(|h| h.sysctls.contains_key(&key))
                {
                    w.initial_sysctls.insert(key.clone(), value.to_owned());
                }
                w.sysctls.insert(key, value.to_owned());
                format!("sysctl net.ipv4.ip_forward={value}")
            };
            drop(w);
            self.note(format!("behind lvsd's back: {what}"));
            return;
        }
        let Some(i) = rng.pick(&ours) else { return };
        let key = w.services[i].key;
        let what = match what {
            0 if !w.services[i].dests.is_empty() => {
                let j = rng.below(w.services[i].dests.len() as u64) as usize;
                w.services[i].dests[j].spec.weight = 1 + rng.below(9) as u32;
                format!("ipvsadm -e: a weight of {key}")
            }
            1 if !w.services[i].dests.is_empty() => {
                let j = rng.below(w.services[i].dests.len() as u64) as usize;
                let d = w.services[i].dests.remove(j);
                w.drained_at.remove(&(key, d.key));
                format!("ipvsadm -d: real {} of {key}", d.key.addr)
            }
            _ => {
                let s = w.services.remove(i);
                for d in &s.dests {
                    w.drained_at.remove(&(key, d.key));
                }
                format!("ipvsadm -D: {key}")
            }
        };
        drop(w);
        self.note(format!("behind lvsd's back: {what}"));
    }

    /// Once quiet: the table is the config plus the foreign services, and a pass writes nothing.
    async fn settle(&mut self, model: &Model) -> Result<(), String> {
        {
            let mut w = self.world.borrow_mut();
            w.fail_at = None;
            w.host_fail_next = false;
            w.kill_in = None;
            w.down = false;
            for s in &mut w.services {
                for d in &mut s.dests {
                    d.active = 0;
                }
            }
            w.now += 3 * DRAIN;
        }
        self.note("quiet".into());
        let cfg = self.config(model)?;
        let mut converged = false;
        for _ in 0..8 {
            let pass = self.pass(&cfg, None).await;
            self.violations()?;
            if pass.converged() {
                converged = true;
                break;
            }
            self.world.borrow_mut().now += 1;
        }
        if !converged {
            return Err("the table did not converge once quiet".into());
        }
        let pass = self.pass(&cfg, None).await;
        let writes = self.last_writes;
        if !pass.converged() || writes != 0 {
            return Err(format!(
                "a pass over the converged table wrote {writes} times (a write loop)"
            ));
        }
        let w = self.world.borrow();
        let mut want: BTreeMap<ServiceKey, (String, BTreeMap<std::net::IpAddr, u32>)> = model
            .services
            .iter()
            .map(|(n, (sched, reals))| {
                let reals = reals
                    .iter()
                    .map(|(r, wt)| (std::net::IpAddr::from([10, 0, 0, *r]), *wt))
                    .collect();
                (
                    tcp(&format!("10.1.0.{n}"), 80),
                    ((*sched).to_owned(), reals),
                )
            })
            .collect();
        for f in &self.foreign {
            want.insert(
                f.key,
                (
                    f.spec.scheduler.clone(),
                    f.dests
                        .iter()
                        .map(|d| (d.key.addr, d.spec.weight))
                        .collect(),
                ),
            );
        }
        let have: BTreeMap<ServiceKey, (String, BTreeMap<std::net::IpAddr, u32>)> = w
            .services
            .iter()
            .map(|s| {
                (
                    s.key,
                    (
                        s.spec.scheduler.clone(),
                        s.dests
                            .iter()
                            .map(|d| (d.key.addr, d.spec.weight))
                            .collect(),
                    ),
                )
            })
            .collect();
        if want != have {
            return Err(format!(
                "once quiet the table is not the config plus the foreign services:\n  want {want:?}\n  have {have:?}"
            ));
        }
        let (addresses, sysctls) = model.host(&w);
        let have_addresses: BTreeSet<HostAddr> = w.addresses.keys().cloned().collect();
        if addresses != have_addresses || sysctls != w.sysctls {
            return Err(format!(
                "once quiet the host is not the role plus what others put there:\n  want {addresses:?} {sysctls:?}\n  have {have_addresses:?} {:?}",
                w.sysctls
            ));
        }
        Ok(())
    }
}

/// Runs the schedule of `seed` for `steps` steps; `Err` says what broke, with the trace.
pub(crate) fn run(seed: u64, steps: usize, mutation: Mutation) -> Result<Tally, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    let mut rng = Rng(seed);
    let world = Rc::new(RefCell::new(World::new(1_700_000_000, DRAIN)));
    let foreign = vec![foreign_service(tcp("10.9.0.1", 80), "10.9.1.1")];
    {
        let mut w = world.borrow_mut();
        for f in &foreign {
            w.foreign.insert(f.key);
            w.services.push(f.clone());
        }
        // The interface's own address, and an operator's /32 that is also service 5's VIP.
        let own = HostAddr {
            interface: LAN.to_owned(),
            addr: std::net::IpAddr::from([10, 1, 0, 200]),
        };
        w.foreign_address(own, 24);
        w.foreign_address(vip(5), 32);
        for (key, value) in HOST_SYSCTLS {
            w.sysctl(key, value);
        }
    }
    let mut sim = Sim::new(world, mutation, foreign);
    let result = rt.block_on(async {
        let mut model = Model::initial(&mut rng);
        sim.note(format!("config:\n{}", model.yaml()));
        let cfg = sim.config(&model)?;
        sim.pass(&cfg, None).await;
        for _ in 0..steps {
            let roll = rng.below(100);
            match roll {
                0..=29 => {
                    let next = model.edit(&mut rng);
                    let touched = model.touched(&next);
                    let scoped = rng.below(2) == 0;
                    sim.note(format!(
                        "edit ({}): {:?}",
                        if scoped { "scoped pass" } else { "full pass" },
                        next
                    ));
                    let cfg = sim.config(&next)?;
                    let pass = sim.pass(&cfg, scoped.then_some(&touched)).await;
                    if matches!(pass.table, Outcome::Refused(_)) {
                        sim.tally.refused += 1;
                    } else {
                        model = next;
                    }
                }
                30..=39 => {
                    sim.behind_the_back(&mut rng);
                    sim.pass_model(&model).await?;
                }
                40..=54 => sim.traffic(&mut rng),
                55..=69 => {
                    let dt = 1 + rng.below(6);
                    sim.world.borrow_mut().now += dt;
                    sim.note(format!("{dt} s later"));
                    sim.pass_model(&model).await?;
                }
                70..=76 => {
                    let at = rng.below(4) as usize;
                    let host = rng.below(2) == 0;
                    {
                        let mut w = sim.world.borrow_mut();
                        w.fail_at = Some(at);
                        w.host_fail_next = host;
                    }
                    sim.tally.faults += 1;
                    let next = model.edit(&mut rng);
                    sim.note(format!(
                        "the kernel refuses request {at} of the next batch{}; edit: {:?}",
                        if host {
                            " and the host its next change"
                        } else {
                            ""
                        },
                        next
                    ));
                    let pass = sim.pass_model(&next).await?;
                    if !matches!(pass.table, Outcome::Refused(_)) {
                        model = next;
                    }
                }
                77..=79 => {
                    sim.world.borrow_mut().unload();
                    sim.foreign.clear();
                    sim.tally.faults += 1;
                    sim.note("ip_vs unloaded".into());
                    sim.pass_model(&model).await?;
                    sim.world.borrow_mut().down = false;
                    sim.note("ip_vs loaded again".into());
                    sim.pass_model(&model).await?;
                }
                80..=91 => {
                    let at = rng.below(10) as u32;
                    sim.world.borrow_mut().kill_in = Some(at);
                    let next = model.edit(&mut rng);
                    sim.note(format!(
                        "a kill after {at} writes or saves; edit: {:?}",
                        next
                    ));
                    // Killed or not, the file was pushed: the next lvsd reads it too.
                    let pass = sim.pass_model(&next).await?;
                    if !matches!(pass.table, Outcome::Refused(_)) {
                        model = next;
                    }
                    sim.world.borrow_mut().kill_in = None;
                }
                _ => {
                    let empty = Model {
                        services: BTreeMap::new(),
                        ..model.clone()
                    };
                    sim.note("the config emptied (a truncated push)".into());
                    sim.pass_model(&empty).await?;
                    if sim.last_destructive > 0 {
                        return Err(format!(
                            "an emptied config got past the guard: {} removals or drains",
                            sim.last_destructive
                        ));
                    }
                }
            }
            sim.violations()?;
            sim.restart()?;
        }
        sim.settle(&model).await
    });
    match result {
        Ok(()) => Ok(sim.tally),
        Err(e) => {
            // A replay (`LVSD_SIM_SEED`) prints the whole schedule, a sweep its end.
            let keep = if std::env::var_os("LVSD_SIM_SEED").is_some() {
                usize::MAX
            } else {
                40
            };
            let tail: Vec<&String> = sim.trace.iter().rev().take(keep).collect();
            let trace: Vec<&str> = tail.into_iter().rev().map(String::as_str).collect();
            Err(format!(
                "{e}\n--- the schedule's last steps:\n{}",
                trace.join("\n")
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The schedules' runtime: one thread, a paused clock.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// A world with the host's sysctls and nothing else.
    fn host_only() -> Rc<RefCell<World>> {
        let world = Rc::new(RefCell::new(World::new(1_700_000_000, DRAIN)));
        for (key, value) in HOST_SYSCTLS {
            world.borrow_mut().sysctl(key, value);
        }
        world
    }

    /// Both, for a test of one schedule.
    fn host_world() -> (tokio::runtime::Runtime, Rc<RefCell<World>>) {
        (runtime(), host_only())
    }

    /// Steps in one schedule.
    const STEPS: usize = 60;

    fn env(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    /// Runs `LVSD_SIM_SCHEDULES` schedules (default 300) from seed `LVSD_SIM_BASE` (default 0),
    /// or the one `LVSD_SIM_SEED` names; prints what ran.
    #[test]
    fn random_schedules_of_edits_faults_and_kills_keep_every_invariant() {
        let (base, count) = match env("LVSD_SIM_SEED") {
            Some(seed) => (seed, 1),
            None => (
                env("LVSD_SIM_BASE").unwrap_or(0),
                env("LVSD_SIM_SCHEDULES").unwrap_or(300),
            ),
        };
        let started = std::time::Instant::now();
        let mut total = Tally::default();
        for seed in base..base + count {
            match run(seed, STEPS, Mutation::None) {
                Ok(t) => {
                    total.passes += t.passes;
                    total.writes += t.writes;
                    total.kills += t.kills;
                    total.faults += t.faults;
                    total.refused += t.refused;
                }
                Err(e) => panic!(
                    "simulation seed {seed} failed: {e}\nreplay: LVSD_SIM_SEED={seed} cargo test -p lvsd sim:: -- --nocapture"
                ),
            }
        }
        println!(
            "simulation: {count} schedules (seeds {base}..{}) of {STEPS} steps in {:.1?}: {} passes, {} writes, {} kills, {} faults, {} refused by the guard",
            base + count,
            started.elapsed(),
            total.passes,
            total.writes,
            total.kills,
            total.faults,
            total.refused
        );
    }

    /// `n` services of one real each written, and the table read whole once, by an engine
    /// whose whole reads may give way to the flag returned (the digests of every service are
    /// known from then): where the tests of giving way start.
    fn read_once_with_flag(
        n: u8,
    ) -> (
        tokio::runtime::Runtime,
        Rc<RefCell<World>>,
        config::Config,
        Engine<SimIo>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        let (rt, world) = host_world();
        let model = Model {
            services: (1..=n)
                .map(|s| (s, ("rr", BTreeMap::from([(1, 1)]))))
                .collect(),
            director: false,
            anycast: false,
            out: false,
            sysctls: BTreeMap::new(),
        };
        let cfg = model.config().unwrap();
        let mut e = engine(&world, Mutation::None);
        let waiting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        e.yield_to = Some(waiting.clone());
        for _ in 0..2 {
            assert!(
                rt.block_on(e.converge(&cfg, &cfg.desired, &daemon_spec(None, true)))
                    .converged()
            );
        }
        assert_eq!(e.take_last_read().map(|r| r.services), Some(usize::from(n)));
        (rt, world, cfg, e, waiting)
    }

    /// A whole read that may give way stops when a config change is waiting: nothing is
    /// written, and the table the last pass kept is kept, so the whole pass owed after it
    /// reuses every service instead of decoding the table again. One not allowed to give way
    /// reads on.
    #[test]
    fn a_whole_read_gives_way_to_a_waiting_change_and_keeps_the_table() {
        use std::sync::atomic::Ordering;
        // More services than one slice of the read, so that it looks at the flag in between.
        let n = 200;
        let (rt, world, cfg, mut e, waiting) = read_once_with_flag(n);
        let spec = |may_yield| daemon_spec(None, may_yield);
        world.borrow_mut().raise_on_read = Some(waiting.clone());
        world.borrow_mut().writes.clear();
        let gave_way = rt.block_on(e.converge(&cfg, &cfg.desired, &spec(true)));
        assert!(
            matches!(&gave_way.table, Outcome::Yielded),
            "{:?}",
            gave_way.table
        );
        assert!(world.borrow().writes.is_empty(), "nothing written");
        assert!(e.take_last_read().is_none(), "no whole read finished");
        // The owed pass: the flag is up again at its first slice, and it reads on.
        let owed = rt.block_on(e.converge(&cfg, &cfg.desired, &spec(false)));
        assert!(owed.converged(), "{:?}", owed.table);
        assert!(waiting.load(Ordering::SeqCst));
        let read = e.take_last_read().unwrap();
        assert_eq!((read.services, read.reused), (n as usize, n as usize));
        assert!(world.borrow().writes.is_empty(), "nothing written");

        // An engine with no table kept (a fresh start, or after a failed read) that gives way
        // keeps none, rather than an empty one: its next pass of a few services reads the
        // whole table, as one with no table must (planned against an empty table, the host
        // part would withdraw every VIP of an active-active director).
        let mut fresh = engine(&world, Mutation::None);
        fresh.yield_to = Some(waiting.clone());
        waiting.store(false, Ordering::SeqCst);
        let gave_way = rt.block_on(fresh.converge(&cfg, &cfg.desired, &spec(true)));
        assert!(matches!(&gave_way.table, Outcome::Yielded));
        let one: BTreeSet<ServiceKey> = cfg.desired.services.keys().take(1).copied().collect();
        let scoped = daemon_spec(Some(&one), false);
        assert!(
            rt.block_on(fresh.converge(&cfg, &cfg.desired, &scoped))
                .converged()
        );
        assert_eq!(
            fresh.take_last_read().map(|r| r.services),
            Some(n as usize),
            "a whole read, not a refresh of one service against an empty table"
        );
    }

    /// A whole read that may give way does so while the kernel is still answering the
    /// listing of the services (2-5 s at 100,000 services in the test VM), not after it: the
    /// dump is stopped, the connection dropped, and the table kept as it was. The next pass
    /// connects again and reuses every service. Both when the kernel is slow to answer, and
    /// when every part of the answer is ready at once (tokio's budget used up at every poll,
    /// which would starve a timer looked at after the listing). That the real client lets the
    /// task be polled during a dump at all is the kernel test's
    /// `a_long_dump_lets_the_tasks_beside_it_run`.
    #[test]
    fn a_whole_read_gives_way_during_the_listing_of_the_services() {
        use std::sync::atomic::Ordering;
        for slow in [true, false] {
            let n = 20;
            let (rt, world, cfg, mut e, waiting) = read_once_with_flag(n);
            let spec = |may_yield| daemon_spec(None, may_yield);
            let listed = {
                let mut w = world.borrow_mut();
                w.raise_on_read = Some(waiting.clone());
                if slow {
                    w.listing_takes = Some(std::time::Duration::from_secs(10));
                } else {
                    w.listing_parts = Some(100_000);
                }
                w.writes.clear();
                w.listings
            };
            let started = rt.block_on(async { tokio::time::Instant::now() });
            let gave_way = rt.block_on(e.converge(&cfg, &cfg.desired, &spec(true)));
            let took = rt.block_on(async { tokio::time::Instant::now() }) - started;
            assert!(
                matches!(&gave_way.table, Outcome::Yielded),
                "{:?}",
                gave_way.table
            );
            assert!(
                took < std::time::Duration::from_secs(1),
                "gave way after {took:?}, not during the 10 s listing"
            );
            assert_eq!(
                world.borrow().listings,
                listed,
                "the listing was stopped, not read to its end (slow: {slow})"
            );
            assert!(world.borrow().writes.is_empty(), "nothing written");
            assert!(e.take_last_read().is_none(), "no whole read finished");
            // The next pass lists them all and reuses every service kept.
            {
                let mut w = world.borrow_mut();
                w.raise_on_read = None;
                w.listing_takes = None;
                w.listing_parts = None;
            }
            waiting.store(false, Ordering::SeqCst);
            let next = rt.block_on(e.converge(&cfg, &cfg.desired, &spec(true)));
            assert!(next.converged(), "{:?}", next.table);
            let read = e.take_last_read().unwrap();
            assert_eq!((read.services, read.reused), (n as usize, n as usize));
            assert!(world.borrow().writes.is_empty(), "nothing written");
        }
    }

    /// A director taking up twenty VIPs records its intent once, before the first address, and
    /// that is also the record once all went well: one durable save of the host record, not
    /// one per address (an fsync each).
    #[test]
    fn a_director_adding_many_vips_saves_its_host_record_once() {
        let (rt, world) = host_world();
        let model = Model {
            services: (1..=20)
                .map(|n| (n, ("rr", BTreeMap::from([(1, 1)]))))
                .collect(),
            director: true,
            anycast: false,
            out: false,
            sysctls: BTreeMap::new(),
        };
        let mut sim = Sim::new(world.clone(), Mutation::None, vec![]);
        let cfg = model.config().unwrap();
        let pass = rt.block_on(sim.pass(&cfg, None));
        assert!(pass.converged(), "{}", sim.trace.join("\n"));
        let w = world.borrow();
        assert_eq!(w.addresses.len(), 20);
        assert_eq!(w.host.as_ref().map(|h| h.addresses.len()), Some(20));
        assert_eq!(w.host_saves, 1, "durable saves of the host record");
    }

    /// A pushed file with the director's services gone: the table's guard refuses to delete
    /// them, and the host keeps their VIPs. The host's second round planned against no table
    /// at all once the table's plan was refused, and took every VIP away (the outage the
    /// guard is there to prevent; found by the simulation's host part).
    #[test]
    fn an_emptied_file_leaves_a_directors_vips_in_place() {
        let (rt, world) = host_world();
        let model = Model {
            services: (1..=3)
                .map(|n| (n, ("rr", BTreeMap::from([(1, 1)]))))
                .collect(),
            director: true,
            anycast: false,
            out: false,
            sysctls: BTreeMap::new(),
        };
        let emptied = Model {
            services: BTreeMap::new(),
            ..model.clone()
        };
        let mut sim = Sim::new(world.clone(), Mutation::None, vec![]);
        let pass = rt.block_on(sim.pass(&model.config().unwrap(), None));
        assert!(pass.converged(), "{}", sim.trace.join("\n"));
        for _ in 0..2 {
            let pass = rt.block_on(sim.pass(&emptied.config().unwrap(), None));
            assert!(matches!(pass.table, Outcome::Refused(_)));
            let w = world.borrow();
            assert!(w.violations.is_empty(), "{:?}", w.violations);
            assert_eq!(w.addresses.len(), 3, "{}", sim.trace.join("\n"));
        }
    }

    /// One round that moves a sysctl lvsd holds and adds a VIP, killed at every instant: the
    /// record on disk covers the VIP whenever it is on the host. (The save right after the
    /// moved sysctl wrote only what had run so far, dropping the VIP's claim until the end of
    /// the round.)
    #[test]
    fn a_moved_sysctl_keeps_the_claims_still_to_come() {
        let rt = runtime();
        let before = Model {
            services: BTreeMap::from([(1, ("rr", BTreeMap::from([(1, 1)])))]),
            director: true,
            anycast: false,
            out: false,
            sysctls: BTreeMap::from([("sync_threshold", "4 60")]),
        };
        let mut after = before.clone();
        after.sysctls.insert("sync_threshold", "3 50");
        after.services.insert(2, ("rr", BTreeMap::from([(1, 1)])));
        for kill_at in 0..12 {
            let world = host_only();
            let mut sim = Sim::new(world.clone(), Mutation::None, vec![]);
            let pass = rt.block_on(sim.pass_model(&before)).unwrap();
            assert!(pass.converged(), "{}", sim.trace.join("\n"));
            world.borrow_mut().kill_in = Some(kill_at);
            rt.block_on(sim.pass_model(&after)).unwrap();
            sim.restart()
                .unwrap_or_else(|e| panic!("kill at {kill_at}: {e}"));
        }
    }

    /// The simulation has teeth: each deliberate bug is caught within a few hundred schedules.
    #[test]
    fn a_broken_engine_is_caught() {
        for mutation in [
            Mutation::SkipIntent,
            Mutation::SkipHostIntent,
            Mutation::DeleteDrainedAtOnce,
        ] {
            let caught =
                (0..500).find_map(|seed| run(seed, STEPS, mutation).err().map(|e| (seed, e)));
            let Some((seed, e)) = caught else {
                panic!("{mutation:?} was not caught in 500 schedules");
            };
            println!(
                "{mutation:?} caught by seed {seed}: {}",
                e.lines().next().unwrap_or("")
            );
        }
    }
}
