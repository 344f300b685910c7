//! `lvsd status`.

use super::*;

/// `lvsd status`: asks the daemon of `state_dir`.
pub async fn run(state_dir: PathBuf, json: bool) -> Result<ExitCode> {
    out!("{}", telemetry::query(&state_dir, json).await?);
    Ok(ExitCode::SUCCESS)
}
