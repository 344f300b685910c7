//! What `plan`, `apply` and `check` print for machines (`--json`: one document, its schema
//! versioned by [`SCHEMA_VERSION`] and described in the README), and the summary a bulk
//! apply prints instead of a line per change.

use std::collections::BTreeMap;

use ipvs::{DestSpec, ServiceFlags, ServiceSpec};
use plan::Op;
use plan::globals::GlobalOp;
use plan::host::HostOp;
use serde_json::{Value, json};

/// The version of the JSON documents: raised only when a field changes meaning or goes away
/// (new fields may appear in the same version).
pub const SCHEMA_VERSION: u32 = 1;

/// Changes an apply prints one by one, at most; above this it prints a summary by kind (`-v`,
/// `--json` or `--log-format json` still give every change). A cold apply of a large table
/// has a hundred thousand of them, and printing them cost more than the kernel's work.
pub const SUMMARY_ABOVE: usize = 100;

/// Whether an operation was carried out, failed, or is still to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Result {
    /// Planned (`plan`), or still needed after an apply.
    Pending,
    /// Carried out.
    Ok,
    /// Refused by the kernel (or the host).
    Failed,
    /// Still needed after the kernel took it and it was read back.
    Stuck,
}

impl Result {
    fn name(self) -> &'static str {
        match self {
            Result::Pending => "pending",
            Result::Ok => "ok",
            Result::Failed => "failed",
            Result::Stuck => "stuck",
        }
    }
}

fn service_json(s: &ServiceSpec) -> Value {
    let persistence = s.flags.contains(ServiceFlags::PERSISTENT).then(
        || json!({"timeout": s.timeout, "netmask": s.netmask.to_string(), "engine": s.pe_name}),
    );
    json!({
        "scheduler": s.scheduler,
        "persistence": persistence,
        "flags": plan::flag_names(s.flags, &s.scheduler),
    })
}

fn real_json(d: &DestSpec) -> Value {
    let tunnel = config::export::tunnel_yaml(d);
    json!({
        "forward": plan::forward_name(d.forward),
        "weight": d.weight,
        "max_connections": d.upper_threshold,
        "min_connections": d.lower_threshold,
        "tunnel": tunnel,
    })
}

/// One table operation; `file` is the config file its service is defined in (when the main
/// file includes others).
pub fn op(op: &Op, file: Option<&str>, result: Result, error: Option<String>) -> Value {
    let (real, before, after, reason) = match op {
        Op::AddService { spec, name, .. } => {
            let mut a = service_json(spec);
            a["name"] = json!(name);
            (None, Value::Null, a, None)
        }
        Op::AddReal { key, spec, .. } => (Some(key), Value::Null, real_json(spec), None),
        Op::EditService { from, to, .. } => (None, service_json(from), service_json(to), None),
        Op::EditReal { key, from, to, .. } => (Some(key), real_json(from), real_json(to), None),
        Op::DrainReal {
            key, from, active, ..
        } => {
            let mut to = *from;
            to.weight = 0;
            (
                Some(key),
                real_json(from),
                real_json(&to),
                Some(format!("drain: {active} active connections")),
            )
        }
        Op::DelReal { key, why, .. } => {
            (Some(key), Value::Null, Value::Null, Some(why.to_string()))
        }
        Op::DelService { why, .. } => (None, Value::Null, Value::Null, Some(why.to_string())),
    };
    let service = op.service().to_string();
    let object = match real {
        Some(r) => format!("real {r} of {service}"),
        None => format!("service {service}"),
    };
    json!({
        "kind": op.kind(),
        "object": object,
        "service": service,
        "real": real.map(ToString::to_string),
        "file": file,
        "before": before,
        "after": after,
        "reason": reason,
        "result": result.name(),
        "error": error,
        "text": op.to_string(),
    })
}

