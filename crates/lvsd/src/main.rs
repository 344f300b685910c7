//! `lvsd`: a declarative reconciler daemon for Linux IPVS.
//!
//! This first cut carries the name, `--help`, `--version` and the commands that need nothing but
//! the IPVS client; the reconciler (`check`, `plan`, `apply`, `run`) builds on it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Declarative reconciler for Linux IPVS: keeps the kernel's virtual-server table equal to a YAML file.
#[derive(Debug, Parser)]
#[command(name = "lvsd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the live IPVS table in `ipvsadm -Sn` form (what `ipvsadm-restore` reads).
    Dump,
    /// Print the kernel's IPVS version and connection-table size.
    Info,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lvsd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ipvs::Error> {
    let mut client = ipvs::Client::connect().await?;
    match cli.command {
        Command::Dump => {
            let dump = client.dump().await?;
            print!("{}", ipvs::save::format_rules(&ipvs::save::rules_of(&dump)));
        }
        Command::Info => {
            let info = client.info().await?;
            println!(
                "IP Virtual Server version {} (size={})",
                info.version_string(),
                info.conn_tab_size
            );
        }
    }
    Ok(())
}
