//! Reading the table: the whole of it (taking unchanged services from the table the last pass
//! left), a few services back after writing, and what health adopts from the kernel's weights.

use super::*;

/// Services whose real servers a whole read that may give way reads between two looks at
/// [`Engine::yield_to`]: about 80 ms of reading at 100,000 services in the test VM, which is
/// what an edit that lands on a resync waits at most once the services are listed (2,048
/// made it 0.3 s: edits of 158–301 ms in the benchmark). Not fewer: a slice is read on
/// several threads only from `ipvs`'s 512 services up. (Fewer in tests, whose tables are
/// small.)
const YIELD_SLICE: usize = if cfg!(test) { 64 } else { 512 };

/// How often a listing of the services that may give way wakes to look at
/// [`Engine::yield_to`] while the kernel is slow to answer it.
const LISTING_LOOK: std::time::Duration = std::time::Duration::from_millis(20);

impl<I: Io> Engine<I> {
    /// The live table. A service whose real servers read back as they were when the kept
    /// table was made (their settings, and whether each has connections: see
    /// [`ipvs::convert::fold_dest_digest`]) is taken from the kept table instead of being
    /// decoded again: the daemon's resync of a large, quiet table costs the kernel's reading
    /// and little else. Services whose drains wait on connection counts are always decoded.
    pub async fn observe(&mut self) -> Result<Observed> {
        self.observe_giving_way(false).await
    }

