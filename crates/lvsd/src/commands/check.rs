//! `lvsd check`.

use super::*;

/// `lvsd check`: the same verdict as every other command's reading, keeping no table.
pub async fn run(arg: ConfigArg, json: bool, at: Option<PathBuf>) -> Result<ExitCode> {
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
            for w in &c.warnings {
                errln!("lvsd: warning: {w}");
            }
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
                "warnings": c.warnings,
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
