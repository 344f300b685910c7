//! `lvsd drain --director` and `lvsd undrain --director`: this director out of rotation and
//! back, asked of the running daemon over its control socket (see [`crate::director`]).

use super::*;
use crate::overrides::Request;

use super::overrides::WAIT_POLL;

/// `lvsd drain --director`: out of rotation; with `wait`, waits (at most that long) until the
/// daemon finds the director drained.
pub async fn drain(
    c: ControlArgs,
    set: OverrideArgs,
    grace: Option<Duration>,
    wait: Option<Duration>,
) -> Result<ExitCode> {
    let req = Request::Director {
        out: true,
        for_secs: set.duration.map(|d| d.as_secs().max(1)),
        grace_secs: grace.map(|g| g.as_secs()),
        reason: set.reason,
    };
    let mut answer = telemetry::request(&c.state_dir, &req).await?;
    if !c.json {
        let d = &answer["director"];
        outln!(
            "director out of rotation: {} (grace {} s{})",
            d["state"].as_str().unwrap_or("withdrawing"),
            d["grace_secs"],
            match d["until"].as_u64() {
                Some(u) => format!(
                    ", back in rotation by itself at {}",
                    crate::overrides::utc(u)
                ),
                None => ", until lvsd undrain --director".into(),
            }
        );
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(timeout) = wait {
        let (done, report) = wait_drained(&c, timeout).await?;
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

/// Asks the daemon where the director stands until it is drained (or `timeout`).
async fn wait_drained(c: &ControlArgs, timeout: Duration) -> Result<(bool, serde_json::Value)> {
    let started = std::time::Instant::now();
    let mut last = String::new();
    loop {
        let status = telemetry::request(&c.state_dir, &Request::Status).await?;
        let state = status["director"]["state"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned();
        let elapsed = started.elapsed().as_secs();
        let report = |drained: bool| serde_json::json!({"drained": drained, "seconds": elapsed, "state": state});
        match state.as_str() {
            "drained" => {
                if !c.json {
                    outln!("drained: no packet reaches this director's services ({elapsed} s)");
                }
                return Ok((true, report(true)));
            }
            "withdrawing" => {}
            other => {
                errln!(
                    "lvsd: the director is {other} again: the withdrawal ended or was undone before it drained"
                );
                return Ok((false, report(false)));
            }
        }
        if started.elapsed() >= timeout {
            errln!(
                "lvsd: not drained after {elapsed} s (traffic still reaches its services, or the grace period runs); the withdrawal holds: wait more, or go on knowing what is left is cut"
            );
            return Ok((false, report(false)));
        }
        if state != last {
            super::overrides::say_waiting(c, elapsed, &state);
            last = state;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// `lvsd undrain --director`: back in rotation.
pub async fn undrain(c: ControlArgs, reason: String) -> Result<ExitCode> {
    let req = Request::Director {
        out: false,
        for_secs: None,
        grace_secs: None,
        reason,
    };
    let answer = telemetry::request(&c.state_dir, &req).await?;
    if c.json {
        output::print(&answer);
    } else {
        outln!(
            "director back in rotation: it announces its VIPs (or clears its health file) once its table is programmed and its services can serve"
        );
    }
    Ok(ExitCode::SUCCESS)
}
