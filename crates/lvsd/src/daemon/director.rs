//! The daemon's side of `lvsd drain --director`: the rotation in force (loaded at the start,
//! saved at every change), the changes the control socket hands over, the withdrawal's end
//! (time up), and the looks at the traffic that say when a withdrawing director is drained.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use plan::host::{HaMode, Role, Rotation};
use serde_json::{Value, json};

use super::decide::At;
use crate::director::{DEFAULT_GRACE, Quiet, State, Withdrawal};
use crate::overrides::{Peer, Request};
use crate::telemetry::DirectorView;

/// How often the traffic is looked at while a withdrawal is under way.
const LOOK: Duration = Duration::from_secs(1);

/// The director's rotation as the daemon keeps it.
pub(super) struct Director {
    dir: PathBuf,
    out: Option<Withdrawal>,
    quiet: Quiet,
    /// When the traffic is looked at next (none: no withdrawal under way).
    next_look: Option<At>,
}

impl Director {
    /// Loads the record of state directory `dir`: one that cannot be read stops the start (a
    /// director taken out for maintenance must not come back by itself).
    pub(super) fn load(dir: PathBuf) -> Result<Self> {
        let out = crate::director::load(&dir).map_err(|e| {
            anyhow::anyhow!(
                "the director record {} cannot be read ({}); lvsd does not start without knowing whether this director is out of rotation: restore it, or remove it to put the director back in rotation",
                e.path,
                e.why
            )
        })?;
        if let Some(w) = &out {
            tracing::warn!(reason = %w.reason, uid = w.uid, until = ?w.until, "this director stays out of rotation, as before the start (lvsd undrain --director brings it back)");
        }
        Ok(Director {
            dir,
            next_look: out.as_ref().map(|_| Duration::ZERO),
            out,
            quiet: Quiet::default(),
        })
    }

    /// What the host part is to make of the VIPs.
    pub(super) fn rotation(&self) -> Rotation {
        if self.out.is_some() {
            Rotation::Out
        } else {
            Rotation::In
        }
    }

    /// Where the director stands.
    pub(super) fn state(&self) -> State {
        self.quiet.state(self.out.as_ref())
    }

    fn view(&self) -> DirectorView {
        let w = self.out.as_ref();
        DirectorView {
            state: self.state().name().into(),
            since: w.map(|w| w.set_at),
            until: w.and_then(|w| w.until),
            grace_secs: w.map(|w| w.grace_secs),
            reason: w.map(|w| w.reason.clone()),
        }
    }

    /// Sets the rotation and saves it; on a failure to save nothing changes.
    fn set(&mut self, out: Option<Withdrawal>, now: At) -> Result<(), String> {
        crate::director::save(&self.dir, out.as_ref()).map_err(|e| format!("{e:#}"))?;
        self.quiet = Quiet::default();
        self.next_look = out.as_ref().map(|_| now);
        self.out = out;
        Ok(())
    }
}

/// Why a config cannot take its director out of rotation, if it cannot.
fn unfit(cfg: &config::Config) -> Option<&'static str> {
    if cfg.host.role != Role::Director {
        return Some("this host is not a director (host.role); only a director leaves rotation");
    }
    if cfg.host.ha == HaMode::Single {
        return Some(
            "this director runs without `ha`: nothing else serves its VIPs, so there is no rotation to leave; drain its services instead (lvsd drain SERVICE), or configure ha.mode",
        );
    }
    None
}

