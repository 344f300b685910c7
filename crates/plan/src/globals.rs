//! The table-wide IPVS settings a config declares, planned like the table: the connection
//! timeouts (`ipvs.timeouts`) and the connection-sync daemons (`ha.sync`). What the config
//! wants, what the kernel has and what lvsd set before go in; ordered operations come out.
//! Original timeouts are recorded and restored when they leave the file; lvsd stops only the
//! sync daemons it started (or adopted because the config asked for them).
//!
//! The sync daemon runs as master *and* backup at once on every director, so either can take
//! over at any moment without a state change (the kernel allows one of each per namespace).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use model::{DaemonState, SyncDaemon, Timeouts};

/// The kernel's default multicast group for sync traffic.
pub const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// The kernel's default sync port.
pub const SYNC_PORT: u16 = 8848;

/// `ha.sync`: the sync daemons' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSpec {
    /// The interface the multicast traffic goes over.
    pub interface: String,
    /// The sync id (0–255) the directors of one pair share.
    pub id: u8,
    /// The multicast group (default 224.0.0.81).
    pub group: Option<IpAddr>,
    /// The base UDP port (default 8848).
    pub port: Option<u16>,
    /// The multicast TTL (default 1).
    pub ttl: Option<u8>,
    /// The largest sync message payload (default: from the interface's MTU).
    pub max_len: Option<u16>,
}

impl SyncSpec {
    /// The daemon of `state` these settings ask for.
    pub fn daemon(&self, state: DaemonState) -> SyncDaemon {
        let mut d = SyncDaemon::new(state, self.interface.clone(), u32::from(self.id));
        d.sync_maxlen = self.max_len;
        match self.group {
            Some(IpAddr::V4(g)) => d.mcast_group = Some(g),
            Some(IpAddr::V6(g)) => d.mcast_group6 = Some(g),
            None => {}
        }
        d.mcast_port = self.port;
        d.mcast_ttl = self.ttl;
        d
    }
}

/// `ipvs.timeouts`: the timeouts the config sets, in seconds (`None`: left as they are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutsSpec {
    /// Established TCP.
    pub tcp: Option<u32>,
    /// TCP after FIN.
    pub tcp_fin: Option<u32>,
    /// UDP.
    pub udp: Option<u32>,
}

impl TimeoutsSpec {
    /// No timeout is set.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_none() && self.tcp_fin.is_none() && self.udp.is_none()
    }

    /// `base` with the timeouts this sets.
    pub fn over(&self, base: Timeouts) -> Timeouts {
        Timeouts {
            tcp: self.tcp.unwrap_or(base.tcp),
            tcp_fin: self.tcp_fin.unwrap_or(base.tcp_fin),
            udp: self.udp.unwrap_or(base.udp),
        }
    }
}

/// What the config wants of the table-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalsDesired {
    /// Connection timeouts.
    pub timeouts: TimeoutsSpec,
    /// The sync daemons, when they are to run.
    pub sync: Option<SyncSpec>,
}

impl GlobalsDesired {
    /// Nothing declared: the kernel's settings are not lvsd's business.
    pub fn is_empty(&self) -> bool {
        self.timeouts.is_empty() && self.sync.is_none()
    }
}

/// The kernel's table-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalsObserved {
    /// Its timeouts.
    pub timeouts: Timeouts,
    /// The sync daemons running.
    pub daemons: Vec<SyncDaemon>,
}

/// Timeouts lvsd changed: what to restore, and what it set (to notice someone else's change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedTimeouts {
    /// Before lvsd's first change.
    pub original: Timeouts,
    /// What lvsd set last.
    pub set: Timeouts,
}

/// What lvsd set of the table-wide settings, remembered with the ownership record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalsOwned {
    /// Timeouts lvsd changed.
    pub timeouts: Option<OwnedTimeouts>,
    /// Sync daemons lvsd runs.
    pub daemons: BTreeSet<DaemonState>,
}

impl GlobalsOwned {
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.timeouts.is_none() && self.daemons.is_empty()
    }

    /// Records an operation (before it is carried out: intent, so a kill in between leaves
    /// an entry the next pass drops, never a daemon of lvsd's that it does not know about).
    pub fn record(&mut self, op: &GlobalOp) {
        match op {
            GlobalOp::SetTimeouts { from, to } => {
                let original = self.timeouts.map_or(*from, |t| t.original);
                self.timeouts = Some(OwnedTimeouts { original, set: *to });
            }
            GlobalOp::RestoreTimeouts { .. } => self.timeouts = None,
            GlobalOp::StartDaemon(d) => {
                self.daemons.insert(d.state);
            }
            GlobalOp::StopDaemon { daemon, .. } => {
                self.daemons.remove(&daemon.state);
            }
        }
    }
}

