//! Planner fixtures, the way nmstate tests its diff: each directory under
//! `tests/fixtures/plan/` holds `desired.yaml` (a config), `observed.txt` (the live table in
//! `ipvsadm -Sn` form), optionally `owned.txt` (services lvsd manages, one per line) and
//! `expected.txt` (the plan, one operation per line, then the foreign services).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use plan::{Observed, Options, Owned, OwnedService};

fn run_case(dir: &Path) -> (String, String) {
    // desired.yaml, observed.txt and expected.txt must be there (a case missing one would
    // compare nothing with nothing); owned.txt is optional (lvsd owns nothing yet).
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}: {f}: {e}", dir.display()))
    };
    let read_optional = |f: &str| match std::fs::read_to_string(dir.join(f)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => panic!("{}: {f}: {e}", dir.display()),
    };
    let desired = config::parse(&read("desired.yaml"), "desired.yaml")
        .unwrap()
        .desired;
    let observed = Observed::from_rules(&model::save::parse_rules(&read("observed.txt")).unwrap());
    let mut owned = Owned::default();
    for line in read_optional("owned.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let (key, s) = observed
            .services
            .iter()
            .find(|(k, _)| k.to_string() == line.trim())
            .unwrap_or_else(|| panic!("{}: owned service {line} is not observed", dir.display()));
        let entry = OwnedService {
            reals: s.reals.keys().copied().collect(),
            drain_timeout: 30,
            ..Default::default()
        };
        owned.services.insert(*key, entry);
    }
    let p = plan::plan(
        &desired,
        &observed,
        &owned,
        Options {
            exclusive: false,
            now: 0,
        },
    );
    let mut got: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
    got.extend(p.foreign.iter().map(|k| format!("foreign: {k}")));
    let got = got.iter().map(|l| format!("{l}\n")).collect::<String>();
    (got, read("expected.txt"))
}

#[test]
fn plan_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5);
    let mut failures = vec![];
    for dir in &dirs {
        let (got, want) = run_case(dir);
        if got != want {
            failures.push(format!(
                "{}:\n--- want\n{want}--- got\n{got}",
                dir.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
