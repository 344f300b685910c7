//! `lvsd realign`: re-creating a hashing service so that the kernel holds its real servers in
//! the order a director starting from the config would. The kernel keeps a service's real
//! servers in the order they were added (newest first) and `mh`/`sh` map flows by that order;
//! an edit history (a real added later, or deleted and added again) leaves one director
//! mapping flows unlike the others. Only deleting the service and adding it again puts the
//! list back in order, which cuts the connections it carries: refused while it has any,
//! unless forced.

use super::*;

/// What a realignment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realigned {
    /// The service.
    pub service: ServiceKey,
    /// Its real servers in the kernel's order before.
    pub before: Vec<DestKey>,
    /// And after (the same as `before` when it was aligned already).
    pub after: Vec<DestKey>,
    /// The fingerprints ([`plan::hashing::fingerprint`]) before and after.
    pub fingerprints: (String, String),
    /// The connections (active + inactive) and persistence templates cut (forced).
    pub cut: (u64, u64),
    /// It was in the fresh order already: nothing was touched.
    pub already: bool,
}

impl std::fmt::Display for Realigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &[DestKey]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.already {
            return write!(
                f,
                "{}: already in the order a fresh director builds ({}), fingerprint {}; nothing changed",
                self.service,
                show(&self.after),
                self.fingerprints.1
            );
        }
        write!(
            f,
            "{}: re-created with its real servers in the order {} (was {}); fingerprint {} (was {})",
            self.service,
            show(&self.after),
            show(&self.before),
            self.fingerprints.1,
            self.fingerprints.0
        )?;
        if self.cut != (0, 0) {
            write!(
                f,
                "; cut {} connections and {} persistence templates (--force)",
                self.cut.0, self.cut.1
            )?;
        }
        Ok(())
    }
}

/// The order a fresh director holds `reals` in: lvsd adds them in sorted order (as the planner
/// creates a service), and the kernel puts each new one at the head of the list.
pub fn fresh_order(reals: impl IntoIterator<Item = DestKey>) -> Vec<DestKey> {
    let mut v: Vec<DestKey> = reals.into_iter().collect();
    v.sort();
    v.reverse();
    v
}

impl<I: Io> Engine<I> {
    /// Deletes `key` from the kernel and adds it again, with its settings and its real servers
    /// as they are now (weights included), the real servers added in sorted order so that the
    /// kernel holds them as a fresh director does; then reads it back and checks the order.
    /// Refused when lvsd does not manage the service, when it is leaving, when its scheduler
    /// does not hash on the order (not `mh` or `sh`), and, without `force`,
    /// while it carries connections or persistence templates. Nothing is touched when the order
    /// is the fresh one already.
    pub async fn realign(&mut self, key: &ServiceKey, force: bool) -> Result<Realigned> {
        if let Some(e) = &self.owned_unreadable {
            anyhow::bail!("{e}; lvsd does not touch the table until it can be read");
        }
        match self.owned.services.get(key) {
            None => anyhow::bail!(
                "lvsd does not manage {key} (its record in {} does not list it): realign only re-creates services lvsd created or adopted",
                self.state_dir.display()
            ),
            Some(o) if o.service_deadline.is_some() => {
                anyhow::bail!("{key} is leaving the table (draining): nothing to realign")
            }
            Some(_) => {}
        }
        let result = self.realign_in_kernel(key, force).await;
        // Whatever happened, the next pass reads the table anew.
        self.disconnect();
        result
    }

