//! `lvsd run`.

use super::*;

/// `lvsd run`: the daemon.
pub async fn run(
    table: TableArgs,
    resync_interval: Duration,
    on_drift: OnDrift,
    force: bool,
    metrics_listen: Option<std::net::SocketAddr>,
    admin_group: Option<String>,
) -> Result<ExitCode> {
    let admin_gid = admin_group
        .as_deref()
        .map(crate::overrides::admin_gid)
        .transpose()?;
    // First the signals (a SIGHUP while the config is read is a reload, not a death),
    // then the lock (a second daemon must not take the first one's status socket).
    let signals = daemon::Signals::install()?;
    let _lock = lock::acquire(
        &table.state_dir,
        "run",
        &table.config.config,
        Duration::ZERO,
    )?;
    check_trusted(&table.config)?;
    let engine = Engine::new(table.state_dir, table.exclusive);
    let settings = daemon::Settings {
        config: table.config.config,
        role: table.config.role.map(Role::from),
        allow_insecure_config: table.config.allow_insecure_config,
        resync: resync_interval,
        on_drift,
        force,
        metrics: metrics_listen,
        admin_gid,
    };
    daemon::run(settings, signals, engine).await?;
    Ok(ExitCode::SUCCESS)
}
