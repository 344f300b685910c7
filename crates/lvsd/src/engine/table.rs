//! The table's part of a pass: planning (all of it, or the services an edit touched), and the
//! write rounds: intent recorded, one batch, the kernel's answers, a read back, the record.

use super::pass::NONE;
use super::*;

impl<I: Io> Engine<I> {
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
    pub(super) fn scoped(&self, scope: &BTreeSet<ServiceKey>) -> bool {
        self.table.is_some() && scope.len() <= VERIFY_MAX
    }

    /// Plans the services in `scope` against `observed`.
    pub(super) fn plan_services(
        &self,
        desired: &Desired,
        observed: &Observed,
        scope: &BTreeSet<ServiceKey>,
    ) -> Plan {
        plan::plan_services(desired, observed, &self.owned, self.options(), scope)
    }

    pub(super) fn options(&self) -> Options {
        Options {
            exclusive: self.exclusive,
            now: self.io.now(),
        }
    }

    /// Plans against `observed`: the whole table, or the services in `scope`.
    pub(super) fn plan_in(
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

    /// The table's rounds of a pass; returns the table as it is afterwards.
    pub(super) async fn converge_table(
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
            let due = |op: &Op| !deferred(op, &drained_now) && !stuck.contains(op);
            if !plan.ops.iter().any(|op| due(op) && allow(op)) {
                pass.skipped = plan.ops.iter().filter(|op| due(op)).cloned().collect();
                break;
            }
            // The plan's operations are taken, not copied (a cold apply has one for every
            // service and real): the plan is made again, or emptied, before the next round.
            // In place: a cold apply's 110,000 operations are not moved into new vectors.
            let mut todo = std::mem::take(&mut plan.ops);
            todo.retain(|op| due(op));
            pass.skipped = if todo.iter().all(allow) {
                vec![]
            } else {
                let (keep, skip) = todo.into_iter().partition(|op| allow(op));
                todo = keep;
                skip
            };
            // Intent first: a kill after the kernel took these but before the record below
            // must not leave services of lvsd's that it would call foreign.
            let t_intent = std::time::Instant::now();
            self.record_intent(&plan.owned)?;
            tracing::debug!(target: "lvsd::timing", elapsed = ?t_intent.elapsed(), "recorded the intent");
            crate::fault::point(crate::fault::AFTER_INTENT);
            #[cfg(test)]
            let mut todo = self.mutation.apply(todo);
            let started = std::time::Instant::now();
            let requests: Vec<_> = todo.iter().map(Op::to_request).collect();
            // A large pass over the whole table: the table as the plan leaves it is worked out
            // on another thread while the kernel takes the writes (the kernel's share runs on
            // this one, inside each send). If the kernel refuses a write, that table is
            // dropped: the whole table is read again below.
            let ahead = if scope.is_none() && todo.len() >= AHEAD_FROM {
                let (mut after, ops) = (std::mem::take(&mut observed), std::mem::take(&mut todo));
                #[cfg(test)]
                let skip = usize::from(self.mutation == Mutation::AheadMissesOne);
                #[cfg(not(test))]
                let skip = 0;
                Some(tokio::task::spawn_blocking(move || {
                    for op in ops.iter().skip(skip) {
                        after.apply(op);
                    }
                    (after, ops)
                }))
            } else {
                None
            };
            let results = self.client().await?.execute(&requests).await;
            crate::fault::point(crate::fault::AFTER_WRITE);
            tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), ops = requests.len(), "wrote to the kernel");
            let (mut todo, ahead) = match ahead {
                None => (todo, None),
                Some(task) => {
                    let (after, ops) = task.await.map_err(|e| {
                        anyhow::anyhow!("working out the table after the writes stopped: {e}")
                    })?;
                    (ops, Some(after))
                }
            };
            let applied_before = pass.applied.len();
            let failed_before = pass.failed.len();
            // The services touched, as long as there are few enough to read back.
            let mut touched = BTreeSet::new();
            let mut many = false;
            for (op, r) in todo.iter().zip(&results) {
                // Changed by lvsd now: the last read's digest says nothing about it any more.
                // (None to forget after a cold start: no key hashed for each write.)
                if !self.digests.is_empty() {
                    self.digests.remove(&op.service());
                }
                if !many {
                    touched.insert(op.service());
                    many = touched.len() > VERIFY_MAX;
                }
                match r {
                    Ok(()) => {
                        if let Op::DrainReal { service, key, .. } = op {
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
                    }
                    Err(e) => {
                        tracing::error!(service = %op.service(), error = %e, "{op} failed");
                    }
                }
            }
            // Every write taken (a cold apply): the operations move over as one vector.
            if results.len() == todo.len() && results.iter().all(Result::is_ok) {
                if pass.applied.is_empty() {
                    pass.applied = todo;
                } else {
                    pass.applied.append(&mut todo);
                }
            } else {
                for (op, r) in todo.into_iter().zip(results) {
                    match r {
                        Ok(()) => pass.applied.push(op),
                        Err(e) => pass.failed.push((op, e)),
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
                match ahead {
                    // Every write of the round was taken: the table worked out beside them.
                    Some(after) => observed = after,
                    None => {
                        for op in &pass.applied[applied_before..] {
                            observed.apply(op);
                        }
                    }
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
}
