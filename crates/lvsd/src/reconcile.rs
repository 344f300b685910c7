//! One reconciliation pass against the kernel: observe, plan, guard, execute as one batch,
//! verify by observing again. Shared by `plan`, `apply` and the daemon so they cannot disagree.
//! A pass has two parts, the table and the host role, each with its own outcome: a host that
//! lacks its interface does not hold back the table, and a table that cannot be read does not
//! hold back the host (`apply` asks for all or nothing instead: `strict`). The host's changes
//! are carried out around the table's: VIPs and sysctls first, a VIP whose service drains only
//! after the service is gone. What lvsd is about to own is recorded before it is written, so a
//! kill at any instant leaves nothing it made unrecorded.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use config::Config;
use ipvs::{DestKey, ServiceKey};
use plan::globals::{
    GlobalOp, GlobalsDesired, GlobalsObserved, GlobalsOwned, GlobalsPlan, plan_globals,
};
use plan::health::HealthTable;
use plan::host::{
    HostOp, HostOwned, HostPlan, Missing, Role, host_desired, plan_host, sysctls_of_interest,
};
use plan::{Desired, Observed, Op, Options, Owned, Plan};

use crate::io::{HostIo as _, Io, System, Table as _};
use crate::state_file;

/// The process's user and system CPU time so far, for the timing log.
fn cpu_now() -> (std::time::Duration, std::time::Duration) {
    use nix::sys::resource::{UsageWho, getrusage};
    let tv = |t: nix::sys::time::TimeVal| {
        std::time::Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
    };
    getrusage(UsageWho::RUSAGE_SELF).map_or_else(
        |_| (std::time::Duration::ZERO, std::time::Duration::ZERO),
        |u| (tv(u.user_time()), tv(u.system_time())),
    )
}

/// The CPU time since `then`, as `user 1.2s sys 0.8s`.
fn cpu_since(then: (std::time::Duration, std::time::Duration)) -> String {
    let now = cpu_now();
    format!(
        "user {:?} sys {:?}",
        now.0.saturating_sub(then.0),
        now.1.saturating_sub(then.1)
    )
}

/// Seconds since the Unix epoch: the clock drain deadlines use (they survive restarts).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The kernel connections and what lvsd remembers about them. Each connection is opened on
/// first use: a real server never opens the IPVS one (it may not even have the module), and
/// a table-only lvsd never opens rtnetlink.
pub struct Engine<I: Io = System> {
    io: I,
    client: Option<I::Table>,
    host: Option<I::Host>,
    state_dir: PathBuf,
    exclusive: bool,
    /// What lvsd manages in the table, as last saved.
    pub owned: Owned,
    /// What lvsd put on the host, as last saved.
    pub host_owned: HostOwned,
    /// The table's record exists but cannot be read: the table is not touched until it can.
    owned_unreadable: Option<state_file::Unreadable>,
    /// The same for the host's record and the host.
    host_unreadable: Option<state_file::Unreadable>,
    /// A deliberate bug, for proving that the simulation catches one.
    #[cfg(test)]
    pub(crate) mutation: Mutation,
    /// The table as the last pass left it: read back, or known write by write from the
    /// kernel's answers. A pass for a small edit starts from it and reads back only the
    /// services it touches instead of the whole table.
    table: Option<Observed>,
    /// `table` was read just now and nothing was written since: the next full pass may use it
    /// instead of reading the table again (`apply` reads once, not twice).
    fresh: bool,
    /// For each service of `table` as the last full read found it, the digest of its real
    /// servers (dropped when lvsd changes the service or reads it on its own since).
    digests: std::collections::HashMap<ServiceKey, u64>,
}

/// A pass that touched at most this many services reads them back one by one to verify them;
/// above it, the kernel's answer to every write is the verification (reading a 10,000-service
/// table back costs more than writing it).
const VERIFY_MAX: usize = 256;

/// How one part of a pass (the table or the host) ended.
#[derive(Debug)]
pub enum Outcome<T> {
    /// Not asked for.
    NotRun,
    /// Carried out (some operations may have failed: see inside).
    Done(T),
    /// A removal guard refused the plan ([`Refused`], [`HostRefused`]); nothing of it ran.
    Refused(anyhow::Error),
    /// The part could not run: the kernel or the host could not be read, the host lacks what
    /// the role needs ([`Unfit`]), a record could not be saved.
    Failed(anyhow::Error),
}

impl<T> Outcome<T> {
    /// The part's result, if it ran.
    pub fn done(&self) -> Option<&T> {
        match self {
            Outcome::Done(t) => Some(t),
            _ => None,
        }
    }

    /// Refused or failed: nothing of the part was carried out.
    pub fn stopped(&self) -> bool {
        matches!(self, Outcome::Refused(_) | Outcome::Failed(_))
    }

