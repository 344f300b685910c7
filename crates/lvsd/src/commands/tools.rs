//! The small commands: `dump`, `info`, `man`, `completions`.

use super::*;

/// `lvsd dump`: the live table as `ipvsadm -Sn` prints it.
pub async fn dump() -> Result<ExitCode> {
    let mut client = ipvs::Client::connect().await?;
    let dump = client.dump().await?;
    out!("{}", ipvs::save::format_rules(&ipvs::save::rules_of(&dump)));
    Ok(ExitCode::SUCCESS)
}

/// `lvsd man --dir`: a page per command.
pub async fn man_dir(dir: PathBuf) -> Result<ExitCode> {
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)
        .with_context(|| format!("write the man pages into {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `lvsd man`: the main page on stdout.
pub async fn man() -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
        .render(&mut out)
        .context("render the man page")?;
    std::io::Write::write_all(&mut stdout::Stdout, &out).context("write the man page")?;
    Ok(ExitCode::SUCCESS)
}

/// `lvsd completions`: a shell's completion script.
pub async fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = std::io::BufWriter::new(stdout::Stdout);
    clap_complete::generate(shell, &mut cmd, "lvsd", &mut out);
    std::io::Write::flush(&mut out).context("write the completions")?;
    Ok(ExitCode::SUCCESS)
}

/// `lvsd info`: the kernel's IPVS version and table size.
pub async fn info() -> Result<ExitCode> {
    let mut client = ipvs::Client::connect().await?;
    let info = client.info().await?;
    outln!(
        "IP Virtual Server version {} (size={})",
        info.version_string(),
        info.conn_tab_size
    );
    Ok(ExitCode::SUCCESS)
}
