//! The host's part of a pass: the role's addresses, links and sysctls planned against the host
//! as it is, carried out in order (recorded before each change), and a second round once the
//! table is done.

use super::*;

impl<I: Io> Engine<I> {
    /// Host changes against the host as it is now. Without a role, IPVS sysctls or anything
    /// of lvsd's on the host, there is nothing to look at. `unable`: the services that cannot
    /// serve now (an active-active director withdraws their VIPs).
    pub(super) async fn plan_host(
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
        let desired = plan::host::host_desired_in(
            &cfg.host,
            &cfg.desired,
            table,
            &self.owned,
            unable,
            self.rotation,
        );
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

    /// Carries out a host plan in order, stopping at the first failure: later steps rely on
    /// earlier ones (a real server's VIP must not appear on `lo` before ARP is quiet).
    ///
    /// What the plan will newly put on the host (an address, a sysctl lvsd does not hold yet,
    /// a link brought up) is recorded, all of it in one durable save, before anything is
    /// carried out: a kill in between leaves entries the next pass drops when it finds nothing
    /// there, never something of lvsd's it does not know about. That intent stays the record
    /// on disk for the whole round (a sysctl lvsd already holds that it moves to another value
    /// is saved right after the write, intent and all, so the record keeps telling its value
    /// from someone else's). Once the plan has run, the record is saved with what was done: an
    /// intent whose operation the host refused or that was never tried is dropped, while one
    /// whose outcome is unknown (a timeout, a lost connection) is kept for the next pass to
    /// find or drop. One save a round when all goes well, however many VIPs it adds.
    pub(super) async fn execute_host(
        &mut self,
        plan: HostPlan,
        allow: bool,
        pass: &mut HostPass,
    ) -> Result<()> {
        let mut kept = plan.kept;
        if !allow {
            pass.skipped.extend(plan.ops);
            return self.save_host(&kept);
        }
        let mut intent = kept.clone();
        for op in plan.ops.iter().filter(|op| claims(&kept, op)) {
            intent.record(op);
        }
        #[cfg(test)]
        if self.mutation == Mutation::SkipHostIntent {
            intent = kept.clone();
        }
        self.save_host(&intent)?;
        for op in plan.ops {
            let moves_held =
                matches!(&op, HostOp::SetSysctl { key, .. } if kept.sysctls.contains_key(key));
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
                    intent.record(&op);
                    pass.applied.push(op);
                    if moves_held {
                        self.save_host(&intent)?;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "{op} failed");
                    if e.is_connection() {
                        self.host = None;
                        // It may have been carried out: what it claims stays recorded.
                        if claims(&kept, &op) {
                            kept.record(&op);
                        }
                    }
                    pass.failed = Some((op, e));
                    break;
                }
            }
        }
        self.save_host(&kept)
    }

    /// lvsd's record of the table for the host's guard: `None` while it could not be read
    /// (the guard then counts every VIP, as it cannot tell which services are gone).
    pub(super) fn managed(&self) -> Option<&plan::Owned> {
        self.owned_unreadable.is_none().then_some(&self.owned)
    }

    /// Saves the host record when it differs from the one on disk.
    pub(super) fn save_host(&mut self, kept: &HostOwned) -> Result<()> {
        if *kept != self.host_owned {
            self.io.save_host(kept)?;
            self.host_owned = kept.clone();
        }
        Ok(())
    }

    /// The host's second round, against the table as the pass left it: a director's VIP goes
    /// once its service is deleted, a tunnel device created in the first round gets its
    /// sysctls. Then verifies: what is still pending goes into `after`.
    pub(super) async fn finish_host(
        &mut self,
        cfg: &Config,
        table: Option<&Observed>,
        spec: &PassSpec<'_>,
        pass: &mut HostPass,
    ) -> Result<()> {
        let (allow_host, unable) = (spec.allow_host, spec.unable);
        if pass.failed.is_none() {
            let again = self.plan_host(cfg, table, unable).await?;
            // The first round's guard saw the VIPs this round would take away still held for
            // services in the table; the table part may since have deleted them.
            let refused = again.guard(cfg.host.role, &self.host_owned, self.managed());
            if let Some((removed, held)) = refused.filter(|_| allow_host && !spec.force) {
                return Err(HostRefused { removed, held }.into());
            }
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
}

/// Whether carrying `op` out makes lvsd the owner of something new on the host: what must be
/// in the record before the operation runs.
fn claims(kept: &HostOwned, op: &HostOp) -> bool {
    match op {
        HostOp::AddAddress(_) | HostOp::LinkUp { .. } => true,
        HostOp::SetSysctl { key, .. } => !kept.sysctls.contains_key(key),
        HostOp::CreateTunnel { .. }
        | HostOp::CreateDummy { .. }
        | HostOp::LinkDown { .. }
        | HostOp::DelAddress(_)
        | HostOp::RestoreSysctl { .. } => false,
    }
}
