//! `lvsd`: a declarative reconciler daemon for Linux IPVS. The binary edge: command line,
//! logging, exit codes and human-readable output; the work is in the `config`, `plan` and
//! `ipvs` crates and in [`reconcile`] and [`daemon`].

#[macro_use]
mod stdout;
mod daemon;
mod fault;
mod health_status;
mod io;
mod lock;
mod output;
mod perms;
mod reconcile;
mod state_file;
mod telemetry;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use plan::Plan;
use plan::health::HealthTable;
use plan::host::{HostPlan, Role};

use crate::daemon::OnDrift;
use crate::reconcile::{Engine, FullPlan, PassSpec};

/// Declarative reconciler for Linux IPVS: keeps the kernel's virtual-server table equal to a YAML file.
#[derive(Debug, Parser)]
#[command(name = "lvsd", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(short, long, default_value = "/etc/lvsd/lvsd.yaml")]
    config: PathBuf,
    /// This host's role, overriding `host.role`: push one file to the director and every real
    /// server. `none` manages the IPVS table only (and undoes what a role had set up).
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// Act on a config file (or directory) that users other than root and lvsd's own can write.
    /// Refused by default: whoever can write the config controls the traffic.
    #[arg(long)]
    allow_insecure_config: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImportFrom {
    /// `ipvsadm -Sn` output (`ipvsadm-save -n`).
    Ipvsadm,
    /// keepalived.conf: its virtual_server and virtual_server_group sections.
    Keepalived,
    /// ldirectord.cf.
    Ldirectord,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Director,
    RealServer,
    None,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Director => Role::Director,
            RoleArg::RealServer => Role::RealServer,
            RoleArg::None => Role::None,
        }
    }
}

