//! The command line: every command, its arguments and their parsing (clap). What each command
//! does is in [`crate::commands`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use plan::host::Role;

use crate::daemon::OnDrift;

/// Declarative reconciler for Linux IPVS: keeps the kernel's virtual-server table equal to a YAML file.
#[derive(Debug, Parser)]
#[command(name = "lvsd", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArg {
    /// The configuration file.
    #[arg(short, long, default_value = "/etc/lvsd/lvsd.yaml")]
    pub(crate) config: PathBuf,
    /// This host's role, overriding `host.role`: push one file to the director and every real
    /// server. `none` manages the IPVS table only (and undoes what a role had set up).
    #[arg(long, value_enum)]
    pub(crate) role: Option<RoleArg>,
    /// Act on a config file (or directory) that users other than root and lvsd's own can write.
    /// Refused by default: whoever can write the config controls the traffic.
    #[arg(long)]
    pub(crate) allow_insecure_config: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImportFrom {
    /// `ipvsadm -Sn` output (`ipvsadm-save -n`).
    Ipvsadm,
    /// keepalived.conf: its virtual_server and virtual_server_group sections.
    Keepalived,
    /// ldirectord.cf.
    Ldirectord,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
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
pub(crate) struct TableArgs {
    #[command(flatten)]
    pub(crate) config: ConfigArg,
    /// Where lvsd remembers which services it manages (volatile, like the IPVS table).
    #[arg(long, default_value = "/run/lvsd")]
    pub(crate) state_dir: PathBuf,
    /// Own the whole table: remove services that are not in the config.
    #[arg(long)]
    pub(crate) exclusive: bool,
}

/// How a command reaches the running daemon.
#[derive(Debug, Args)]
pub(crate) struct ControlArgs {
    /// The daemon's state directory (its control socket is `lvsd.sock` there).
    #[arg(long, default_value = "/run/lvsd")]
    pub(crate) state_dir: PathBuf,
    /// Print JSON, for machines.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What an override carries besides its target.
#[derive(Debug, Args)]
pub(crate) struct OverrideArgs {
    /// End by itself after this long (20s, 30m, 2h); without it, it holds until cleared.
    #[arg(long = "for", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) duration: Option<Duration>,
    /// Why: logged, kept with the override and shown next to it.
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// Members of this group may change overrides (`lvsd drain`, `weight`, `undrain`,
        /// `restore`) over the control socket; root always may, others only read.
        #[arg(long, value_name = "GROUP")]
        admin_group: Option<String>,
    },
    /// Drain a real server (or every real of a service) without editing the file: weight 0, no
    /// new connections, established ones finish; it stays in the table until the drain ends.
    /// With `--director`, take this whole director out of rotation instead: its VIPs are no
    /// longer announced (active-active) or its health file says it cannot serve (active-backup,
    /// so keepalived moves the VIPs), while it serves whatever still reaches it.
    Drain {
        /// The service: its name in the config, or its address (172.16.1.50:80).
        #[arg(required_unless_present = "director")]
        service: Option<String>,
        /// The real: address or address:port; none for every real of the service.
        real: Option<String>,
        /// Take this director out of rotation (every service), not a real.
        #[arg(long, conflicts_with_all = ["service", "real"])]
        director: bool,
        /// With `--director`: how long after the withdrawal before the director may count as
        /// drained (beyond the routing daemon's convergence or the VRRP move).
        #[arg(long, requires = "director", value_parser = parse_duration, value_name = "DURATION")]
        grace: Option<Duration>,
        #[command(flatten)]
        set: OverrideArgs,
        /// Return only once the drained reals have no connections left (established ones, and
        /// for UDP every entry), printing progress; exit 1 at the timeout. With `--director`:
        /// once the grace period is over and no packet reaches the director's services.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits at most.
        #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
        timeout: Duration,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Give a real server another weight than the file's, without editing the file.
    Weight {
        /// The service: its name in the config, or its address.
        service: String,
        /// The real: address or address:port.
        real: String,
        /// The weight (0 drains it).
        weight: u32,
        #[command(flatten)]
        set: OverrideArgs,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// End a drain before its time: the file's weight comes back. With `--director`, put this
    /// director back in rotation: it announces its VIPs (or clears its health file) once its
    /// table is programmed and its services can serve.
    Undrain {
        /// The service: its name in the config, or its address.
        #[arg(required_unless_present = "director")]
        service: Option<String>,
        /// The real; none for the service's own drain.
        real: Option<String>,
        /// Put this director back in rotation.
        #[arg(long, conflicts_with_all = ["service", "real"])]
        director: bool,
        /// Why: logged.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// End any override (drain or weight) of a real or service: the file's value comes back.
    Restore {
        /// The service: its name in the config, or its address.
        service: String,
        /// The real; none for the service's own override.
        real: Option<String>,
        /// Why: logged.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// List the overrides in force, next to the file's values (open to the socket's group).
    Overrides {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Re-create a hashing (mh, sh) service so that the kernel holds its real servers in the
    /// order a director starting from the config would (what `lvsd plan` warns about): the
    /// service is deleted and added again, which cuts its connections. Refused while it carries
    /// any, unless --force. Done by the running daemon when there is one (between its passes),
    /// else here, under the state directory's lock.
    Realign {
        /// The service: its name in the config, or its address (172.16.1.50:80).
        service: String,
        /// Cut the connections and persistence templates the service carries.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        table: TableArgs,
        /// Print JSON, for machines.
        #[arg(long)]
        json: bool,
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

impl Command {
    /// For a command asked for `--json`: its name and the config it reads (as printed), so
    /// that a failure is a JSON document too (a playbook's `from_json` then shows lvsd's
    /// message instead of a parse error of its own).
    pub(crate) fn json_document(&self) -> Option<(&'static str, Option<String>)> {
        let shown = |t: &TableArgs| {
            Some(config::printable(&t.config.config.display().to_string()).into_owned())
        };
        match self {
            Command::Plan { table, json: true } => Some(("plan", shown(table))),
            Command::Apply {
                table, json: true, ..
            } => Some(("apply", shown(table))),
            Command::Status { json: true, .. } => Some(("status", None)),
            Command::Drain { control, .. } if control.json => Some(("drain", None)),
            Command::Weight { control, .. } if control.json => Some(("weight", None)),
            Command::Undrain { control, .. } if control.json => Some(("undrain", None)),
            Command::Restore { control, .. } if control.json => Some(("restore", None)),
            Command::Overrides { control } if control.json => Some(("overrides", None)),
            Command::Realign { json: true, .. } => Some(("realign", None)),
            _ => None,
        }
    }
}

/// The config's duration parser, for the command line too: one spelling everywhere.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