/// Why a sync daemon is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `ha.sync` left the config.
    NotInConfig,
    /// It runs with other settings than the config's: restarted with them.
    Settings,
}

/// One change to the table-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalOp {
    /// Set the connection timeouts.
    SetTimeouts {
        /// The kernel's now.
        from: Timeouts,
        /// Wanted.
        to: Timeouts,
    },
    /// Put the timeouts back as they were before lvsd.
    RestoreTimeouts {
        /// The kernel's now (what lvsd set).
        from: Timeouts,
        /// The original ones.
        to: Timeouts,
    },
    /// Stop a sync daemon (before a restart with new settings, or for good).
    StopDaemon {
        /// The daemon as it runs.
        daemon: SyncDaemon,
        /// Why.
        why: StopReason,
    },
    /// Start a sync daemon.
    StartDaemon(SyncDaemon),
}

impl GlobalOp {
    /// The kernel request that carries it out.
    pub fn to_request(&self) -> model::Request {
        match self {
            GlobalOp::SetTimeouts { to, .. } | GlobalOp::RestoreTimeouts { to, .. } => {
                model::Request::SetTimeouts(*to)
            }
            GlobalOp::StopDaemon { daemon, .. } => model::Request::DelDaemon(daemon.state),
            GlobalOp::StartDaemon(d) => model::Request::NewDaemon(d.clone()),
        }
    }

    /// A short name, for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            GlobalOp::SetTimeouts { .. } => "set_timeouts",
            GlobalOp::RestoreTimeouts { .. } => "restore_timeouts",
            GlobalOp::StopDaemon { .. } => "stop_sync_daemon",
            GlobalOp::StartDaemon(_) => "start_sync_daemon",
        }
    }
}

fn state_name(s: DaemonState) -> &'static str {
    match s {
        DaemonState::Master => "master",
        DaemonState::Backup => "backup",
        _ => "sync",
    }
}

fn timeouts(t: &Timeouts) -> String {
    format!("tcp {}s, tcp_fin {}s, udp {}s", t.tcp, t.tcp_fin, t.udp)
}

/// How a sync daemon is described: `master sync daemon on eth0, id 51, group 224.0.0.81:8848`.
pub fn describe_daemon(d: &SyncDaemon) -> String {
    let group: IpAddr = match (d.mcast_group, d.mcast_group6) {
        (Some(g), _) => g.into(),
        (None, Some(g)) => g.into(),
        (None, None) => SYNC_GROUP.into(),
    };
    let mut out = format!(
        "{} sync daemon on {}, id {}, group {}:{}",
        state_name(d.state),
        d.mcast_ifn,
        d.sync_id,
        group,
        d.mcast_port.unwrap_or(SYNC_PORT)
    );
    if let Some(t) = d.mcast_ttl.filter(|t| *t != 1) {
        out += &format!(", ttl {t}");
    }
    if let Some(m) = d.sync_maxlen {
        out += &format!(", max_len {m}");
    }
    out
}

impl fmt::Display for GlobalOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobalOp::SetTimeouts { from, to } => {
                write!(f, "~ timeouts {} (was {})", timeouts(to), timeouts(from))
            }
            GlobalOp::RestoreTimeouts { from, to } => write!(
                f,
                "~ timeouts {} (restored; lvsd had set {})",
                timeouts(to),
                timeouts(from)
            ),
            GlobalOp::StopDaemon { daemon, why } => {
                let why = match why {
                    StopReason::NotInConfig => "not in the config",
                    StopReason::Settings => "restarted with the config's settings",
                };
                write!(f, "- {} ({why})", describe_daemon(daemon))
            }
            GlobalOp::StartDaemon(d) => write!(f, "+ {}", describe_daemon(d)),
        }
    }
}

/// The table-wide changes of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalsPlan {
    /// In execution order: timeouts, then daemons stopped, then daemons started.
    pub ops: Vec<GlobalOp>,
    /// The record to start from: stale entries (a daemon someone stopped, timeouts someone
    /// changed since) dropped. Each op is recorded as it is carried out.
    pub kept: GlobalsOwned,
}

