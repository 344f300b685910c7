//! `lvsd`: a declarative reconciler daemon for Linux IPVS. The binary edge: command line,
//! logging, exit codes and human-readable output; the work is in the `config`, `plan` and
//! `ipvs` crates and in [`reconcile`] and [`daemon`].

mod daemon;
mod fault;
mod health_status;
mod lock;
mod perms;
mod reconcile;
mod state_file;
mod telemetry;

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
    /// Validate the config; exit 0 when valid, 1 when not.
    Check(ConfigArg),
    /// Show what `apply` would change; exit 0 in sync, 2 changes pending, 1 error.
    Plan(TableArgs),
    /// Converge the table on the config once and print what changed.
    Apply {
        #[command(flatten)]
        table: TableArgs,
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
    Export,
    /// Convert `ipvsadm -Sn` output (a file, or - for stdin) to lvsd YAML.
    Import {
        /// The saved rules.
        #[arg(default_value = "-")]
        file: String,
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
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) {
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
            eprintln!("lvsd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lvsd: {e:#}");
            ExitCode::FAILURE
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
    Ok(load(arg)?)
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
        println!("! {m}");
    }
    for op in &plan.ops {
        println!("{op}");
    }
}

/// Prints one line per item through one buffer: a cold apply of a large table has a hundred
/// thousand lines, and a write per line cost more than the kernel's work.
fn print_lines<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in items {
        if writeln!(out, "{i}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}

fn print_plan(plan: &Plan, now: u64) {
    print_lines(&plan.ops);
    for w in &plan.waiting {
        println!(
            "  waiting: real {} of {} has {} active connections; deleted when they close or in {}s at the latest",
            w.real,
            w.service,
            w.active,
            w.deadline.saturating_sub(now)
        );
    }
    for k in &plan.foreign {
        println!("  foreign: service {k} is not lvsd's; left alone (--exclusive would remove it)");
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        // The same verdict as every other command's reading, keeping no table.
        Command::Check(arg) => match config::check_as(&arg.config, arg.role.map(Role::from)) {
            Ok(c) => {
                let role = match (c.host.role, &c.host.interface) {
                    (Role::None, _) => String::new(),
                    (r, Some(i)) => format!("; role {} on {i}", r.name()),
                    (r, None) => format!("; role {}", r.name()),
                };
                let shown = config::printable(&arg.config.display().to_string()).into_owned();
                println!(
                    "{shown}: valid ({} services, {} real servers{role})",
                    c.services, c.reals
                );
                if c.services == 0 {
                    eprintln!(
                        "lvsd: warning: {shown} has no services; applying it removes every service lvsd manages"
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Plan(t) => {
            let cfg = load(&t.config)?;
            if let Some(h) = lock::holder(&t.state_dir).filter(lock::Holder::is_daemon) {
                eprintln!(
                    "note: lvsd run (pid {}) manages this table from {}; it carries out what this plan shows by itself",
                    h.pid, h.config
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
            print_host_plan(&host);
            print_lines(&globals.ops);
            let mut pending = host.ops.len() + globals.ops.len();
            if let Some(plan) = &table {
                print_plan(plan, reconcile::now());
                pending += plan.ops.len() + plan.waiting.len();
                for w in engine.mh_warnings(&cfg.desired).await? {
                    println!("! warning: {w}");
                }
            }
            if let Some(why) = refusal {
                println!("! {why}");
            }
            match health_status::load(&t.state_dir) {
                Some(daemon_view) => print!("{daemon_view}"),
                None => {
                    for l in health_status::lines(&health, &statuses) {
                        println!(
                            "  {l} (as the kernel's weights show; checks run under `lvsd run`)"
                        );
                    }
                }
            }
            if !host.missing.is_empty() {
                println!("! the host lacks what the role needs; apply would change nothing");
                return Ok(ExitCode::FAILURE);
            }
            if pending == 0 {
                match table {
                    Some(_) => println!("in sync: {} services", cfg.desired.services.len()),
                    None => println!("in sync: host set up as {}", cfg.host.role.name()),
                }
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{pending} changes pending");
                Ok(ExitCode::from(2))
            }
        }
        Command::Apply {
            table,
            force,
            no_wait,
            lock_timeout,
        } => {
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
                for op in host.iter().flat_map(|h| &h.applied) {
                    println!("{op}");
                }
                if let Some((op, e)) = host.and_then(|h| h.failed.as_ref()) {
                    println!("! {op}: {e}");
                }
                if let Some(g) = table.map(|t| &t.globals) {
                    print_lines(&g.applied);
                    for (op, e) in &g.failed {
                        println!("! {op}: {e}");
                    }
                    for op in &g.stuck {
                        println!(
                            "! {op}: still needed after the kernel took it and it was read back"
                        );
                    }
                    if let Some(e) = &g.error {
                        println!("! {e}");
                    }
                }
                let started = std::time::Instant::now();
                print_lines(table.iter().flat_map(|t| &t.applied));
                tracing::debug!(target: "lvsd::timing", elapsed = ?started.elapsed(), "printed the changes");
                for (op, e) in table.iter().flat_map(|t| &t.failed) {
                    println!("! {op}: {e}");
                }
                for op in table.iter().flat_map(|t| &t.stuck) {
                    println!("! {op}: still needed after the kernel took it and it was read back");
                }
                changed +=
                    table.map_or(0, |t| t.applied.len()) + host.map_or(0, |h| h.applied.len());
                let failed_now = table.map_or(0, |t| t.failed.len() + t.stuck.len())
                    + usize::from(host.is_some_and(|h| h.failed.is_some()));
                failed += failed_now;
                if pass.converged() || no_wait || failed_now > 0 {
                    if let Some(h) = host {
                        print_host_plan(&h.after);
                    }
                    if let Some(t) = table {
                        print_lines(&t.globals.after.ops);
                        print_plan(&t.after, reconcile::now());
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if failed > 0 {
                bail!("{failed} operations failed; {changed} applied");
            }
            if changed == 0 {
                println!("in sync: nothing to change");
            } else {
                println!("applied {changed} changes");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { state_dir, json } => {
            print!("{}", telemetry::query(&state_dir, json).await?);
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
            let config = table.config.config.clone();
            let role = table.config.role.map(Role::from);
            let cfg = tokio::task::spawn_blocking(move || config::Loaded::load(&config, role))
                .await
                .context("read the config")??;
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
            daemon::run(settings, signals, engine, cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export => {
            let mut client = ipvs::Client::connect().await?;
            let dump = client.dump().await?;
            let observed = plan::Observed::from_dump(&dump);
            print!(
                "{}",
                config::export::to_yaml(
                    &observed.to_rules(),
                    "exported by lvsd from the live IPVS table"
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file } => {
            let text = if file == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("read standard input")?;
                s
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("read {file}"))?
            };
            let rules =
                ipvs::save::parse_rules(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            let observed = plan::Observed::from_rules(&rules);
            print!(
                "{}",
                config::export::to_yaml(
                    &observed.to_rules(),
                    "imported by lvsd from ipvsadm -Sn rules"
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Dump => {
            let mut client = ipvs::Client::connect().await?;
            let dump = client.dump().await?;
            print!("{}", ipvs::save::format_rules(&ipvs::save::rules_of(&dump)));
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
            std::io::Write::write_all(&mut std::io::stdout(), &out)
                .context("write the man page")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "lvsd", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Info => {
            let mut client = ipvs::Client::connect().await?;
            let info = client.info().await?;
            println!(
                "IP Virtual Server version {} (size={})",
                info.version_string(),
                info.conn_tab_size
            );
            Ok(ExitCode::SUCCESS)
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