    /// Why it was refused or failed, if it was.
    pub fn error(&self) -> Option<&anyhow::Error> {
        match self {
            Outcome::Refused(e) | Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// What a pass did to the table-wide settings (timeouts, sync daemons).
#[derive(Debug, Default)]
pub struct GlobalsPass {
    /// Operations the kernel accepted.
    pub applied: Vec<GlobalOp>,
    /// Operations the kernel refused, with why.
    pub failed: Vec<(GlobalOp, ipvs::Error)>,
    /// Operations held back (drift in report mode).
    pub skipped: Vec<GlobalOp>,
    /// Operations the kernel accepted that are still needed when read back.
    pub stuck: Vec<GlobalOp>,
    /// What is still to do after the pass: empty when in sync.
    pub after: GlobalsPlan,
    /// The settings could not be read or recorded.
    pub error: Option<String>,
}

impl GlobalsPass {
    /// Something failed: an operation, or reading the settings.
    pub fn failures(&self) -> usize {
        self.failed.len() + self.stuck.len() + usize::from(self.error.is_some())
    }
}

/// What the table part of a pass did.
#[derive(Debug, Default)]
pub struct TablePass {
    /// The table-wide settings, carried out before the services.
    pub globals: GlobalsPass,
    /// Operations the kernel accepted.
    pub applied: Vec<Op>,
    /// Operations the kernel refused, with why.
    pub failed: Vec<(Op, ipvs::Error)>,
    /// Operations held back by the caller's filter (drift in report mode).
    pub skipped: Vec<Op>,
    /// Operations the kernel accepted and that, read back, are still needed: a difference
    /// that writing again cannot remove (not written twice in one pass).
    pub stuck: Vec<Op>,
    /// The plan against the table as it is after the pass: empty when converged. Deletions of
    /// reals drained in this pass are left here for the next pass.
    pub after: Plan,
}

/// What the host part of a pass did.
#[derive(Debug, Default)]
pub struct HostPass {
    /// Operations carried out.
    pub applied: Vec<HostOp>,
    /// The operation that failed (the ones after it were not tried: they rely on it).
    pub failed: Option<(HostOp, host::Error)>,
    /// Operations held back (drift in report mode).
    pub skipped: Vec<HostOp>,
    /// Host changes still pending after the pass: empty when converged.
    pub after: HostPlan,
}

/// What a pass did, part by part.
#[derive(Debug)]
pub struct Pass {
    /// The IPVS table.
    pub table: Outcome<TablePass>,
    /// The host role.
    pub host: Outcome<HostPass>,
}

impl Pass {
    /// Nothing left to do in any part that ran, and no part refused or failed.
    pub fn converged(&self) -> bool {
        let table = match &self.table {
            Outcome::NotRun => true,
            Outcome::Done(t) => {
                t.after.is_empty()
                    && t.failed.is_empty()
                    && t.globals.after.is_empty()
                    && t.globals.failures() == 0
            }
            _ => false,
        };
        let host = match &self.host {
            Outcome::NotRun => true,
            Outcome::Done(h) => h.after.is_empty() && h.failed.is_none(),
            _ => false,
        };
        table && host
    }
}

/// What a pass is asked to do.
pub struct PassSpec<'a> {
    /// The table part: `None` skips it; `Some(None)` is the whole table, `Some(Some(s))` the
    /// services in `s` against the table the last pass left.
    pub table: Option<Option<&'a BTreeSet<ServiceKey>>>,
    /// Whether the host part runs.
    pub host: bool,
    /// Carry out plans a removal guard refuses.
    pub force: bool,
    /// All or nothing: when either part is refused or cannot be planned, carry out neither
    /// (`apply`: "nothing was changed"). The daemon converges the parts independently.
    pub strict: bool,
    /// Table operations this rejects are not carried out but returned as skipped.
    pub allow: &'a dyn Fn(&Op) -> bool,
    /// Whether host operations and the table-wide settings are carried out (otherwise
    /// returned as skipped).
    pub allow_host: bool,
    /// The services that cannot serve now (no healthy real, below quorum): an active-active
    /// director withdraws their VIPs.
    pub unable: &'a BTreeSet<ServiceKey>,
}

/// No service.
static NONE: BTreeSet<ServiceKey> = BTreeSet::new();

impl<'a> PassSpec<'a> {
    /// Everything, all or nothing: what `apply` runs (`unable`: the services the kernel's
    /// weights say cannot serve).
    pub fn everything(force: bool, unable: &'a BTreeSet<ServiceKey>) -> PassSpec<'a> {
        PassSpec {
            table: Some(None),
            host: true,
            force,
            strict: true,
            allow: &|_| true,
            allow_host: true,
            unable,
        }
    }
}

/// A host plan the removal guard refused.
#[derive(Debug)]
pub struct HostRefused {
    /// VIPs the plan removes.
    pub removed: usize,
    /// VIPs lvsd holds.
    pub held: usize,
}

impl std::fmt::Display for HostRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing to apply: the plan removes {} of the {} VIPs lvsd holds on this host while it keeps its role (an emptied or truncated config?). Check the file, use --role none to take the role away, or pass --force",
            self.removed, self.held
        )
    }
}

impl std::error::Error for HostRefused {}

/// What the config's role needs and this host lacks; nothing was changed.
#[derive(Debug)]
pub struct Unfit(pub Vec<Missing>);

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}; nothing was changed", list.join("; "))
    }
}

impl std::error::Error for Unfit {}

/// A whole plan: the host's changes and the table's (none for a real server).
#[derive(Debug, Default)]
pub struct FullPlan {
    /// Host changes.
    pub host: HostPlan,
    /// Table changes; `None` when the role does not program IPVS.
    pub table: Option<Plan>,
    /// Changes to the table-wide settings (timeouts, sync daemons).
    pub globals: GlobalsPlan,
}

/// A plan the removal guard refused.
#[derive(Debug)]
pub struct Refused(pub Plan);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing to apply: {} (more than half; an emptied or truncated config?). Check the file, or pass --force to apply it anyway",
            self.0.guard
        )
    }
}

impl std::error::Error for Refused {}

impl Engine {
    /// Loads the ownership records; connections are opened when first needed.
    pub fn new(state_dir: PathBuf, exclusive: bool) -> Self {
        Engine::with_io(System::new(state_dir.clone()), state_dir, exclusive)
    }
}

