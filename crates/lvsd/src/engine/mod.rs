//! One reconciliation pass against the kernel: observe, plan, guard, execute as one batch,
//! verify by observing again. Shared by `plan`, `apply` and the daemon so they cannot disagree.
//! A pass has two parts, the table and the host role, each with its own outcome: a host that
//! lacks its interface does not hold back the table, and a table that cannot be read does not
//! hold back the host (`apply` asks for all or nothing instead: `strict`). The host's changes
//! are carried out around the table's: VIPs and sysctls first, a VIP whose service drains only
//! after the service is gone. What lvsd is about to own is recorded before it is written, so a
//! kill at any instant leaves nothing it made unrecorded.
//!
//! One file a job: this one holds the engine and a pass's order ([`Engine::converge`]);
//! `observe` reads the table, `table` plans it and carries out its write rounds, `role` does the
//! host's part, `globals` the table-wide settings, `records` the ownership records, `pass` the
//! types a pass answers with. The engine reaches the world only through [`crate::io::Io`].

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
use plan::host::{HostOp, HostOwned, HostPlan, Missing, Role, plan_host, sysctls_of_interest};
use plan::{Desired, Observed, Op, Options, Owned, Plan};

use self::records::split;
use crate::io::{HostIo as _, Io, System, Table as _};
use crate::state_file;

mod globals;
mod observe;
mod pass;
mod realign;
mod records;
mod role;
mod table;

pub use self::pass::{
    FullPlan, GlobalsPass, HostPass, HostRefused, Outcome, Pass, PassSpec, Refused, TablePass,
    Unfit,
};
pub use self::realign::Realigned;

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
    /// Whether this director takes traffic (`lvsd drain --director` takes it out): the host
    /// part holds or announces its VIPs accordingly.
    pub rotation: plan::host::Rotation,
    /// The last whole read of the table, for the metrics (taken by [`Engine::take_last_read`]).
    last_read: Option<TableRead>,
    /// Raised (by the daemon's file watch) when a config change is waiting, lowered by the
    /// daemon when it takes its inputs in: a whole read of the table the pass lets give way
    /// ([`PassSpec::may_yield`]) stops between two slices of services and leaves the table
    /// it keeps as it was, so that an edit is not held up for a resync (15-25 s at 100,000
    /// services in the test VM).
    pub yield_to: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// A whole read of the table gave way to a change waiting for the loop: nothing was written,
/// and the table kept from the last pass is as it was. The error `observe` stops with, which
/// [`Engine::converge`] turns into [`Outcome::Yielded`].
#[derive(Debug)]
struct Yielded {
    /// It stopped in the middle of a dump: the connection holds the rest of it and is dropped.
    mid_dump: bool,
}

impl std::fmt::Display for Yielded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the whole read of the table gave way to a config change")
    }
}

impl std::error::Error for Yielded {}

/// What one whole read of the table cost, and how much of it was decoded anew: the price of a
/// resync, which `lvsd_table_read_*` metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRead {
    /// How long the read took (the kernel's dump and the decoding).
    pub took: std::time::Duration,
    /// Services read.
    pub services: usize,
    /// Services whose real servers read back unchanged, taken from the table the last pass
    /// left instead of being decoded again.
    pub reused: usize,
    /// Real servers decoded.
    pub reals_decoded: usize,
}

/// A pass that touched at most this many services reads them back one by one to verify them;
/// above it, the kernel's answer to every write is the verification (reading a 10,000-service
/// table back costs more than writing it).
const VERIFY_MAX: usize = 256;

/// A pass over the whole table with at least this many writes works out the table it leaves
/// on another thread while the kernel takes them (see `converge_table`); below it, handing
/// the work over costs more than it saves. Tests take the other thread from a few writes
/// on, so that the simulation's schedules run both ways.
#[cfg(not(test))]
const AHEAD_FROM: usize = 4096;
#[cfg(test)]
const AHEAD_FROM: usize = 8;

impl Engine {
    /// Loads the ownership records; connections are opened when first needed.
    pub fn new(state_dir: PathBuf, exclusive: bool) -> Self {
        Engine::with_io(System::new(state_dir.clone()), state_dir, exclusive)
    }

    /// An engine whose ownership records are read on a thread of their own, to be put in by
    /// [`Engine::records_read`], while its first read of the table runs (`lvsd apply`: a
    /// 10,000-service record takes 0.2 s to read in the test VM, which was in series before
    /// the table's dump). Until they are in, each counts as a record not read yet: any use of
    /// it reads it first, as for one that could not be read, so nothing is planned or
    /// written without it.
    pub fn reading_records(
        state_dir: PathBuf,
        exclusive: bool,
    ) -> (Self, tokio::task::JoinHandle<Records>) {
        let mut io = System::new(state_dir.clone());
        let records = tokio::task::spawn_blocking(move || Records::load(&mut io));
        let not_yet = |name: &str| state_file::Unreadable {
            path: state_dir.join(name).display().to_string(),
            why: "not read yet".to_owned(),
        };
        let pending = Records {
            owned: Err(not_yet("owned")),
            host: Err(not_yet("host")),
        };
        let engine = Engine::assemble(
            System::new(state_dir.clone()),
            state_dir,
            exclusive,
            pending,
        );
        (engine, records)
    }
}