    /// [`Engine::observe`]; `may_yield`: it stops with [`Yielded`] when [`Engine::yield_to`]
    /// is up (looked at after the services and between slices of their real servers).
    async fn observe_giving_way(&mut self, may_yield: bool) -> Result<Observed> {
        let started = std::time::Instant::now();
        let cpu0 = cpu_now();
        self.fresh = false;
        let had_table = self.table.is_some();
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
        // A read that may give way looks at the flag after the services and between slices
        // of their real servers (each slice is read whole: the connection stays clean). The
        // daemon lowers the flag before it takes in what arrived, not here: an event sent
        // between the two is then a flag up, not one lowered and lost.
        let stop = self
            .yield_to
            .as_ref()
            .filter(|_| may_yield)
            .map(std::sync::Arc::clone);
        let waiting = || {
            stop.as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        };
        let read = async {
            let client = match self.client.as_mut() {
                Some(c) => c,
                None => self.client.insert(self.io.connect_table().await?),
            };
            // The listing is one dump (2-5 s at 100,000 services in the test VM): one that may
            // give way looks at the flag each time the task is polled, before the listing, and
            // stops the dump by dropping the connection, whose socket holds the rest of it.
            // The task is polled because the client gives the runtime its turn every few parts
            // of a dump (the kernel fills each read as it is made, so the dump alone never
            // waits). The look takes none of tokio's budget, so a listing that used it up at
            // every poll would not starve it; the timer only wakes the task when the kernel is
            // slow to answer.
            let services = match stop {
                None => client.services().await,
                Some(_) => {
                    let listing = client.services();
                    tokio::pin!(listing);
                    let mut asked = std::future::poll_fn(|_| {
                        if waiting() {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    });
                    loop {
                        tokio::select! {
                            biased;
                            () = &mut asked => {
                                return Err(anyhow::Error::new(Yielded { mid_dump: true }));
                            }
                            r = &mut listing => break r,
                            () = tokio::time::sleep(LISTING_LOOK) => {}
                        }
                    }
                }
            }
            .context("read the IPVS table")?;
            tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), services = services.len(), "read the services");
            let keys: Vec<(ServiceKey, Option<u64>)> =
                services.iter().map(|s| (s.key, prev(&s.key))).collect();
            let slice = if stop.is_some() {
                YIELD_SLICE
            } else {
                keys.len().max(1)
            };
            let mut reals = Vec::with_capacity(keys.len());
            for part in keys.chunks(slice) {
                if waiting() {
                    return Err(anyhow::Error::new(Yielded { mid_dump: false }));
                }
                reals.extend(
                    client
                        .dests_if_changed(part, plan::ObservedService::reals_from_kernel)
                        .await
                        .context("read the IPVS table")?,
                );
            }
            anyhow::Ok((services, reals))
        };
        let (services, reals) = match read.await {
            Ok(r) => r,
            Err(e) if e.is::<Yielded>() => {
                // Nothing was taken from them yet: the next read reuses them as before. No
                // table kept stays none (an empty one would be a table with nothing in it,
                // which the host part would plan every VIP's withdrawal against).
                if e.downcast_ref::<Yielded>().is_some_and(|y| y.mid_dump) {
                    self.client = None;
                }
                self.table = had_table.then_some(kept);
                self.digests = digests;
                tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "read the IPVS table: gave way to a config change");
                return Err(e);
            }
            Err(e) => {
                self.disconnect();
                return Err(e);
            }
        };
        let mut observed = Observed::default();
        let mut reused = 0usize;
        let mut decoded = 0usize;
        for (s, (digest, reals)) in services.into_iter().zip(reals) {
            let reals = match reals {
                Some(r) => {
                    decoded += r.len();
                    r
                }
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
        self.last_read = Some(TableRead {
            took: started.elapsed(),
            services: observed.services.len(),
            reused,
            reals_decoded: decoded,
        });
        Ok(observed)
    }

    /// Reads the whole table ahead of the config (`apply` reads both at once), kept for the
    /// first pass as if that pass had read it. A failure is forgotten: the pass reads again,
    /// and says what failed in its own words. It needs no ownership record (the pass that
    /// takes the table checks it): the records may still be being read meanwhile (see
    /// [`Engine::reading_records`]).
    pub async fn prefetch(&mut self) {
        if let Ok(t) = self.observe().await {
            self.keep_fresh(Some(t));
        }
    }

    /// The live table, when the role programs one.
    pub(super) async fn observe_table(&mut self, cfg: &Config) -> Result<Option<Observed>> {
        self.observe_table_giving_way(cfg, false).await
    }

    /// [`Engine::observe_table`]; `may_yield` as for [`Engine::observe_giving_way`] (a table
    /// kept fresh is taken as it is).
    pub(super) async fn observe_table_giving_way(
        &mut self,
        cfg: &Config,
        may_yield: bool,
    ) -> Result<Option<Observed>> {
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
                Ok(Some(self.observe_giving_way(may_yield).await?))
            }
        }
    }

    /// The table as the last pass left it, or as read now if no pass kept one (the daemon's
    /// first pass: slow start asks which reals the kernel already has in rotation). A table
    /// read here is kept fresh, so the pass that follows does not read it again. `None`: it
    /// cannot be read (the pass says why), or this host has no table.
    pub async fn table_now(&mut self, cfg: &Config) -> Option<&Observed> {
        if self.table.is_none() {
            match self.observe_table(cfg).await {
                Ok(t) => self.keep_fresh(t),
                Err(e) => tracing::debug!("the table cannot be read for slow start: {e:#}"),
            }
        }
        self.table.as_ref()
    }

    /// Keeps a table just read for the next pass.
    pub(super) fn keep_fresh(&mut self, table: Option<Observed>) {
        self.fresh = table.is_some();
        self.table = table;
    }

    /// Reads back the services in `keys` into `table`: a service the kernel does not have
    /// leaves it.
    pub(super) async fn refresh(
        &mut self,
        keys: &BTreeSet<ServiceKey>,
        table: &mut Observed,
    ) -> Result<()> {
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
    pub(super) fn disconnect(&mut self) {
        self.client = None;
        self.table = None;
        self.fresh = false;
        self.digests.clear();
    }

    /// The packets lvsd's services have taken in, summed: a withdrawn director is drained
    /// once this stops moving (see [`crate::director`]). One dump of the services, no real
    /// servers.
    pub async fn packets_in(&mut self) -> Result<u64> {
        let read = async {
            let client = self.client().await?;
            anyhow::Ok(client.services().await?)
        };
        match read.await {
            Ok(list) => Ok(list
                .iter()
                .filter(|s| self.owned.services.contains_key(&s.key))
                .map(|s| s.stats.inpkts)
                .fold(0u64, u64::wrapping_add)),
            Err(e) => {
                self.disconnect();
                Err(e)
            }
        }
    }

    /// Hashing (`mh`, `sh`) services whose real servers the kernel holds in another order
    /// than a director starting from this config would (see [`plan::mh_misaligned`]).
    pub async fn mh_warnings(&mut self, desired: &Desired) -> Result<Vec<String>> {
        let mut out = vec![];
        let client = self.client().await?;
        for (k, s) in desired
            .services
            .iter()
            .filter(|(_, s)| plan::hashing::hashes_on_order(&s.spec.scheduler))
        {
            let order: Vec<DestKey> = client.dests(k).await?.iter().map(|d| d.key).collect();
            out.extend(plan::mh_misaligned(k, s, &order));
        }
        Ok(out)
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
}
