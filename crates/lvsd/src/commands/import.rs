//! `lvsd import`.

use super::*;

/// `lvsd import`: another tool's config as lvsd's YAML.
pub async fn run(file: String, from: ImportFrom) -> Result<ExitCode> {
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
        ImportFrom::Keepalived => config::import::keepalived(&text, std::path::Path::new(&file)),
        ImportFrom::Ldirectord => config::import::ldirectord(&text, std::path::Path::new(&file)),
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
