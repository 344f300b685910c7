//! `lvsd export`.

use super::*;

/// `lvsd export`: the live table as lvsd's YAML.
pub async fn run(split: Option<PathBuf>) -> Result<ExitCode> {
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
            let files = config::export::split(&rules, "exported by lvsd from the live IPVS table");
            write_split(&dir, &files)?;
        }
    }
    Ok(ExitCode::SUCCESS)
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
