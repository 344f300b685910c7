//! `ipvsadm -Sn` rules (or an `ipvsadm-restore` file) to lvsd YAML: the table they build,
//! written as `lvsd export` writes the live one. The rules are read as `ipvsadm -R` reads them:
//! a service or real server added twice is an error, as the kernel refuses what exists.

use std::collections::HashMap;
use std::path::Path;

use model::{DestKey, ServiceKey};

use super::{Converted, Marker};
use crate::error::printable;
use crate::{Error, Problem};

/// Converts ipvsadm rules `text` (read from `path`, for messages).
pub fn convert(text: &str, path: &Path) -> Result<Converted, Error> {
    let file = printable(&path.display().to_string()).into_owned();
    if text.len() as u64 > crate::MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: file,
            size: text.len() as u64,
            limit: crate::MAX_FILE_BYTES,
        });
    }
    let invalid = |problems: Vec<Problem>| Error::Invalid {
        path: file.clone(),
        problems,
        omitted: 0,
    };
    let located = model::save::parse_rules_located(text).map_err(|e| {
        invalid(vec![Problem {
            line: e.line as u64,
            col: 1,
            message: printable(&e.message).into_owned(),
        }])
    })?;
    let mut problems = vec![];
    let mut sources: HashMap<ServiceKey, (u64, HashMap<DestKey, u64>)> = HashMap::new();
    for r in &located {
        let (key, spec, dests) = &r.rule;
        if !crate::SCHEDULERS.contains(&spec.scheduler.as_str()) {
            problems.push(Problem {
                line: r.line as u64,
                col: 1,
                message: format!(
                    "`{}` is not a scheduler lvsd takes ({}); write one of them after -s",
                    printable(&spec.scheduler),
                    crate::SCHEDULERS.join(", ")
                ),
            });
        }
        if let Some(pe) = &spec.pe_name {
            if pe.is_empty() || !pe.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                problems.push(Problem {
                    line: r.line as u64,
                    col: 1,
                    message: format!(
                        "`{}` is not a persistence engine's name (the kernel has `sip`); correct the --pe option",
                        printable(pe)
                    ),
                });
            }
        }
        let reals = dests
            .iter()
            .zip(&r.dest_lines)
            .map(|((dk, _), l)| (*dk, *l as u64))
            .collect();
        sources.insert(*key, (r.line as u64, reals));
    }
    if !problems.is_empty() {
        let problems = problems.into_iter().map(|p| (0, p)).collect();
        return Err(super::gather(std::slice::from_ref(&file), problems, 0));
    }
    let rules: Vec<model::save::Rule> = located.into_iter().map(|r| r.rule).collect();
    let rules = plan::Observed::from_rules(&rules).to_rules();
    let yaml = crate::export::to_yaml(&rules, "imported by lvsd from ipvsadm -Sn rules");
    // Each service and real of the output at the line of its -A or -a: the writer puts a
    // service at `  - ` and a real at `      - ` below `    reals:`, in the order of `rules`.
    let mut markers: Vec<Marker> = vec![];
    let mut service = None;
    let mut dest = 0usize;
    let mut in_reals = false;
    let mut next = rules.iter();
    let mut offset = 0usize;
    for line in yaml.split_inclusive('\n') {
        if line.starts_with("  - ") {
            service = next.next();
            dest = 0;
            in_reals = false;
            if let Some((k, ..)) = service {
                if let Some((l, _)) = sources.get(k) {
                    markers.push((offset, file.clone(), *l));
                }
            }
        } else if line.starts_with("    reals:") {
            in_reals = true;
        } else if in_reals && line.starts_with("      - ") {
            if let Some((k, _, dests)) = service {
                let l = dests
                    .get(dest)
                    .and_then(|(dk, _)| sources.get(k).and_then(|(_, m)| m.get(dk)));
                if let Some(l) = l {
                    markers.push((offset, file.clone(), *l));
                }
            }
            dest += 1;
        }
        offset += line.len();
    }
    super::checked(yaml, vec![], &file, markers)
}
