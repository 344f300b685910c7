//! One task per checked real, each probing at its interval, all sharing a bound on how many
//! probes run at once. Tasks follow the config: unchanged checks keep running undisturbed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use plan::health::{CheckId, CheckSpec};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::probe::{Outcome, probe};

/// A probe's result, for the daemon's loop.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which service and real.
    pub id: CheckId,
    /// Which run of that check: a report still in the channel from a check that was changed
    /// (or removed and added again) is not the current check's, and must not count for it.
    pub generation: u64,
    /// What happened.
    pub outcome: Outcome,
}

/// The running checks.
pub struct Monitor {
    tasks: BTreeMap<CheckId, (CheckSpec, u64, JoinHandle<()>)>,
    tx: mpsc::UnboundedSender<Report>,
    limit: Arc<Semaphore>,
    generation: u64,
}

impl Monitor {
    /// A monitor running at most `concurrency` probes at a time, and the channel its reports
    /// arrive on.
    pub fn new(concurrency: usize) -> (Monitor, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let m = Monitor {
            tasks: BTreeMap::new(),
            tx,
            limit: Arc::new(Semaphore::new(concurrency.max(1))),
            generation: 0,
        };
        (m, rx)
    }

    /// Runs exactly `wanted`: new or changed checks start (probing at once), checks that went
    /// away stop, the rest keep their rhythm.
    pub fn sync<'a>(&mut self, wanted: impl IntoIterator<Item = (&'a CheckId, &'a CheckSpec)>) {
        let wanted: BTreeMap<CheckId, CheckSpec> =
            wanted.into_iter().map(|(i, s)| (*i, s.clone())).collect();
        self.tasks.retain(|id, (spec, _, task)| {
            let keep = wanted.get(id) == Some(spec);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, spec) in wanted {
            if self.tasks.contains_key(&id) {
                continue;
            }
            let target = SocketAddr::new(id.1.addr, spec.port.unwrap_or(id.1.port));
            self.generation += 1;
            let generation = self.generation;
            let tx = self.tx.clone();
            let limit = self.limit.clone();
            let s = spec.clone();
            let task = tokio::spawn(async move {
                loop {
                    let started = tokio::time::Instant::now();
                    let outcome = match limit.acquire().await {
                        Ok(_permit) => probe(target, &s).await,
                        Err(_) => return,
                    };
                    let report = Report {
                        id,
                        generation,
                        outcome,
                    };
                    if tx.send(report).is_err() {
                        return;
                    }
                    tokio::time::sleep_until(started + s.interval).await;
                }
            });
            self.tasks.insert(id, (spec, generation, task));
        }
    }

    /// Whether `report` comes from the check running now for its real (not from one that was
    /// aborted or replaced since it was sent).
    pub fn is_current(&self, report: &Report) -> bool {
        self.tasks
            .get(&report.id)
            .is_some_and(|(_, g, _)| *g == report.generation)
    }

    /// Checks running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// None running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for (_, _, task) in self.tasks.values() {
            task.abort();
        }
    }
}
