//! `lvsd drain`, `weight`, `undrain`, `restore` and `overrides`: day-2 changes without editing
//! the file, sent to the running daemon over its control socket.

use super::*;
use crate::overrides::Request;

/// How often `drain --wait` asks for the connection counts (and `drain --director --wait`
/// where the director stands).
pub(super) const WAIT_POLL: Duration = Duration::from_secs(1);

/// A wait's progress, when it changed: on standard output for people, on standard error
/// under `--json` (whose standard output is the one document at the end).
pub(super) fn say_waiting(c: &ControlArgs, elapsed: u64, progress: &str) {
    if c.json {
        errln!("waiting ({elapsed} s): {progress}");
    } else {
        outln!("waiting ({elapsed} s): {progress}");
    }
}

/// `lvsd drain` (no weight) and `lvsd weight`: sets the override; with `wait`, waits (at most
/// that long) for the drained reals' connections to end.
pub async fn set(
    c: ControlArgs,
    service: String,
    real: Option<String>,
    weight: Option<u32>,
    set: OverrideArgs,
    wait: Option<Duration>,
) -> Result<ExitCode> {
    let req = Request::Set {
        service,
        real,
        weight,
        for_secs: set.duration.map(|d| d.as_secs().max(1)),
        reason: set.reason,
    };
    let mut answer = telemetry::request(&c.state_dir, &req).await?;
    if !c.json {
        let line = answer["override"]["line"].as_str().unwrap_or_default();
        outln!(
            "override {}: {line}",
            answer["result"].as_str().unwrap_or("set")
        );
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(timeout) = wait {
        let service = answer["service_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let reals: Vec<String> = answer["reals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect();
        let (done, report) = wait_idle(&c, service, reals, timeout).await?;
        if !done {
            code = ExitCode::FAILURE;
        }
        answer["wait"] = report;
    }
    if c.json {
        output::print(&answer);
    }
    Ok(code)
}

/// Where a drain stands at one look at the kernel's counts.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// The daemon has not written weight 0 yet (its pass follows the answer to `set`).
    NotYetDrained,
    /// At weight 0, with connections: the counts, for people.
    Busy(String),
    /// At weight 0, nothing left.
    Drained,
    /// Back above weight 0 after it had been 0: the drain ended or was changed.
    Undrained(String),
}

/// Judges one answer of `connections` (`list`); `seen_drained` remembers that every real was
/// at weight 0 once (before that, a weight above 0 is the daemon's pass still to come).
fn judge(list: &[serde_json::Value], seen_drained: &mut bool) -> Standing {
    let weighed: Vec<&str> = list
        .iter()
        .filter(|r| r["weight"].as_u64() != Some(0))
        .filter_map(|r| r["real"].as_str())
        .collect();
    if !weighed.is_empty() {
        return if *seen_drained {
            Standing::Undrained(weighed.join(", "))
        } else {
            Standing::NotYetDrained
        };
    }
    *seen_drained = true;
    let busy: Vec<String> = list
        .iter()
        .filter(|r| r["idle"].as_bool() != Some(true))
        .map(|r| {
            format!(
                "{} has {} active, {} inactive, {} persistent",
                r["real"].as_str().unwrap_or_default(),
                r["active"],
                r["inactive"],
                r["persistent"]
            )
        })
        .collect();
    if busy.is_empty() {
        Standing::Drained
    } else {
        Standing::Busy(busy.join("; "))
    }
}

/// Waits until `reals` of `service` carry no connections (or `timeout`), printing progress
/// when the counts change. Returns whether they emptied, and the wait as JSON.
async fn wait_idle(
    c: &ControlArgs,
    service: String,
    reals: Vec<String>,
    timeout: Duration,
) -> Result<(bool, serde_json::Value)> {
    let started = std::time::Instant::now();
    let req = Request::Connections { service, reals };
    let mut last = String::new();
    let mut seen_drained = false;
    loop {
        let answer = telemetry::request(&c.state_dir, &req).await?;
        let list = answer["reals"].as_array().cloned().unwrap_or_default();
        let elapsed = started.elapsed().as_secs();
        let report = |drained: bool| serde_json::json!({"drained": drained, "seconds": elapsed, "reals": list});
        let progress = match judge(&list, &mut seen_drained) {
            Standing::Drained => {
                if !c.json {
                    outln!("drained: no connections left after {elapsed} s");
                }
                return Ok((true, report(true)));
            }
            Standing::Undrained(which) => {
                errln!(
                    "lvsd: {which} takes new connections again (weight not 0): the drain ended or was changed before the connections did"
                );
                return Ok((false, report(false)));
            }
            Standing::NotYetDrained => "the daemon is setting weight 0".to_owned(),
            Standing::Busy(counts) => counts,
        };
        if started.elapsed() >= timeout {
            errln!(
                "lvsd: not drained after {elapsed} s ({progress}); the drain holds: wait more, or go on knowing what is left is cut"
            );
            return Ok((false, report(false)));
        }
        if progress != last {
            say_waiting(c, elapsed, &progress);
            last = progress;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// `lvsd undrain` (`drain_only`) and `lvsd restore`: ends the override of a real or service.
pub async fn clear(
    c: ControlArgs,
    service: String,
    real: Option<String>,
    reason: String,
    drain_only: bool,
) -> Result<ExitCode> {
    let req = Request::Clear {
        service,
        real,
        drain_only,
        reason,
    };
    let answer = telemetry::request(&c.state_dir, &req).await?;
    if c.json {
        output::print(&answer);
    } else {
        let reals: Vec<&str> = answer["reals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        outln!(
            "override cleared: {} back to the file's weight",
            reals.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `lvsd overrides`: the overrides in force, next to the file's values.
pub async fn list(c: ControlArgs) -> Result<ExitCode> {
    let answer = telemetry::request(&c.state_dir, &Request::Overrides).await?;
    if c.json {
        output::print(&answer);
        return Ok(ExitCode::SUCCESS);
    }
    let list = answer["overrides"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        outln!("no overrides: every weight is the file's");
    }
    for o in &list {
        outln!("{}", o["line"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn real(weight: u32, active: u32, idle: bool) -> serde_json::Value {
        serde_json::json!({"real": "172.16.1.101:80", "weight": weight, "active": active,
            "inactive": 3, "persistent": 0, "idle": idle})
    }

    #[test]
    fn a_weight_not_yet_0_is_the_daemons_pass_to_come_and_later_the_drains_end() {
        let mut seen = false;
        // The answer to `set` comes before the pass that writes weight 0.
        assert_eq!(
            judge(&[real(1, 1, false)], &mut seen),
            Standing::NotYetDrained
        );
        assert!(matches!(
            judge(&[real(0, 1, false)], &mut seen),
            Standing::Busy(c) if c.contains("1 active")
        ));
        assert_eq!(judge(&[real(0, 0, true)], &mut seen), Standing::Drained);
        assert!(matches!(
            judge(&[real(1, 1, false)], &mut seen),
            Standing::Undrained(r) if r == "172.16.1.101:80"
        ));
    }
}
