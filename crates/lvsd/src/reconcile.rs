//! One reconciliation pass against the kernel: observe, plan, guard, execute as one batch,
//! verify by observing again. Shared by `plan`, `apply` and the daemon so they cannot disagree.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use ipvs::{Client, DestKey, ServiceKey};
use plan::{Desired, Observed, Op, Options, Owned, Plan};

use crate::state_file;

/// Seconds since the Unix epoch: the clock drain deadlines use (they survive restarts).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The kernel connection and what lvsd remembers about it.
pub struct Engine {
    client: Client,
    state_dir: PathBuf,
    exclusive: bool,
    /// What lvsd manages, as last saved.
    pub owned: Owned,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Operations the kernel accepted.
    pub applied: Vec<Op>,
    /// Operations the kernel refused, with why.
    pub failed: Vec<(Op, ipvs::Error)>,
    /// Operations held back by the caller's filter (drift in report mode).
    pub skipped: Vec<Op>,
    /// The plan against the table as it is after the pass: empty when converged. Deletions of
    /// reals drained in this pass are left here for the next pass.
    pub after: Plan,
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
    /// Connects to the kernel and loads the ownership record.
    pub async fn new(state_dir: PathBuf, exclusive: bool) -> Result<Self> {
        let client = Client::connect().await?;
        let owned = state_file::load(&state_dir);
        Ok(Engine {
            client,
            state_dir,
            exclusive,
            owned,
        })
    }

    /// The live table.
    pub async fn observe(&mut self) -> Result<Observed> {
        let dump = self.client.dump().await.context("read the IPVS table")?;
        Ok(Observed::from_dump(&dump))
    }

    /// Plans against the live table without changing anything.
    pub fn plan(&self, desired: &Desired, observed: &Observed) -> Plan {
        plan::plan(
            desired,
            observed,
            &self.owned,
            Options {
                exclusive: self.exclusive,
                now: now(),
            },
        )
    }

    /// Converges the table on `desired`. Operations `allow` rejects are not carried out but
    /// returned as skipped. A tripped guard refuses the whole pass unless `force`.
    pub async fn converge(
        &mut self,
        desired: &Desired,
        force: bool,
        allow: &dyn Fn(&Op) -> bool,
    ) -> Result<Pass> {
        let mut pass = Pass::default();
        let mut observed = self.observe().await?;
        let mut plan = self.plan(desired, &observed);
        if plan.guard.tripped() && !force {
            return Err(Refused(plan).into());
        }
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
        for _round in 0..2 {
            let (todo, skip): (Vec<Op>, Vec<Op>) = plan
                .ops
                .iter()
                .filter(|op| !deferred(op, &drained_now))
                .cloned()
                .partition(|op| allow(op));
            pass.skipped = skip;
            if !todo.is_empty() {
                let requests: Vec<_> = todo.iter().map(Op::to_request).collect();
                let results = self.client.execute(&requests).await;
                for (op, r) in todo.into_iter().zip(results) {
                    match r {
                        Ok(()) => {
                            if let Op::DrainReal { service, key, .. } = &op {
                                drained_now.insert((*service, *key));
                            }
                            let name = desired
                                .services
                                .get(&op.service())
                                .and_then(|s| s.name.as_deref())
                                .unwrap_or("");
                            tracing::info!(service = %op.service(), name, "{op}");
                            pass.applied.push(op);
                        }
                        Err(e) => {
                            tracing::error!(service = %op.service(), error = %e, "{op} failed");
                            pass.failed.push((op, e));
                        }
                    }
                }
            }
            observed = self.observe().await?;
            self.remember(&plan, &observed)?;
            plan = self.plan(desired, &observed);
            if !pass.failed.is_empty()
                || plan
                    .ops
                    .iter()
                    .all(|op| !allow(op) || deferred(op, &drained_now))
            {
                break;
            }
        }
        pass.after = plan;
        Ok(pass)
    }

    /// Keeps the plan's ownership record, plus any managed service that should have gone but is
    /// still in the table (a failed delete must not turn it foreign).
    fn remember(&mut self, plan: &Plan, observed: &Observed) -> Result<()> {
        let mut next = plan.owned.clone();
        for (k, s) in &self.owned.services {
            if observed.services.contains_key(k) && !next.services.contains_key(k) {
                next.services.insert(*k, s.clone());
            }
        }
        if next != self.owned {
            state_file::save(&self.state_dir, &next)?;
            self.owned = next;
        }
        Ok(())
    }
}
