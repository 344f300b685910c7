//! What the import tests share: a converted file as the table it makes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The `ipvsadm -Sn` lines of the table `yaml` makes, sorted.
pub fn table(yaml: &str) -> Vec<String> {
    let c = config::parse(yaml, "converted.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let mut lines: Vec<String> = model::save::format_rules(&c.desired.to_rules())
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}