/// The two ownership records as read: the table's and the host's.
pub struct Records {
    owned: std::result::Result<Owned, state_file::Unreadable>,
    host: std::result::Result<HostOwned, state_file::Unreadable>,
}

impl Records {
    /// Reads both through `io`.
    fn load<I: Io>(io: &mut I) -> Records {
        let started = std::time::Instant::now();
        let records = Records {
            owned: io.load_owned(),
            host: io.load_host(),
        };
        tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "loaded the ownership records");
        records
    }

    /// Says, as an error, which of them cannot be read.
    fn say_unreadable(&self) {
        for e in self
            .owned
            .as_ref()
            .err()
            .into_iter()
            .chain(self.host.as_ref().err())
        {
            tracing::error!("{e}");
        }
    }
}

impl<I: Io> Engine<I> {
    /// An engine reaching the world through `io` (the simulated one, in tests).
    pub fn with_io(mut io: I, state_dir: PathBuf, exclusive: bool) -> Self {
        let records = Records::load(&mut io);
        records.say_unreadable();
        Engine::assemble(io, state_dir, exclusive, records)
    }

    /// Puts in the records [`Engine::reading_records`] read (an unreadable one is said, and
    /// read again at each use, as ever).
    pub fn records_read(&mut self, records: Records) {
        records.say_unreadable();
        (self.owned, self.owned_unreadable) = split(records.owned);
        (self.host_owned, self.host_unreadable) = split(records.host);
    }

    fn assemble(io: I, state_dir: PathBuf, exclusive: bool, records: Records) -> Self {
        let (owned, owned_unreadable) = split(records.owned);
        let (host_owned, host_unreadable) = split(records.host);
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
            rotation: plan::host::Rotation::In,
            last_read: None,
            yield_to: None,
        }
    }

    /// The last whole read of the table since the last call, if there was one.
    pub fn take_last_read(&mut self) -> Option<TableRead> {
        self.last_read.take()
    }

    pub(super) async fn client(&mut self) -> Result<&mut I::Table> {
        if self.client.is_none() {
            self.client = Some(self.io.connect_table().await?);
        }
        self.client
            .as_mut()
            .context("the IPVS connection is not open")
    }

    pub(super) fn host(&mut self) -> Result<&I::Host> {
        if self.host.is_none() {
            self.host = Some(self.io.connect_host()?);
        }
        self.host
            .as_ref()
            .context("the rtnetlink connection is not open")
    }

    /// Where the ownership records (and the daemon's health file) live.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
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

    /// Why a plan must not be carried out without `--force`: one of the removal guards.
    pub fn refusal(&self, cfg: &Config, plan: &FullPlan) -> Option<anyhow::Error> {
        if let Some((removed, held)) =
            plan.host
                .guard(cfg.host.role, &self.host_owned, self.managed())
        {
            return Some(HostRefused { removed, held }.into());
        }
        match &plan.table {
            Some(t) if t.guard.tripped() => Some(Refused(t.clone()).into()),
            _ => None,
        }
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
                    None => self
                        .observe_table_giving_way(cfg, spec.may_yield)
                        .await
                        .map(|t| t.unwrap_or_default()),
                };
                match read {
                    Ok(t) => observed = Some(t),
                    Err(e) if e.is::<Yielded>() => pass.table = Outcome::Yielded,
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
                Ok(p) => match p.guard(cfg.host.role, &self.host_owned, self.managed()) {
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
        // The table stays as read when its plan was refused: the host's second round keeps
        // the VIPs of the services it still has.
        let planned = table_plan.and_then(|plan| observed.take().map(|o| (plan, o)));
        if let Some((plan, o)) = planned {
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
                Err(e) if e.is::<HostRefused>() => Outcome::Refused(e),
                Err(e) => Outcome::Failed(e),
            };
        }
        self.table = table;
        pass
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
    /// Changes the host without recording first what it is about to own there.
    SkipHostIntent,
    /// Deletes a real where it should drain it (connections cut).
    DeleteDrainedAtOnce,
    /// Works out the table a large pass leaves (beside its writes) without its first write.
    AheadMissesOne,
}

#[cfg(test)]
impl Engine<crate::sim::world::SimIo> {
    /// The table as the last pass left it, for tests to hold against the kernel's.
    pub(crate) fn kept_table(&self) -> Option<&Observed> {
        self.table.as_ref()
    }
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