/// One host operation.
pub fn host_op(op: &HostOp, result: Result, error: Option<String>) -> Value {
    let (object, before, after, reason): (String, Value, Value, Option<&str>) = match op {
        HostOp::CreateTunnel { name } | HostOp::CreateDummy { name } => {
            (format!("link {name}"), Value::Null, json!("present"), None)
        }
        HostOp::LinkUp { name } => (format!("link {name}"), json!("down"), json!("up"), None),
        HostOp::LinkDown { name } => (
            format!("link {name}"),
            json!("up"),
            json!("down"),
            Some("lvsd brought it up"),
        ),
        HostOp::SetSysctl { key, from, to } => {
            (format!("sysctl {key}"), json!(from), json!(to), None)
        }
        HostOp::RestoreSysctl { key, from, to } => (
            format!("sysctl {key}"),
            json!(from),
            json!(to),
            Some("restored to its value before lvsd"),
        ),
        HostOp::AddAddress(a) => (
            format!("address {a}"),
            Value::Null,
            json!(a.to_string()),
            None,
        ),
        HostOp::DelAddress(a) => (
            format!("address {a}"),
            json!(a.to_string()),
            Value::Null,
            Some("lvsd added it and no service needs it"),
        ),
    };
    entry(
        op.kind(),
        &object,
        before,
        after,
        reason,
        result,
        error,
        op.to_string(),
    )
}

/// One table-wide operation (timeouts, sync daemons).
pub fn global_op(op: &GlobalOp, result: Result, error: Option<String>) -> Value {
    let timeouts = |t: &ipvs::Timeouts| json!({"tcp": t.tcp, "tcp_fin": t.tcp_fin, "udp": t.udp});
    let daemon = |d: &ipvs::SyncDaemon| {
        json!({
            "state": match d.state { ipvs::DaemonState::Master => "master".to_owned(), ipvs::DaemonState::Backup => "backup".to_owned(), ipvs::DaemonState::Other(n) => format!("state-{n}") },
            "interface": d.mcast_ifn,
            "id": d.sync_id,
        })
    };
    let (object, before, after, reason) = match op {
        GlobalOp::SetTimeouts { from, to } => ("timeouts", timeouts(from), timeouts(to), None),
        GlobalOp::RestoreTimeouts { from, to } => (
            "timeouts",
            timeouts(from),
            timeouts(to),
            Some("restored to their values before lvsd"),
        ),
        GlobalOp::StopDaemon { daemon: d, .. } => ("sync daemon", daemon(d), Value::Null, None),
        GlobalOp::StartDaemon(d) => ("sync daemon", Value::Null, daemon(d), None),
    };
    entry(
        op.kind(),
        object,
        before,
        after,
        reason,
        result,
        error,
        op.to_string(),
    )
}

/// The document: every operation and the totals (by kind, and by result).
pub fn document(command: &str, config: &str, operations: Vec<Value>, extra: Value) -> Value {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_result: BTreeMap<String, usize> = BTreeMap::new();
    for o in &operations {
        if let Some(k) = o["kind"].as_str() {
            *by_kind.entry(k.to_owned()).or_default() += 1;
        }
        if let Some(r) = o["result"].as_str() {
            *by_result.entry(r.to_owned()).or_default() += 1;
        }
    }
    let mut doc = json!({
        "version": SCHEMA_VERSION,
        "command": command,
        "config": config,
        "operations": operations,
        "totals": {
            "operations": by_kind.values().sum::<usize>(),
            "by_kind": by_kind,
            "by_result": by_result,
        },
    });
    if let (Some(d), Value::Object(e)) = (doc.as_object_mut(), extra) {
        d.extend(e);
    }
    doc
}

/// The document of a command that failed before it had operations to show: what went wrong,
/// and exit 1. `config` is the file it read, when it reads one.
pub fn failure(command: &str, config: Option<&str>, e: &anyhow::Error) -> Value {
    let extra = json!({"error": format!("{e:#}"), "exit": 1});
    match config {
        Some(config) => document(command, config, vec![], extra),
        None => {
            let mut doc = json!({"version": SCHEMA_VERSION, "command": command});
            if let (Some(d), Value::Object(e)) = (doc.as_object_mut(), extra) {
                d.extend(e);
            }
            doc
        }
    }
}

