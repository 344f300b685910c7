//! What the daemon does next, decided without doing anything: events in (a file event, SIGHUP,
//! a health transition, a look at the files, a reload's or a pass's outcome, a write of the
//! health file), the next step out (read the config, look at the files behind the paths, run a
//! pass of the table and/or the host, or wait until a deadline), and what to say or write after
//! it ([`Verdict`]). Pure and clocked by the caller, so every rule — the debounce of in-place
//! writes, a rejected file not read again, one re-read at most after a read the files moved
//! under, separate backoffs for the table and the host, drain polls, a difference that will not
//! go away, report-only drift, a reload that cannot be checked yet, which services' health is
//! applied again, the health file's value — is a table of cases below. The loop only carries
//! the steps out and reports what came of them.
//!
//! The table and the host are two parts that converge independently: each has its own due
//! time, failure count and standing, so a host that lacks its interface never holds back a
//! real server that health checks took out of rotation, and the other way round.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use ipvs::ServiceKey;

/// A point on the daemon's monotonic clock: the time since it started.
pub type At = Duration;

/// Quiet time after the last in-place write before the config is read (editors and config
/// management write in bursts). A rename into place is a whole file and is read at once.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// The longest a stream of writes can hold a reload back.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(5);
/// How often a pass looks again while drains wait for connections to close.
pub const DRAIN_POLL: Duration = Duration::from_millis(500);
/// First retry after a failure; doubled per failure up to the resync period.
pub const BACKOFF_START: Duration = Duration::from_millis(500);

/// The wait before retry `n` (1-based): 0.5 s doubling, capped at `max`.
pub fn backoff(n: u32, max: Duration) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(max.max(BACKOFF_START))
}

/// Which services a table pass looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole table (a resync, after a failure).
    All,
    /// Just these (an edit, a health change, drains).
    Services(BTreeSet<ServiceKey>),
}

impl Scope {
    /// Nothing yet.
    pub fn none() -> Scope {
        Scope::Services(BTreeSet::new())
    }

    /// Adds `other` to this scope.
    pub fn merge(&mut self, other: Scope) {
        match (&mut *self, other) {
            (Scope::All, _) => {}
            (s, Scope::All) => *s = Scope::All,
            (Scope::Services(a), Scope::Services(b)) => a.extend(b),
        }
    }
}

/// Which table operations a pass may carry out: all, or (`--on-drift report`) only those of
/// the services a config change or a health change asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Everything.
    All,
    /// Operations of these services only; everything else that differs is drift to report.
    Only(BTreeSet<ServiceKey>),
}

impl Allow {
    /// Whether an operation on `service` may be carried out.
    pub fn permits(&self, service: &ServiceKey) -> bool {
        match self {
            Allow::All => true,
            Allow::Only(s) => s.contains(service),
        }
    }
}

/// One pass, as the machine asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassRequest {
    /// The services whose health must be applied to the config again before the pass (their
    /// checks changed state, or an edit changed them): the rest of the effective table is as
    /// the last pass left it.
    pub stale: Scope,
    /// The table part and its scope; `None`: not this time.
    pub table: Option<Scope>,
    /// Whether the host part runs.
    pub host: bool,
    /// Table operations that may be carried out.
    pub allow: Allow,
    /// Whether host operations may be carried out (false: report them as drift).
    pub allow_host: bool,
    /// Whether a whole read of the table may give way to a config change that arrives while
    /// it runs (an edit is not held up for a resync). The whole pass owed after one gave way
    /// may give way again for one resync period from the first time; after that it runs to
    /// its end, so edits cannot put the resync off for ever.
    pub may_yield: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read the config again, then report [`Event::Reloaded`].
    Reload {
        /// A person asked (SIGHUP): so a file rejected before is read and said again, not
        /// looked at first ([`Check::Rejected`]).
        asked: bool,
    },
    /// See whether the files at the config's paths are still those the last read saw, then
    /// report [`Event::FileChecked`]. Why decides what a moved file leads to.
    CheckFile(Check),
    /// Run a pass, then report [`Event::PassDone`].
    Pass(PassRequest),
    /// Nothing to do until this time (or until an event comes).
    Wait(At),
}

/// Why the files behind the config's paths are looked at ([`Step::CheckFile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A resync: another file behind the path (a replaced directory, a lost watch) is read.
    Resync,
    /// Right after a read, once its included directories are watched: a file changed between
    /// the read and the watch gave no event, so a moved one is read again (as after a write
    /// the watch saw), once in a row at most.
    Read,
    /// A reload is due, nobody asked for it, and the last read was rejected: the very files
    /// rejected (a rename is reported by more than one event) are not read and said again.
    Rejected,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The config file was written: `whole` for a rename into place (read at once), else an
    /// in-place write (read once the writer has been quiet for [`DEBOUNCE`]).
    FileWritten {
        /// A whole file arrived at once.
        whole: bool,
    },
    /// SIGHUP: read the config now.
    Hangup,
    /// The answer to [`Step::CheckFile`].
    FileChecked {
        /// The files at the paths are not those the last read saw.
        changed: bool,
    },
    /// A checked real went up or down.
    HealthChanged(ServiceKey),
    /// The director left rotation or came back (`lvsd drain --director`, its undo or its
    /// end): the host part runs at once (its VIPs move, its health file changes), as an
    /// operator's wish (in report mode too), and after it a health file says the new value.
    RotationChanged,
    /// The answer to [`Step::Reload`].
    Reloaded(Reloaded),
    /// The answer to [`Step::Pass`].
    PassDone(PassSummary),
    /// The answer to [`Verdict::health_file`]: the value was written (`ok`), or not (and is
    /// written again after the next pass).
    HealthFileWritten {
        /// What was to be written, where.
        value: HealthFileValue,
        /// It was.
        ok: bool,
    },
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// Nothing new: the same text (or an included file gone: a missing file never means
    /// "remove").
    Unchanged,
    /// Nothing new: the config file itself is gone (which never means "remove"). Unlike
    /// [`Reloaded::Unchanged`], not the config in force back on disk.
    Gone,
    /// A new config is in force; these services changed.
    Changed(Scope),
    /// Refused (invalid, insecure, or the guard): the last good config stays.
    Rejected(String),
    /// The new config could not be checked against the table and host yet (they cannot be
    /// read): the last good config stays, and the reload is tried again later. Accepting it
    /// unchecked would let a truncated file through the guard.
    Deferred(String),
}

/// How one part of a pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<T> {
    /// The part was not asked for.
    NotRun,
    /// It ran.
    Done(T),
    /// A guard refused its plan (unless `--force`): nothing of it was carried out.
    Refused(String),
    /// It could not run (the kernel or host could not be read, the host lacks what the role
    /// needs): nothing of it was carried out.
    Failed(String),
    /// A whole read of the table gave way to a config change waiting for the loop
    /// ([`PassRequest::may_yield`]): nothing of it was carried out, and the whole pass is owed
    /// once the change has had its pass.
    Yielded,
}

/// The table part of a finished pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSummary {
    /// Operations the kernel accepted.
    pub applied: usize,
    /// Operations the kernel refused.
    pub failed: usize,
    /// Operations held back (drift, in report mode).
    pub skipped: usize,
    /// Differences that remained after a write the kernel accepted and that was read back:
    /// something the planner and the kernel disagree about. Each is a failure.
    pub stuck: Vec<String>,
    /// Services with operations still pending or drains waiting.
    pub busy: BTreeSet<ServiceKey>,
    /// Drains wait for connections.
    pub waiting: bool,
    /// Operations the pass may carry out are still pending (the next round will).
    pub more: bool,
}

/// The host part of a finished pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSummary {
    /// Operations carried out.
    pub applied: usize,
    /// The operation that failed, with why (the ones after it were not tried).
    pub failed: Option<String>,
    /// Operations held back (drift, in report mode).
    pub skipped: usize,
    /// Operations still pending after the pass (e.g. a tunnel device's sysctls, settable once
    /// the device exists).
    pub pending: bool,
}

/// A pass's outcome, in the terms the machine decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassSummary {
    /// The table part.
    pub table: Part<TableSummary>,
    /// The host part.
    pub host: Part<HostSummary>,
    /// How many services can be served, when the config names a health file
    /// (`ha.health_file`) to say it in.
    pub serving: Option<Serving>,
}

/// What the health file's value is made of, and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// The health file the config names.
    pub file: PathBuf,
    /// Services the health checks say cannot be served here (no healthy real, no fallback).
    pub unable: usize,
    /// All the config's services (none of which a table never programmed serves).
    pub services: usize,
}

