//! The table-wide settings: connection timeouts and the sync daemons, one change at a time,
//! recorded before each, read back after.

use super::*;

impl<I: Io> Engine<I> {
    /// The kernel's table-wide settings, when the config or lvsd's record has any: otherwise
    /// they are not lvsd's business and not read.
    pub(super) async fn observe_globals(
        &mut self,
        want: &GlobalsDesired,
    ) -> Result<Option<GlobalsObserved>> {
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
    pub(super) async fn plan_globals(&mut self, want: &GlobalsDesired) -> Result<GlobalsPlan> {
        Ok(match self.observe_globals(want).await? {
            Some(o) => plan_globals(want, &o, &self.owned.globals),
            None => GlobalsPlan::default(),
        })
    }

    /// Carries out the table-wide changes one at a time (a daemon is stopped before it is
    /// started again with new settings), recording what lvsd is about to own before it is
    /// there, then reads them back: what is still needed after a change the kernel took is
    /// stuck.
    pub(super) async fn converge_globals(
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
    pub(super) fn save_globals(&mut self, kept: &GlobalsOwned) -> Result<()> {
        if *kept != self.owned.globals {
            self.owned.globals = kept.clone();
            self.io.save_owned(&self.owned)?;
        }
        Ok(())
    }
}
