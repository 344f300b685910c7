//! The daemon's side of operators' overrides: the list in force (loaded from the state
//! directory at the start, saved at every change), the changes the control socket hands over
//! (resolved against the config in force, logged with who asked and why), their ends (time up,
//! or their real gone from the file), and the table the planner aims for with them laid over.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;
use ipvs::ServiceKey;
use plan::Desired;
use plan::overlay::{Action, Ended, Override, Overrides};
use serde_json::{Value, json};

use crate::overrides::{Peer, Request, find_real, find_service, views};

/// A change asked on the control socket, by a peer allowed to make it; the loop answers on
/// `reply`.
pub struct Change {
    /// The request (`set` or `clear`).
    pub request: Request,
    /// Who asked.
    pub peer: Peer,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Value>,
}

/// The overrides the daemon keeps.
pub(super) struct Operators {
    dir: PathBuf,
    list: Overrides,
}

impl Operators {
    /// Loads the record of state directory `dir`: one that cannot be read stops the start (the
    /// drains it holds must not silently end).
    pub(super) fn load(dir: PathBuf) -> Result<Self> {
        let list = crate::overrides::load(&dir).map_err(|e| {
            anyhow::anyhow!(
                "the overrides record {} cannot be read ({}); lvsd does not start without the drains and weights it holds: restore it, or remove it to end every override",
                e.path,
                e.why
            )
        })?;
        for o in list.list.values() {
            tracing::info!(service = %o.service, real = ?o.real.map(|r| r.to_string()), weight = o.action.weight(), until = ?o.until, reason = %o.reason, uid = o.uid, "override kept from before the start");
        }
        Ok(Operators { dir, list })
    }

    /// The earliest end to come (Unix seconds).
    pub(super) fn next_expiry(&self) -> Option<u64> {
        self.list.next_expiry()
    }

    /// The overrides as shown, with the file's values.
    pub(super) fn views(&self, file: &Desired) -> Vec<crate::overrides::View> {
        views(&self.list, file)
    }

