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
    /// What happened.
    pub outcome: Outcome,
}

/// The running checks.
pub struct Monitor {
    tasks: BTreeMap<CheckId, (CheckSpec, JoinHandle<()>)>,
    tx: mpsc::UnboundedSender<Report>,
    limit: Arc<Semaphore>,
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
        };
        (m, rx)
    }

    /// Runs exactly `wanted`: new or changed checks start (probing at once), checks that went
    /// away stop, the rest keep their rhythm.
    pub fn sync<'a>(&mut self, wanted: impl IntoIterator<Item = (&'a CheckId, &'a CheckSpec)>) {
        let wanted: BTreeMap<CheckId, CheckSpec> =
            wanted.into_iter().map(|(i, s)| (*i, s.clone())).collect();
        self.tasks.retain(|id, (spec, task)| {
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
                    if tx.send(Report { id, outcome }).is_err() {
                        return;
                    }
                    tokio::time::sleep_until(started + s.interval).await;
                }
            });
            self.tasks.insert(id, (spec, task));
        }
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
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}
