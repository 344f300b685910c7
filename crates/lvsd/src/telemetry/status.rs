//! The control socket in the state directory (0660): `lvsd status` and the overrides' commands
//! (`drain`, `weight`, `overrides`, ...) send a line of JSON and read one answer. The server,
//! the client, and the status for people (the formatter).

use super::*;

/// Where the status socket of a state directory is.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lvsd.sock")
}

/// What the control socket needs beyond the status: where changes go (the daemon's loop), and
/// who may make them.
pub struct Control {
    /// The `--admin-group` of `lvsd run` (root may always change).
    pub admin_gid: Option<u32>,
    /// Hands a change to the loop; false once the loop is gone.
    pub changes: Box<dyn Fn(crate::daemon::Change) -> bool + Send + Sync>,
}

/// The longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// How long a client has to send its request line: one that sends nothing is answered with an
/// error and closed, and holds nothing but its own connection meanwhile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, and how much, the rest of a client's bytes is read after the answer.
const LINGER: Duration = Duration::from_secs(1);
const MAX_LINGER: u64 = 1024 * 1024;
/// How long a change may wait for the loop (which may be in the middle of a pass).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves the control socket (mode 0660: the daemon's user and group): each connection sends
/// one line of JSON (a [`Request`](crate::overrides::Request)) and gets one JSON answer, each in
/// its own task, bounded in time and size. Reading is open to whoever can connect; changes need
/// root or the admin group, checked with the peer's credentials (SO_PEERCRED).
pub fn serve_status(state_dir: &Path, t: Arc<Telemetry>, control: Control) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("create the state directory {}", state_dir.display()))?;
    let path = socket_path(state_dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("listen on {}", path.display()))?;
    // `chmod` follows a link: make sure the path is still the socket just bound (the state
    // directory is one only lvsd's user can write, checked when its lock was taken).
    let is_socket = std::fs::symlink_metadata(&path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt as _;
        m.file_type().is_socket()
    });
    if !is_socket {
        anyhow::bail!(
            "{} was replaced while lvsd set it up; is another program writing the state directory?",
            path.display()
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("set the mode of {}", path.display()))?;
    let control = Arc::new(control);
    tokio::spawn(async move {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "status: cannot accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            };
            let (t, control) = (t.clone(), control.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, serve_one(conn, t, control)).await;
            });
        }
    });
    Ok(())
}

fn refusal(why: impl std::fmt::Display) -> serde_json::Value {
    serde_json::json!({"ok": false, "error": why.to_string()})
}

/// One connection: a request line read within [`REQUEST_TIMEOUT`] and [`MAX_REQUEST`], one
/// answer, closed.
async fn serve_one(mut conn: tokio::net::UnixStream, t: Arc<Telemetry>, control: Arc<Control>) {
    use crate::overrides::{Peer, Request};
    let peer = conn.peer_cred().ok().map(|c| Peer {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid().and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
    });
    let answer = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut conn)).await {
        Err(_) => refusal(format!(
            "no request within {REQUEST_TIMEOUT:?}: send one line of JSON, such as {{\"op\":\"status\"}}"
        )),
        Ok(Err(why)) => refusal(why),
        Ok(Ok(line)) => match serde_json::from_str::<Request>(&line) {
            Err(e) => refusal(format!(
                "not a request ({e}): send one line of JSON, such as {{\"op\":\"status\"}}"
            )),
            Ok(req) => answer(req, peer, &t, &control).await,
        },
    };
    if answer.get("ok") == Some(&serde_json::Value::Bool(false)) {
        tracing::debug!(uid = ?peer.map(|p| p.uid), "control: {}", answer["error"]);
    }
    let mut body = answer.to_string();
    body.push('\n');
    let _ = conn.write_all(body.as_bytes()).await;
    let _ = conn.shutdown().await;
    // What the client sent beyond the request (an oversized one) is read and dropped, bounded,
    // before the socket closes: closing on unread bytes would reset the connection, and the
    // client would lose the answer that says what was wrong.
    let _ = tokio::time::timeout(
        LINGER,
        tokio::io::copy(&mut (&mut conn).take(MAX_LINGER), &mut tokio::io::sink()),
    )
    .await;
}

/// Reads one request line (up to a newline or the end), at most [`MAX_REQUEST`] bytes.
async fn read_request(conn: &mut tokio::net::UnixStream) -> Result<String, String> {
    use tokio::io::AsyncBufReadExt as _;
    let mut buf = Vec::new();
    let mut r = tokio::io::BufReader::new(conn.take(MAX_REQUEST + 1));
    r.read_until(b'\n', &mut buf)
        .await
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > MAX_REQUEST {
        return Err(format!("the request is over {MAX_REQUEST} bytes"));
    }
    let line = String::from_utf8(buf).map_err(|_| "the request is not UTF-8".to_owned())?;
    if line.trim().is_empty() {
        return Err("no request: send one line of JSON, such as {\"op\":\"status\"}".to_owned());
    }
    Ok(line)
}