/// Where a part stands, for `STATUS=`, `lvsd status` and the `lvsd_converged` metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// No pass has finished yet.
    Starting,
    /// Matches the config.
    Converged,
    /// Changes or drains are under way.
    Converging,
    /// The last attempt failed; retried after a backoff.
    Failing {
        /// Why.
        why: String,
        /// The backoff.
        wait: Duration,
        /// The next attempt.
        retry_at: At,
    },
    /// A guard refused the plan; waiting for a config change (or `--force`).
    Refused(String),
}

impl Standing {
    /// Matches the config.
    pub fn is_converged(&self) -> bool {
        matches!(self, Standing::Converged)
    }

    /// How it stands, in a few words.
    pub fn describe(&self) -> String {
        match self {
            Standing::Starting => "not yet: first pass under way".into(),
            Standing::Converged => "in sync".into(),
            Standing::Converging => "converging".into(),
            Standing::Failing { why, wait, .. } => format!("failing: {why}; retrying in {wait:?}"),
            Standing::Refused(why) => format!("refused: {why}"),
        }
    }
}

/// A value of the health file, and the file it is (to be) written to: a config that names
/// another file has it written there, even with the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthFileValue {
    /// The file.
    pub file: PathBuf,
    /// How many services this director cannot serve.
    pub value: usize,
}

/// What the loop should log, count, say or write after an event (mostly a pass), beyond the
/// step's own lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Write this value to the health file (it changed, or was never written), then report
    /// [`Event::HealthFileWritten`].
    pub health_file: Option<HealthFileValue>,
    /// Say the config's hash now: the pass that carries a config change out is done (hashing
    /// a large file is not worth delaying the pass for).
    pub say_hash: bool,
    /// The file on disk is the config in force again (a rejected or waiting edit undone).
    pub config_back: bool,
    /// A look right after a read found the files moved, and they are read again (else a
    /// second move in a row is left to the watch and the resync: no loop of reads, whatever
    /// a file system reports).
    pub read_again: bool,
    /// Differences repaired or (report mode) seen: changes the daemon did not expect.
    pub drift: u64,
    /// Differences that would not go away and were not reported before: log them once.
    pub new_stuck: Vec<String>,
    /// The table's standing changed.
    pub table_changed: bool,
    /// The host's standing changed.
    pub host_changed: bool,
}

/// Settings the decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Full resync period; also the cap of every backoff.
    pub resync: Duration,
    /// `--on-drift report`: repair nothing the config did not ask for.
    pub report_drift: bool,
}

#[derive(Debug, Clone)]
struct TablePart {
    due: Option<(At, Scope)>,
    failures: u32,
    standing: Standing,
}

#[derive(Debug, Clone)]
struct HostPart {
    due: Option<At>,
    failures: u32,
    standing: Standing,
}

/// The daemon's state of mind: what is due when, and how each part stands.
#[derive(Debug, Clone)]
pub struct Machine {
    settings: Settings,
    table: TablePart,
    host: HostPart,
    /// A reload is due at this time (a rename or SIGHUP: now; in-place writes: once quiet;
    /// a deferred reload: after its backoff).
    reload_at: Option<At>,
    /// When the current burst of in-place writes began (for [`DEBOUNCE_MAX`]).
    burst_since: Option<At>,
    /// The due reload was asked for by SIGHUP.
    asked: bool,
    reload_failures: u32,
    next_resync: At,
    /// Report mode: the services whose changes were asked for and are not done yet (`None`:
    /// all of them, as at start).
    pending: Option<BTreeSet<ServiceKey>>,
    /// Report mode: the host's changes were asked for (start, a config change).
    host_pending: bool,
    /// Changes are expected (after a start, a reload or a health change); otherwise a pass
    /// that changes something repaired drift.
    expect_changes: bool,
    /// The differences that would not go away in the last pass (reported once each).
    stuck: BTreeSet<String>,
    /// The outstanding [`Step::CheckFile`], and the read not looked at again yet.
    check: Checks,
    /// The last read was rejected: the files behind the paths are those refused, unless
    /// a look says they moved.
    rejected: bool,
    /// Why the file on disk is not the config in force (rejected, or waiting to be checked),
    /// for `STATUS=`.
    problem: Option<String>,
    /// The config's hash is due after the next pass (a change was taken).
    hash_due: bool,
    /// Services whose health must be applied again before the next pass.
    stale: Scope,
    /// The health file.
    health_file: HealthFile,
    /// A whole pass gave way to a config change and is owed: due as soon as no reload and no
    /// other table pass is. The next whole pass, whichever it is, pays it.
    owed: bool,
    /// When the whole pass owed first gave way: it may give way again until one resync period
    /// has passed since, and then runs to its end (so edits cannot put the resync off for
    /// ever, drains or not). At 100,000 services a whole read takes 15-25 s in the test VM,
    /// and an edit that landed on an owed pass that could not give way waited seconds.
    owed_since: Option<At>,
}

/// The looks at the files behind the config's paths.
#[derive(Debug, Clone, Default)]
struct Checks {
    /// The look asked for and not answered yet.
    asked: Option<Check>,
    /// A read was just taken in; its files are looked at before anything else.
    read_due: bool,
    /// The last look right after a read found the files moved, and asked for another read:
    /// the next such look leaves a move to the events and the resync.
    rechecked: bool,
}

/// What the health file says: how many services this director cannot serve (keepalived's
/// `track_file` puts it in FAULT while that is not 0).
#[derive(Debug, Clone, Default)]
struct HealthFile {
    /// The table has been in sync at least once since the start: until then it serves nothing.
    ever_converged: bool,
    /// The value as last written, and where (written again only when either changes).
    written: Option<HealthFileValue>,
    /// The value last asked for and not answered yet: the writer writes on its own thread, so
    /// the answer about an older value can arrive after a newer one was asked for.
    asked: Option<HealthFileValue>,
}

impl Machine {
    /// A daemon that has just read its config at `now`: its files are looked at again first
    /// (they may have moved before the watch followed them), then both parts are due at once.
    pub fn new(settings: Settings, now: At) -> Self {
        Machine {
            settings,
            table: TablePart {
                due: Some((now, Scope::All)),
                failures: 0,
                standing: Standing::Starting,
            },
            host: HostPart {
                due: Some(now),
                failures: 0,
                standing: Standing::Starting,
            },
            reload_at: None,
            burst_since: None,
            asked: false,
            reload_failures: 0,
            next_resync: now + settings.resync,
            pending: None,
            host_pending: true,
            expect_changes: true,
            stuck: BTreeSet::new(),
            check: Checks {
                read_due: true,
                ..Checks::default()
            },
            rejected: false,
            problem: None,
            hash_due: false,
            stale: Scope::All,
            health_file: HealthFile::default(),
            owed: false,
            owed_since: None,
        }
    }

    /// Why the file on disk is not the config in force, if it is not: a rejected edit, or one
    /// waiting to be checked.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// The table's standing.
    pub fn table(&self) -> &Standing {
        &self.table.standing
    }

    /// The host's standing.
    pub fn host(&self) -> &Standing {
        &self.host.standing
    }

    /// Both parts match the config.
    pub fn converged(&self) -> bool {
        self.table.standing.is_converged() && self.host.standing.is_converged()
    }

