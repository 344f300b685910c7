//! `lvsd drain`, `weight`, `undrain`, `restore` and `overrides`: day-2 changes without editing
//! the file, sent to the running daemon over its control socket.

use super::*;
use crate::overrides::Request;

/// How often `drain --wait` asks for the connection counts.
const WAIT_POLL: Duration = Duration::from_secs(1);

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
    loop {
        let answer = telemetry::request(&c.state_dir, &req).await?;
        let list = answer["reals"].as_array().cloned().unwrap_or_default();
        let weighed: Vec<&serde_json::Value> = list
            .iter()
            .filter(|r| r["weight"].as_u64() != Some(0))
            .collect();
        let busy: Vec<&serde_json::Value> = list
            .iter()
            .filter(|r| r["idle"].as_bool() != Some(true))
            .collect();
        let elapsed = started.elapsed().as_secs();
        let counts = busy
            .iter()
            .map(|r| {
                format!(
                    "{} has {} active, {} inactive, {} persistent",
                    r["real"].as_str().unwrap_or_default(),
                    r["active"],
                    r["inactive"],
                    r["persistent"]
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let report = |drained: bool| serde_json::json!({"drained": drained, "seconds": elapsed, "reals": list});
        if !weighed.is_empty() {
            let which: Vec<&str> = weighed.iter().filter_map(|r| r["real"].as_str()).collect();
            errln!(
                "lvsd: {} takes new connections again (weight not 0): the drain ended or was changed before the connections did",
                which.join(", ")
            );
            return Ok((false, report(false)));
        }
        if busy.is_empty() {
            if !c.json {
                outln!("drained: no connections left after {elapsed} s");
            }
            return Ok((true, report(true)));
        }
        if started.elapsed() >= timeout {
            errln!(
                "lvsd: still connections after {elapsed} s ({counts}); the drain holds: wait more, or go on knowing they will be cut"
            );
            return Ok((false, report(false)));
        }
        if counts != last {
            if c.json {
                errln!("waiting ({elapsed} s): {counts}");
            } else {
                outln!("waiting ({elapsed} s): {counts}");
            }
            last = counts;
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