    async fn realign_in_kernel(&mut self, key: &ServiceKey, force: bool) -> Result<Realigned> {
        let client = self.client().await?;
        let service = client
            .service(key)
            .await
            .with_context(|| format!("read {key}"))?
            .with_context(|| format!("{key} is not in the kernel's table; the daemon's next pass creates it (in the fresh order)"))?;
        if !plan::hashing::hashes_on_order(&service.spec.scheduler) {
            anyhow::bail!(
                "{key} uses scheduler {}, which does not map flows by the order of its real servers: nothing to realign (only mh and sh do)",
                service.spec.scheduler
            );
        }
        let dests = client
            .dests(key)
            .await
            .with_context(|| format!("read the real servers of {key}"))?;
        let before: Vec<DestKey> = dests.iter().map(|d| d.key).collect();
        let fp_before =
            plan::hashing::fingerprint(&service.spec, dests.iter().map(|d| (&d.key, &d.spec)));
        let fresh = fresh_order(before.iter().copied());
        if before == fresh {
            return Ok(Realigned {
                service: *key,
                after: before.clone(),
                before,
                fingerprints: (fp_before.clone(), fp_before),
                cut: (0, 0),
                already: true,
            });
        }
        let (active, inactive, persistent) = dests.iter().fold((0u64, 0u64, 0u64), |a, d| {
            (
                a.0 + u64::from(d.conns.active),
                a.1 + u64::from(d.conns.inactive),
                a.2 + u64::from(d.conns.persistent),
            )
        });
        if active + inactive + persistent > 0 && !force {
            anyhow::bail!(
                "{key} carries {} connections ({active} active, {inactive} inactive) and {persistent} persistence templates; realigning deletes the service and cuts them. Take this director out of rotation (withdraw its announcements) and wait for them to end, or run again with --force to cut them",
                active + inactive
            );
        }
        let mut spec = service.spec.clone();
        spec.flags = spec.flags.without_kernel_bits();
        let mut add: Vec<&ipvs::Dest> = dests.iter().collect();
        add.sort_by_key(|d| d.key);
        let mut requests = vec![
            ipvs::Request::DelService(*key),
            ipvs::Request::NewService(*key, spec),
        ];
        requests.extend(
            add.iter()
                .map(|d| ipvs::Request::NewDest(*key, d.key, d.spec)),
        );
        tracing::warn!(service = %key, before = ?before.iter().map(ToString::to_string).collect::<Vec<_>>(), cut = active + inactive, templates = persistent, "realign: deleting the service and adding it again in the fresh order");
        let results = client.execute(&requests).await;
        let failed: Vec<String> = requests
            .iter()
            .zip(&results)
            .filter_map(|(r, res)| res.as_ref().err().map(|e| format!("{r:?}: {e}")))
            .collect();
        if !failed.is_empty() || results.len() != requests.len() {
            anyhow::bail!(
                "realigning {key} failed part way ({}); the daemon's next pass (or `lvsd apply`) puts back what is missing",
                if failed.is_empty() {
                    "the kernel answered fewer requests than were sent".to_owned()
                } else {
                    failed.join("; ")
                }
            );
        }
        let back = client
            .dests(key)
            .await
            .with_context(|| format!("read {key} back"))?;
        let after: Vec<DestKey> = back.iter().map(|d| d.key).collect();
        if after != fresh {
            anyhow::bail!(
                "{key} was re-created but the kernel holds its real servers in the order {} rather than {}",
                after
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                fresh
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let svc_back = client.service(key).await.ok().flatten();
        let fp_after = plan::hashing::fingerprint(
            &svc_back.map_or(service.spec, |s| s.spec),
            back.iter().map(|d| (&d.key, &d.spec)),
        );
        tracing::info!(service = %key, fingerprint = %fp_after, "realign: done");
        Ok(Realigned {
            service: *key,
            before,
            after,
            fingerprints: (fp_before, fp_after),
            cut: (active + inactive, persistent),
            already: false,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::sim::world::{SimIo, World, tcp};
    use ipvs::{DestSpec, ForwardMethod, Request, ServiceSpec};

    fn real(n: u8) -> DestKey {
        DestKey {
            addr: format!("10.0.0.{n}").parse().unwrap(),
            port: 80,
        }
    }

    /// A world whose mh service got its reals in the order `added` (so the kernel lists them
    /// reversed), recorded as lvsd's.
    fn world(added: &[u8]) -> (Rc<RefCell<World>>, ServiceKey) {
        let key = tcp("10.99.0.50", 80);
        let mut w = World::new(1_000, 30);
        w.apply(&Request::NewService(
            key,
            ServiceSpec::new("mh", ipvs::Family::Inet),
        ))
        .unwrap();
        for n in added {
            w.apply(&Request::NewDest(
                key,
                real(*n),
                DestSpec::new(ForwardMethod::DirectRoute, u32::from(*n)),
            ))
            .unwrap();
        }
        let mut owned = plan::Owned::default();
        owned.services.insert(
            key,
            plan::OwnedService {
                reals: added.iter().map(|n| real(*n)).collect(),
                ..Default::default()
            },
        );
        w.owned = Some(owned);
        (Rc::new(RefCell::new(w)), key)
    }

    fn order(w: &Rc<RefCell<World>>) -> Vec<DestKey> {
        w.borrow().services[0].dests.iter().map(|d| d.key).collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn the_fresh_order_is_sorted_newest_first() {
        assert_eq!(
            fresh_order([real(2), real(3), real(1)]),
            [real(3), real(2), real(1)]
        );
    }

    #[test]
    fn an_edit_history_is_undone_and_read_back_in_the_fresh_order() {
        // .1 added last (deleted and added again): first in the kernel's list.
        let (w, key) = world(&[2, 3, 1]);
        assert_eq!(order(&w), [real(1), real(3), real(2)]);
        let mut e = Engine::with_io(SimIo(w.clone()), PathBuf::from("/sim"), false);
        let r = rt().block_on(e.realign(&key, false)).unwrap();
        assert!(!r.already);
        assert_eq!(r.before, [real(1), real(3), real(2)]);
        assert_eq!(r.after, [real(3), real(2), real(1)]);
        assert_eq!(order(&w), r.after);
        assert_ne!(r.fingerprints.0, r.fingerprints.1);
        // Weights kept.
        let weights: Vec<u32> = w.borrow().services[0]
            .dests
            .iter()
            .map(|d| d.spec.weight)
            .collect();
        assert_eq!(weights, [3, 2, 1]);
        // A director that had them in order all along has the same fingerprint.
        let (fresh, _) = world(&[1, 2, 3]);
        let mut e2 = Engine::with_io(SimIo(fresh.clone()), PathBuf::from("/sim"), false);
        let r2 = rt().block_on(e2.realign(&key, false)).unwrap();
        assert!(r2.already, "{r2}");
        assert_eq!(r2.fingerprints.1, r.fingerprints.1);
        assert!(
            fresh.borrow().writes.len() == 4,
            "nothing written when aligned"
        );
        assert!(r2.to_string().contains("nothing changed"), "{r2}");
    }

    #[test]
    fn connections_refuse_it_unless_forced_and_foreign_services_are_refused() {
        let (w, key) = world(&[2, 1]);
        w.borrow_mut().services[0].dests[1].active = 7;
        let mut e = Engine::with_io(SimIo(w.clone()), PathBuf::from("/sim"), false);
        let err = rt()
            .block_on(e.realign(&key, false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("carries 7 connections"), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert_eq!(order(&w), [real(1), real(2)], "untouched");
        let r = rt().block_on(e.realign(&key, true)).unwrap();
        assert_eq!(order(&w), [real(2), real(1)]);
        assert!(r.to_string().contains("cut 7 connections"), "{r}");
        // A scheduler that does not hash on the order: nothing to realign.
        w.borrow_mut().services[0].spec.scheduler = "wlc".into();
        let err = rt()
            .block_on(e.realign(&key, true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("scheduler wlc"), "{err}");
        w.borrow_mut().services[0].spec.scheduler = "mh".into();
        // Not lvsd's: refused, whatever the force.
        w.borrow_mut().owned = Some(plan::Owned::default());
        let mut e = Engine::with_io(SimIo(w.clone()), PathBuf::from("/sim"), false);
        let err = rt()
            .block_on(e.realign(&key, true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not manage"), "{err}");
    }
}
