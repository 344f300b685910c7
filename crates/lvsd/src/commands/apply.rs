//! `lvsd apply`, and how its outcome is printed.

use super::*;

/// `lvsd apply`: host and table brought to the config once, all or nothing.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    table: TableArgs,
    json: bool,
    verbose: bool,
    force: bool,
    no_wait: bool,
    lock_timeout: Duration,
    every_change: bool,
) -> Result<ExitCode> {
    let shown = config::printable(&table.config.config.display().to_string()).into_owned();
    // A failure returned from here is a JSON document under `--json` (see `main`).
    check_trusted(&table.config)?;
    // The config is read on a thread of its own while the table is read here: a no-op apply
    // of a large table costs the kernel's dump, not the dump and the parse one after the
    // other. Only when the state directory exists already (a config that is refused creates
    // nothing) and its lock is free at once: a table read before the lock is taken could be
    // another lvsd's half-written one (then the config is read first, and its errors come
    // before any wait for the lock, as ever).
    let arg = table.config.clone();
    let parse = tokio::task::spawn_blocking(move || load_trusted(&arg));
    let early = if table.state_dir.is_dir() {
        lock::acquire(
            &table.state_dir,
            "apply",
            &table.config.config,
            Duration::ZERO,
        )
        .ok()
    } else {
        None
    };
    // The records are read under the lock, never before (on a thread of their own, while
    // the table is read).
    let mut engine = None;
    if early.is_some() {
        let (e, records) = Engine::reading_records(table.state_dir.clone(), table.exclusive);
        let e = engine.insert(e);
        e.prefetch().await;
        // If that thread stopped, the records stay "not read yet": the pass reads them itself.
        if let Ok(r) = records.await {
            e.records_read(r);
        }
    }
    let cfg = parse
        .await
        .map_err(|e| anyhow::anyhow!("reading the config stopped: {e}"))??;
    let _lock = match early {
        Some(l) => l,
        None => lock::acquire(
            &table.state_dir,
            "apply",
            &table.config.config,
            lock_timeout,
        )?,
    };
    // The config, the engine's picture of the table and the last pass are left for the
    // process's exit to take back (see `ManuallyDrop`): freeing a large table object by
    // object at the end of a one-shot command is time spent for nothing.
    let cfg = std::mem::ManuallyDrop::new(cfg);
    let mut engine = std::mem::ManuallyDrop::new(
        engine.unwrap_or_else(|| Engine::new(table.state_dir.clone(), table.exclusive)),
    );
    let mut health = HealthTable::default();
    engine.adopt_health(&cfg, &mut health).await?;
    let effective = health.effective_if_any(&cfg.desired);
    let unable = effective
        .as_ref()
        .map(|(_, st)| plan::health::unable(st))
        .unwrap_or_default();
    let table_desired = effective.as_ref().map_or(&cfg.desired, |(t, _)| t);
    let mut out = ApplyOutput {
        json,
        verbose,
        log: every_change,
        sources: &cfg.sources,
        docs: vec![],
        kinds: BTreeMap::new(),
        summarized: false,
    };
    let mut changed = 0;
    let mut failed = 0;
    loop {
        let pass = engine
            .converge(&cfg, table_desired, &PassSpec::everything(force, &unable))
            .await;
        // All or nothing: a refused or unreadable part means nothing was changed.
        if let Some(e) = [pass.host.error(), pass.table.error()]
            .into_iter()
            .flatten()
            .next()
        {
            return Err(anyhow::anyhow!("{e:#}"));
        }
        let (host, table) = (pass.host.done(), pass.table.done());
        let started = std::time::Instant::now();
        out.pass(host, table);
        tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "printed the changes");
        changed += table.map_or(0, |t| t.applied.len()) + host.map_or(0, |h| h.applied.len());
        let failed_now = table.map_or(0, |t| t.failed.len() + t.stuck.len())
            + usize::from(host.is_some_and(|h| h.failed.is_some()));
        failed += failed_now;
        if pass.converged() || no_wait || failed_now > 0 {
            out.after(host, table);
            std::mem::forget(pass);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if json {
        let code = u8::from(failed > 0);
        let pending = out.docs.iter().filter(|d| d["result"] == "pending").count();
        let doc = output::document(
            "apply",
            &shown,
            std::mem::take(&mut out.docs),
            serde_json::json!({
                "in_sync": failed == 0 && pending == 0,
                "services": cfg.desired.services.len(),
                "applied": changed,
                "failed": failed,
                "exit": code,
            }),
        );
        output::print(&doc);
        return Ok(ExitCode::from(code));
    }
    if out.summarized {
        outln!(
            "applied {changed} changes: {} (lvsd apply -v lists each)",
            output::counts(
                out.kinds
                    .iter()
                    .flat_map(|(k, n)| std::iter::repeat_n(*k, *n))
            )
        );
    }
    if failed > 0 {
        bail!("{failed} operations failed; {changed} applied");
    }
    if changed == 0 {
        outln!("in sync: nothing to change");
    } else if !out.summarized {
        outln!("applied {changed} changes");
    }
    Ok(ExitCode::SUCCESS)
}

/// What an apply prints as it goes: each change (a small apply, `-v`), counts by kind (a bulk
/// apply), or nothing until the JSON document at the end (`--json`); with JSON logs, every
/// change is logged as well.
struct ApplyOutput<'a> {
    json: bool,
    verbose: bool,
    log: bool,
    sources: &'a config::Sources,
    /// `--json`: every operation so far.
    docs: Vec<serde_json::Value>,
    /// Changes carried out, by kind (for the summary).
    kinds: BTreeMap<&'static str, usize>,
    /// A pass had more changes than are printed one by one.
    summarized: bool,
}