#[derive(Debug, Args)]
struct TableArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Where lvsd remembers which services it manages (volatile, like the IPVS table).
    #[arg(long, default_value = "/run/lvsd")]
    state_dir: PathBuf,
    /// Own the whole table: remove services that are not in the config.
    #[arg(long)]
    exclusive: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config (and every file it includes); exit 0 when valid, 1 when not.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print one JSON document (the problems with file, line, column, message, hint).
        #[arg(long)]
        json: bool,
        /// Check the file as if it stood at this path: `include:` patterns are resolved next
        /// to it, not next to the file given (Ansible's `validate: lvsd check -c %s --as
        /// /etc/lvsd/lvsd.yaml` checks a temporary copy before it moves it into place).
        #[arg(long = "as", value_name = "DESTINATION")]
        at: Option<PathBuf>,
    },
    /// Show what `apply` would change; exit 0 in sync, 2 changes pending, 1 error.
    Plan {
        #[command(flatten)]
        table: TableArgs,
        /// Print one JSON document: every operation (kind, object, before, after, reason)
        /// and the totals.
        #[arg(long)]
        json: bool,
    },
    /// Converge the table on the config once and print what changed.
    Apply {
        #[command(flatten)]
        table: TableArgs,
        /// Print one JSON document: every operation carried out, failed or still pending,
        /// and the totals.
        #[arg(long)]
        json: bool,
        /// Print every change, also of a bulk apply (which otherwise prints counts by kind).
        #[arg(short, long)]
        verbose: bool,
        /// Apply even if the plan removes more than half of what lvsd manages.
        #[arg(long)]
        force: bool,
        /// Return once removed real servers are drained to weight 0, without waiting for their
        /// connections to close (a later apply or `run` deletes them).
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for another `lvsd apply` on the same state directory to finish
        /// (a running daemon is reported at once: it does not let go).
        #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
        lock_timeout: Duration,
    },
    /// The daemon: converge, then keep converging on config changes, SIGHUP and drift.
    Run {
        #[command(flatten)]
        table: TableArgs,
        /// Full resync period (repairs changes made behind lvsd's back): 500ms, 30s, 5m, or
        /// seconds.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        resync_interval: Duration,
        /// What to do about drift.
        #[arg(long, value_enum, default_value = "repair")]
        on_drift: OnDrift,
        /// Apply configs even if they remove more than half of what lvsd manages.
        #[arg(long)]
        force: bool,
        /// Serve Prometheus metrics at http://ADDR/metrics (off unless given; e.g.
        /// 127.0.0.1:9474).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Ask the running daemon how it is doing (over its Unix socket in the state directory).
    Status {
        /// The daemon's state directory.
        #[arg(long, default_value = "/run/lvsd")]
        state_dir: PathBuf,
        /// Print JSON, for machines.
        #[arg(long)]
        json: bool,
    },
    /// Print the live table as lvsd YAML (what `apply` accepts unchanged).
    Export {
        /// Write one file per service into this directory instead (for `include:`), named
        /// after the service.
        #[arg(long, value_name = "DIR")]
        split: Option<PathBuf>,
    },
    /// Convert another tool's configuration (a file, or - for stdin) to lvsd YAML: `ipvsadm
    /// -Sn` rules, a keepalived.conf's virtual servers, or an ldirectord.cf. What has no
    /// equivalent is kept as a comment where it stood, and summed up on stderr.
    Import {
        /// The file.
        #[arg(default_value = "-")]
        file: String,
        /// What the file is.
        #[arg(long, value_enum, default_value = "ipvsadm")]
        from: ImportFrom,
    },
    /// Print the live IPVS table in `ipvsadm -Sn` form (what `ipvsadm-restore` reads).
    Dump,
    /// Print the kernel's IPVS version and connection-table size.
    Info,
    /// Print the man page (roff): `lvsd man > /usr/local/share/man/man1/lvsd.1`; with `--dir`,
    /// write it and one page per command (`lvsd-apply.1`, ...) into a directory.
    Man {
        /// Write every page into this directory instead of printing the main one.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print shell completions: `lvsd completions bash > /etc/bash_completion.d/lvsd`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The config's duration parser, for the command line too: one spelling everywhere.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let shown = config::printable(s);
    match config::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!(
            "`{shown}` is zero; give a positive duration such as 500ms, 30s or 5m"
        )),
        Err(e) => Err(format!(
            "`{shown}` is not a duration ({e}); give one such as 500ms, 30s or 5m"
        )),
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LVSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return command_line_error(&e),
    };
    // A bulk apply with JSON logs logs every change it makes (at info).
    let every_change =
        matches!(cli.command, Command::Apply { .. }) && matches!(cli.log_format, LogFormat::Json);
    let default_level = if matches!(cli.command, Command::Run { .. }) || every_change {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    // The daemon's loop, its probes, status and metrics servers each get a worker thread to
    // run on (a long pass never stalls a health check's timing or a scrape); one-shot commands
    // need one thread.
    let mut builder = if matches!(cli.command, Command::Run { .. }) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("lvsd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.command.json_document();
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // A machine reading `--json` gets a document, also about a failure.
            if let Some((command, config)) = json {
                output::print(&output::failure(command, config.as_deref(), &e));
            }
            errln!("lvsd: {e:#}");
            ExitCode::FAILURE
        }
    };
    match stdout::failure() {
        Some(why) => {
            errln!("{why}");
            ExitCode::FAILURE
        }
        None => code,
    }
}

/// Says what clap has to say about the command line: usage errors on stderr; `--help` and
/// `--version` on stdout, through [`stdout::Stdout`] when it is not a terminal, so that a full
/// disk is an error there too (clap's own printing ignores it).
fn command_line_error(e: &clap::Error) -> ExitCode {
    let code = u8::try_from(e.exit_code()).unwrap_or(1);
    // A machine that asked for `--json` gets a document about a bad command line too.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if e.use_stderr() && args.iter().any(|a| a == "--json") {
        let command = args
            .iter()
            .find(|a| !a.starts_with('-'))
            .map_or("", String::as_str);
        let message = e.render().to_string();
        output::print(&serde_json::json!({
            "version": output::SCHEMA_VERSION,
            "command": config::printable(command),
            "error": message.trim_end(),
            "exit": code,
        }));
    }
    if e.use_stderr() || std::io::stdout().is_terminal() {
        let _ = e.print();
        return ExitCode::from(code);
    }
    out!("{}", e.render());
    match stdout::failure() {
        Some(why) => {
            errln!("{why}");
            ExitCode::FAILURE
        }
        None => ExitCode::from(code),
    }
}