    /// The table the planner aims for: `effective` (the config with health applied, or the
    /// config itself) with the overrides in force laid over it; no copy without overrides.
    pub(super) fn target<'a>(
        &self,
        file: &'a Desired,
        effective: &'a Desired,
        now: u64,
    ) -> Cow<'a, Desired> {
        if self.list.is_empty() {
            return Cow::Borrowed(effective);
        }
        let mut t = effective.clone();
        self.list.apply(file, &mut t, now);
        Cow::Owned(t)
    }

    /// Ends the overrides over at `now` and those whose real or service left `file` (logged,
    /// saved). Returns the services whose table changes.
    pub(super) fn end(&mut self, file: &Desired, now: u64) -> BTreeSet<ServiceKey> {
        let ended = self.list.end(file, now);
        if ended.is_empty() {
            return BTreeSet::new();
        }
        for (o, why) in &ended {
            let real = o
                .real
                .map_or_else(|| "every real".to_owned(), |r| r.to_string());
            match why {
                Ended::Expired => {
                    tracing::info!(service = %o.service, real = %real, reason = %o.reason, "override ended (its time is up): {real} of {} is back to the file's weight", o.service)
                }
                Ended::LeftTheFile => {
                    tracing::info!(service = %o.service, real = %real, reason = %o.reason, "override ended with its real or service, which left the file")
                }
            }
        }
        self.save_logged();
        ended.into_iter().map(|(o, _)| o.service).collect()
    }

    fn save_logged(&self) {
        if let Err(e) = crate::overrides::save(&self.dir, &self.list) {
            tracing::error!(
                "cannot save the overrides: {e:#}; they hold until lvsd stops, but a restart would bring back the record's older list"
            );
        }
    }

    /// Carries out a change from the control socket against the config `file` in force at
    /// `now`: the answer, and the service whose table changes.
    pub(super) fn change(
        &mut self,
        request: &Request,
        peer: &Peer,
        file: &Desired,
        now: u64,
    ) -> (Value, Option<ServiceKey>) {
        match self.try_change(request, peer, file, now) {
            Ok((answer, service)) => (answer, service),
            Err(e) => {
                tracing::warn!(uid = peer.uid, pid = peer.pid, "override refused: {e}");
                (json!({"ok": false, "error": e}), None)
            }
        }
    }

    fn try_change(
        &mut self,
        request: &Request,
        peer: &Peer,
        file: &Desired,
        now: u64,
    ) -> Result<(Value, Option<ServiceKey>), String> {
        let (service, real, reason) = match request {
            Request::Set {
                service,
                real,
                reason,
                ..
            }
            | Request::Clear {
                service,
                real,
                reason,
                ..
            } => (service, real, reason),
            _ => return Err("not a change".into()),
        };
        let key = find_service(file, service)?;
        let real = real
            .as_deref()
            .map(|r| find_real(file, &key, r))
            .transpose()?;
        let reals: Vec<String> = match real {
            Some(r) => vec![r.to_string()],
            None => file.services[&key]
                .reals
                .keys()
                .map(ToString::to_string)
                .collect(),
        };
        let shown_real = real.map_or_else(|| "every real".to_owned(), |r| r.to_string());
        match request {
            Request::Set {
                weight, for_secs, ..
            } => {
                let action = match weight {
                    None => Action::Drain,
                    Some(_) if real.is_none() => {
                        return Err(
                            "a weight is set for one real: name it (lvsd weight SERVICE REAL N)"
                                .into(),
                        );
                    }
                    Some(w) if *w > i32::MAX as u32 => {
                        return Err(format!(
                            "weight {w} is over the kernel's limit ({})",
                            i32::MAX
                        ));
                    }
                    Some(w) => Action::Weight(*w),
                };
                let o = Override {
                    service: key,
                    real,
                    action,
                    until: for_secs.map(|s| now.saturating_add(s)),
                    reason: reason.clone(),
                    uid: peer.uid,
                    pid: peer.pid,
                    set_at: now,
                };
                let old = self.list.set(o.clone());
                if let Err(e) = crate::overrides::save(&self.dir, &self.list) {
                    match old {
                        Some(old) => self.list.set(old),
                        None => self.list.clear(&o.target()),
                    };
                    return Err(format!("cannot save the override, so it is not set: {e:#}"));
                }
                let verb = if old.is_some() { "changed" } else { "set" };
                tracing::info!(service = %key, real = %shown_real, weight = action.weight(), until = ?o.until, reason = %reason, uid = peer.uid, pid = peer.pid, "override {verb}: {shown_real} of {key} to weight {}", action.weight());
                let view = views(
                    &Overrides {
                        list: [(o.target(), o)].into(),
                    },
                    file,
                );
                Ok((
                    json!({"ok": true, "result": verb, "override": view.first(), "service_key": crate::state_file::key_words(&key), "reals": reals}),
                    Some(key),
                ))
            }
            Request::Clear { drain_only, .. } => {
                let target = (key, real);
                match self.list.list.get(&target) {
                    None => {
                        return Err(format!(
                            "{shown_real} of {key} has no override (`lvsd overrides` lists them)"
                        ));
                    }
                    Some(o) if *drain_only && o.action != Action::Drain => {
                        return Err(format!(
                            "{shown_real} of {key} is not drained but weighed {}; `lvsd restore` ends that",
                            o.action.weight()
                        ));
                    }
                    Some(_) => {}
                }
                let Some(old) = self.list.clear(&target) else {
                    return Err("the override went away meanwhile".into());
                };
                if let Err(e) = crate::overrides::save(&self.dir, &self.list) {
                    self.list.set(old);
                    return Err(format!(
                        "cannot save the change, so the override holds: {e:#}"
                    ));
                }
                tracing::info!(service = %key, real = %shown_real, reason = %reason, uid = peer.uid, pid = peer.pid, "override cleared: {shown_real} of {key} is back to the file's weight");
                Ok((
                    json!({"ok": true, "result": "cleared", "service_key": crate::state_file::key_words(&key), "reals": reals}),
                    Some(key),
                ))
            }
            _ => Err("not a change".into()),
        }
    }
}

