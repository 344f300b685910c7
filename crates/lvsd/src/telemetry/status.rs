//! `lvsd status`: the daemon's answer on a 0600 Unix socket in the state directory (the
//! server), the command that asks it (the client), and the answer for people (the formatter).

use super::*;

/// Where the status socket of a state directory is.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lvsd.sock")
}

/// Answers each connection on the status socket (mode 0600) with the status as JSON, each in
/// its own task, bounded in time.
pub fn serve_status(state_dir: &Path, t: Arc<Telemetry>) -> Result<()> {
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
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("make {} private", path.display()))?;
    tokio::spawn(async move {
        loop {
            let mut conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "status: cannot accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            };
            let body = serde_json::to_string(&t.snapshot()).unwrap_or_else(|_| "{}".into());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, async {
                    let _ = conn.write_all(body.as_bytes()).await;
                    let _ = conn.shutdown().await;
                })
                .await;
            });
        }
    });
    Ok(())
}

/// `lvsd status`: the running daemon's answer, as JSON or for people.
pub async fn query(state_dir: &Path, json: bool) -> Result<String> {
    let path = socket_path(state_dir);
    let mut conn = tokio::net::UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no daemon answers on {} (is `lvsd run` running with this --state-dir, and are you its user or root?)",
            path.display()
        )
    })?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .await
        .context("read the daemon's status")?;
    if json {
        return Ok(text + "\n");
    }
    let s: serde_json::Value =
        serde_json::from_str(&text).context("the daemon's status is not JSON")?;
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
    for h in g("health").as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", str_of(h));
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