impl Command {
    /// For a command asked for `--json`: its name and the config it reads (as printed), so
    /// that a failure is a JSON document too (a playbook's `from_json` then shows lvsd's
    /// message instead of a parse error of its own).
    fn json_document(&self) -> Option<(&'static str, Option<String>)> {
        let shown = |t: &TableArgs| {
            Some(config::printable(&t.config.config.display().to_string()).into_owned())
        };
        match self {
            Command::Plan { table, json: true } => Some(("plan", shown(table))),
            Command::Apply {
                table, json: true, ..
            } => Some(("apply", shown(table))),
            Command::Status { json: true, .. } => Some(("status", None)),
            _ => None,
        }
    }
}

fn load(arg: &ConfigArg) -> Result<config::Config, config::Error> {
    let started = std::time::Instant::now();
    let c = config::load_as(&arg.config, arg.role.map(Role::from));
    tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "read and validated the config");
    c
}

/// Loads a config lvsd is about to act on: its permissions are checked first.
fn load_trusted(arg: &ConfigArg) -> Result<config::Config> {
    check_trusted(arg)?;
    let cfg = load(arg)?;
    // Every file of the generation: whoever can write one of them controls its services.
    if !arg.allow_insecure_config {
        // The real paths: the printable names are escaped, and name no file when a name
        // holds a tab or a no-break space.
        for f in cfg.sources.paths.iter().skip(1) {
            if let Some(why) = perms::insecure(f) {
                bail!("{why}");
            }
        }
    }
    Ok(cfg)
}

/// Refuses a config others can write (unless `--allow-insecure-config`).
fn check_trusted(arg: &ConfigArg) -> Result<()> {
    if !arg.allow_insecure_config {
        if let Some(why) = perms::insecure(&arg.config) {
            bail!("{why}");
        }
    }
    Ok(())
}

fn print_host_plan(plan: &HostPlan) {
    for m in &plan.missing {
        outln!("! {m}");
    }
    for op in &plan.ops {
        outln!("{op}");
    }
}