/// Prints a document as one line of JSON, followed by a line end.
pub fn print(doc: &Value) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(crate::stdout::Stdout);
    if serde_json::to_writer(&mut out, doc).is_ok() {
        let _ = writeln!(out);
    }
    let _ = out.flush();
}

/// Counts by kind, for a bulk apply's summary: `10000 add_service, 100000 add_real`.
pub fn counts<'a>(kinds: impl IntoIterator<Item = &'a str>) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for k in kinds {
        *by.entry(k).or_default() += 1;
    }
    // In the order an apply carries them out.
    let order = [
        "add_service",
        "add_real",
        "edit_service",
        "edit_real",
        "drain_real",
        "del_real",
        "del_service",
    ];
    let mut parts: Vec<String> = order
        .iter()
        .filter_map(|k| by.remove(k).map(|n| format!("{n} {k}")))
        .collect();
    parts.extend(by.into_iter().map(|(k, n)| format!("{n} {k}")));
    parts.join(", ")
}

/// The document of an operation that has no service (host and table-wide ones): what it is,
/// before and after, why, and how it went.
#[allow(clippy::too_many_arguments)]
fn entry(
    kind: &str,
    object: &str,
    before: Value,
    after: Value,
    reason: Option<&str>,
    result: Result,
    error: Option<String>,
    text: String,
) -> Value {
    json!({
        "kind": kind,
        "object": object,
        "before": before,
        "after": after,
        "reason": reason,
        "result": result.name(),
        "error": error,
        "text": text,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_host_operation_says_the_same_fields() {
        let op = HostOp::SetSysctl {
            key: plan::host::Sysctl("net/ipv4/ip_forward".into()),
            from: "0".into(),
            to: "1".into(),
        };
        let v = host_op(&op, Result::Failed, Some("EPERM".into()));
        assert_eq!(v["kind"], json!(op.kind()));
        assert_eq!(v["object"], json!("sysctl net.ipv4.ip_forward"));
        assert_eq!(v["before"], json!("0"));
        assert_eq!(v["after"], json!("1"));
        assert_eq!(v["reason"], Value::Null);
        assert_eq!(v["result"], json!(Result::Failed.name()));
        assert_eq!(v["error"], json!("EPERM"));
        assert_eq!(v["text"], json!(op.to_string()));
    }

    #[test]
    fn an_operation_says_kind_object_before_after_and_reason() {
        let svc = ipvs::ServiceKey::tcp("10.0.0.1".parse().unwrap(), 80);
        let real = ipvs::DestKey {
            addr: "10.0.1.1".parse().unwrap(),
            port: 80,
        };
        let from = DestSpec::new(ipvs::ForwardMethod::DirectRoute, 1);
        let mut to = from;
        to.weight = 5;
        let v = op(
            &Op::EditReal {
                service: svc,
                key: real,
                from,
                to,
            },
            Some("conf.d/web.yaml"),
            Result::Pending,
            None,
        );
        assert_eq!(v["kind"], "edit_real");
        assert_eq!(v["object"], "real 10.0.1.1:80 of TCP 10.0.0.1:80");
        assert_eq!(v["before"]["weight"], 1);
        assert_eq!(v["after"]["weight"], 5);
        assert_eq!(v["file"], "conf.d/web.yaml");
        assert_eq!(v["result"], "pending");
        let del = op(
            &Op::DelService {
                key: svc,
                why: plan::DelReason::NotInConfig,
            },
            None,
            Result::Ok,
            None,
        );
        assert_eq!(del["reason"], "not in the config");
        let doc = document("plan", "lvsd.yaml", vec![v, del], json!({"in_sync": false}));
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["totals"]["operations"], 2);
        assert_eq!(doc["totals"]["by_kind"]["edit_real"], 1);
        assert_eq!(doc["in_sync"], false);
    }

    #[test]
    fn counts_come_in_the_order_an_apply_carries_them_out() {
        assert_eq!(
            counts(["add_real", "add_service", "add_real", "host_add_address"]),
            "1 add_service, 2 add_real, 1 host_add_address"
        );
    }
}
