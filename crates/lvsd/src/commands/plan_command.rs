//! `lvsd plan`.

use super::*;

/// `lvsd plan`: what an apply would change, host and table, without changing anything.
pub async fn run(t: TableArgs, json: bool) -> Result<ExitCode> {
    let cfg = load(&t.config)?;
    if let Some(h) = lock::holder(&t.state_dir).filter(lock::Holder::is_daemon) {
        errln!(
            "note: lvsd run (pid {}) manages this table from {}; it carries out what this plan shows by itself",
            h.pid,
            h.config
        );
    }
    let mut engine = Engine::new(t.state_dir.clone(), t.exclusive);
    let mut health = HealthTable::default();
    engine.adopt_health(&cfg, &mut health).await?;
    let (mut table_desired, statuses) = health.effective(&cfg.desired);
    // The operators' overrides the daemon lays over the file (`lvsd drain`, `lvsd weight`): a
    // record that cannot be read is an error, not a plan without them.
    let overrides = crate::overrides::load(&t.state_dir).map_err(|e| {
        anyhow::anyhow!(
            "the overrides record {} cannot be read ({}); a plan without its drains and weights would be wrong: restore it, or remove it to end every override",
            e.path,
            e.why
        )
    })?;
    let now = engine::now();
    overrides.apply(&cfg.desired, &mut table_desired, now);
    let in_force = plan::overlay::Overrides {
        list: overrides
            .list
            .into_iter()
            .filter(|(_, o)| o.in_force(now))
            .collect(),
    };
    let override_views = crate::overrides::views(&in_force, &cfg.desired);
    let unable = plan::health::unable(&statuses);
    let full = engine.plan_all(&cfg, &table_desired, &unable).await?;
    let refusal = engine.refusal(&cfg, &full);
    // How the config's hashing services are set up, and whether the kernel holds them in the
    // order a fresh director would.
    let mut warnings: Vec<String> = cfg
        .desired
        .services
        .iter()
        .filter_map(|(k, s)| plan::hashing::mh_without_fallback(k, &s.spec))
        .collect();
    if full.table.is_some() {
        warnings.extend(engine.mh_warnings(&cfg.desired).await?);
    }
    let FullPlan {
        host,
        table,
        globals,
    } = full;
    if json {
        let mut ops: Vec<serde_json::Value> = host
            .ops
            .iter()
            .map(|o| output::host_op(o, output::Result::Pending, None))
            .collect();
        ops.extend(
            globals
                .ops
                .iter()
                .map(|o| output::global_op(o, output::Result::Pending, None)),
        );
        let mut waiting = vec![];
        let mut foreign = vec![];
        if let Some(plan) = &table {
            ops.extend(plan.ops.iter().map(|o| {
                output::op(
                    o,
                    cfg.sources.file_of(&o.service()),
                    output::Result::Pending,
                    None,
                )
            }));
            waiting = plan.waiting.iter().map(waiting_json).collect();
            foreign = plan.foreign.iter().map(ToString::to_string).collect();
        }
        let pending = ops.len() + waiting.len();
        let code = if !host.missing.is_empty() {
            1
        } else if pending == 0 {
            0
        } else {
            2
        };
        let doc = output::document(
            "plan",
            &config::printable(&t.config.config.display().to_string()),
            ops,
            serde_json::json!({
                "in_sync": pending == 0 && host.missing.is_empty(),
                "services": cfg.desired.services.len(),
                "waiting": waiting,
                "foreign": foreign,
                "missing": host.missing.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "refused": refusal.map(|r| r.to_string()),
                "overrides": override_views,
                "warnings": warnings,
                "exit": code,
            }),
        );
        output::print(&doc);
        return Ok(ExitCode::from(code));
    }
    print_host_plan(&host);
    print_lines(&globals.ops);
    let mut pending = host.ops.len() + globals.ops.len();
    if let Some(plan) = &table {
        print_plan(plan, engine::now(), &cfg.sources);
        pending += plan.ops.len() + plan.waiting.len();
    }
    for w in &warnings {
        outln!("! warning: {w}");
    }
    if let Some(why) = refusal {
        outln!("! {why}");
    }
    for v in &override_views {
        outln!("  override: {}", v.line);
    }
    match health_status::load(&t.state_dir) {
        Some(daemon_view) => out!("{daemon_view}"),
        None => {
            for l in health_status::lines(&health, &statuses) {
                outln!("  {l} (as the kernel's weights show; checks run under `lvsd run`)");
            }
        }
    }
    if !host.missing.is_empty() {
        outln!("! the host lacks what the role needs; apply would change nothing");
        return Ok(ExitCode::FAILURE);
    }
    if pending == 0 {
        match table {
            Some(_) => outln!("in sync: {} services", cfg.desired.services.len()),
            None => outln!("in sync: host set up as {}", cfg.host.role.name()),
        }
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("{pending} changes pending");
        Ok(ExitCode::from(2))
    }
}
