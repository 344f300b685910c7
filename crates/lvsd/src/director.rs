//! `lvsd drain --director`: taking a whole director out of rotation and back, the parts daemon
//! and client share. The record in the state directory (versioned JSON, written as the other
//! records are: a drain survives a restart and, where the state directory persists, a reboot,
//! so a patched director does not take traffic before the operator says so), and the pure
//! judgement of where a withdrawal stands.
//!
//! Out of rotation, the director stops taking new traffic the HA engine's way (active-active:
//! its VIPs leave the announce device for `lo`, so BIRD withdraws the routes while the
//! director still serves what the router sends before it converges; active-backup: the
//! health file says it cannot serve, so keepalived gives the VIPs away). It is *drained* once
//! the grace period is over and no packet has reached its services for [`QUIET`]: the
//! kernel's connection entries of flows the router moved elsewhere stay established until
//! they time out (sloppy TCP never sees their end), so the traffic, not the entries, says
//! whether the director still carries connections.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state_file::Unreadable;

/// The record's file name in the state directory.
pub const RECORD: &str = "director";

/// The record's format version; a record of a later one is refused, not guessed at.
const VERSION: u32 = 1;

/// The grace period when none is given: BGP withdraws in well under a second once BIRD sees
/// the address go, and keepalived moves a VIP within an advertisement interval or two; a
/// few seconds beyond that.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How long no packet may reach the director's services before it counts as drained: longer
/// than the kernel's statistics period (its counters are summed every 2 s).
pub const QUIET: Duration = Duration::from_secs(5);

/// The director out of rotation, as the operator asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// When it was asked (Unix seconds).
    pub set_at: u64,
    /// When it ends by itself (Unix seconds); none for until undone.
    pub until: Option<u64>,
    /// Seconds after `set_at` before the director may count as drained.
    pub grace_secs: u64,
    /// The operator's words.
    pub reason: String,
    /// Who asked.
    pub uid: u32,
    /// Their process.
    pub pid: u32,
}

/// The record as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// What the file is, for a person who opens it.
    record: String,
    version: u32,
    withdrawal: Option<Withdrawal>,
}

/// The record's text.
pub fn render(w: Option<&Withdrawal>) -> String {
    let r = Record {
        record: "lvsd director rotation: set with lvsd drain --director, ended with lvsd undrain --director; change it with those commands, not here".into(),
        version: VERSION,
        withdrawal: w.cloned(),
    };
    serde_json::to_string_pretty(&r).map_or_else(|_| String::new(), |t| t + "\n")
}

/// Reads the record's text.
pub fn parse(text: &str) -> Result<Option<Withdrawal>, String> {
    let r: Record =
        serde_json::from_str(text).map_err(|e| format!("not a director record: {e}"))?;
    if r.version != VERSION {
        return Err(format!(
            "version {} (this lvsd reads version {VERSION})",
            r.version
        ));
    }
    Ok(r.withdrawal)
}

/// Loads the record of state directory `dir`; a missing one means in rotation.
pub fn load(dir: &Path) -> Result<Option<Withdrawal>, Unreadable> {
    crate::state_file::load_with(dir, RECORD, parse)
}

/// Saves the record atomically and durably.
pub fn save(dir: &Path, w: Option<&Withdrawal>) -> anyhow::Result<()> {
    crate::state_file::write_atomic(dir, RECORD, &render(w))
}

/// Where the director stands, for `lvsd status` and the `lvsd_director_state` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In rotation.
    Serving,
    /// Out of rotation, still within its grace period or still reached by traffic.
    Withdrawing,
    /// Out of rotation, and nothing reaches it: it may be stopped, patched, rebooted.
    Drained,
}

impl State {
    /// The word status and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            State::Serving => "serving",
            State::Withdrawing => "withdrawing",
            State::Drained => "drained",
        }
    }

    /// Every state, for the metric's label set.
    pub const ALL: [State; 3] = [State::Serving, State::Withdrawing, State::Drained];
}

/// A withdrawal's progress: the packets its services had taken at the last look, and since
/// when that count has not moved.
#[derive(Debug, Clone, Default)]
pub struct Quiet {
    last: Option<u64>,
    since: Option<Duration>,
    drained: bool,
}

impl Quiet {
    /// Takes in one look at the packets the director's services have taken (`packets`, at
    /// `at` on the daemon's monotonic clock), `now` being the wall clock (Unix seconds) the
    /// grace period is counted on (it survives a restart). Returns the state after it.
    /// Once drained, the director stays drained until it is back in rotation: a stray packet
    /// later (a scan, a client with a stale route) does not bring it back to withdrawing.
    pub fn observe(&mut self, w: &Withdrawal, packets: u64, at: Duration, now: u64) -> State {
        if self.last != Some(packets) {
            self.last = Some(packets);
            self.since = Some(at);
        }
        let graced = now >= w.set_at.saturating_add(w.grace_secs);
        let quiet = self.since.is_some_and(|s| at.saturating_sub(s) >= QUIET);
        if graced && quiet {
            self.drained = true;
        }
        self.state(Some(w))
    }

    /// The state as last judged.
    pub fn state(&self, w: Option<&Withdrawal>) -> State {
        match w {
            None => State::Serving,
            Some(_) if self.drained => State::Drained,
            Some(_) => State::Withdrawing,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn out(set_at: u64) -> Withdrawal {
        Withdrawal {
            set_at,
            until: Some(set_at + 600),
            grace_secs: 5,
            reason: "patch tuesday".into(),
            uid: 0,
            pid: 42,
        }
    }

    #[test]
    fn the_record_round_trips_and_a_damaged_one_is_an_error() {
        let w = out(1_000);
        assert_eq!(parse(&render(Some(&w))).unwrap(), Some(w));
        assert_eq!(parse(&render(None)).unwrap(), None);
        assert!(parse("{\"record\":\"x\",\"version\":2,\"withdrawal\":null}").is_err());
        assert!(parse("garbage").is_err());
    }

    #[test]
    fn drained_only_after_the_grace_period_and_a_quiet_spell() {
        let w = out(1_000);
        let s = Duration::from_secs;
        let mut q = Quiet::default();
        assert_eq!(q.state(None), State::Serving);
        // Traffic still arrives: withdrawing, whatever the time.
        assert_eq!(q.observe(&w, 10, s(0), 1_000), State::Withdrawing);
        assert_eq!(q.observe(&w, 20, s(3), 1_003), State::Withdrawing);
        // Quiet for 5 s, but within the grace period.
        let w_long = Withdrawal {
            grace_secs: 30,
            ..w.clone()
        };
        let mut q2 = q.clone();
        assert_eq!(q2.observe(&w_long, 20, s(9), 1_009), State::Withdrawing);
        assert_eq!(q2.observe(&w_long, 20, s(30), 1_030), State::Drained);
        // Grace over, quiet for less than QUIET: not yet.
        assert_eq!(q.observe(&w, 20, s(7), 1_007), State::Withdrawing);
        assert_eq!(q.observe(&w, 20, s(8), 1_008), State::Drained);
        // Drained holds against a stray packet.
        assert_eq!(q.observe(&w, 21, s(9), 1_009), State::Drained);
        assert_eq!(q.state(None), State::Serving);
    }
}