impl ApplyOutput<'_> {
    fn pass(&mut self, host: Option<&engine::HostPass>, table: Option<&engine::TablePass>) {
        use output::Result as R;
        let applied = host.map_or(0, |h| h.applied.len())
            + table.map_or(0, |t| t.applied.len() + t.globals.applied.len());
        let each = !self.json && (self.verbose || applied <= output::SUMMARY_ABOVE);
        self.summarized |= !self.json && !each;
        let stuck = "still needed after the kernel took it and it was read back";
        if let Some(h) = host {
            for op in &h.applied {
                *self.kinds.entry(op.kind()).or_default() += 1;
                if self.log {
                    tracing::info!(kind = op.kind(), result = "ok", "{op}");
                }
                if self.json {
                    self.docs.push(output::host_op(op, R::Ok, None));
                } else if each {
                    outln!("{op}");
                }
            }
            if let Some((op, e)) = &h.failed {
                if self.json {
                    self.docs
                        .push(output::host_op(op, R::Failed, Some(e.to_string())));
                } else {
                    outln!("! {op}: {e}");
                }
            }
        }
        if let Some(g) = table.map(|t| &t.globals) {
            for op in &g.applied {
                *self.kinds.entry(op.kind()).or_default() += 1;
                if self.log {
                    tracing::info!(kind = op.kind(), result = "ok", "{op}");
                }
            }
            if self.json {
                self.docs
                    .extend(g.applied.iter().map(|o| output::global_op(o, R::Ok, None)));
                self.docs.extend(
                    g.failed
                        .iter()
                        .map(|(o, e)| output::global_op(o, R::Failed, Some(e.to_string()))),
                );
                self.docs.extend(
                    g.stuck
                        .iter()
                        .map(|o| output::global_op(o, R::Stuck, Some(stuck.into()))),
                );
            } else {
                if each {
                    print_lines(&g.applied);
                }
                for (op, e) in &g.failed {
                    outln!("! {op}: {e}");
                }
                for op in &g.stuck {
                    outln!("! {op}: {stuck}");
                }
                if let Some(e) = &g.error {
                    outln!("! {e}");
                }
            }
        }
        let Some(t) = table else { return };
        for op in &t.applied {
            *self.kinds.entry(op.kind()).or_default() += 1;
        }
        if self.log {
            for op in &t.applied {
                tracing::info!(kind = op.kind(), service = %op.service(), result = "ok", "{op}");
            }
        }
        let file = |o: &plan::Op| self.sources.file_of(&o.service()).map(str::to_owned);
        if self.json {
            let mut docs = Vec::with_capacity(t.applied.len());
            for o in &t.applied {
                docs.push(output::op(o, file(o).as_deref(), R::Ok, None));
            }
            for (o, e) in &t.failed {
                docs.push(output::op(
                    o,
                    file(o).as_deref(),
                    R::Failed,
                    Some(e.to_string()),
                ));
            }
            for o in &t.stuck {
                docs.push(output::op(
                    o,
                    file(o).as_deref(),
                    R::Stuck,
                    Some(stuck.into()),
                ));
            }
            self.docs.extend(docs);
            return;
        }
        if each {
            print_lines(t.applied.iter().map(|o| Line(o, self.sources)));
        }
        for (op, e) in &t.failed {
            if self.log {
                tracing::warn!(kind = op.kind(), service = %op.service(), result = "failed", "{op}: {e}");
            }
            outln!("! {op}: {e}");
        }
        for op in &t.stuck {
            outln!("! {op}: {stuck}");
        }
    }

    /// What is still to do once the apply stops (drains waiting, failures).
    fn after(&mut self, host: Option<&engine::HostPass>, table: Option<&engine::TablePass>) {
        use output::Result as R;
        if self.json {
            if let Some(h) = host {
                self.docs.extend(
                    h.after
                        .ops
                        .iter()
                        .map(|o| output::host_op(o, R::Pending, None)),
                );
            }
            if let Some(t) = table {
                self.docs.extend(
                    t.globals
                        .after
                        .ops
                        .iter()
                        .map(|o| output::global_op(o, R::Pending, None)),
                );
                for o in &t.after.ops {
                    let file = self.sources.file_of(&o.service());
                    self.docs.push(output::op(o, file, R::Pending, None));
                }
            }
            return;
        }
        if let Some(h) = host {
            print_host_plan(&h.after);
        }
        if let Some(t) = table {
            print_lines(&t.globals.after.ops);
            print_plan(&t.after, engine::now(), self.sources);
        }
    }
}