    /// The next step at `now`.
    pub fn next(&mut self, now: At) -> Step {
        if std::mem::take(&mut self.check.read_due) {
            return self.check(Check::Read);
        }
        if self.reload_at.is_some_and(|t| t <= now) {
            self.reload_at = None;
            self.burst_since = None;
            let asked = std::mem::take(&mut self.asked);
            if !asked && self.rejected {
                return self.check(Check::Rejected);
            }
            return Step::Reload { asked };
        }
        if self.next_resync <= now {
            self.next_resync = now + self.settings.resync;
            due_table(&mut self.table, now, Scope::All);
            self.host.due = Some(self.host.due.map_or(now, |t| t.min(now)));
            return self.check(Check::Resync);
        }
        // A whole pass that gave way comes after the change it gave way to has had its pass.
        if self.owed && self.reload_at.is_none() && self.table.due.is_none() {
            due_table(&mut self.table, now, Scope::All);
        }
        let table_due = self.table.due.as_ref().is_some_and(|(t, _)| *t <= now);
        let host_due = self.host.due.is_some_and(|t| t <= now);
        if table_due || host_due {
            let table = if table_due {
                self.table.due.take().map(|(_, s)| s)
            } else {
                None
            };
            // A pass of the whole table reads all of it, as a resync would: the next resync is
            // a period after it. (The first pass comes after a start that can take a while
            // — a large table is read for health before it — and is not followed at once by
            // a second whole read.)
            let whole = table == Some(Scope::All);
            if whole {
                self.next_resync = now + self.settings.resync;
            }
            // Only a whole pass pays what is owed.
            let owed = whole && std::mem::take(&mut self.owed);
            if whole && !owed {
                self.owed_since = None;
            }
            let may_yield = whole
                && (!owed
                    || self
                        .owed_since
                        .is_some_and(|since| now < since + self.settings.resync));
            // The host is looked at with every table pass (it is cheap, and a VIP must follow
            // its service), except while its own failures back it off.
            let host = host_due || self.host.failures == 0;
            if host {
                self.host.due = None;
            }
            let allow = match (&self.pending, self.settings.report_drift) {
                (Some(p), true) => Allow::Only(p.clone()),
                _ => Allow::All,
            };
            return Step::Pass(PassRequest {
                stale: std::mem::replace(&mut self.stale, Scope::none()),
                table,
                host,
                allow,
                allow_host: !self.settings.report_drift || self.host_pending,
                may_yield,
            });
        }
        let deadlines = [
            self.reload_at,
            Some(self.next_resync),
            self.table.due.as_ref().map(|(t, _)| *t),
            self.host.due,
        ];
        Step::Wait(
            deadlines
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.next_resync),
        )
    }

    /// Takes an event in at `now`; returns what the loop should log or count for a pass.
    pub fn on(&mut self, event: Event, now: At) -> Verdict {
        match event {
            Event::FileWritten { whole: true } => self.reload_now(now),
            Event::Hangup => {
                self.asked = true;
                self.reload_now(now);
            }
            Event::FileWritten { whole: false } => self.written_in_place(now),
            Event::FileChecked { changed } => return self.checked(changed, now),
            Event::HealthChanged(service) => {
                self.stale.merge(Scope::Services([service].into()));
                // Health changes are the config's wishes, not drift, in report mode too.
                if let Some(p) = &mut self.pending {
                    p.insert(service);
                }
                self.expect_changes = true;
                due_table(&mut self.table, now, Scope::Services([service].into()));
            }
            Event::RotationChanged => {
                self.expect_changes = true;
                self.host_pending = true;
                self.host.failures = 0;
                self.host.due = Some(now);
            }
            Event::Reloaded(r) => return self.reloaded(r, now),
            Event::PassDone(p) => return self.pass_done(p, now),
            Event::HealthFileWritten { value, ok } => {
                // Only the answer about the value last asked for counts: an older value's
                // (written, then overwritten, or not) says nothing of what the file holds.
                let hf = &mut self.health_file;
                if hf.asked.as_ref() == Some(&value) {
                    hf.asked = None;
                    if ok {
                        hf.written = Some(value);
                    }
                }
            }
        }
        Verdict::default()
    }

    fn reload_now(&mut self, now: At) {
        self.reload_at = Some(now);
    }

    /// An in-place write: read once the writer has been quiet for DEBOUNCE, but never later
    /// than DEBOUNCE_MAX after the burst began; a reload already due stays due.
    fn written_in_place(&mut self, now: At) {
        let since = *self.burst_since.get_or_insert(now);
        let quiet = (now + DEBOUNCE).min(since + DEBOUNCE_MAX);
        if self.reload_at.is_none_or(|t| t > now) {
            self.reload_at = Some(quiet);
        }
    }

    /// Asks for a look at the files, remembering why.
    fn check(&mut self, why: Check) -> Step {
        self.check.asked = Some(why);
        Step::CheckFile(why)
    }

    /// What a look at the files leads to, by why it was asked for.
    fn checked(&mut self, changed: bool, now: At) -> Verdict {
        let mut v = Verdict::default();
        match self.check.asked.take() {
            Some(Check::Resync) | None => {
                if changed {
                    self.reload_now(now);
                }
            }
            Some(Check::Read) => {
                if !changed {
                    self.check.rechecked = false;
                } else if !std::mem::replace(&mut self.check.rechecked, true) {
                    v.read_again = true;
                    self.written_in_place(now);
                }
            }
            Some(Check::Rejected) => {
                if changed {
                    // Not the files rejected any more: read them now.
                    self.rejected = false;
                    self.reload_now(now);
                }
            }
        }
        v
    }

    fn reloaded(&mut self, r: Reloaded, now: At) -> Verdict {
        let mut v = Verdict::default();
        self.check.read_due = true;
        self.rejected = matches!(r, Reloaded::Rejected(_));
        if !matches!(r, Reloaded::Deferred(_)) {
            self.reload_failures = 0;
        }
        match r {
            Reloaded::Unchanged => v.config_back = self.problem.take().is_some(),
            Reloaded::Gone => {}
            Reloaded::Rejected(why) => {
                self.problem = Some(format!("config rejected: {}", first_line(&why)));
            }
            Reloaded::Changed(touched) => {
                self.problem = None;
                self.hash_due = true;
                self.stale.merge(touched.clone());
                self.expect_changes = true;
                match (&touched, &mut self.pending) {
                    (Scope::All, p) => *p = None,
                    (Scope::Services(s), Some(p)) => p.extend(s.iter().copied()),
                    (Scope::Services(_), None) => {}
                }
                self.host_pending = true;
                // A new config is worth trying at once, whatever the last one's failures.
                self.table.failures = 0;
                self.host.failures = 0;
                due_table(&mut self.table, now, touched);
                self.host.due = Some(now);
            }
            Reloaded::Deferred(why) => {
                self.problem = Some(format!("config change waiting: {}", first_line(&why)));
                self.reload_failures += 1;
                let retry = now + backoff(self.reload_failures, self.settings.resync);
                self.reload_at = Some(self.reload_at.map_or(retry, |t| t.min(retry)));
            }
        }
        v
    }

    fn pass_done(&mut self, p: PassSummary, now: At) -> Verdict {
        let mut v = Verdict::default();
        let yielded = matches!(p.table, Part::Yielded);
        let before = (self.table.standing.clone(), self.host.standing.clone());
        let resync = self.settings.resync;
        match p.table {
            Part::NotRun => {}
            Part::Done(t) => {
                v.drift += t.skipped as u64
                    + if self.expect_changes {
                        0
                    } else {
                        t.applied as u64
                    };
                if self.settings.report_drift {
                    let mut left = self.pending.take().unwrap_or_else(|| t.busy.clone());
                    left.retain(|k| t.busy.contains(k));
                    self.pending = Some(left);
                }
                let stuck: BTreeSet<String> = t.stuck.iter().cloned().collect();
                v.new_stuck = stuck.difference(&self.stuck).cloned().collect();
                self.stuck = stuck;
                if t.failed > 0 || !t.stuck.is_empty() {
                    self.table.failures += 1;
                    let wait = backoff(self.table.failures, resync);
                    due_table(&mut self.table, now + wait, Scope::All);
                    let why = match (t.failed, t.stuck.len()) {
                        (f, 0) => format!("{f} operations failed"),
                        (0, s) => format!("{s} differences remain after a verified write"),
                        (f, s) => format!(
                            "{f} operations failed; {s} differences remain after a verified write"
                        ),
                    };
                    self.table.standing = Standing::Failing {
                        why,
                        wait,
                        retry_at: now + wait,
                    };
                } else {
                    self.table.failures = 0;
                    if t.waiting || t.more {
                        due_table(&mut self.table, now + DRAIN_POLL, Scope::Services(t.busy));
                        self.table.standing = Standing::Converging;
                    } else {
                        self.table.standing = Standing::Converged;
                    }
                }
            }
            Part::Refused(why) => {
                self.table.failures = 0;
                self.table.standing = Standing::Refused(why);
            }
            Part::Yielded => {
                self.owed = true;
                self.owed_since.get_or_insert(now);
            }
            Part::Failed(why) => {
                self.table.failures += 1;
                let wait = backoff(self.table.failures, resync);
                due_table(&mut self.table, now + wait, Scope::All);
                self.table.standing = Standing::Failing {
                    why,
                    wait,
                    retry_at: now + wait,
                };
            }
        }
        match p.host {
            Part::NotRun => {}
            Part::Done(h) => {
                v.drift += h.skipped as u64
                    + if self.expect_changes {
                        0
                    } else {
                        h.applied as u64
                    };
                if let Some(why) = h.failed {
                    self.host_failed(why, now);
                } else {
                    self.host.failures = 0;
                    if h.skipped == 0 && !h.pending {
                        self.host_pending = false;
                    }
                    let allow_host = !self.settings.report_drift || self.host_pending;
                    if h.pending && allow_host {
                        self.host.due = Some(
                            self.host
                                .due
                                .map_or(now + DRAIN_POLL, |t| t.min(now + DRAIN_POLL)),
                        );
                        self.host.standing = Standing::Converging;
                    } else if h.pending {
                        // Drift held back in report mode: reported, not converging.
                        self.host.standing = Standing::Converged;
                    } else {
                        self.host.standing = Standing::Converged;
                    }
                }
            }
            Part::Refused(why) => {
                self.host.failures = 0;
                self.host.standing = Standing::Refused(why);
            }
            Part::Failed(why) => self.host_failed(why, now),
            // The host part never gives way.
            Part::Yielded => {}
        }
        // A pass that gave way carried out none of the changes asked for: they are still
        // expected of the pass owed.
        if self.converged() && !yielded {
            self.expect_changes = false;
        }
        v.table_changed = before.0 != self.table.standing;
        v.host_changed = before.1 != self.host.standing;
        v.say_hash = std::mem::take(&mut self.hash_due);
        if self.table.standing.is_converged() {
            self.health_file.ever_converged = true;
        }
        if let Some(s) = p.serving {
            // A table never programmed yet serves nothing.
            let value = HealthFileValue {
                file: s.file,
                value: if self.health_file.ever_converged {
                    s.unable
                } else {
                    s.services
                },
            };
            let hf = &mut self.health_file;
            if hf.asked.as_ref().or(hf.written.as_ref()) != Some(&value) {
                hf.asked = Some(value.clone());
                v.health_file = Some(value);
            }
        }
        v
    }

    fn host_failed(&mut self, why: String, now: At) {
        self.host.failures += 1;
        let wait = backoff(self.host.failures, self.settings.resync);
        self.host.due = Some(now + wait);
        self.host.standing = Standing::Failing {
            why,
            wait,
            retry_at: now + wait,
        };
    }
}