impl GlobalsPlan {
    /// In sync.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Whether a running daemon is the one `want` describes, as the kernel reports it: its
/// defaults filled in, and the payload length clamped as it clamps it.
pub fn daemon_matches(want: &SyncDaemon, got: &SyncDaemon) -> bool {
    let group = |d: &SyncDaemon| -> IpAddr {
        match (d.mcast_group, d.mcast_group6) {
            (Some(g), _) => g.into(),
            (None, Some(g)) => g.into(),
            (None, None) => SYNC_GROUP.into(),
        }
    };
    let max_len = match want.sync_maxlen {
        None => true,
        Some(m) => {
            // ip_vs_sync.c: a backup takes at least 1024 bytes; neither more than 65535 less
            // the IP and UDP headers.
            let headers = if group(want).is_ipv6() { 48 } else { 28 };
            let min = if want.state == DaemonState::Backup {
                1024
            } else {
                1
            };
            got.sync_maxlen == Some(m.clamp(min, 65535 - headers))
        }
    };
    want.state == got.state
        && want.mcast_ifn == got.mcast_ifn
        && want.sync_id == got.sync_id
        && group(want) == group(got)
        && want.mcast_port.unwrap_or(SYNC_PORT) == got.mcast_port.unwrap_or(SYNC_PORT)
        && want.mcast_ttl.unwrap_or(1) == got.mcast_ttl.unwrap_or(1)
        && max_len
}

/// The table-wide changes that take `observed` to `desired`, undoing what `owned` records and
/// the config no longer wants.
pub fn plan_globals(
    desired: &GlobalsDesired,
    observed: &GlobalsObserved,
    owned: &GlobalsOwned,
) -> GlobalsPlan {
    let mut plan = GlobalsPlan {
        kept: owned.clone(),
        ..GlobalsPlan::default()
    };
    // Timeouts: the config's over the originals (a timeout that left the file goes back).
    let now = observed.timeouts;
    match (desired.timeouts.is_empty(), owned.timeouts) {
        (false, o) => {
            let base = o.map_or(now, |o| o.original);
            let to = desired.timeouts.over(base);
            if to != now {
                plan.ops.push(GlobalOp::SetTimeouts { from: now, to });
            }
        }
        (true, Some(o)) if now == o.set && now != o.original => {
            plan.ops.push(GlobalOp::RestoreTimeouts {
                from: now,
                to: o.original,
            });
        }
        // Someone changed them since, or they are back already: not lvsd's any more.
        (true, Some(_)) => plan.kept.timeouts = None,
        (true, None) => {}
    }
    let mut stops = vec![];
    let mut starts = vec![];
    for state in [DaemonState::Master, DaemonState::Backup] {
        let running = observed.daemons.iter().find(|d| d.state == state);
        match (&desired.sync, running) {
            (Some(s), None) => starts.push(GlobalOp::StartDaemon(s.daemon(state))),
            (Some(s), Some(d)) => {
                let want = s.daemon(state);
                if daemon_matches(&want, d) {
                    // The config asks for it: lvsd's now, whoever started it.
                    plan.kept.daemons.insert(state);
                } else {
                    stops.push(GlobalOp::StopDaemon {
                        daemon: d.clone(),
                        why: StopReason::Settings,
                    });
                    starts.push(GlobalOp::StartDaemon(want));
                }
            }
            (None, Some(d)) if owned.daemons.contains(&state) => stops.push(GlobalOp::StopDaemon {
                daemon: d.clone(),
                why: StopReason::NotInConfig,
            }),
            (None, _) => {
                plan.kept.daemons.remove(&state);
            }
        }
    }
    plan.ops.extend(stops);
    plan.ops.extend(starts);
    plan
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn spec() -> SyncSpec {
        SyncSpec {
            interface: "eth0".into(),
            id: 51,
            group: None,
            port: None,
            ttl: None,
            max_len: None,
        }
    }

    /// A daemon as the kernel reports one started from `s`: every default filled in.
    fn running(s: &SyncSpec, state: DaemonState, max_len: u16) -> SyncDaemon {
        let mut d = s.daemon(state);
        d.mcast_group = Some(SYNC_GROUP);
        d.mcast_port = Some(SYNC_PORT);
        d.mcast_ttl = Some(1);
        d.sync_maxlen = Some(max_len);
        d
    }

    fn t(tcp: u32, fin: u32, udp: u32) -> Timeouts {
        Timeouts {
            tcp,
            tcp_fin: fin,
            udp,
        }
    }

    fn lines(p: &GlobalsPlan) -> Vec<String> {
        p.ops.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn sync_runs_as_master_and_backup_and_is_adopted_when_it_matches() {
        let desired = GlobalsDesired {
            sync: Some(spec()),
            ..Default::default()
        };
        let mut observed = GlobalsObserved {
            timeouts: t(900, 120, 300),
            daemons: vec![],
        };
        let p = plan_globals(&desired, &observed, &GlobalsOwned::default());
        assert_eq!(
            lines(&p),
            [
                "+ master sync daemon on eth0, id 51, group 224.0.0.81:8848",
                "+ backup sync daemon on eth0, id 51, group 224.0.0.81:8848",
            ]
        );
        let mut owned = p.kept.clone();
        for op in &p.ops {
            owned.record(op);
        }
        assert_eq!(owned.daemons.len(), 2);
        // As the kernel reports them (defaults filled in, max_len from the MTU): in sync.
        observed.daemons = vec![
            running(&spec(), DaemonState::Master, 1472),
            running(&spec(), DaemonState::Backup, 1472),
        ];
        assert!(plan_globals(&desired, &observed, &owned).is_empty());
        // Started by someone else with the same settings: adopted.
        let adopted = plan_globals(&desired, &observed, &GlobalsOwned::default());
        assert!(adopted.is_empty());
        assert_eq!(adopted.kept.daemons.len(), 2);
    }

    #[test]
    fn new_settings_restart_the_daemons_and_leaving_the_file_stops_only_lvsds() {
        let mut s = spec();
        let observed = GlobalsObserved {
            timeouts: t(900, 120, 300),
            daemons: vec![
                running(&s, DaemonState::Master, 1472),
                running(&s, DaemonState::Backup, 1472),
            ],
        };
        let owned = GlobalsOwned {
            daemons: [DaemonState::Master, DaemonState::Backup].into(),
            ..Default::default()
        };
        s.id = 52;
        s.port = Some(9000);
        let p = plan_globals(
            &GlobalsDesired {
                sync: Some(s),
                ..Default::default()
            },
            &observed,
            &owned,
        );
        assert_eq!(
            lines(&p),
            [
                "- master sync daemon on eth0, id 51, group 224.0.0.81:8848, max_len 1472 (restarted with the config's settings)",
                "- backup sync daemon on eth0, id 51, group 224.0.0.81:8848, max_len 1472 (restarted with the config's settings)",
                "+ master sync daemon on eth0, id 52, group 224.0.0.81:9000",
                "+ backup sync daemon on eth0, id 52, group 224.0.0.81:9000",
            ]
        );
        let gone = plan_globals(&GlobalsDesired::default(), &observed, &owned);
        assert_eq!(
            lines(&gone),
            [
                "- master sync daemon on eth0, id 51, group 224.0.0.81:8848, max_len 1472 (not in the config)",
                "- backup sync daemon on eth0, id 51, group 224.0.0.81:8848, max_len 1472 (not in the config)",
            ]
        );
        // Not lvsd's: left alone.
        let foreign = plan_globals(
            &GlobalsDesired::default(),
            &observed,
            &GlobalsOwned::default(),
        );
        assert!(foreign.is_empty());
    }

    #[test]
    fn max_len_is_compared_as_the_kernel_clamps_it() {
        let mut s = spec();
        s.max_len = Some(512);
        let master = running(&s, DaemonState::Master, 512);
        // A backup takes at least 1024.
        let backup = running(&s, DaemonState::Backup, 1024);
        assert!(daemon_matches(&s.daemon(DaemonState::Master), &master));
        assert!(daemon_matches(&s.daemon(DaemonState::Backup), &backup));
        assert!(!daemon_matches(
            &s.daemon(DaemonState::Backup),
            &running(&s, DaemonState::Backup, 512)
        ));
    }

    #[test]
    fn timeouts_are_set_over_the_originals_and_restored() {
        let observed = GlobalsObserved {
            timeouts: t(900, 120, 300),
            daemons: vec![],
        };
        let want = GlobalsDesired {
            timeouts: TimeoutsSpec {
                tcp: Some(600),
                udp: Some(30),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = plan_globals(&want, &observed, &GlobalsOwned::default());
        assert_eq!(
            lines(&p),
            ["~ timeouts tcp 600s, tcp_fin 120s, udp 30s (was tcp 900s, tcp_fin 120s, udp 300s)"]
        );
        let mut owned = p.kept.clone();
        owned.record(&p.ops[0]);
        let now = GlobalsObserved {
            timeouts: t(600, 120, 30),
            daemons: vec![],
        };
        assert!(plan_globals(&want, &now, &owned).is_empty());
        // udp leaves the file: back to its original, tcp stays.
        let fewer = GlobalsDesired {
            timeouts: TimeoutsSpec {
                tcp: Some(600),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            lines(&plan_globals(&fewer, &now, &owned)),
            ["~ timeouts tcp 600s, tcp_fin 120s, udp 300s (was tcp 600s, tcp_fin 120s, udp 30s)"]
        );
        // All leave: restored.
        assert_eq!(
            lines(&plan_globals(&GlobalsDesired::default(), &now, &owned)),
            [
                "~ timeouts tcp 900s, tcp_fin 120s, udp 300s (restored; lvsd had set tcp 600s, tcp_fin 120s, udp 30s)"
            ]
        );
        // Someone changed them since: theirs, left alone and forgotten.
        let changed = GlobalsObserved {
            timeouts: t(700, 120, 30),
            daemons: vec![],
        };
        let p = plan_globals(&GlobalsDesired::default(), &changed, &owned);
        assert!(p.is_empty());
        assert_eq!(p.kept.timeouts, None);
    }
}