impl<I: crate::io::Io> super::Daemon<I> {
    /// A change from the control socket: carried out against the config in force, answered,
    /// and its service passed.
    pub(super) fn override_change(&mut self, c: Change) {
        let Some(loaded) = self.source.loaded() else {
            let _ = c
                .reply
                .send(json!({"ok": false, "error": "the config is being read; try again"}));
            return;
        };
        let now = crate::engine::now();
        let (answer, service) =
            self.operators
                .change(&c.request, &c.peer, &loaded.config.desired, now);
        // Status and metrics show the change before the client hears it is made (a script
        // that reads them right after must see it).
        if service.is_some() {
            self.publish_overrides(true);
        }
        let _ = c.reply.send(answer);
        if let Some(service) = service {
            // One more wish of the operator's, like a health change: passed at once.
            self.decisions.on(super::Event::HealthChanged(service));
        }
    }

    /// Carries out the `lvsd realign` requests that arrived, in the loop and so between passes
    /// (no pass writes to the table meanwhile), against the config in force; each service
    /// realigned is passed again at once, which finds it as the config wants it.
    pub(super) async fn realign_asked(&mut self) {
        for c in std::mem::take(&mut self.realigns) {
            let answer = match self.realign_one(&c).await {
                Ok((key, done)) => {
                    tracing::info!(service = %key, uid = c.peer.uid, pid = c.peer.pid, "realign: {done}");
                    if !done.already {
                        self.decisions.on(super::Event::HealthChanged(key));
                    }
                    realigned_json(&done)
                }
                Err(e) => {
                    tracing::warn!(uid = c.peer.uid, pid = c.peer.pid, "realign refused: {e:#}");
                    json!({"ok": false, "error": format!("{e:#}")})
                }
            };
            let _ = c.reply.send(answer);
        }
    }

    async fn realign_one(&mut self, c: &Change) -> Result<(ServiceKey, crate::engine::Realigned)> {
        let Request::Realign { service, force } = &c.request else {
            anyhow::bail!("not a realign request");
        };
        let Some(loaded) = self.source.loaded() else {
            anyhow::bail!("the config is being read; try again");
        };
        let key = find_service(&loaded.config.desired, service).map_err(anyhow::Error::msg)?;
        let done = self.engine.realign(&key, *force).await?;
        Ok((key, done))
    }

    /// Ends the overrides whose time is up or whose real left the file, and passes their
    /// services (their file values come back).
    pub(super) fn end_overrides(&mut self) {
        let Some(loaded) = self.source.loaded() else {
            return;
        };
        let ended = self
            .operators
            .end(&loaded.config.desired, crate::engine::now());
        if ended.is_empty() {
            return;
        }
        self.publish_overrides(true);
        for service in ended {
            self.decisions.on(super::Event::HealthChanged(service));
        }
    }

    /// When the loop must wake for the next override's end (on the daemon's clock).
    pub(super) fn overrides_wake(&self) -> Option<super::decide::At> {
        let until = self.operators.next_expiry()?;
        let left = until.saturating_sub(crate::engine::now());
        Some(self.decisions.clock.now() + std::time::Duration::from_secs(left))
    }

    /// Hands the overrides, with the file's values, to status and metrics.
    pub(super) fn publish_overrides(&self, changed: bool) {
        if let Some(loaded) = self.source.loaded() {
            self.telemetry
                .overrides(self.operators.views(&loaded.config.desired), changed);
        }
    }
}