/// The first line of a (possibly multi-line) message, for one-line summaries.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// Makes the table due at `at` for `scope`, on top of what is due already (the earlier time,
/// the union of the scopes).
fn due_table(t: &mut TablePart, at: At, scope: Scope) {
    t.due = Some(match t.due.take() {
        None => (at, scope),
        Some((t0, mut s)) => {
            s.merge(scope);
            (t0.min(at), s)
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const RESYNC: Duration = Duration::from_secs(30);

    fn ms(n: u64) -> At {
        Duration::from_millis(n)
    }

    fn svc(n: u8) -> ServiceKey {
        ServiceKey::tcp(std::net::IpAddr::from([172, 16, 1, n]), 80)
    }

    fn set(keys: &[u8]) -> BTreeSet<ServiceKey> {
        keys.iter().map(|n| svc(*n)).collect()
    }

    /// A fresh daemon whose first read's files did not move since.
    fn machine(report_drift: bool) -> Machine {
        let mut m = Machine::new(
            Settings {
                resync: RESYNC,
                report_drift,
            },
            ms(0),
        );
        assert_eq!(m.next(ms(0)), Step::CheckFile(Check::Read));
        m.on(Event::FileChecked { changed: false }, ms(0));
        m
    }

    /// A reload's outcome, and the look at its files right after (not moved).
    fn reloaded(m: &mut Machine, r: Reloaded, at: At) -> Verdict {
        let v = m.on(Event::Reloaded(r), at);
        assert_eq!(m.next(at), Step::CheckFile(Check::Read));
        m.on(Event::FileChecked { changed: false }, at);
        v
    }

    /// The next step, but for the services whose health is applied again (which only the
    /// tests of that look at).
    fn next(m: &mut Machine, at: At) -> Step {
        match m.next(at) {
            Step::Pass(mut r) => {
                r.stale = Scope::none();
                Step::Pass(r)
            }
            s => s,
        }
    }

    fn converged() -> Part<TableSummary> {
        Part::Done(TableSummary::default())
    }

    /// A table part that carried out `n` changes and left nothing to do.
    fn applied(n: usize) -> Part<TableSummary> {
        Part::Done(TableSummary {
            applied: n,
            ..TableSummary::default()
        })
    }

    fn host_ok() -> Part<HostSummary> {
        Part::Done(HostSummary::default())
    }

    fn done(
        m: &mut Machine,
        table: Part<TableSummary>,
        host: Part<HostSummary>,
        at: At,
    ) -> Verdict {
        m.on(
            Event::PassDone(PassSummary {
                table,
                host,
                serving: None,
            }),
            at,
        )
    }

    fn pass(table: Option<Scope>, host: bool) -> Step {
        Step::Pass(PassRequest {
            stale: Scope::none(),
            may_yield: table == Some(Scope::All),
            table,
            host,
            allow: Allow::All,
            allow_host: true,
        })
    }

    /// The first pass of a fresh daemon, converged at `at`.
    fn started(report: bool, at: At) -> Machine {
        let mut m = machine(report);
        assert!(matches!(next(&mut m, ms(0)), Step::Pass(_)));
        done(&mut m, converged(), host_ok(), at);
        m
    }

    #[test]
    fn a_director_leaving_rotation_passes_the_host_at_once_in_report_mode_too() {
        for report in [false, true] {
            let mut m = started(report, ms(10));
            assert_eq!(next(&mut m, ms(20)), Step::Wait(RESYNC));
            let host_now = |step: Step| {
                matches!(
                    step,
                    Step::Pass(PassRequest {
                        table: None,
                        host: true,
                        allow_host: true,
                        ..
                    })
                )
            };
            m.on(Event::RotationChanged, ms(30));
            assert!(host_now(next(&mut m, ms(30))), "report {report}");
            done(&mut m, Part::NotRun, host_ok(), ms(40));
            assert!(m.converged());
            // A failing host backs off, but an operator's wish is tried at once.
            m.on(Event::RotationChanged, ms(50));
            next(&mut m, ms(50));
            done(
                &mut m,
                Part::NotRun,
                Part::Failed("rtnetlink".into()),
                ms(60),
            );
            m.on(Event::RotationChanged, ms(70));
            assert!(host_now(next(&mut m, ms(70))), "report {report}");
        }
    }

    #[test]
    fn a_start_passes_everything_then_waits_for_the_resync() {
        let mut m = machine(false);
        assert_eq!(next(&mut m, ms(0)), pass(Some(Scope::All), true));
        assert_eq!(next(&mut m, ms(1)), Step::Wait(RESYNC));
        assert!(!m.converged(), "nothing has answered yet");
        let v = done(&mut m, converged(), host_ok(), ms(40));
        assert!(m.converged());
        assert!(v.table_changed && v.host_changed);
        assert_eq!(next(&mut m, ms(50)), Step::Wait(RESYNC));
    }

    #[test]
    fn a_first_pass_after_a_long_start_is_the_resync() {
        // The machine is made, then the start reads the table for health (25 s at 100,000
        // services in the VM): the first pass must not be followed by a second whole read.
        let mut m = machine(false);
        let late = ms(25_000);
        assert_eq!(next(&mut m, late), pass(Some(Scope::All), true));
        done(&mut m, converged(), host_ok(), ms(27_000));
        assert_eq!(next(&mut m, ms(27_001)), Step::Wait(late + RESYNC));
        // A whole pass after a failure restarts the period too.
        let at = late + RESYNC;
        resync(&mut m, at);
        done(&mut m, Part::Failed("netlink".into()), host_ok(), at);
        let resync = at;
        let retry = resync + BACKOFF_START;
        assert_eq!(next(&mut m, retry), pass(Some(Scope::All), true));
        done(&mut m, converged(), host_ok(), retry);
        assert_eq!(next(&mut m, retry + ms(1)), Step::Wait(retry + RESYNC));
    }

    /// The resync at `at`: a look at the files (unchanged), then a whole pass that may give
    /// way.
    fn resync(m: &mut Machine, at: At) {
        assert_eq!(next(m, at), Step::CheckFile(Check::Resync));
        m.on(Event::FileChecked { changed: false }, at);
        assert_eq!(next(m, at), pass(Some(Scope::All), true));
    }

    #[test]
    fn a_resync_gives_way_to_edits_for_one_period_then_runs_to_its_end() {
        let mut m = started(false, ms(10));
        // The resync: a whole pass that may give way.
        resync(&mut m, RESYNC);
        // A rename arrives while it reads; the read gives way.
        let t = RESYNC + ms(3000);
        m.on(Event::FileWritten { whole: true }, t);
        let v = done(&mut m, Part::Yielded, host_ok(), t);
        assert!(!v.table_changed, "giving way is no change of standing");
        assert!(m.converged());
        // The edit first: read, then a pass of the services it touched.
        assert_eq!(next(&mut m, t), Step::Reload { asked: false });
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[7]))),
            t + ms(10),
        );
        assert_eq!(
            next(&mut m, t + ms(10)),
            pass(Some(Scope::Services(set(&[7]))), true)
        );
        done(&mut m, converged(), host_ok(), t + ms(20));
        // Then the whole pass owed, which may give way again to the next edit: an edit is
        // not held up for the whole read.
        let owed = |may_yield| {
            Step::Pass(PassRequest {
                stale: Scope::none(),
                table: Some(Scope::All),
                host: true,
                allow: Allow::All,
                allow_host: true,
                may_yield,
            })
        };
        assert_eq!(next(&mut m, t + ms(20)), owed(true));
        let mut at = t + ms(20);
        // Edits keep coming, each one landing on the owed pass: it gives way to each for one
        // resync period from the first time it gave way.
        while at + RESYNC / 4 < t + RESYNC {
            at += RESYNC / 4;
            m.on(Event::FileWritten { whole: true }, at);
            done(&mut m, Part::Yielded, host_ok(), at);
            assert_eq!(next(&mut m, at), Step::Reload { asked: false });
            reloaded(&mut m, Reloaded::Changed(Scope::Services(set(&[7]))), at);
            assert_eq!(
                next(&mut m, at),
                pass(Some(Scope::Services(set(&[7]))), true)
            );
            done(&mut m, converged(), host_ok(), at);
            assert_eq!(next(&mut m, at), owed(true), "at {at:?}");
        }
        // A period after the first time, the owed pass runs to its end.
        at += RESYNC / 4;
        m.on(Event::FileWritten { whole: true }, at);
        done(&mut m, Part::Yielded, host_ok(), at);
        next(&mut m, at);
        reloaded(&mut m, Reloaded::Changed(Scope::Services(set(&[7]))), at);
        next(&mut m, at);
        done(&mut m, converged(), host_ok(), at);
        assert_eq!(next(&mut m, at), owed(false));
        done(&mut m, converged(), host_ok(), at + ms(10));
        assert_eq!(next(&mut m, at + ms(11)), Step::Wait(at + RESYNC));
        // The resync after it may give way again.
        resync(&mut m, at + RESYNC);
    }

    #[test]
    fn the_pass_owed_after_giving_way_is_the_next_whole_one_even_while_drains_poll() {
        let mut m = started(false, ms(10));
        resync(&mut m, RESYNC);
        m.on(Event::FileWritten { whole: true }, RESYNC + ms(5));
        done(&mut m, Part::Yielded, host_ok(), RESYNC + ms(5));
        assert_eq!(next(&mut m, RESYNC + ms(5)), Step::Reload { asked: false });
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[7]))),
            RESYNC + ms(10),
        );
        next(&mut m, RESYNC + ms(10));
        // The edit drains a real: its service is passed again every DRAIN_POLL, so the owed
        // whole pass never finds the table free.
        let draining = || {
            Part::Done(TableSummary {
                busy: set(&[7]),
                waiting: true,
                ..TableSummary::default()
            })
        };
        done(&mut m, draining(), host_ok(), RESYNC + ms(20));
        let mut t = RESYNC + ms(20);
        while t < RESYNC + RESYNC - DRAIN_POLL {
            t += DRAIN_POLL;
            assert_eq!(
                next(&mut m, t),
                pass(Some(Scope::Services(set(&[7]))), true),
                "at {t:?}"
            );
            done(&mut m, draining(), host_ok(), t);
        }
        // The next resync pays what is owed: it does not give way, and nothing is owed after
        // it.
        let resync = RESYNC + ms(10) + RESYNC;
        assert_eq!(next(&mut m, resync), Step::CheckFile(Check::Resync));
        m.on(Event::FileChecked { changed: false }, resync);
        let Step::Pass(req) = next(&mut m, resync) else {
            panic!("a pass")
        };
        assert_eq!((req.table, req.may_yield), (Some(Scope::All), false));
        done(&mut m, converged(), host_ok(), resync + ms(10));
        assert_eq!(next(&mut m, resync + ms(11)), Step::Wait(resync + RESYNC));
    }

    #[test]
    fn changes_asked_of_a_pass_that_gave_way_are_not_drift_in_the_pass_owed() {
        let mut m = started(false, ms(10));
        let t = ms(1000);
        m.on(Event::FileWritten { whole: true }, t);
        assert_eq!(next(&mut m, t), Step::Reload { asked: false });
        reloaded(&mut m, Reloaded::Changed(Scope::All), t);
        assert_eq!(next(&mut m, t), pass(Some(Scope::All), true));
        // Gave way to a second event, whose read changes nothing.
        m.on(Event::FileWritten { whole: true }, t + ms(5));
        done(&mut m, Part::Yielded, host_ok(), t + ms(5));
        assert_eq!(next(&mut m, t + ms(5)), Step::Reload { asked: false });
        reloaded(&mut m, Reloaded::Unchanged, t + ms(6));
        let Step::Pass(req) = next(&mut m, t + ms(6)) else {
            panic!("the pass owed")
        };
        assert_eq!((req.table, req.may_yield), (Some(Scope::All), true));
        let v = done(&mut m, applied(3), host_ok(), t + ms(20));
        assert_eq!(v.drift, 0, "the edit's changes, not drift");
    }

    #[test]
    fn a_failing_host_does_not_hold_the_table_back() {
        let mut m = machine(false);
        next(&mut m, ms(0));
        let v = done(
            &mut m,
            converged(),
            Part::Failed("interface `eth9` does not exist".into()),
            ms(10),
        );
        assert!(m.table().is_converged());
        assert!(matches!(m.host(), Standing::Failing { retry_at, .. } if *retry_at == ms(510)));
        assert!(v.host_changed);
        // A health check takes a real out meanwhile: the table pass runs at once, without the
        // host (which backs off on its own).
        m.on(Event::HealthChanged(svc(50)), ms(100));
        assert_eq!(
            next(&mut m, ms(100)),
            pass(Some(Scope::Services(set(&[50]))), false)
        );
        done(&mut m, converged(), Part::NotRun, ms(120));
        // Then the host's retry, on its own.
        assert_eq!(next(&mut m, ms(130)), Step::Wait(ms(510)));
        assert_eq!(next(&mut m, ms(510)), pass(None, true));
        done(
            &mut m,
            Part::NotRun,
            Part::Failed("still missing".into()),
            ms(520),
        );
        assert!(matches!(m.host(), Standing::Failing { retry_at, .. } if *retry_at == ms(1520)));
        assert_eq!(next(&mut m, ms(1520)), pass(None, true));
        done(&mut m, Part::NotRun, host_ok(), ms(1530));
        assert!(m.converged());
    }

    #[test]
    fn a_failing_table_does_not_hold_the_host_back() {
        let mut m = machine(false);
        next(&mut m, ms(0));
        done(
            &mut m,
            Part::Failed("the ip_vs kernel module is not loaded".into()),
            host_ok(),
            ms(10),
        );
        assert!(m.host().is_converged());
        assert!(!m.converged());
        // Retries double up to the resync period, and take the host along (it is not failing).
        let mut at = ms(10);
        for wait in [500, 1000, 2000, 4000, 8000] {
            assert_eq!(next(&mut m, at), Step::Wait(at + ms(wait)));
            at += ms(wait);
            assert_eq!(next(&mut m, at), pass(Some(Scope::All), true));
            done(
                &mut m,
                Part::Failed("still not loaded".into()),
                host_ok(),
                at,
            );
        }
        done(&mut m, converged(), host_ok(), at);
        assert!(m.converged());
        // ... capped at the resync period.
        assert_eq!(backoff(6, RESYNC), ms(16000));
        assert_eq!(backoff(7, RESYNC), RESYNC);
        assert_eq!(backoff(40, RESYNC), RESYNC);
    }

    #[test]
    fn a_difference_that_stays_after_a_verified_write_backs_off_and_is_said_once() {
        let mut m = started(false, ms(10));
        m.on(Event::HealthChanged(svc(50)), ms(100));
        next(&mut m, ms(100));
        let stuck = || {
            Part::Done(TableSummary {
                applied: 1,
                stuck: vec!["~ real 172.16.1.101:80 of TCP 172.16.1.50:80: weight 1 → 2".into()],
                busy: set(&[50]),
                more: true,
                ..TableSummary::default()
            })
        };
        let v = done(&mut m, stuck(), host_ok(), ms(110));
        assert_eq!(v.new_stuck.len(), 1, "said the first time");
        assert!(
            matches!(m.table(), Standing::Failing { why, .. } if why.contains("1 differences remain"))
        );
        // Not again at once (no write twice a second): after the backoff, the whole table.
        assert_eq!(next(&mut m, ms(120)), Step::Wait(ms(610)));
        assert_eq!(next(&mut m, ms(610)), pass(Some(Scope::All), true));
        let v = done(&mut m, stuck(), host_ok(), ms(620));
        assert!(v.new_stuck.is_empty(), "said once");
        assert_eq!(
            next(&mut m, ms(630)),
            Step::Wait(ms(1620)),
            "the backoff doubles"
        );
        next(&mut m, ms(1620));
        done(&mut m, converged(), host_ok(), ms(1630));
        assert!(m.converged());
        // Gone and back: said again.
        m.on(Event::HealthChanged(svc(50)), ms(2000));
        next(&mut m, ms(2000));
        assert_eq!(
            done(&mut m, stuck(), host_ok(), ms(2010)).new_stuck.len(),
            1
        );
    }

    #[test]
    fn drains_are_polled_for_the_services_that_wait() {
        let mut m = machine(false);
        next(&mut m, ms(0));
        let waiting = Part::Done(TableSummary {
            applied: 1,
            busy: set(&[50]),
            waiting: true,
            ..TableSummary::default()
        });
        done(&mut m, waiting, host_ok(), ms(10));
        assert_eq!(*m.table(), Standing::Converging);
        assert_eq!(next(&mut m, ms(11)), Step::Wait(ms(510)));
        assert_eq!(
            next(&mut m, ms(510)),
            pass(Some(Scope::Services(set(&[50]))), true)
        );
    }

    #[test]
    fn in_place_writes_are_read_once_quiet_and_renames_at_once() {
        let mut m = started(false, ms(10));
        m.on(Event::FileWritten { whole: false }, ms(100));
        assert_eq!(next(&mut m, ms(100)), Step::Wait(ms(300)));
        m.on(Event::FileWritten { whole: false }, ms(250));
        assert_eq!(
            next(&mut m, ms(300)),
            Step::Wait(ms(450)),
            "quiet again from the last write"
        );
        assert_eq!(next(&mut m, ms(450)), Step::Reload { asked: false });
        reloaded(&mut m, Reloaded::Unchanged, ms(460));
        // A writer that never stops is read at DEBOUNCE_MAX after it began.
        let mut t = ms(1000);
        m.on(Event::FileWritten { whole: false }, t);
        while t < ms(6000) {
            t += ms(100);
            if next(&mut m, t) == (Step::Reload { asked: false }) {
                break;
            }
            m.on(Event::FileWritten { whole: false }, t);
        }
        assert_eq!(t, ms(6000));
        reloaded(&mut m, Reloaded::Unchanged, t);
        m.on(Event::FileWritten { whole: true }, ms(7000));
        assert_eq!(next(&mut m, ms(7000)), Step::Reload { asked: false });
        m.on(Event::Hangup, ms(8000));
        assert_eq!(next(&mut m, ms(8000)), Step::Reload { asked: true });
    }

    #[test]
    fn a_changed_config_passes_what_it_touched_and_the_host() {
        let mut m = started(false, ms(10));
        m.on(Event::Hangup, ms(100));
        assert_eq!(next(&mut m, ms(100)), Step::Reload { asked: true });
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[51, 52]))),
            ms(150),
        );
        assert_eq!(
            next(&mut m, ms(150)),
            pass(Some(Scope::Services(set(&[51, 52]))), true)
        );
        // Applied changes after a config change are not drift.
        let v = done(&mut m, applied(3), host_ok(), ms(160));
        assert_eq!(v.drift, 0);
        // ... but the same at a resync with nothing asked for is.
        resync(&mut m, RESYNC);
        let v = done(&mut m, applied(2), host_ok(), RESYNC + ms(10));
        assert_eq!(v.drift, 2);
    }

    #[test]
    fn a_rejected_or_unchanged_reload_changes_nothing() {
        for r in [Reloaded::Unchanged, Reloaded::Rejected("bad".into())] {
            let mut m = started(false, ms(10));
            m.on(Event::FileWritten { whole: true }, ms(100));
            assert_eq!(next(&mut m, ms(100)), Step::Reload { asked: false });
            reloaded(&mut m, r, ms(110));
            assert_eq!(next(&mut m, ms(110)), Step::Wait(RESYNC));
            assert!(m.converged());
        }
    }

    #[test]
    fn a_reload_that_cannot_be_checked_is_tried_again_not_taken() {
        let mut m = started(false, ms(10));
        m.on(Event::FileWritten { whole: true }, ms(100));
        assert_eq!(next(&mut m, ms(100)), Step::Reload { asked: false });
        reloaded(
            &mut m,
            Reloaded::Deferred("cannot read the table".into()),
            ms(110),
        );
        // No pass for it (the last good config stays in force): the reload again, backing off.
        assert_eq!(next(&mut m, ms(120)), Step::Wait(ms(610)));
        assert_eq!(next(&mut m, ms(610)), Step::Reload { asked: false });
        reloaded(
            &mut m,
            Reloaded::Deferred("cannot read the table".into()),
            ms(620),
        );
        assert_eq!(next(&mut m, ms(630)), Step::Wait(ms(1620)));
        assert_eq!(next(&mut m, ms(1620)), Step::Reload { asked: false });
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[50]))),
            ms(1630),
        );
        assert_eq!(
            next(&mut m, ms(1630)),
            pass(Some(Scope::Services(set(&[50]))), true)
        );
    }

    #[test]
    fn a_resync_reads_another_file_behind_the_path_first() {
        let mut m = started(false, ms(10));
        assert_eq!(next(&mut m, RESYNC), Step::CheckFile(Check::Resync));
        m.on(Event::FileChecked { changed: true }, RESYNC);
        assert_eq!(next(&mut m, RESYNC), Step::Reload { asked: false });
        reloaded(&mut m, Reloaded::Unchanged, RESYNC);
        assert_eq!(next(&mut m, RESYNC), pass(Some(Scope::All), true));
        done(&mut m, converged(), host_ok(), RESYNC + ms(5));
        assert_eq!(next(&mut m, RESYNC + ms(6)), Step::Wait(RESYNC * 2));
    }

    #[test]
    fn a_refused_plan_waits_for_a_config_change() {
        let mut m = machine(false);
        next(&mut m, ms(0));
        done(
            &mut m,
            Part::Refused("refusing to apply: the plan removes 3 of 4".into()),
            host_ok(),
            ms(10),
        );
        assert!(matches!(m.table(), Standing::Refused(_)));
        assert_eq!(
            next(&mut m, ms(20)),
            Step::Wait(RESYNC),
            "no retry of its own"
        );
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[50]))),
            ms(100),
        );
        assert_eq!(
            next(&mut m, ms(100)),
            pass(Some(Scope::Services(set(&[50]))), true)
        );
    }

    #[test]
    fn report_mode_writes_only_what_was_asked_for() {
        let mut m = machine(true);
        // At start, everything was asked for.
        assert_eq!(next(&mut m, ms(0)), pass(Some(Scope::All), true));
        done(
            &mut m,
            Part::Done(TableSummary {
                applied: 2,
                busy: set(&[50]),
                waiting: true,
                ..TableSummary::default()
            }),
            Part::Done(HostSummary {
                applied: 1,
                ..HostSummary::default()
            }),
            ms(10),
        );
        // Still draining 50: only 50 may be written; the host's changes are done.
        assert_eq!(
            next(&mut m, ms(510)),
            Step::Pass(PassRequest {
                stale: Scope::none(),
                table: Some(Scope::Services(set(&[50]))),
                host: true,
                allow: Allow::Only(set(&[50])),
                allow_host: false,
                may_yield: false,
            })
        );
        done(&mut m, converged(), host_ok(), ms(520));
        assert!(m.converged());
        // The resync finds drift: it is reported, not written.
        next(&mut m, RESYNC);
        m.on(Event::FileChecked { changed: false }, RESYNC);
        let Step::Pass(req) = next(&mut m, RESYNC) else {
            panic!("a resync pass")
        };
        assert_eq!(req.allow, Allow::Only(BTreeSet::new()));
        assert!(!req.allow_host);
        let v = done(
            &mut m,
            Part::Done(TableSummary {
                skipped: 2,
                ..TableSummary::default()
            }),
            Part::Done(HostSummary {
                skipped: 1,
                pending: true,
                ..HostSummary::default()
            }),
            RESYNC + ms(10),
        );
        assert_eq!(v.drift, 3);
        assert_eq!(
            next(&mut m, RESYNC + ms(20)),
            Step::Wait(RESYNC * 2),
            "no busy loop on drift"
        );
        // A health change and a config change are the config's wishes: written.
        m.on(Event::HealthChanged(svc(51)), RESYNC + ms(100));
        let Step::Pass(req) = next(&mut m, RESYNC + ms(100)) else {
            panic!("a pass for the health change")
        };
        assert_eq!(req.allow, Allow::Only(set(&[51])));
        done(&mut m, converged(), host_ok(), RESYNC + ms(110));
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[52]))),
            RESYNC + ms(200),
        );
        let Step::Pass(req) = next(&mut m, RESYNC + ms(200)) else {
            panic!("a pass for the config change")
        };
        assert_eq!(req.allow, Allow::Only(set(&[52])));
        assert!(
            req.allow_host,
            "a config change asks for the host's changes too"
        );
    }

    #[test]
    fn failed_operations_back_off_and_pass_the_whole_table() {
        let mut m = started(false, ms(10));
        m.on(Event::HealthChanged(svc(50)), ms(100));
        next(&mut m, ms(100));
        done(
            &mut m,
            Part::Done(TableSummary {
                applied: 1,
                failed: 1,
                busy: set(&[50]),
                more: true,
                ..TableSummary::default()
            }),
            host_ok(),
            ms(110),
        );
        assert!(matches!(m.table(), Standing::Failing { why, .. } if why == "1 operations failed"));
        assert_eq!(next(&mut m, ms(120)), Step::Wait(ms(610)));
        assert_eq!(next(&mut m, ms(610)), pass(Some(Scope::All), true));
    }

    #[test]
    fn a_rejected_file_is_looked_at_before_it_is_read_again() {
        let mut m = started(false, ms(10));
        m.on(Event::FileWritten { whole: true }, ms(100));
        assert_eq!(next(&mut m, ms(100)), Step::Reload { asked: false });
        reloaded(&mut m, Reloaded::Rejected("bad".into()), ms(110));
        // The same rename's second event: the files are those rejected; nothing is read.
        m.on(Event::FileWritten { whole: true }, ms(120));
        assert_eq!(next(&mut m, ms(120)), Step::CheckFile(Check::Rejected));
        let v = m.on(Event::FileChecked { changed: false }, ms(121));
        assert_eq!(v, Verdict::default());
        assert_eq!(next(&mut m, ms(122)), Step::Wait(RESYNC));
        assert_eq!(m.problem(), Some("config rejected: bad"), "still rejected");
        // Another file arrives: read at once, without a second look.
        m.on(Event::FileWritten { whole: false }, ms(200));
        assert_eq!(next(&mut m, ms(400)), Step::CheckFile(Check::Rejected));
        m.on(Event::FileChecked { changed: true }, ms(401));
        assert_eq!(next(&mut m, ms(401)), Step::Reload { asked: false });
        reloaded(&mut m, Reloaded::Rejected("bad again".into()), ms(410));
        // SIGHUP reads (and says) even the files rejected.
        m.on(Event::Hangup, ms(500));
        assert_eq!(next(&mut m, ms(500)), Step::Reload { asked: true });
        // Once a read is taken, its files are read as usual.
        reloaded(&mut m, Reloaded::Unchanged, ms(510));
        m.on(Event::FileWritten { whole: true }, ms(600));
        assert_eq!(next(&mut m, ms(600)), Step::Reload { asked: false });
    }

    #[test]
    fn files_that_moved_while_they_were_read_are_read_again_once() {
        let mut m = Machine::new(
            Settings {
                resync: RESYNC,
                report_drift: false,
            },
            ms(0),
        );
        // The start's read is looked at first; a move is read as an in-place write would be,
        // after the first pass of the config in force.
        assert_eq!(m.next(ms(0)), Step::CheckFile(Check::Read));
        let v = m.on(Event::FileChecked { changed: true }, ms(1));
        assert!(v.read_again);
        assert_eq!(next(&mut m, ms(1)), pass(Some(Scope::All), true));
        done(&mut m, converged(), host_ok(), ms(10));
        assert_eq!(next(&mut m, ms(11)), Step::Wait(ms(201)));
        assert_eq!(next(&mut m, ms(201)), Step::Reload { asked: false });
        m.on(Event::Reloaded(Reloaded::Unchanged), ms(210));
        // Moved again: left to the watch and the resync (no loop of reads).
        assert_eq!(m.next(ms(210)), Step::CheckFile(Check::Read));
        let v = m.on(Event::FileChecked { changed: true }, ms(211));
        assert!(!v.read_again);
        // (The first pass, at 1 ms, was the whole table's: the resync is a period after it.)
        assert_eq!(next(&mut m, ms(212)), Step::Wait(ms(1) + RESYNC));
        // A read whose files stayed put ends the run: the next move is read again.
        m.on(Event::FileWritten { whole: true }, ms(300));
        assert_eq!(next(&mut m, ms(300)), Step::Reload { asked: false });
        reloaded(&mut m, Reloaded::Unchanged, ms(310));
        m.on(Event::FileWritten { whole: true }, ms(400));
        assert_eq!(next(&mut m, ms(400)), Step::Reload { asked: false });
        m.on(Event::Reloaded(Reloaded::Unchanged), ms(410));
        assert_eq!(m.next(ms(410)), Step::CheckFile(Check::Read));
        assert!(
            m.on(Event::FileChecked { changed: true }, ms(411))
                .read_again
        );
        assert_eq!(next(&mut m, ms(412)), Step::Wait(ms(611)));
        // A look at the resync is not one right after a read: a move there is read at once.
        let mut m = started(false, ms(10));
        assert_eq!(next(&mut m, RESYNC), Step::CheckFile(Check::Resync));
        assert!(
            !m.on(Event::FileChecked { changed: true }, RESYNC)
                .read_again
        );
        assert_eq!(next(&mut m, RESYNC), Step::Reload { asked: false });
    }

    #[test]
    fn why_the_file_on_disk_is_not_in_force_lasts_until_it_is() {
        let mut m = started(false, ms(10));
        assert_eq!(m.problem(), None);
        let v = reloaded(
            &mut m,
            Reloaded::Rejected("line 3: bad port\n  in services[2]".into()),
            ms(100),
        );
        assert!(!v.config_back);
        assert_eq!(m.problem(), Some("config rejected: line 3: bad port"));
        // The file gone is not the config in force back.
        let v = reloaded(&mut m, Reloaded::Gone, ms(200));
        assert!(!v.config_back);
        assert!(m.problem().is_some());
        // The rejected edit undone: the file is the config in force again, said once.
        assert!(reloaded(&mut m, Reloaded::Unchanged, ms(300)).config_back);
        assert_eq!(m.problem(), None);
        assert!(!reloaded(&mut m, Reloaded::Unchanged, ms(400)).config_back);
        reloaded(
            &mut m,
            Reloaded::Deferred("cannot read the table".into()),
            ms(500),
        );
        assert_eq!(
            m.problem(),
            Some("config change waiting: cannot read the table")
        );
        // A change taken is the config in force (said by its hash, not as "back").
        let v = reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[50]))),
            ms(600),
        );
        assert!(!v.config_back);
        assert_eq!(m.problem(), None);
    }

    #[test]
    fn a_config_change_says_its_hash_after_the_pass_that_carries_it_out() {
        let mut m = started(false, ms(10));
        reloaded(&mut m, Reloaded::Unchanged, ms(50));
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[50]))),
            ms(100),
        );
        assert!(matches!(next(&mut m, ms(100)), Step::Pass(_)));
        assert!(done(&mut m, converged(), host_ok(), ms(110)).say_hash);
        m.on(Event::HealthChanged(svc(50)), ms(200));
        next(&mut m, ms(200));
        assert!(
            !done(&mut m, converged(), host_ok(), ms(210)).say_hash,
            "said once"
        );
    }

    #[test]
    fn health_changes_and_edits_are_applied_again_before_the_next_pass() {
        let mut m = machine(false);
        let Step::Pass(first) = m.next(ms(0)) else {
            panic!("the first pass")
        };
        assert_eq!(first.stale, Scope::All, "nothing applied yet");
        done(&mut m, converged(), host_ok(), ms(10));
        m.on(Event::HealthChanged(svc(50)), ms(100));
        reloaded(
            &mut m,
            Reloaded::Changed(Scope::Services(set(&[51, 52]))),
            ms(100),
        );
        let Step::Pass(req) = m.next(ms(100)) else {
            panic!("a pass for both")
        };
        assert_eq!(req.stale, Scope::Services(set(&[50, 51, 52])));
        assert_eq!(req.table, Some(Scope::Services(set(&[50, 51, 52]))));
        let waiting = Part::Done(TableSummary {
            busy: set(&[50]),
            waiting: true,
            ..TableSummary::default()
        });
        done(&mut m, waiting, host_ok(), ms(110));
        // A drain poll: nothing went stale since.
        let Step::Pass(poll) = m.next(ms(610)) else {
            panic!("a drain poll")
        };
        assert_eq!(poll.stale, Scope::none());
        assert_eq!(poll.table, Some(Scope::Services(set(&[50]))));
        done(&mut m, converged(), host_ok(), ms(620));
        // A resync does not recompute health (the checks said what changed), a whole new
        // config does; a rejected one does not.
        assert_eq!(next(&mut m, RESYNC), Step::CheckFile(Check::Resync));
        m.on(Event::FileChecked { changed: false }, RESYNC);
        let Step::Pass(resync) = m.next(RESYNC) else {
            panic!("the resync pass")
        };
        assert_eq!(resync.stale, Scope::none());
        assert_eq!(resync.table, Some(Scope::All));
        done(&mut m, converged(), host_ok(), RESYNC + ms(10));
        reloaded(&mut m, Reloaded::Rejected("bad".into()), RESYNC + ms(20));
        reloaded(&mut m, Reloaded::Changed(Scope::All), RESYNC + ms(30));
        let Step::Pass(req) = m.next(RESYNC + ms(30)) else {
            panic!("a pass for the new config")
        };
        assert_eq!(req.stale, Scope::All);
    }

    /// A pass whose table part ended `table`, with `unable` of 3 services unservable, and the
    /// health file `/run/h`.
    fn done_serving(m: &mut Machine, table: Part<TableSummary>, unable: usize, at: At) -> Verdict {
        done_serving_in(m, "/run/h", table, unable, at)
    }

    /// The same, with the health file at `file`.
    fn done_serving_in(
        m: &mut Machine,
        file: &str,
        table: Part<TableSummary>,
        unable: usize,
        at: At,
    ) -> Verdict {
        m.on(
            Event::PassDone(PassSummary {
                table,
                host: host_ok(),
                serving: Some(Serving {
                    file: file.into(),
                    unable,
                    services: 3,
                }),
            }),
            at,
        )
    }

    /// The value `n` for the health file `/run/h`.
    fn h(n: usize) -> HealthFileValue {
        HealthFileValue {
            file: "/run/h".into(),
            value: n,
        }
    }

    #[test]
    fn the_health_file_says_every_service_until_the_table_was_first_in_sync() {
        let mut m = machine(false);
        next(&mut m, ms(0));
        // A table never programmed serves nothing, whatever the checks say.
        let v = done_serving(&mut m, Part::Failed("no ip_vs".into()), 0, ms(10));
        assert_eq!(v.health_file, Some(h(3)));
        m.on(
            Event::HealthFileWritten {
                value: h(3),
                ok: true,
            },
            ms(11),
        );
        next(&mut m, ms(510));
        let v = done_serving(&mut m, Part::Failed("no ip_vs".into()), 0, ms(520));
        assert_eq!(v.health_file, None, "written only when it changes");
        // In sync: the services health says cannot be served.
        next(&mut m, ms(1520));
        assert_eq!(
            done_serving(&mut m, converged(), 1, ms(1530)).health_file,
            Some(h(1))
        );
        // A write that failed is tried again after the next pass.
        m.on(
            Event::HealthFileWritten {
                value: h(1),
                ok: false,
            },
            ms(1531),
        );
        m.on(Event::HealthChanged(svc(50)), ms(2000));
        next(&mut m, ms(2000));
        assert_eq!(
            done_serving(&mut m, converged(), 1, ms(2010)).health_file,
            Some(h(1))
        );
        m.on(
            Event::HealthFileWritten {
                value: h(1),
                ok: true,
            },
            ms(2011),
        );
        // Once in sync, a failing table later still counts what health says.
        m.on(Event::HealthChanged(svc(50)), ms(3000));
        next(&mut m, ms(3000));
        let v = done_serving(&mut m, Part::Failed("gone".into()), 2, ms(3010));
        assert_eq!(v.health_file, Some(h(2)));
        // No health file configured: nothing to write.
        next(&mut m, ms(3510));
        assert_eq!(
            done(&mut m, converged(), host_ok(), ms(3520)).health_file,
            None
        );
    }

    /// The writer answers on its own time: an older value's answer arriving after a newer one
    /// was asked for must not count as the file's content (the newer one would then never be
    /// asked again once the value came back to the older one).
    #[test]
    fn only_the_answer_about_the_value_last_asked_for_counts() {
        let mut m = started(false, ms(10));
        m.on(Event::HealthChanged(svc(50)), ms(100));
        next(&mut m, ms(100));
        assert_eq!(
            done_serving(&mut m, converged(), 0, ms(110)).health_file,
            Some(h(0))
        );
        // 1 asked before 0's answer came.
        m.on(Event::HealthChanged(svc(50)), ms(200));
        next(&mut m, ms(200));
        assert_eq!(
            done_serving(&mut m, converged(), 1, ms(210)).health_file,
            Some(h(1))
        );
        // Not asked again while its answer is awaited.
        m.on(Event::HealthChanged(svc(50)), ms(300));
        next(&mut m, ms(300));
        assert_eq!(
            done_serving(&mut m, converged(), 1, ms(310)).health_file,
            None
        );
        m.on(
            Event::HealthFileWritten {
                value: h(0),
                ok: true,
            },
            ms(311),
        );
        // Back to 0: the file holds 1 (or soon will), so 0 is asked for again.
        m.on(Event::HealthChanged(svc(50)), ms(400));
        next(&mut m, ms(400));
        assert_eq!(
            done_serving(&mut m, converged(), 0, ms(410)).health_file,
            Some(h(0))
        );
        // 1's late answer does not count for 0.
        m.on(
            Event::HealthFileWritten {
                value: h(1),
                ok: true,
            },
            ms(411),
        );
        m.on(Event::HealthChanged(svc(50)), ms(500));
        next(&mut m, ms(500));
        assert_eq!(
            done_serving(&mut m, converged(), 0, ms(510)).health_file,
            None
        );
        // A failed write of the value asked: asked again after the next pass.
        m.on(
            Event::HealthFileWritten {
                value: h(0),
                ok: false,
            },
            ms(511),
        );
        m.on(Event::HealthChanged(svc(50)), ms(600));
        next(&mut m, ms(600));
        assert_eq!(
            done_serving(&mut m, converged(), 0, ms(610)).health_file,
            Some(h(0))
        );
    }

    #[test]
    fn a_health_file_named_anew_is_written_there_with_the_same_value() {
        // Found moving this decision: the value was remembered without its file, so a config
        // that named another health file left it unwritten until the value changed.
        let mut m = started(false, ms(10));
        m.on(Event::HealthChanged(svc(50)), ms(100));
        next(&mut m, ms(100));
        let v = done_serving(&mut m, converged(), 0, ms(110));
        assert_eq!(v.health_file, Some(h(0)));
        m.on(
            Event::HealthFileWritten {
                value: h(0),
                ok: true,
            },
            ms(111),
        );
        reloaded(&mut m, Reloaded::Changed(Scope::none()), ms(200));
        next(&mut m, ms(200));
        let v = done_serving_in(&mut m, "/run/keepalived/lvsd", converged(), 0, ms(210));
        assert_eq!(
            v.health_file,
            Some(HealthFileValue {
                file: "/run/keepalived/lvsd".into(),
                value: 0,
            })
        );
    }

    #[test]
    fn standings_say_why_and_when() {
        let s = Standing::Failing {
            why: "interface `eth9` does not exist".into(),
            wait: ms(2000),
            retry_at: ms(2500),
        };
        assert_eq!(
            s.describe(),
            "failing: interface `eth9` does not exist; retrying in 2s"
        );
        assert_eq!(Standing::Converged.describe(), "in sync");
        assert_eq!(
            Standing::Starting.describe(),
            "not yet: first pass under way"
        );
    }
}
