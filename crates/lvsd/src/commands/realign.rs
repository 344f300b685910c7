//! `lvsd realign`.

use super::*;
use crate::overrides::Request;

/// How long `realign` waits for an `apply` holding the state directory's lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// `lvsd realign`: through the running daemon when one holds the state directory (it does it
/// between its passes, so nothing writes the table meanwhile), else here under the state
/// directory's lock (as `apply` takes it), against the config given.
pub async fn run(t: TableArgs, service: String, force: bool, json: bool) -> Result<ExitCode> {
    let daemon = lock::holder(&t.state_dir).filter(lock::Holder::is_daemon);
    let answer = match daemon {
        Some(_) => telemetry::request(&t.state_dir, &Request::Realign { service, force }).await?,
        None => {
            let cfg = load_trusted(&t.config)?;
            let _lock = lock::acquire(&t.state_dir, "realign", &t.config.config, LOCK_WAIT)?;
            let key = crate::overrides::find_service(&cfg.desired, &service)
                .map_err(anyhow::Error::msg)?;
            let mut engine = Engine::new(t.state_dir.clone(), t.exclusive);
            let done = engine.realign(&key, force).await?;
            daemon::realigned_json(&done)
        }
    };
    if json {
        output::print(&answer);
    } else {
        outln!(
            "{}",
            answer["line"]
                .as_str()
                .unwrap_or("realign: done (no line in the answer)")
        );
    }
    Ok(ExitCode::SUCCESS)
}