/// The answer to a realign, for `lvsd realign` (and `--json`).
pub fn realigned_json(r: &crate::engine::Realigned) -> Value {
    let keys = |v: &[ipvs::DestKey]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "ok": true,
        "result": if r.already { "aligned" } else { "realigned" },
        "service": r.service.to_string(),
        "before": keys(&r.before),
        "after": keys(&r.after),
        "fingerprint_before": r.fingerprints.0,
        "fingerprint": r.fingerprints.1,
        "connections_cut": r.cut.0,
        "templates_cut": r.cut.1,
        "line": r.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use ipvs::{DestKey, DestSpec, ForwardMethod, ServiceSpec};

    fn file() -> Desired {
        let reals = [101, 102]
            .map(|n| {
                (
                    DestKey {
                        addr: format!("172.16.1.{n}").parse().unwrap(),
                        port: 80,
                    },
                    DestSpec::new(ForwardMethod::DirectRoute, 5),
                )
            })
            .into();
        let web = plan::DesiredService {
            name: Some("web".into()),
            spec: ServiceSpec::new("wlc", ipvs::Family::Inet),
            drain_timeout: 30,
            reals,
            health: Default::default(),
            slow_start: Default::default(),
        };
        Desired {
            services: [(ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80), web)].into(),
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lvsd-ops-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const ROOT: Peer = Peer {
        uid: 0,
        gid: 0,
        pid: 9,
    };

    fn set(real: Option<&str>, weight: Option<u32>, for_secs: Option<u64>) -> Request {
        Request::Set {
            service: "web".into(),
            real: real.map(Into::into),
            weight,
            for_secs,
            reason: "kernel upgrade".into(),
        }
    }

    #[test]
    fn a_change_is_resolved_saved_and_answered() {
        let d = dir("change");
        let mut ops = Operators::load(d.clone()).unwrap();
        let f = file();
        let (a, s) = ops.change(&set(Some("172.16.1.101"), None, Some(20)), &ROOT, &f, 1000);
        assert_eq!(a["ok"], true, "{a}");
        assert_eq!(a["result"], "set");
        assert_eq!(a["service_key"], "tcp 172.16.1.50 80");
        assert_eq!(a["reals"], json!(["172.16.1.101:80"]));
        assert!(s.is_some());
        assert_eq!(ops.next_expiry(), Some(1020));
        // Kept on disk: a new start has it.
        assert_eq!(Operators::load(d.clone()).unwrap().list, ops.list);
        let (a, _) = ops.change(&set(Some("172.16.1.101"), Some(2), None), &ROOT, &f, 1001);
        assert_eq!(a["result"], "changed", "{a}");
        // undrain refuses a weight; restore ends it.
        let clear = |drain_only| Request::Clear {
            service: "172.16.1.50:80".into(),
            real: Some("172.16.1.101:80".into()),
            drain_only,
            reason: String::new(),
        };
        let (a, s) = ops.change(&clear(true), &ROOT, &f, 1002);
        assert_eq!(a["ok"], false);
        assert!(s.is_none());
        assert!(a["error"].as_str().unwrap().contains("lvsd restore"), "{a}");
        let (a, _) = ops.change(&clear(false), &ROOT, &f, 1002);
        assert_eq!(a["result"], "cleared", "{a}");
        assert!(Operators::load(d.clone()).unwrap().list.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn what_cannot_be_done_is_refused_in_lvsds_words() {
        let d = dir("refused");
        let mut ops = Operators::load(d.clone()).unwrap();
        let f = file();
        for (req, says) in [
            (set(None, Some(3), None), "name it"),
            (set(Some("172.16.1.103"), None, None), "no real server"),
            (set(Some("172.16.1.101"), Some(u32::MAX), None), "limit"),
            (
                Request::Clear {
                    service: "web".into(),
                    real: None,
                    drain_only: false,
                    reason: String::new(),
                },
                "has no override",
            ),
        ] {
            let (a, s) = ops.change(&req, &ROOT, &f, 1000);
            assert_eq!(a["ok"], false, "{req:?}");
            assert!(s.is_none());
            assert!(a["error"].as_str().unwrap().contains(says), "{a}");
        }
        assert!(ops.list.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unsaved_change_is_not_made() {
        let d = dir("unsaved");
        let mut ops = Operators::load(d.clone()).unwrap();
        // The record's place taken by a directory: the save fails.
        std::fs::create_dir_all(d.join(crate::overrides::RECORD)).unwrap();
        let (a, s) = ops.change(&set(Some("172.16.1.101"), None, None), &ROOT, &file(), 1000);
        assert_eq!(a["ok"], false, "{a}");
        assert!(s.is_none());
        assert!(ops.list.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_target_is_the_effective_table_itself_without_overrides_and_ends_are_saved() {
        let d = dir("target");
        let mut ops = Operators::load(d.clone()).unwrap();
        let f = file();
        assert!(matches!(ops.target(&f, &f, 0), Cow::Borrowed(_)));
        ops.change(&set(None, None, Some(10)), &ROOT, &f, 1000);
        let t = ops.target(&f, &f, 1005);
        assert!(
            t.services
                .values()
                .all(|s| s.reals.values().all(|r| r.weight == 0))
        );
        assert!(ops.end(&f, 1009).is_empty());
        assert_eq!(ops.end(&f, 1010).len(), 1);
        assert!(Operators::load(d.clone()).unwrap().list.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