impl<I: crate::io::Io> super::Daemon<I> {
    /// A rotation change from the control socket (`drain --director`, `undrain --director`).
    pub(super) fn director_change(&mut self, request: &Request, peer: &Peer) -> Value {
        let Request::Director {
            out,
            for_secs,
            grace_secs,
            reason,
        } = request
        else {
            return json!({"ok": false, "error": "not a director change"});
        };
        let Some(loaded) = self.source.loaded() else {
            return json!({"ok": false, "error": "the config is being read; try again"});
        };
        if let Some(why) = unfit(&loaded.config) {
            return json!({"ok": false, "error": why});
        }
        let now = crate::engine::now();
        let at = self.decisions.clock.now();
        let was = self.director.out.clone();
        let next = if *out {
            Some(Withdrawal {
                // Asked again while out: the withdrawal keeps its start (its grace is not
                // started over), and takes the new end and words.
                set_at: was.as_ref().map_or(now, |w| w.set_at),
                until: for_secs.map(|s| now.saturating_add(s)),
                grace_secs: grace_secs.unwrap_or(DEFAULT_GRACE.as_secs()),
                reason: reason.clone(),
                uid: peer.uid,
                pid: peer.pid,
            })
        } else {
            if was.is_none() {
                return json!({"ok": false, "error": "this director is in rotation; nothing to undo"});
            }
            None
        };
        let quiet = self.director.quiet.clone();
        let next_look = self.director.next_look;
        if let Err(e) = self.director.set(next, at) {
            return json!({"ok": false, "error": format!("cannot save the director's rotation, so it is unchanged: {e}")});
        }
        if *out && was.is_some() {
            // Still out: where the withdrawal stood holds.
            self.director.quiet = quiet;
            self.director.next_look = next_look;
        }
        if *out {
            tracing::warn!(reason = %reason, uid = peer.uid, pid = peer.pid, until = ?self.director.out.as_ref().and_then(|w| w.until), "director out of rotation: {}", withdraw_words(&loaded.config));
        } else {
            tracing::info!(reason = %reason, uid = peer.uid, pid = peer.pid, "director back in rotation: its VIPs are announced (or its health file clears) once its table is programmed and its services can serve");
        }
        self.rotation_changed();
        json!({"ok": true, "result": if *out { "withdrawing" } else { "serving" }, "director": self.director.view()})
    }

    /// The rotation changed: the engine's host part follows at once.
    fn rotation_changed(&mut self) {
        self.engine.rotation = self.director.rotation();
        self.publish_director();
        self.decisions.on(super::Event::RotationChanged);
    }

    /// Ends a withdrawal whose time is up, and looks at the traffic when a look is due.
    pub(super) async fn step_director(&mut self) {
        let now = crate::engine::now();
        if let Some(until) = self.director.out.as_ref().and_then(|w| w.until) {
            if until <= now {
                let at = self.decisions.clock.now();
                match self.director.set(None, at) {
                    Ok(()) => {
                        tracing::info!("director back in rotation: its withdrawal's time is up");
                        self.rotation_changed();
                    }
                    Err(e) => tracing::error!(
                        "cannot save the director's return to rotation: {e}; it stays out until the record can be written"
                    ),
                }
            }
        }
        let at = self.decisions.clock.now();
        let (Some(w), Some(look)) = (self.director.out.clone(), self.director.next_look) else {
            return;
        };
        if look > at {
            return;
        }
        self.director.next_look = Some(at + LOOK);
        let packets = match self.engine.packets_in().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    "cannot read the services' traffic to see whether this director is drained: {e:#}; looking again"
                );
                return;
            }
        };
        let before = self.director.state();
        let after = self.director.quiet.observe(&w, packets, at, now);
        if after == State::Drained {
            // Drained holds until the director is back: no more looks.
            self.director.next_look = None;
        }
        if after != before {
            tracing::info!(
                "director {}: no packet has reached its services for {:?}",
                after.name(),
                crate::director::QUIET
            );
            self.publish_director();
        }
    }

    /// When the loop must wake for the director: its next look at the traffic, or its
    /// withdrawal's end.
    pub(super) fn director_wake(&self) -> Option<At> {
        let end = self.director.out.as_ref().and_then(|w| w.until).map(|u| {
            let left = u.saturating_sub(crate::engine::now());
            self.decisions.clock.now() + Duration::from_secs(left)
        });
        match (self.director.next_look, end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Status and metrics: the director's rotation (none outside the HA modes, unless a
    /// withdrawal is recorded).
    pub(super) fn publish_director(&self) {
        let fit = self
            .source
            .loaded()
            .is_some_and(|l| unfit(&l.config).is_none());
        let view = (fit || self.director.out.is_some()).then(|| self.director.view());
        self.telemetry.director(view);
    }

    /// The health file's value for `unable` of `services` services: out of rotation, every
    /// service (at least one) is unable, so keepalived gives the VIPs away.
    pub(super) fn serving_value(&self, unable: usize, services: usize) -> usize {
        match self.director.rotation() {
            Rotation::Out => services.max(1),
            Rotation::In => unable,
        }
    }
}

/// What leaving rotation does, in the config's HA mode.
fn withdraw_words(cfg: &config::Config) -> String {
    match &cfg.host.ha {
        HaMode::ActiveActive { device, .. } => format!(
            "its VIPs leave {device} (the routing daemon withdraws them) and stay on lo, so what the router still sends is served"
        ),
        _ => "its health file says it cannot serve, so the VRRP engine gives its VIPs to another director; what still reaches it is served".into(),
    }
}
