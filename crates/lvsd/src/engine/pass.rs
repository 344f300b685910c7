//! What a pass is asked to do and what it did, part by part, and why a part stopped: the
//! engine's answer to the daemon, `apply` and `plan`.

use super::*;

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
    /// The table's whole read gave way to a change waiting for the daemon
    /// ([`PassSpec::may_yield`]): nothing of it was carried out, and nothing failed.
    Yielded,
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
    /// A whole read of the table may give way to a waiting config change
    /// ([`super::Engine::yield_to`]): the table part is then [`Outcome::Yielded`], before
    /// anything is written.
    pub may_yield: bool,
}

/// No service.
pub(super) static NONE: BTreeSet<ServiceKey> = BTreeSet::new();

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
            may_yield: false,
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
