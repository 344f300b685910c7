//! The ownership records: read again while one cannot be, the intent recorded before a write,
//! and the exact record after it.

use super::*;

impl<I: Io> Engine<I> {
    /// The table's record, once it can be read: while it cannot, nothing of the table is
    /// planned or touched (read again at every pass, so a record fixed or removed by an
    /// operator is taken at the next one).
    pub(super) fn table_record(&mut self) -> Result<()> {
        let io = &mut self.io;
        retry(&mut self.owned_unreadable, &mut self.owned, "table", || {
            io.load_owned()
        })
    }

    /// [`Engine::table_record`] for the host's record and the host.
    pub(super) fn host_record(&mut self) -> Result<()> {
        let io = &mut self.io;
        retry(
            &mut self.host_unreadable,
            &mut self.host_owned,
            "host",
            || io.load_host(),
        )
    }

    /// Records, before writing, the services and reals a plan is about to make lvsd's, on top
    /// of what lvsd already manages: entries are only added here (the record after the writes
    /// is the exact one). Nothing is saved when the plan brings nothing new.
    pub(super) fn record_intent(&mut self, next: &Owned) -> Result<()> {
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
    pub(super) fn remember(
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

    pub(super) fn remember_all(&mut self, mut next: Owned, observed: &Observed) -> Result<()> {
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
pub(super) fn split<T: Default>(
    r: std::result::Result<T, state_file::Unreadable>,
) -> (T, Option<state_file::Unreadable>) {
    match r {
        Ok(t) => (t, None),
        Err(e) => (T::default(), Some(e)),
    }
}

/// Reads a record that could not be read (`problem`) again into `value`: an error while it
/// still cannot be.
fn retry<T>(
    problem: &mut Option<state_file::Unreadable>,
    value: &mut T,
    what: &str,
    load: impl FnOnce() -> std::result::Result<T, state_file::Unreadable>,
) -> Result<()> {
    if problem.is_none() {
        return Ok(());
    }
    match load() {
        Ok(v) => {
            tracing::info!("the {what}'s ownership record can be read again");
            *value = v;
            *problem = None;
            Ok(())
        }
        Err(e) => {
            *problem = Some(e.clone());
            Err(e.into())
        }
    }
}