impl<I: Io> Engine<I> {
    /// An engine reaching the world through `io` (the simulated one, in tests).
    pub fn with_io(mut io: I, state_dir: PathBuf, exclusive: bool) -> Self {
        let (owned, owned_unreadable) = split(io.load_owned());
        let (host_owned, host_unreadable) = split(io.load_host());
        for e in owned_unreadable.iter().chain(&host_unreadable) {
            tracing::error!("{e}");
        }
        Engine {
            io,
            client: None,
            host: None,
            state_dir,
            exclusive,
            owned,
            host_owned,
            owned_unreadable,
            host_unreadable,
            #[cfg(test)]
            mutation: Mutation::None,
            table: None,
            fresh: false,
            digests: std::collections::HashMap::new(),
        }
    }

    async fn client(&mut self) -> Result<&mut I::Table> {
        if self.client.is_none() {
            self.client = Some(self.io.connect_table().await?);
        }
        self.client
            .as_mut()
            .context("the IPVS connection is not open")
    }

    fn host(&mut self) -> Result<&I::Host> {
        if self.host.is_none() {
            self.host = Some(self.io.connect_host()?);
        }
        self.host
            .as_ref()
            .context("the rtnetlink connection is not open")
    }

    /// The table's record, once it can be read: while it cannot, nothing of the table is
    /// planned or touched (read again at every pass, so a record fixed or removed by an
    /// operator is taken at the next one).
    fn table_record(&mut self) -> Result<()> {
        if self.owned_unreadable.is_some() {
            match self.io.load_owned() {
                Ok(o) => {
                    tracing::info!("the table's ownership record can be read again");
                    self.owned = o;
                    self.owned_unreadable = None;
                }
                Err(e) => {
                    self.owned_unreadable = Some(e.clone());
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// [`Engine::table_record`] for the host's record and the host.
    fn host_record(&mut self) -> Result<()> {
        if self.host_unreadable.is_some() {
            match self.io.load_host() {
                Ok(o) => {
                    tracing::info!("the host's ownership record can be read again");
                    self.host_owned = o;
                    self.host_unreadable = None;
                }
                Err(e) => {
                    self.host_unreadable = Some(e.clone());
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Where the ownership records (and the daemon's health file) live.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The live table. A service whose real servers read back as they were when the kept
    /// table was made (their settings, and whether each has connections: see
    /// [`ipvs::convert::fold_dest_digest`]) is taken from the kept table instead of being
    /// decoded again: the daemon's resync of a large, quiet table costs the kernel's reading
    /// and little else. Services whose drains wait on connection counts are always decoded.
    pub async fn observe(&mut self) -> Result<Observed> {
        let started = std::time::Instant::now();
        let cpu0 = cpu_now();
        self.fresh = false;
        let mut kept = self.table.take().unwrap_or_default();
        let digests = std::mem::take(&mut self.digests);
        let exclusive = self.exclusive;
        let owned = &self.owned;
        let prev = |k: &ServiceKey| -> Option<u64> {
            let o = owned.services.get(k);
            let counts_matter = match o {
                Some(o) => !o.draining.is_empty() || o.service_deadline.is_some(),
                None => exclusive,
            };
            (!counts_matter && kept.services.contains_key(k))
                .then(|| digests.get(k).copied())
                .flatten()
        };
        let read = async {
            let client = match self.client.as_mut() {
                Some(c) => c,
                None => self.client.insert(self.io.connect_table().await?),
            };
            let services = client.services().await.context("read the IPVS table")?;
            tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), services = services.len(), "read the services");
            let keys: Vec<(ServiceKey, Option<u64>)> =
                services.iter().map(|s| (s.key, prev(&s.key))).collect();
            let reals = client
                .dests_if_changed(&keys, plan::ObservedService::reals_from_kernel)
                .await
                .context("read the IPVS table")?;
            anyhow::Ok((services, reals))
        };
        let (services, reals) = match read.await {
            Ok(r) => r,
            Err(e) => {
                self.disconnect();
                return Err(e);
            }
        };
        let mut observed = Observed::default();
        let mut reused = 0usize;
        for (s, (digest, reals)) in services.into_iter().zip(reals) {
            let reals = match reals {
                Some(r) => r,
                None => {
                    reused += 1;
                    kept.services
                        .remove(&s.key)
                        .map(|o| o.reals)
                        .unwrap_or_default()
                }
            };
            self.digests.insert(s.key, digest);
            observed
                .services
                .insert(s.key, plan::ObservedService::new(s, reals));
        }
        tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), services = observed.services.len(), reused, cpu = %cpu_since(cpu0), "read the IPVS table");
        Ok(observed)
    }

    /// The live table, when the role programs one.
    async fn observe_table(&mut self, cfg: &Config) -> Result<Option<Observed>> {
        if cfg.host.role == Role::RealServer {
            return Ok(None);
        }
        self.table_record()?;
        match (self.fresh, self.table.take()) {
            (true, Some(t)) => {
                self.fresh = false;
                Ok(Some(t))
            }
            (_, kept) => {
                // Put back for `observe`, which takes unchanged services from it (taken here,
                // every resync decoded the whole table again).
                self.table = kept;
                Ok(Some(self.observe().await?))
            }
        }
    }

    /// Keeps a table just read for the next pass.
    fn keep_fresh(&mut self, table: Option<Observed>) {
        self.fresh = table.is_some();
        self.table = table;
    }

    /// Reads back the services in `keys` into `table`: a service the kernel does not have
    /// leaves it.
    async fn refresh(&mut self, keys: &BTreeSet<ServiceKey>, table: &mut Observed) -> Result<()> {
        let started = std::time::Instant::now();
        for k in keys {
            self.digests.remove(k);
        }
        let read = async {
            let client = self.client().await?;
            for k in keys {
                match client.service(k).await? {
                    Some(s) => {
                        let dests = client.dests(k).await?;
                        table
                            .services
                            .insert(*k, plan::ObservedService::from_kernel(&s, &dests));
                    }
                    None => {
                        table.services.remove(k);
                    }
                }
            }
            anyhow::Ok(())
        };
        if let Err(e) = read.await {
            self.disconnect();
            return Err(e);
        }
        tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), services = keys.len(), "read back services");
        Ok(())
    }

    /// Forgets the IPVS connection and the kept table after a failure to read or write: the
    /// next pass connects again (resolving the family anew: after `ip_vs` is unloaded and
    /// loaded again the old family id answers nothing) and reads the whole table.
    fn disconnect(&mut self) {
        self.client = None;
        self.table = None;
        self.fresh = false;
        self.digests.clear();
    }

    /// Host changes against the host as it is now. Without a role, IPVS sysctls or anything
    /// of lvsd's on the host, there is nothing to look at. `unable`: the services that cannot
    /// serve now (an active-active director withdraws their VIPs).
    async fn plan_host(
        &mut self,
        cfg: &Config,
        table: Option<&Observed>,
        unable: &BTreeSet<ServiceKey>,
    ) -> Result<HostPlan> {
        self.host_record()?;
        if cfg.host.role == Role::None
            && cfg.host.ipvs_sysctls.is_empty()
            && self.host_owned.is_empty()
        {
            return Ok(HostPlan::default());
        }
        let desired = host_desired(&cfg.host, &cfg.desired, table, &self.owned, unable);
        let keys = sysctls_of_interest(&desired, &self.host_owned);
        let observed = match host::with_timeout(self.host()?.observe(&keys)).await {
            Ok(o) => o,
            Err(e) => {
                // A fresh rtnetlink connection next time.
                self.host = None;
                return Err(e.into());
            }
        };
        Ok(plan_host(&desired, &observed, &self.host_owned))
    }

    /// Plans host and table (against `table_desired`, with the services in `unable` unable to
    /// serve) without changing anything.
    pub async fn plan_all(
        &mut self,
        cfg: &Config,
        table_desired: &Desired,
        unable: &BTreeSet<ServiceKey>,
    ) -> Result<FullPlan> {
        let table = self.observe_table(cfg).await?;
        let host = self.plan_host(cfg, table.as_ref(), unable).await?;
        let plan = table.as_ref().map(|t| self.plan(table_desired, t));
        let globals = match table {
            Some(_) => self.plan_globals(&cfg.globals).await?,
            None => GlobalsPlan::default(),
        };
        self.keep_fresh(table);
        Ok(FullPlan {
            host,
            table: plan,
            globals,
        })
    }

    /// Consistent-hashing (`mh`) services whose real servers the kernel holds in another order
    /// than a director starting from this config would (see [`plan::mh_misaligned`]).
    pub async fn mh_warnings(&mut self, desired: &Desired) -> Result<Vec<String>> {
        let mut out = vec![];
        let client = self.client().await?;
        for (k, s) in desired
            .services
            .iter()
            .filter(|(_, s)| s.spec.scheduler == "mh")
        {
            let order: Vec<DestKey> = client.dests(k).await?.iter().map(|d| d.key).collect();
            out.extend(plan::mh_misaligned(k, s, &order));
        }
        Ok(out)
    }

    /// The kernel's table-wide settings, when the config or lvsd's record has any: otherwise
    /// they are not lvsd's business and not read.
    async fn observe_globals(&mut self, want: &GlobalsDesired) -> Result<Option<GlobalsObserved>> {
        if want.is_empty() && self.owned.globals.is_empty() {
            return Ok(None);
        }
        let read = async {
            let client = self.client().await?;
            let timeouts = client.timeouts().await?;
            let daemons = client.daemons().await?;
            anyhow::Ok(GlobalsObserved { timeouts, daemons })
        };
        match read.await {
            Ok(g) => Ok(Some(g)),
            Err(e) => {
                self.disconnect();
                Err(e.context("read the IPVS timeouts and sync daemons"))
            }
        }
    }

    /// The table-wide changes `want` asks for, without carrying them out.
    async fn plan_globals(&mut self, want: &GlobalsDesired) -> Result<GlobalsPlan> {
        Ok(match self.observe_globals(want).await? {
            Some(o) => plan_globals(want, &o, &self.owned.globals),
            None => GlobalsPlan::default(),
        })
    }

    /// Carries out the table-wide changes one at a time (a daemon is stopped before it is
    /// started again with new settings), recording what lvsd is about to own before it is
    /// there, then reads them back: what is still needed after a change the kernel took is
    /// stuck.
    async fn converge_globals(
        &mut self,
        want: &GlobalsDesired,
        allow: bool,
    ) -> Result<GlobalsPass> {
        let mut pass = GlobalsPass::default();
        let Some(observed) = self.observe_globals(want).await? else {
            return Ok(pass);
        };
        let plan = plan_globals(want, &observed, &self.owned.globals);
        let mut kept = plan.kept;
        self.save_globals(&kept)?;
        if !allow {
            pass.skipped = plan.ops;
            return Ok(pass);
        }
        for op in plan.ops {
            let adds = matches!(op, GlobalOp::StartDaemon(_) | GlobalOp::SetTimeouts { .. });
            if adds {
                kept.record(&op);
                self.save_globals(&kept)?;
            }
            match self.client().await?.apply(op.to_request()).await {
                Ok(()) => {
                    tracing::info!("{op}");
                    kept.record(&op);
                    pass.applied.push(op);
                }
                Err(e) => {
                    tracing::error!(error = %e, "{op} failed");
                    pass.failed.push((op, e));
                }
            }
        }
        self.save_globals(&kept)?;
        if pass.applied.is_empty() && pass.failed.is_empty() {
            return Ok(pass);
        }
        if let Some(again) = self.observe_globals(want).await? {
            pass.after = plan_globals(want, &again, &self.owned.globals);
            pass.stuck = pass
                .after
                .ops
                .iter()
                .filter(|op| {
                    pass.applied
                        .iter()
                        .any(|a| a.to_request() == op.to_request())
                })
                .cloned()
                .collect();
        }
        Ok(pass)
    }

    /// Saves the table-wide part of the ownership record when it changed.
    fn save_globals(&mut self, kept: &GlobalsOwned) -> Result<()> {
        if *kept != self.owned.globals {
            self.owned.globals = kept.clone();
            self.io.save_owned(&self.owned)?;
        }
        Ok(())
    }

    /// [`Engine::plan_all`] for the services in `scope`, against the table as the last pass
    /// left it (no reading): how the daemon checks a small edit against the removal guards.
    /// `None` when there is no such table yet.
    pub async fn plan_scoped(
        &mut self,
        cfg: &Config,
        table_desired: &Desired,
        scope: &BTreeSet<ServiceKey>,
    ) -> Result<Option<FullPlan>> {
        if cfg.host.role == Role::RealServer || !self.scoped(scope) {
            return Ok(None);
        }
        self.table_record()?;
        let table = self.table.take();
        let host = self.plan_host(cfg, table.as_ref(), &NONE).await;
        let plan = table
            .as_ref()
            .map(|t| self.plan_services(table_desired, t, scope));
        self.table = table;
        Ok(Some(FullPlan {
            host: host?,
            table: plan,
            globals: GlobalsPlan::default(),
        }))
    }

    /// A pass for `scope` can start from the kept table (reading a few services one by one
    /// is cheaper than reading them all; for many, a full read is).
    fn scoped(&self, scope: &BTreeSet<ServiceKey>) -> bool {
        self.table.is_some() && scope.len() <= VERIFY_MAX
    }

    /// Brings `health` in line with the config, adopting what the kernel shows for checks that
    /// are new: a real at weight 0 is down, one above 0 is up. A real server runs no checks.
    pub async fn adopt_health(&mut self, cfg: &Config, health: &mut HealthTable) -> Result<()> {
        let table = self.observe_table(cfg).await?;
        match &table {
            Some(observed) => health.sync(&cfg.desired, Some(observed)),
            None => health.sync(&Desired::default(), None),
        }
        self.keep_fresh(table);
        Ok(())
    }

    /// [`Engine::adopt_health`] against the table as the last pass left it, when there is one
    /// (after a small edit: no reading of the whole table).
    /// With `services`, only their checks are brought in line (an edit of a few services).
    pub async fn adopt_health_kept(
        &mut self,
        cfg: &Config,
        health: &mut HealthTable,
        services: Option<&BTreeSet<ServiceKey>>,
    ) -> Result<()> {
        match (&self.table, cfg.host.role, services) {
            (Some(t), r, Some(s)) if r != Role::RealServer => {
                health.sync_services(&cfg.desired, Some(t), s);
                Ok(())
            }
            (Some(t), r, None) if r != Role::RealServer => {
                health.sync(&cfg.desired, Some(t));
                Ok(())
            }
            _ => self.adopt_health(cfg, health).await,
        }
    }

    /// Why a plan must not be carried out without `--force`: one of the removal guards.
    pub fn refusal(&self, cfg: &Config, plan: &FullPlan) -> Option<anyhow::Error> {
        if let Some((removed, held)) = plan.host.guard(cfg.host.role, &self.host_owned) {
            return Some(HostRefused { removed, held }.into());
        }
        match &plan.table {
            Some(t) if t.guard.tripped() => Some(Refused(t.clone()).into()),
            _ => None,
        }
    }

    /// Carries out a host plan in order, stopping at the first failure: later steps rely on
    /// earlier ones (a real server's VIP must not appear on `lo` before ARP is quiet). What an
    /// operation will put on the host (an address, a changed sysctl, a link brought up) is
    /// recorded before it is carried out: a kill in between leaves an entry the next pass
    /// drops when it finds nothing there, never something of lvsd's it does not know about.
    async fn execute_host(
        &mut self,
        plan: HostPlan,
        allow: bool,
        pass: &mut HostPass,
    ) -> Result<()> {
        let mut kept = plan.kept;
        self.save_host(&kept)?;
        for op in plan.ops {
            if !allow {
                pass.skipped.push(op);
                continue;
            }
            let adds = matches!(
                op,
                HostOp::AddAddress(_) | HostOp::SetSysctl { .. } | HostOp::LinkUp { .. }
            );
            if adds {
                kept.record(&op);
                self.save_host(&kept)?;
            }
            let done = match self.host() {
                Ok(h) => host::with_timeout(h.execute(&op)).await,
                Err(e) => Err(host::Error::Connect(std::io::Error::other(format!(
                    "{e:#}"
                )))),
            };
            match done {
                Ok(()) => {
                    tracing::info!("{op}");
                    kept.record(&op);
                    pass.applied.push(op);
                }
                Err(e) => {
                    tracing::error!(error = %e, "{op} failed");
                    if e.is_connection() {
                        self.host = None;
                    }
                    pass.failed = Some((op, e));
                    break;
                }
            }
        }
        self.save_host(&kept)
    }

    /// Saves the host record when it differs from the one on disk.
    fn save_host(&mut self, kept: &HostOwned) -> Result<()> {
        if *kept != self.host_owned {
            self.io.save_host(kept)?;
            self.host_owned = kept.clone();
        }
        Ok(())
    }

    /// Plans the services in `scope` against `observed`.
    fn plan_services(
        &self,
        desired: &Desired,
        observed: &Observed,
        scope: &BTreeSet<ServiceKey>,
    ) -> Plan {
        plan::plan_services(desired, observed, &self.owned, self.options(), scope)
    }

    fn options(&self) -> Options {
        Options {
            exclusive: self.exclusive,
            now: self.io.now(),
        }
    }

    /// Plans against `observed`: the whole table, or the services in `scope`.
    fn plan_in(
        &self,
        desired: &Desired,
        observed: &Observed,
        scope: Option<&BTreeSet<ServiceKey>>,
    ) -> Plan {
        match scope {
            Some(s) => self.plan_services(desired, observed, s),
            None => self.plan(desired, observed),
        }
    }

    /// Plans against the live table without changing anything.
    pub fn plan(&self, desired: &Desired, observed: &Observed) -> Plan {
        let started = std::time::Instant::now();
        let cpu0 = cpu_now();
        let p = plan::plan(desired, observed, &self.owned, self.options());
        tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), ops = p.ops.len(), cpu = %cpu_since(cpu0), "planned");
        p
    }

    /// Converges host and table on `cfg`, the table on `table_desired` (the config's table with
    /// health applied), as `spec` asks. Each part has its own outcome: the table is read,
    /// planned and written whatever the host's state, and the host's changes are carried out
    /// whatever the table's (unless `spec.strict`).
    ///
    /// With a scope (the services a small edit or a health change touched) and a table kept
    /// from the last pass, only those services are read, planned, written and read back; the
    /// periodic resync passes no scope and reads and diffs the whole table. A host-only pass
    /// plans the host against the kept table.
    pub async fn converge(
        &mut self,
        cfg: &Config,
        table_desired: &Desired,
        spec: &PassSpec<'_>,
    ) -> Pass {
        let mut pass = Pass {
            table: Outcome::NotRun,
            host: Outcome::NotRun,
        };
        let has_table = cfg.host.role != Role::RealServer;
        let scope = spec.table.flatten().filter(|s| has_table && self.scoped(s));
        // The table as it is now, for the table part.
        let mut observed = None;
        match spec.table {
            Some(_) if has_table => {
                let read = match scope {
                    Some(s) => {
                        let mut t = self.table.take().unwrap_or_default();
                        self.fresh = false;
                        match self.table_record() {
                            Ok(()) => self.refresh(s, &mut t).await.map(|()| t),
                            Err(e) => Err(e),
                        }
                    }
                    None => self.observe_table(cfg).await.map(|t| t.unwrap_or_default()),
                };
                match read {
                    Ok(t) => observed = Some(t),
                    Err(e) => pass.table = Outcome::Failed(e),
                }
            }
            // A real server has no table to converge.
            Some(_) => pass.table = Outcome::Done(TablePass::default()),
            None => {}
        }
        // What the host plans against when the table part did not read the table.
        let kept = if observed.is_none() {
            self.table.take()
        } else {
            None
        };
        let mut host_plan = None;
        if spec.host {
            match self
                .plan_host(cfg, observed.as_ref().or(kept.as_ref()), spec.unable)
                .await
            {
                Err(e) => pass.host = Outcome::Failed(e),
                Ok(p) if !p.missing.is_empty() => {
                    pass.host = Outcome::Failed(Unfit(p.missing).into());
                }
                Ok(p) => match p.guard(cfg.host.role, &self.host_owned) {
                    Some((removed, held)) if !spec.force => {
                        pass.host = Outcome::Refused(HostRefused { removed, held }.into());
                    }
                    _ => host_plan = Some(p),
                },
            }
        }
        let mut table_plan = None;
        if let Some(o) = &observed {
            let plan = self.plan_in(table_desired, o, scope);
            if plan.guard.tripped() && !spec.force {
                pass.table = Outcome::Refused(Refused(plan).into());
            } else {
                table_plan = Some(plan);
            }
        }
        if spec.strict && (pass.table.stopped() || pass.host.stopped()) {
            // All or nothing: what was planned without trouble is not carried out either.
            self.table = observed.or(kept);
            return pass;
        }
        let mut host_pass = None;
        if let Some(p) = host_plan {
            let mut hp = HostPass::default();
            match self.execute_host(p, spec.allow_host, &mut hp).await {
                Ok(()) => host_pass = Some(hp),
                Err(e) => pass.host = Outcome::Failed(e),
            }
        }
        if let (Some(plan), Some(o)) = (table_plan, observed.take()) {
            let globals = self.converge_globals(&cfg.globals, spec.allow_host).await;
            match self
                .converge_table(table_desired, o, plan, scope, spec.allow)
                .await
            {
                Ok((mut tp, o)) => {
                    match globals {
                        Ok(g) => tp.globals = g,
                        Err(e) => {
                            // A failure of the table part; the services went on regardless.
                            tracing::error!("{e:#}");
                            tp.globals.error = Some(format!("{e:#}"));
                        }
                    }
                    pass.table = Outcome::Done(tp);
                    observed = Some(o);
                }
                Err(e) => {
                    self.disconnect();
                    pass.table = Outcome::Failed(e);
                }
            }
        }
        let table = observed.or(kept);
        if let Some(mut hp) = host_pass {
            pass.host = match self.finish_host(cfg, table.as_ref(), spec, &mut hp).await {
                Ok(()) => Outcome::Done(hp),
                Err(e) => Outcome::Failed(e),
            };
        }
        self.table = table;
        pass
    }

    /// The host's second round, against the table as the pass left it: a director's VIP goes
    /// once its service is deleted, a tunnel device created in the first round gets its
    /// sysctls. Then verifies: what is still pending goes into `after`.
    async fn finish_host(
        &mut self,
        cfg: &Config,
        table: Option<&Observed>,
        spec: &PassSpec<'_>,
        pass: &mut HostPass,
    ) -> Result<()> {
        let (allow_host, unable) = (spec.allow_host, spec.unable);
        if pass.failed.is_none() {
            let again = self.plan_host(cfg, table, unable).await?;
            if again.missing.is_empty() && !again.ops.is_empty() && allow_host {
                self.execute_host(again, true, pass).await?;
            } else {
                // Nothing carried out: this plan already is the host as the pass leaves it.
                if again.missing.is_empty() && !allow_host {
                    pass.skipped.clone_from(&again.ops);
                }
                pass.after = again;
                return Ok(());
            }
        }
        pass.after = self.plan_host(cfg, table, unable).await?;
        Ok(())
    }

    /// The table's rounds of a pass; returns the table as it is afterwards.
    async fn converge_table(
        &mut self,
        desired: &Desired,
        mut observed: Observed,
        mut plan: Plan,
        scope: Option<&BTreeSet<ServiceKey>>,
        allow: &dyn Fn(&Op) -> bool,
    ) -> Result<(TablePass, Observed)> {
        let mut pass = TablePass::default();
        // A second round covers what the first could not see: the kernel's multi-part dump can
        // miss entries while other namespaces change, and connections may close meanwhile.
        // Reals drained in this pass: deleting them waits for a later pass, so that a connection
        // starting just before the weight went to 0 is seen as active first.
        let mut drained_now: BTreeSet<(ServiceKey, DestKey)> = BTreeSet::new();
        let deferred = |op: &Op, drained: &BTreeSet<(ServiceKey, DestKey)>| match op {
            Op::DelReal { service, key, .. } => drained.contains(&(*service, *key)),
            Op::DelService { key, .. } => drained.iter().any(|(s, _)| s == key),
            _ => false,
        };
        // Writes the kernel accepted and whose effect was read back: one still needed after
        // that is stuck, and is not written again.
        let mut verified: Vec<Op> = Vec::new();
        for _round in 0..2 {
            let stuck: Vec<Op> = plan::stuck(&verified, &plan.ops)
                .into_iter()
                .cloned()
                .collect();
            let (todo, skip): (Vec<Op>, Vec<Op>) = plan
                .ops
                .iter()
                .filter(|op| !deferred(op, &drained_now) && !stuck.contains(op))
                .cloned()
                .partition(|op| allow(op));
            pass.skipped = skip;
            if todo.is_empty() {
                break;
            }
            // Intent first: a kill after the kernel took these but before the record below
            // must not leave services of lvsd's that it would call foreign.
            let t_intent = std::time::Instant::now();
            self.record_intent(&plan.owned)?;
            tracing::debug!(target: "lvsd::timing", elapsed = ?t_intent.elapsed(), "recorded the intent");
            crate::fault::point(crate::fault::AFTER_INTENT);
            #[cfg(test)]
            let todo = self.mutation.apply(todo);
            let started = std::time::Instant::now();
            let requests: Vec<_> = todo.iter().map(Op::to_request).collect();
            let results = self.client().await?.execute(&requests).await;
            crate::fault::point(crate::fault::AFTER_WRITE);
            tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), ops = requests.len(), "wrote to the kernel");
            let applied_before = pass.applied.len();
            let failed_before = pass.failed.len();
            // The services touched, as long as there are few enough to read back.
            let mut touched = BTreeSet::new();
            let mut many = false;
            for (op, r) in todo.into_iter().zip(results) {
                // Changed by lvsd now: the last read's digest says nothing about it any more.
                self.digests.remove(&op.service());
                if !many {
                    touched.insert(op.service());
                    many = touched.len() > VERIFY_MAX;
                }
                match r {
                    Ok(()) => {
                        if let Op::DrainReal { service, key, .. } = &op {
                            drained_now.insert((*service, *key));
                        }
                        // Fields are evaluated only when the line is logged (not for every
                        // object of a cold apply).
                        tracing::info!(
                            service = %op.service(),
                            name = desired
                                .services
                                .get(&op.service())
                                .and_then(|s| s.name.as_deref())
                                .unwrap_or(""),
                            "{op}"
                        );
                        pass.applied.push(op);
                    }
                    Err(e) => {
                        tracing::error!(service = %op.service(), error = %e, "{op} failed");
                        pass.failed.push((op, e));
                    }
                }
            }
            tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "took in the kernel's answers");
            let t_verify = std::time::Instant::now();
            // Verify: read back what was touched, or the whole table after a failure (the
            // plan's picture of it was wrong); a large pass is verified by the kernel's
            // answer to every write.
            if scope.is_none() && pass.failed.len() > failed_before {
                observed = self.observe().await?;
                verified.extend_from_slice(&pass.applied[applied_before..]);
            } else {
                for op in &pass.applied[applied_before..] {
                    observed.apply(op);
                }
                if scope.is_some() || !many {
                    self.refresh(&touched, &mut observed).await?;
                    verified.extend_from_slice(&pass.applied[applied_before..]);
                }
            }
            tracing::debug!(target: "lvsd::timing", elapsed = ?t_verify.elapsed(), "verified the writes");
            let t_remember = std::time::Instant::now();
            self.remember(std::mem::take(&mut plan.owned), &observed, scope)?;
            tracing::debug!(target: "lvsd::timing", elapsed = ?t_remember.elapsed(), "remembered what lvsd owns");
            // A large pass that only added and edited, every write acknowledged: the table is
            // what the plan made it, so planning again can only find nothing to do.
            let only_additions = requests.iter().all(|r| {
                matches!(
                    r,
                    ipvs::Request::NewService(..)
                        | ipvs::Request::NewDest(..)
                        | ipvs::Request::SetService(..)
                        | ipvs::Request::SetDest(..)
                )
            });
            if many
                && scope.is_none()
                && pass.failed.is_empty()
                && only_additions
                && drained_now.is_empty()
            {
                plan = Plan {
                    foreign: std::mem::take(&mut plan.foreign),
                    guard: plan.guard,
                    ..Plan::default()
                };
                break;
            }
            plan = self.plan_in(desired, &observed, scope);
            if !pass.failed.is_empty()
                || plan
                    .ops
                    .iter()
                    .all(|op| !allow(op) || deferred(op, &drained_now))
            {
                break;
            }
        }
        pass.stuck = plan::stuck(&verified, &plan.ops)
            .into_iter()
            .cloned()
            .collect();
        pass.after = plan;
        Ok((pass, observed))
    }

    /// Records, before writing, the services and reals a plan is about to make lvsd's, on top
    /// of what lvsd already manages: entries are only added here (the record after the writes
    /// is the exact one). Nothing is saved when the plan brings nothing new.
    fn record_intent(&mut self, next: &Owned) -> Result<()> {
        #[cfg(test)]
        if self.mutation == Mutation::SkipIntent {
            return Ok(());
        }
        let mut changed = false;
        for (k, s) in &next.services {
            match self.owned.services.get_mut(k) {
                None => {
                    self.owned.services.insert(*k, s.clone());
                    changed = true;
                }
                Some(o) => {
                    for r in &s.reals {
                        changed |= o.reals.insert(*r);
                    }
                    for (r, d) in &s.draining {
                        if !o.draining.contains_key(r) {
                            o.draining.insert(*r, *d);
                            changed = true;
                        }
                    }
                    if o.service_deadline.is_none() && s.service_deadline.is_some() {
                        o.service_deadline = s.service_deadline;
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.io.save_owned(&self.owned)?;
        }
        Ok(())
    }

    /// Keeps the plan's ownership record, plus any managed service that should have gone but is
    /// still in the table (a failed delete must not turn it foreign). A scoped plan's record
    /// replaces the entries of its services only.
    fn remember(
        &mut self,
        owned: Owned,
        observed: &Observed,
        scope: Option<&BTreeSet<ServiceKey>>,
    ) -> Result<()> {
        let Some(scope) = scope else {
            return self.remember_all(owned, observed);
        };
        let mut changed = false;
        for k in scope {
            let next = match owned.services.get(k) {
                Some(s) => Some(s),
                // Should have gone but is still there: stays ours.
                None if observed.services.contains_key(k) => self.owned.services.get(k),
                None => None,
            };
            if next != self.owned.services.get(k) {
                changed = true;
                match next.cloned() {
                    Some(s) => self.owned.services.insert(*k, s),
                    None => self.owned.services.remove(k),
                };
            }
        }
        if changed {
            self.io.save_owned(&self.owned)?;
        }
        Ok(())
    }

    fn remember_all(&mut self, mut next: Owned, observed: &Observed) -> Result<()> {
        // The services' planner leaves the table-wide part of the record to its own planner.
        next.globals = self.owned.globals.clone();
        for (k, s) in &self.owned.services {
            if observed.services.contains_key(k) && !next.services.contains_key(k) {
                next.services.insert(*k, s.clone());
            }
        }
        if next != self.owned {
            let started = std::time::Instant::now();
            self.io.save_owned(&next)?;
            tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "saved the ownership record");
            self.owned = next;
        }
        Ok(())
    }
}

/// A record as loaded, and why it could not be, apart.
fn split<T: Default>(
    r: std::result::Result<T, state_file::Unreadable>,
) -> (T, Option<state_file::Unreadable>) {
    match r {
        Ok(t) => (t, None),
        Err(e) => (T::default(), Some(e)),
    }
}

/// Deliberate bugs the simulation must catch (`crate::sim`): each is what a plausible change
/// to the engine could do wrong.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// The engine as it is.
    None,
    /// Writes without recording first what it is about to own.
    SkipIntent,
    /// Deletes a real where it should drain it (connections cut).
    DeleteDrainedAtOnce,
}

#[cfg(test)]
impl Mutation {
    fn apply(self, todo: Vec<Op>) -> Vec<Op> {
        if self != Mutation::DeleteDrainedAtOnce {
            return todo;
        }
        todo.into_iter()
            .map(|op| match op {
                Op::DrainReal { service, key, .. } => Op::DelReal {
                    service,
                    key,
                    why: plan::DelReason::Drained,
                },
                op => op,
            })
            .collect()
    }
}
