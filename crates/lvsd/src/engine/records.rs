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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("lvsd-records-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn record() -> Owned {
        let mut owned = Owned::default();
        let mut s = plan::OwnedService {
            drain_timeout: 30,
            ..Default::default()
        };
        s.reals.insert(DestKey {
            addr: "10.2.0.1".parse().unwrap(),
            port: 80,
        });
        owned
            .services
            .insert(ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80), s);
        owned
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// An engine of `d` whose records were read on their own thread and put in.
    fn read_beside(rt: &tokio::runtime::Runtime, d: &std::path::Path) -> Engine {
        let (mut e, records) = rt.block_on(async { Engine::reading_records(d.to_owned(), false) });
        e.records_read(rt.block_on(records).unwrap());
        e
    }

    /// Records read on their own thread are the ones on disk once put in; a damaged one is
    /// said at its use, as for an engine that read it itself.
    #[test]
    fn records_read_beside_the_table_are_the_records_on_disk() {
        let rt = runtime();
        let d = dir("beside");
        state_file::save(&d, &record()).unwrap();
        let mut e = read_beside(&rt, &d);
        // Taken from the thread's read, not read again at the first use.
        std::fs::remove_file(d.join("owned")).unwrap();
        assert!(e.table_record().is_ok());
        assert_eq!(e.owned, record());

        std::fs::write(d.join("owned"), "not a record").unwrap();
        let mut e = read_beside(&rt, &d);
        assert!(
            e.table_record().is_err(),
            "a damaged record stops the table's part"
        );
        assert_eq!(e.owned, Owned::default());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Until the records are put in, each counts as not read yet: its first use reads it, so
    /// nothing is planned against an empty record that is not the one on disk.
    #[test]
    fn records_not_put_in_are_read_at_their_first_use() {
        let rt = runtime();
        let d = dir("first-use");
        state_file::save(&d, &record()).unwrap();
        let (mut e, _records) = rt.block_on(async { Engine::reading_records(d.clone(), false) });
        assert_eq!(e.owned, Owned::default());
        assert!(e.owned_unreadable.is_some() && e.host_unreadable.is_some());
        assert!(e.table_record().is_ok());
        assert_eq!(e.owned, record());
        assert!(e.host_record().is_ok());
        assert!(e.host_unreadable.is_none());
        let _ = std::fs::remove_dir_all(&d);
    }
}