async fn answer(
    req: crate::overrides::Request,
    peer: Option<crate::overrides::Peer>,
    t: &Telemetry,
    control: &Control,
) -> serde_json::Value {
    use crate::overrides::{Request, groups_of, may_change};
    match req {
        Request::Status => {
            let mut s = t.snapshot();
            if s.role != plan::host::Role::RealServer.name() {
                match KernelView::read().await {
                    Ok(k) => s.kernel = k,
                    Err(e) => {
                        s.kernel_error = Some(format!("cannot read the kernel's IPVS table: {e}"));
                    }
                }
            }
            serde_json::to_value(s).unwrap_or_default()
        }
        Request::Overrides => {
            serde_json::json!({"ok": true, "overrides": t.snapshot().overrides})
        }
        Request::Connections { service, reals } => {
            connections(&service, &reals).await.unwrap_or_else(refusal)
        }
        req => {
            let Some(peer) = peer else {
                return refusal(
                    "the kernel gave no credentials for this connection; no change is made without them",
                );
            };
            let groups = if peer.uid == 0 || control.admin_gid.is_none() {
                vec![]
            } else {
                groups_of(peer.uid)
            };
            if !may_change(&peer, &groups, control.admin_gid) {
                tracing::warn!(
                    uid = peer.uid,
                    pid = peer.pid,
                    "override refused: uid {} is neither root nor in the admin group",
                    peer.uid
                );
                return refusal(format!(
                    "uid {} may not change overrides: root may, and members of the group given to `lvsd run --admin-group`{}; reading (`lvsd overrides`, `lvsd status`) is open to the socket's group",
                    peer.uid,
                    if control.admin_gid.is_none() {
                        " (none is given)"
                    } else {
                        ""
                    }
                ));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let sent = (control.changes)(crate::daemon::Change {
                request: req,
                peer,
                reply: tx,
            });
            if !sent {
                return refusal("the daemon is stopping; nothing changed");
            }
            match tokio::time::timeout(CHANGE_TIMEOUT, rx).await {
                Ok(Ok(a)) => a,
                Ok(Err(_)) => refusal("the daemon stopped before it answered"),
                Err(_) => refusal(format!(
                    "the daemon did not answer within {CHANGE_TIMEOUT:?} (a long pass?); the change may still be made: check with `lvsd overrides`"
                )),
            }
        }
    }
}

/// The kernel's connection counts of `reals` of `service` (keys in the records' words).
async fn connections(service: &str, reals: &[String]) -> Result<serde_json::Value, String> {
    let words: Vec<&str> = service.split_whitespace().collect();
    let key = crate::state_file::parse_key(&words)
        .ok_or_else(|| format!("`{}` is not a service key", config::printable(service)))?;
    let mut client = ipvs::Client::connect()
        .await
        .map_err(|e| format!("cannot reach the kernel's IPVS: {e}"))?;
    let dests = client
        .dests(&key)
        .await
        .map_err(|e| format!("cannot read the reals of {key}: {e}"))?;
    let list: Vec<serde_json::Value> = dests
        .iter()
        .filter(|d| reals.is_empty() || reals.contains(&d.key.to_string()))
        .map(|d| {
            let o = plan::ObservedReal {
                spec: d.spec,
                active: d.conns.active,
                inactive: d.conns.inactive,
                persistent: d.conns.persistent,
            };
            serde_json::json!({
                "real": d.key.to_string(),
                "weight": d.spec.weight,
                "active": d.conns.active,
                "inactive": d.conns.inactive,
                "persistent": d.conns.persistent,
                "idle": o.idle(&key),
            })
        })
        .collect();
    Ok(serde_json::json!({"ok": true, "reals": list}))
}

/// Sends `req` to the daemon of `state_dir` and returns its answer (an answer that says the
/// request failed is an error, in the daemon's words).
pub async fn request(
    state_dir: &Path,
    req: &crate::overrides::Request,
) -> Result<serde_json::Value> {
    let path = socket_path(state_dir);
    let mut conn = tokio::net::UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no daemon answers on {} (is `lvsd run` running with this --state-dir, and are you its user, in its group, or root?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_string(req).context("write the request")?;
    line.push('\n');
    conn.write_all(line.as_bytes())
        .await
        .context("send the request to the daemon")?;
    let mut text = String::new();
    tokio::time::timeout(CONNECTION_TIMEOUT, conn.read_to_string(&mut text))
        .await
        .context("the daemon did not answer in time")?
        .context("read the daemon's answer")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the daemon's answer is not JSON")?;
    if v.get("ok") == Some(&serde_json::Value::Bool(false)) {
        anyhow::bail!(
            "{}",
            v.get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("the daemon refused the request")
        );
    }
    Ok(v)
}

/// `lvsd status`: the running daemon's answer, as JSON or for people.
pub async fn query(state_dir: &Path, json: bool) -> Result<String> {
    let s = request(state_dir, &crate::overrides::Request::Status).await?;
    if json {
        return Ok(s.to_string() + "\n");
    }
    Ok(human(&s))
}

pub(super) fn human(s: &serde_json::Value) -> String {
    let mut out = String::new();
    let g = |k: &str| s.get(k).cloned().unwrap_or_default();
    let str_of = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let _ = writeln!(
        out,
        "lvsd {} (pid {}), role {}",
        str_of(&g("version")),
        g("pid"),
        str_of(&g("role"))
    );
    let _ = writeln!(
        out,
        "config:     {} (hash {}, loaded at {})",
        str_of(&g("config")),
        str_of(&g("config_hash")),
        g("config_loaded_at")
    );
    let _ = writeln!(
        out,
        "state:      {}; table {}; host {}",
        if g("converged").as_bool() == Some(true) {
            "in sync"
        } else {
            "not in sync"
        },
        str_of(&g("table")),
        str_of(&g("host"))
    );
    if let Some(d) = s.get("director").filter(|d| !d.is_null()) {
        let mut line = format!("director:   {}", str_of(&d["state"]));
        if let Some(since) = d["since"].as_u64() {
            let _ = write!(
                line,
                " (out of rotation since {}",
                crate::overrides::utc(since)
            );
            if let Some(u) = d["until"].as_u64() {
                let _ = write!(line, ", until {}", crate::overrides::utc(u));
            }
            match d["reason"].as_str().filter(|r| !r.is_empty()) {
                Some(r) => {
                    let _ = write!(line, ": {r})");
                }
                None => line.push(')'),
            }
        }
        let _ = writeln!(out, "{line}");
    }
    if let Some(r) = s.get("last_reload").filter(|r| !r.is_null()) {
        let _ = writeln!(
            out,
            "reload:     {} at {} {}",
            str_of(&r["result"]),
            r["at"],
            str_of(&r["message"])
        );
    }
    if let Some(r) = s.get("last_reconcile").filter(|r| !r.is_null()) {
        let _ = writeln!(
            out,
            "reconcile:  at {}, {:.3} s, {} changes, {} failed, {}",
            r["at"],
            r["duration_seconds"].as_f64().unwrap_or_default(),
            r["changes"].as_array().map_or(0, Vec::len),
            r["failed"].as_array().map_or(0, Vec::len),
            if r["converged"].as_bool() == Some(true) {
                "in sync"
            } else {
                "not in sync yet"
            }
        );
        for c in r["changes"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {}", str_of(c));
        }
    }
    let _ = writeln!(
        out,
        "passes:     {}; drift repaired {}; services managed {}, foreign {}",
        g("passes"),
        g("drift_total"),
        g("managed_services"),
        g("foreign_services")
    );
    for h in g("hashing").as_array().into_iter().flatten() {
        let reals: Vec<String> = h["reals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(str_of)
            .collect();
        let _ = writeln!(
            out,
            "hashing:    {} ({}) fingerprint {}; reals in kernel order: {}",
            str_of(&h["service"]),
            str_of(&h["scheduler"]),
            str_of(&h["fingerprint"]),
            reals.join(", ")
        );
    }
    if let Some(c) = s.get("connections").filter(|c| !c.is_null()) {
        let daemons: Vec<String> = g("sync_daemons")
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} on {}, syncid {}",
                    str_of(&d["state"]),
                    str_of(&d["interface"]),
                    d["syncid"]
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "sync:       {}",
            if daemons.is_empty() {
                "no sync daemon".to_owned()
            } else {
                daemons.join("; ")
            }
        );
        let _ = writeln!(
            out,
            "connections: {} active, {} inactive (this director's table)",
            c["active"], c["inactive"]
        );
    }
    if let Some(e) = s.get("kernel_error").and_then(serde_json::Value::as_str) {
        let _ = writeln!(out, "kernel:     {e}");
    }
    for h in g("health").as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", str_of(h));
    }
    for o in g("overrides").as_array().into_iter().flatten() {
        let _ = writeln!(out, "override:   {}", str_of(&o["line"]));
    }
    for r in g("ramps").as_array().into_iter().flatten() {
        let _ = writeln!(out, "ramp:       {}", str_of(&r["line"]));
    }
    let errors = g("errors");
    let errors = errors.as_array().cloned().unwrap_or_default();
    if !errors.is_empty() {
        let _ = writeln!(out, "recent errors:");
        for e in &errors {
            let _ = writeln!(out, "  at {}: {}", e["at"], str_of(&e["message"]));
        }
    }
    out
}
