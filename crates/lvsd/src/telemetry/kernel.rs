//! What the kernel's table says about agreement between directors, read at the moment it is
//! asked for (each `lvsd status`, each scrape): the fingerprint of every hashing service as the
//! kernel holds it, the connection-sync daemons, and how many connections this director holds.
//! Taken from a dump, never from the daemon's kept table (whose real servers are a sorted map:
//! the kernel's order, which is what `mh` and `sh` hash on, is lost there).

use super::*;

/// One hashing (`mh`, `sh`) service as the kernel holds it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HashingView {
    /// The service (`TCP 10.99.0.50:80`).
    pub service: String,
    /// `mh` or `sh`.
    pub scheduler: String,
    /// [`plan::hashing::fingerprint`] of the kernel's table: equal on two directors exactly
    /// when they map flows alike.
    pub fingerprint: String,
    /// The real servers in the kernel's order (the order the scheduler walks), to see why two
    /// fingerprints differ.
    pub reals: Vec<String>,
}

/// One connection-sync daemon (`ipvsadm --start-daemon`) the kernel runs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncView {
    /// `master` or `backup`.
    pub state: String,
    /// The interface its multicast goes over.
    pub interface: String,
    /// The sync ID master and backups share.
    pub syncid: u32,
}

/// The connections this director's kernel holds now.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Established connections, summed over every real server of every service.
    pub active: u64,
    /// Connections in other states (closing TCP, every UDP entry), summed likewise.
    pub inactive: u64,
}

/// The kernel's side of the status and metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KernelView {
    /// The hashing services, in the kernel's order of services.
    pub hashing: Vec<HashingView>,
    /// The sync daemons running.
    pub sync_daemons: Vec<SyncView>,
    /// The connections held. Summed from the real servers' counters: the kernel attaches a
    /// connection learnt from a sync master to its real server on the backup too, so a backup
    /// counts the synced connections it holds (ready for a failover) as well as its own.
    pub connections: ConnectionCounts,
}

impl KernelView {
    /// The view of a dump (services with their real servers in the kernel's order) and the sync
    /// daemons.
    pub fn of(dump: &[(ipvs::Service, Vec<ipvs::Dest>)], daemons: &[ipvs::SyncDaemon]) -> Self {
        let hashing = dump
            .iter()
            .filter(|(s, _)| plan::hashing::hashes_on_order(&s.spec.scheduler))
            .map(|(s, dests)| HashingView {
                service: s.key.to_string(),
                scheduler: s.spec.scheduler.clone(),
                fingerprint: plan::hashing::fingerprint(
                    &s.spec,
                    dests.iter().map(|d| (&d.key, &d.spec)),
                ),
                reals: dests.iter().map(|d| d.key.to_string()).collect(),
            })
            .collect();
        let mut connections = ConnectionCounts::default();
        for (_, dests) in dump {
            connections.add(connections_of(dests));
        }
        let sync_daemons = daemons
            .iter()
            .map(|d| SyncView {
                state: match d.state {
                    ipvs::DaemonState::Master => "master".into(),
                    ipvs::DaemonState::Backup => "backup".into(),
                    ipvs::DaemonState::Other(n) => format!("state-{n}"),
                },
                interface: d.mcast_ifn.clone(),
                syncid: d.sync_id,
            })
            .collect();
        KernelView {
            hashing,
            sync_daemons,
            connections,
        }
    }

    /// Reads the kernel now, on a connection of its own. Only the hashing services' real
    /// servers are kept (their order is what the view shows); every other service's are summed
    /// into the connection counts as they are read, so a status of a large table does not hold
    /// the table in the daemon's memory (100,000 services x 4 reals: about 100 MiB as a dump).
    pub async fn read() -> Result<Self, ipvs::Error> {
        let mut client = ipvs::Client::connect().await?;
        let (hashing, other): (Vec<_>, Vec<_>) = client
            .services()
            .await?
            .into_iter()
            .partition(|s| plan::hashing::hashes_on_order(&s.spec.scheduler));
        let keys: Vec<ipvs::ServiceKey> = other.iter().map(|s| s.key).collect();
        drop(other);
        let sums = client.dests_with(&keys, |d| connections_of(&d)).await?;
        let keys: Vec<ipvs::ServiceKey> = hashing.iter().map(|s| s.key).collect();
        let dests = client.dests_of(&keys).await?;
        let daemons = client.daemons().await?;
        let dump: Vec<_> = hashing.into_iter().zip(dests).collect();
        Ok(Self::assemble(&dump, &sums, &daemons))
    }

    /// The view of the hashing services' dump, with the connections of the others summed
    /// apart ([`connections_of`] of each).
    fn assemble(
        hashing: &[(ipvs::Service, Vec<ipvs::Dest>)],
        others: &[ConnectionCounts],
        daemons: &[ipvs::SyncDaemon],
    ) -> Self {
        let mut view = Self::of(hashing, daemons);
        for c in others {
            view.connections.add(*c);
        }
        view
    }
}

/// The connections one service's real servers hold.
fn connections_of(dests: &[ipvs::Dest]) -> ConnectionCounts {
    let mut c = ConnectionCounts::default();
    for d in dests {
        c.active += u64::from(d.conns.active);
        c.inactive += u64::from(d.conns.inactive);
    }
    c
}