/// Prints one line per item through one buffer: a cold apply of a large table has a hundred
/// thousand lines, and a write per line cost more than the kernel's work.
fn print_lines<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(stdout::Stdout);
    for i in items {
        if writeln!(out, "{i}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

/// An operation's line, with the file its service comes from when the main file includes
/// others.
struct Line<'a>(&'a plan::Op, &'a config::Sources);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1.file_of(&self.0.service()) {
            Some(file) => write!(f, "{}  [{file}]", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

fn print_plan(plan: &Plan, now: u64, sources: &config::Sources) {
    print_lines(plan.ops.iter().map(|o| Line(o, sources)));
    for w in &plan.waiting {
        outln!(
            "  waiting: {w}; deleted when they are gone or in {}s at the latest",
            w.deadline.saturating_sub(now)
        );
    }
    for k in &plan.foreign {
        outln!("  foreign: service {k} is not lvsd's; left alone (--exclusive would remove it)");
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    // With JSON logs, an apply logs every change (stdout still sums a bulk apply up).
    let every_change = matches!(cli.log_format, LogFormat::Json);
    match cli.command {
        // The same verdict as every other command's reading, keeping no table.
        Command::Check {
            config: arg,
            json,
            at,
        } => {
            let shown = config::printable(&arg.config.display().to_string()).into_owned();
            let checked = config::check_at(
                &arg.config,
                at.as_deref().unwrap_or(&arg.config),
                arg.role.map(Role::from),
            );
            if json {
                output::print(&check_json(&shown, &checked));
                return Ok(if checked.is_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            match checked {
                Ok(c) => {
                    let role = match (c.host.role, &c.host.interface) {
                        (Role::None, _) => String::new(),
                        (r, Some(i)) => format!("; role {} on {i}", r.name()),
                        (r, None) => format!("; role {}", r.name()),
                    };
                    outln!(
                        "{shown}: valid ({} services, {} real servers{role})",
                        c.services,
                        c.reals
                    );
                    print_files(&c);
                    if c.services == 0 {
                        errln!(
                            "lvsd: warning: {shown} has no services; applying it removes every service lvsd manages"
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    errln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Plan { table: t, json } => {
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
            let (table_desired, statuses) = health.effective(&cfg.desired);
            let unable = plan::health::unable(&statuses);
            let full = engine.plan_all(&cfg, &table_desired, &unable).await?;
            let refusal = engine.refusal(&cfg, &full);
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
                print_plan(plan, reconcile::now(), &cfg.sources);
                pending += plan.ops.len() + plan.waiting.len();
                for w in engine.mh_warnings(&cfg.desired).await? {
                    outln!("! warning: {w}");
                }
            }
            if let Some(why) = refusal {
                outln!("! {why}");
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
        Command::Apply {
            table,
            json,
            verbose,
            force,
            no_wait,
            lock_timeout,
        } => {
            let shown = config::printable(&table.config.config.display().to_string()).into_owned();
            // A failure returned from here is a JSON document under `--json` (see `main`).
            let cfg = load_trusted(&table.config)?;
            let _lock = lock::acquire(
                &table.state_dir,
                "apply",
                &table.config.config,
                lock_timeout,
            )?;
            let mut engine = Engine::new(table.state_dir, table.exclusive);
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
                changed +=
                    table.map_or(0, |t| t.applied.len()) + host.map_or(0, |h| h.applied.len());
                let failed_now = table.map_or(0, |t| t.failed.len() + t.stuck.len())
                    + usize::from(host.is_some_and(|h| h.failed.is_some()));
                failed += failed_now;
                if pass.converged() || no_wait || failed_now > 0 {
                    out.after(host, table);
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
        Command::Status { state_dir, json } => {
            out!("{}", telemetry::query(&state_dir, json).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            table,
            resync_interval,
            on_drift,
            force,
            metrics_listen,
        } => {
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
            };
            daemon::run(settings, signals, engine).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { split } => {
            let mut client = ipvs::Client::connect().await?;
            let dump = client.dump().await?;
            let observed = plan::Observed::from_dump(&dump);
            let rules = observed.to_rules();
            match split {
                None => out!(
                    "{}",
                    config::export::to_yaml(&rules, "exported by lvsd from the live IPVS table")
                ),
                Some(dir) => {
                    let files =
                        config::export::split(&rules, "exported by lvsd from the live IPVS table");
                    write_split(&dir, &files)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, from } => {
            let text = if file == "-" {
                // Bounded as a file is: an endless pipe is refused, not read into memory.
                let mut bytes = Vec::new();
                std::io::stdin()
                    .take(config::MAX_FILE_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .context("read standard input")?;
                if bytes.len() as u64 > config::MAX_FILE_BYTES {
                    return Err(config::Error::TooLarge {
                        path: "-".into(),
                        size: bytes.len() as u64,
                        limit: config::MAX_FILE_BYTES,
                    }
                    .into());
                }
                config::text_of(bytes, "-")?
            } else {
                let path = std::path::Path::new(&file);
                config::read_text(path)?
            };
            let converted = match from {
                ImportFrom::Ipvsadm => config::import::ipvsadm(&text, std::path::Path::new(&file)),
                ImportFrom::Keepalived => {
                    config::import::keepalived(&text, std::path::Path::new(&file))
                }
                ImportFrom::Ldirectord => {
                    config::import::ldirectord(&text, std::path::Path::new(&file))
                }
            };
            let converted = match converted {
                Ok(c) => c,
                Err(e) => {
                    // Text from the imported file, escaped as every message of lvsd's is.
                    for line in e.to_string().lines() {
                        errln!("{}", config::printable(line));
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            out!("{}", converted.yaml);
            for line in &converted.summary {
                errln!("lvsd import: {}", config::printable(line));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dump => {
            let mut client = ipvs::Client::connect().await?;
            let dump = client.dump().await?;
            out!("{}", ipvs::save::format_rules(&ipvs::save::rules_of(&dump)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)
                .with_context(|| format!("write the man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: None } => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut out)
                .context("render the man page")?;
            std::io::Write::write_all(&mut stdout::Stdout, &out).context("write the man page")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = std::io::BufWriter::new(stdout::Stdout);
            clap_complete::generate(shell, &mut cmd, "lvsd", &mut out);
            std::io::Write::flush(&mut out).context("write the completions")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Info => {
            let mut client = ipvs::Client::connect().await?;
            let info = client.info().await?;
            outln!(
                "IP Virtual Server version {} (size={})",
                info.version_string(),
                info.conn_tab_size
            );
            Ok(ExitCode::SUCCESS)
        }
    }
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
    fn pass(&mut self, host: Option<&reconcile::HostPass>, table: Option<&reconcile::TablePass>) {
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
    fn after(&mut self, host: Option<&reconcile::HostPass>, table: Option<&reconcile::TablePass>) {
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
            print_plan(&t.after, reconcile::now(), self.sources);
        }
    }
}

/// Writes `lvsd export --split`'s files into `dir` (created if missing), refusing to replace
/// any file that is there already.
fn write_split(dir: &std::path::Path, files: &[(String, String)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let there: Vec<String> = files
        .iter()
        .filter(|(name, _)| dir.join(name).exists())
        .map(|(name, _)| name.clone())
        .collect();
    if !there.is_empty() {
        bail!(
            "{} already holds {}; export into an empty directory (or remove them first)",
            dir.display(),
            there.join(", ")
        );
    }
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    errln!(
        "lvsd export: wrote {} files into {}; the main config takes them with `include: [{}/*.yaml]`",
        files.len(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// A real waiting for its connections to close, for `plan --json`.
fn waiting_json(w: &plan::Waiting) -> serde_json::Value {
    serde_json::json!({
        "service": w.service.to_string(),
        "real": w.real.to_string(),
        "active": w.active,
        "inactive": w.inactive,
        "persistent": w.persistent,
        "deadline": w.deadline,
    })
}

/// `lvsd check --json`: the verdict, and every problem with its file, line, column, message
/// and hint.
fn check_json(shown: &str, checked: &Result<config::Summary, config::Error>) -> serde_json::Value {
    match checked {
        Ok(c) => {
            let files: Vec<serde_json::Value> = c
                .files
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "path": f.path,
                        "services": f.services.iter().map(|(k, n, r)| serde_json::json!({"service": k.to_string(), "name": n, "reals": r})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            serde_json::json!({
                "version": output::SCHEMA_VERSION,
                "command": "check",
                "config": shown,
                "valid": true,
                "services": c.services,
                "reals": c.reals,
                "role": c.host.role.name(),
                "files": files,
                "problems": [],
                "omitted": 0,
            })
        }
        Err(e) => {
            let (problems, omitted) = e.located();
            serde_json::json!({
                "version": output::SCHEMA_VERSION,
                "command": "check",
                "config": shown,
                "valid": false,
                "problems": problems.iter().map(|p| serde_json::json!({
                    "file": p.file,
                    "line": p.line,
                    "column": p.col,
                    "message": p.message,
                    "hint": p.hint,
                })).collect::<Vec<_>>(),
                "omitted": omitted,
            })
        }
    }
}

/// `lvsd check` of a generation: each file with its services (listed while there are few).
fn print_files(c: &config::Summary) {
    const LISTED: usize = 50;
    for f in &c.files {
        let reals: usize = f.services.iter().map(|s| s.2).sum();
        outln!(
            "  {}: {} services, {reals} real servers",
            f.path,
            f.services.len()
        );
        if c.services <= LISTED {
            for (k, name, _) in &f.services {
                match name {
                    Some(n) => outln!("    {k} ({n})"),
                    None => outln!("    {k}"),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_resync_interval_takes_the_configs_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        for bad in ["0", "0s", "1s1s", "30s1m", "1.5s", "5M", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