impl ConnectionCounts {
    /// Adds `other`'s counts to these.
    fn add(&mut self, other: ConnectionCounts) {
        self.active += other.active;
        self.inactive += other.inactive;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use ipvs::{DaemonState, Dest, DestKey, DestSpec, ForwardMethod, Service, ServiceKey};
    use ipvs::{ServiceFlags, ServiceSpec, Stats, SyncDaemon};

    fn dump(order: &[u8], conns: u32) -> Vec<(Service, Vec<Dest>)> {
        let mut spec = ServiceSpec::new("mh", ipvs::Family::Inet);
        spec.flags = ServiceFlags::MH_FALLBACK | ServiceFlags::HASHED;
        let mh = Service {
            key: ServiceKey::tcp("10.99.0.50".parse().unwrap(), 80),
            spec,
            stats: Stats::default(),
        };
        let rr = Service {
            key: ServiceKey::tcp("10.99.0.51".parse().unwrap(), 80),
            spec: ServiceSpec::new("rr", ipvs::Family::Inet),
            stats: Stats::default(),
        };
        let dests = |v: &[u8]| -> Vec<Dest> {
            v.iter()
                .map(|n| {
                    let mut d = Dest::new(
                        DestKey {
                            addr: format!("10.0.0.{n}").parse().unwrap(),
                            port: 80,
                        },
                        DestSpec::new(ForwardMethod::DirectRoute, 1),
                    );
                    d.conns.active = conns;
                    d.conns.inactive = 2 * conns;
                    d
                })
                .collect()
        };
        vec![(mh, dests(order)), (rr, dests(&[9]))]
    }

    #[test]
    fn hashing_services_are_fingerprinted_in_kernel_order_and_connections_summed() {
        let daemons = [SyncDaemon::new(DaemonState::Backup, "eth0", 52)];
        let v = KernelView::of(&dump(&[3, 2, 1], 0), &daemons);
        assert_eq!(v.hashing.len(), 1, "rr is not fingerprinted");
        let h = &v.hashing[0];
        assert_eq!(h.service, "TCP 10.99.0.50:80");
        assert_eq!(h.scheduler, "mh");
        assert_eq!(h.reals, ["10.0.0.3:80", "10.0.0.2:80", "10.0.0.1:80"]);
        // The same table with traffic: the same fingerprint; another order: another.
        let busy = KernelView::of(&dump(&[3, 2, 1], 5), &daemons);
        assert_eq!(busy.hashing[0].fingerprint, h.fingerprint);
        assert_eq!(
            busy.connections,
            ConnectionCounts {
                active: 20,
                inactive: 40
            }
        );
        let other = KernelView::of(&dump(&[1, 3, 2], 0), &daemons);
        assert_ne!(other.hashing[0].fingerprint, h.fingerprint);
        assert_eq!(
            v.sync_daemons,
            [SyncView {
                state: "backup".into(),
                interface: "eth0".into(),
                syncid: 52
            }]
        );
    }

    #[test]
    fn a_status_sums_the_connections_of_the_services_it_does_not_keep() {
        // `read` keeps the hashing services' reals and folds the others': the view it
        // assembles is the one the whole dump gives.
        let daemons = [SyncDaemon::new(DaemonState::Backup, "eth0", 52)];
        let d = dump(&[3, 2, 1], 5);
        let (hashing, other): (Vec<_>, Vec<_>) = d
            .iter()
            .cloned()
            .partition(|(s, _)| plan::hashing::hashes_on_order(&s.spec.scheduler));
        assert!(!hashing.is_empty() && other.iter().any(|(_, d)| !d.is_empty()));
        let sums: Vec<ConnectionCounts> = other.iter().map(|(_, d)| connections_of(d)).collect();
        assert_eq!(
            KernelView::assemble(&hashing, &sums, &daemons),
            KernelView::of(&d, &daemons)
        );
    }

    #[test]
    fn status_and_metrics_show_fingerprints_sync_daemons_and_connections() {
        let t = Telemetry::new(std::path::Path::new("/etc/lvsd/lvsd.yaml"), "director");
        let daemons = [SyncDaemon::new(DaemonState::Backup, "eth0", 52)];
        let d = dump(&[3, 2, 1], 4);
        let v = KernelView::of(&d, &daemons);
        let fp = v.hashing[0].fingerprint.clone();
        let m = t.metrics(&d, &daemons);
        for l in [
            format!(
                "lvsd_service_fingerprint_info{{service=\"TCP 10.99.0.50:80\",scheduler=\"mh\",fingerprint=\"{fp}\"}} 1"
            ),
            "lvsd_sync_daemon_info{state=\"backup\",interface=\"eth0\",syncid=\"52\"} 1".into(),
            "lvsd_connections{state=\"active\"} 16".into(),
            "lvsd_connections{state=\"inactive\"} 32".into(),
        ] {
            assert!(m.contains(&l), "{l} in {m}");
        }
        assert!(
            !m.contains("10.99.0.51:80\",scheduler"),
            "rr has no fingerprint: {m}"
        );
        let mut s = t.snapshot();
        s.kernel = v;
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["hashing"][0]["fingerprint"], fp.as_str());
        assert_eq!(json["hashing"][0]["service"], "TCP 10.99.0.50:80");
        assert_eq!(json["sync_daemons"][0]["syncid"], 52);
        assert_eq!(json["connections"]["active"], 16);
        let human = super::super::status::human(&json);
        for l in [
            format!(
                "hashing:    TCP 10.99.0.50:80 (mh) fingerprint {fp}; reals in kernel order: 10.0.0.3:80, 10.0.0.2:80, 10.0.0.1:80"
            ),
            "sync:       backup on eth0, syncid 52".into(),
            "connections: 16 active, 32 inactive".into(),
        ] {
            assert!(human.contains(&l), "{l} in {human}");
        }
    }
}
