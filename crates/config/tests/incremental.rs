//! Reading an edited file by re-parsing only the changed entries must give exactly what a full
//! parse gives: the same config, or the same error (then the old config stays). Random files
//! and random edits, each checked against a full parse of the new text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use config::{Loaded, Reread};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Real {
    host: u8,
    weight: Option<u8>,
}

#[derive(Debug, Clone)]
struct Svc {
    vip: u8,
    udp: bool,
    scheduler: Option<&'static str>,
    name: Option<u8>,
    reals: Vec<Real>,
}

fn real() -> impl Strategy<Value = Real> {
    (1u8..20, proptest::option::of(0u8..5)).prop_map(|(host, weight)| Real { host, weight })
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        1u8..30,
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("wlc"), Just("rr"), Just("sh"), Just("dr")]),
        proptest::option::of(0u8..6),
        proptest::collection::vec(real(), 0..4),
    )
        .prop_map(|(vip, udp, scheduler, name, reals)| Svc {
            vip,
            udp,
            scheduler,
            name,
            reals,
        })
}

/// Renders the file: services indented by `indent`, a host section before or after them, and
/// comments here and there.
fn render(services: &[Svc], indent: usize, host: Option<bool>) -> String {
    let pad = " ".repeat(indent);
    let mut t = String::from("# lvsd test config\n");
    let host_text = "host:\n  role: director\n  interface: eth0\n";
    if host == Some(true) {
        t.push_str(host_text);
    }
    t.push_str("services:\n");
    for (i, s) in services.iter().enumerate() {
        t.push_str(&format!("{pad}- address: 10.0.0.{}:80\n", s.vip));
        if s.udp {
            t.push_str(&format!("{pad}  protocol: udp\n"));
        }
        if let Some(sch) = s.scheduler {
            t.push_str(&format!("{pad}  scheduler: {sch}\n"));
        }
        if let Some(n) = s.name {
            t.push_str(&format!("{pad}  name: web{n}\n"));
        }
        if i % 3 == 1 {
            t.push_str(&format!("{pad}  # the pool\n\n"));
        }
        // No reals: the key left out, or an empty list (`reals:` alone is null, an error).
        match (s.reals.is_empty(), s.vip % 2) {
            (true, 0) => {}
            (true, _) => t.push_str(&format!("{pad}  reals: []\n")),
            (false, _) => t.push_str(&format!("{pad}  reals:\n")),
        }
        for r in &s.reals {
            t.push_str(&format!("{pad}    - address: 10.1.0.{}\n", r.host));
            if let Some(w) = r.weight {
                t.push_str(&format!("{pad}      weight: {w}\n"));
            }
        }
    }
    if host == Some(false) {
        t.push_str(host_text);
    }
    t
}

#[derive(Debug, Clone)]
enum Edit {
    Weight(usize, usize, u8),
    Scheduler(usize, &'static str),
    Insert(usize, Svc),
    Remove(usize),
    AddReal(usize, Real),
    Rename(usize, u8),
    Readdress(usize, u8),
    Garbage(usize),
    HostRole,
    /// A character of a class the readers must agree on, anywhere (issue 21).
    Char(usize, &'static str),
    /// A service moved to a loopback address, which a host with a role refuses.
    Loopback(usize),
    /// A real's weight made empty (null), which is an error, not the default.
    NullWeight(usize),
    /// A weight set on the first and the last service (an edit at both ends).
    Ends(u8),
    /// A service moved elsewhere.
    Move(usize, usize),
    /// A copy of a service inserted elsewhere (a duplicate).
    Duplicate(usize, usize),
    /// Two services swapped.
    Swap(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 0u8..9).prop_map(|(a, b, w)| Edit::Weight(a, b, w)),
        (
            any::<usize>(),
            prop_oneof![Just("wrr"), Just("lc"), Just("bogus")]
        )
            .prop_map(|(a, s)| Edit::Scheduler(a, s)),
        (any::<usize>(), svc()).prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), real()).prop_map(|(a, r)| Edit::AddReal(a, r)),
        (any::<usize>(), 0u8..6).prop_map(|(a, n)| Edit::Rename(a, n)),
        (any::<usize>(), 1u8..30).prop_map(|(a, v)| Edit::Readdress(a, v)),
        any::<usize>().prop_map(Edit::Garbage),
        Just(Edit::HostRole),
        (
            any::<usize>(),
            prop_oneof![
                Just("\u{a0}"),
                Just("\u{85}"),
                Just("\u{feff}"),
                Just("\u{fffe}"),
                Just("\u{c}"),
                Just("\u{3000}"),
                Just("\u{e9}"),
                Just("\u{7f}"),
                Just("\u{202e}"),
            ]
        )
            .prop_map(|(a, c)| Edit::Char(a, c)),
        any::<usize>().prop_map(Edit::Loopback),
        any::<usize>().prop_map(Edit::NullWeight),
        (0u8..9).prop_map(Edit::Ends),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Move(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Duplicate(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
    ]
}

/// Applies an edit to the model, or (for text-level edits) to the rendered text.
fn apply(services: &mut Vec<Svc>, e: &Edit, text: &mut Option<String>) {
    let n = services.len();
    match e {
        Edit::Weight(a, b, w) if n > 0 => {
            let s = &mut services[a % n];
            if !s.reals.is_empty() {
                let k = b % s.reals.len();
                s.reals[k].weight = Some(*w);
            }
        }
        Edit::Scheduler(a, sch) if n > 0 => services[a % n].scheduler = Some(sch),
        Edit::Insert(a, s) => services.insert(a % (n + 1), s.clone()),
        Edit::Remove(a) if n > 0 => {
            services.remove(a % n);
        }
        Edit::AddReal(a, r) if n > 0 => services[a % n].reals.push(r.clone()),
        Edit::Rename(a, name) if n > 0 => services[a % n].name = Some(*name),
        Edit::Readdress(a, v) if n > 0 => services[a % n].vip = *v,
        Edit::Ends(w) if n > 0 => {
            for i in [0, n - 1] {
                match services[i].reals.first_mut() {
                    Some(r) => r.weight = Some(*w),
                    None => services[i].reals.push(Real {
                        host: 1,
                        weight: Some(*w),
                    }),
                }
            }
        }
        Edit::Move(a, b) if n > 0 => {
            let s = services.remove(a % n);
            services.insert(b % n, s);
        }
        Edit::Duplicate(a, b) if n > 0 => {
            let s = services[a % n].clone();
            services.insert(b % (n + 1), s);
        }
        Edit::Swap(a, b) if n > 0 => services.swap(a % n, b % n),
        Edit::Garbage(a) => {
            if let Some(t) = text {
                let at = a % (t.len() + 1);
                let at = (0..=at).rev().find(|i| t.is_char_boundary(*i)).unwrap_or(0);
                t.insert_str(at, ": ]\n");
            }
        }
        Edit::HostRole => {
            if let Some(t) = text {
                *t = t.replace("role: director", "role: real-server");
            }
        }
        Edit::Char(a, c) => {
            if let Some(t) = text {
                let at = a % (t.len() + 1);
                let at = (0..=at).rev().find(|i| t.is_char_boundary(*i)).unwrap_or(0);
                t.insert_str(at, c);
            }
        }
        Edit::Loopback(a) => {
            if let Some(t) = text {
                let n = t.matches("- address: 10.0.0.").count().max(1);
                if let Some((i, _)) = t.match_indices("- address: 10.0.0.").nth(a % n) {
                    t.replace_range(i..i + "- address: 10.0.0.".len(), "- address: 127.0.0.");
                }
            }
        }
        Edit::NullWeight(a) => {
            if let Some(t) = text {
                let n = t.matches("weight: ").count().max(1);
                if let Some((i, _)) = t.match_indices("weight: ").nth(a % n) {
                    let end = t[i..].find('\n').map_or(t.len(), |e| i + e);
                    t.replace_range(i..end, "weight:");
                }
            }
        }
        _ => {}
    }
}

static IN_PLACE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static WHOLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn full(text: &str) -> Result<config::Config, String> {
    config::parse(text, "lvsd.yaml").map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn rereading_an_edit_equals_a_full_parse(
        services in proptest::collection::vec(svc(), 1..12),
        indent in prop_oneof![Just(0usize), Just(2), Just(4)],
        host in proptest::option::of(any::<bool>()),
        edits in proptest::collection::vec(proptest::collection::vec(edit(), 1..3), 1..4),
    ) {
        let before = render(&services, indent, host);
        let Ok(mut loaded) = Loaded::parse(before.clone(), "lvsd.yaml", None) else {
            // An invalid start (duplicates, a bad scheduler): nothing to reread from.
            return Ok(());
        };
        let mut model = services.clone();
        let mut text = Some(render(&model, indent, host));
        for step in &edits {
            // Several edits at once: at both ends, in the middle, entries moved.
            let mut next_model = model.clone();
            let mut scratch = None;
            for e in step {
                apply(&mut next_model, e, &mut scratch);
            }
            let mut next = render(&next_model, indent, host);
            let mut t = Some(next.clone());
            for e in step {
                apply(&mut Vec::new(), e, &mut t);
            }
            if let Some(t) = t {
                next = t;
            }
            let expect = full(&next);
            let old = loaded.config.clone();
            match loaded.reread(next.clone().into_bytes(), "lvsd.yaml", None) {
                Ok(Reread::Same) => prop_assert_eq!(Ok(old.clone()), expect),
                Ok(Reread::Edited { touched, .. }) => {
                    IN_PLACE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    prop_assert_eq!(Ok(loaded.config.clone()), expect);
                    for k in old.desired.services.keys().chain(loaded.config.desired.services.keys()) {
                        let differs = old.desired.services.get(k) != loaded.config.desired.services.get(k);
                        prop_assert_eq!(differs, touched.contains(k), "{} in touched", k);
                    }
                }
                Ok(Reread::Whole(l)) => {
                    WHOLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    prop_assert_eq!(Ok(l.config.clone()), expect);
                    loaded = *l;
                }
                Err(e) => {
                    prop_assert_eq!(Err(e.to_string()), expect);
                    prop_assert_eq!(&loaded.config, &old, "a rejected file changes nothing");
                    continue;
                }
            }
            model = next_model;
            text = Some(next);
        }
        let _ = text;
        let (i, w) = (IN_PLACE.load(std::sync::atomic::Ordering::Relaxed), WHOLE.load(std::sync::atomic::Ordering::Relaxed));
        // Most valid edits of the services take the short way (a test that always fell back
        // would prove nothing about it).
        prop_assert!(i + w < 200 || i * 2 > w, "in place {}, whole {}", i, w);
    }
}

#[test]
fn a_one_line_edit_is_read_in_place_and_can_be_undone() {
    let services: Vec<Svc> = (1..=50)
        .map(|v| Svc {
            vip: v % 30 + 1,
            udp: v > 30,
            scheduler: Some("wlc"),
            name: None,
            reals: vec![
                Real {
                    host: 1,
                    weight: None,
                },
                Real {
                    host: 2,
                    weight: None,
                },
            ],
        })
        .collect();
    let text = render(&services, 2, Some(false));
    let mut loaded = Loaded::parse(text.clone(), "lvsd.yaml", None).unwrap();
    assert!(loaded.incremental());
    let before = loaded.config.clone();
    let edited = text.replacen(
        "      - address: 10.1.0.2\n",
        "      - address: 10.1.0.2\n        weight: 3\n",
        1,
    );
    let Reread::Edited { touched, undo, .. } = loaded
        .reread(edited.clone().into_bytes(), "lvsd.yaml", None)
        .unwrap()
    else {
        panic!("expected an in-place edit");
    };
    assert_eq!(touched.len(), 1);
    assert_eq!(loaded.config, config::parse(&edited, "lvsd.yaml").unwrap());
    loaded.undo(undo);
    assert_eq!(loaded.config, before);
    // After the undo the old text is the reference again.
    assert!(matches!(
        loaded.reread(text.into_bytes(), "lvsd.yaml", None).unwrap(),
        Reread::Same
    ));
    // An edit of the host section is read whole.
    let host_edit = render(&services, 2, Some(false)).replace("eth0", "eth1");
    assert!(matches!(
        loaded
            .reread(host_edit.into_bytes(), "lvsd.yaml", None)
            .unwrap(),
        Reread::Whole(_)
    ));
    // Anchors and aliases anywhere: whole.
    let aliased = format!("x: &a 1\n{}", render(&services, 2, None));
    assert!(
        !Loaded::parse(aliased, "lvsd.yaml", None)
            .map(|l| l.incremental())
            .unwrap_or(false)
    );
}

#[test]
fn an_edit_that_is_not_utf8_is_refused_with_its_place_and_changes_nothing() {
    let text = "services:\n  - address: 10.0.0.1:80\n    reals:\n      - address: 10.1.0.1\n  - address: 10.0.0.2:80\n    reals:\n      - address: 10.1.0.1\n";
    let mut loaded = Loaded::parse(text.to_owned(), "lvsd.yaml", None).unwrap();
    assert!(loaded.incremental());
    let before = loaded.config.clone();
    let mut bad = text.as_bytes().to_vec();
    let at = text.find("10.1.0.1\n  -").unwrap();
    bad[at] = 0xff;
    let e = loaded
        .reread(bad, "lvsd.yaml", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lvsd.yaml:4:") && e.contains("not UTF-8"), "{e}");
    assert_eq!(loaded.config, before);
}

/// The benchmark's file: a tcp check on every service. A weight edit and an added service are
/// read in place, like in a file without checks.
#[test]
fn a_file_with_checks_everywhere_is_read_in_place_too() {
    let mut text = String::from("services:\n");
    for i in 0..40 {
        text.push_str(&format!(
            "  - address: 10.1.0.{}:80\n    scheduler: wlc\n    check:\n      type: tcp\n      interval: 10m\n      timeout: 1s\n      initial: up\n    reals:\n",
            i + 1
        ));
        for j in 2..=11 {
            text.push_str(&format!("      - address: 10.2.0.{j}\n"));
        }
    }
    let mut loaded = Loaded::parse(text.clone(), "lvsd.yaml", None).unwrap();
    assert!(loaded.incremental(), "a file with checks has a layout");
    let edited = text.replacen(
        "      - address: 10.2.0.2\n",
        "      - address: 10.2.0.2\n        weight: 3\n",
        1,
    );
    let r = loaded
        .reread(edited.clone().into_bytes(), "lvsd.yaml", None)
        .unwrap();
    let Reread::Edited { touched, .. } = r else {
        panic!("a weight edit was read whole");
    };
    assert_eq!(touched.len(), 1);
    assert_eq!(loaded.config, config::parse(&edited, "lvsd.yaml").unwrap());
    let mut added = edited.clone();
    added.push_str("  - address: 10.9.9.9:80\n    reals:\n");
    for j in 2..=11 {
        added.push_str(&format!("      - address: 10.2.0.{j}\n"));
    }
    let Reread::Edited { touched, .. } = loaded
        .reread(added.clone().into_bytes(), "lvsd.yaml", None)
        .unwrap()
    else {
        panic!("a service added at the end was read whole");
    };
    assert_eq!(touched.len(), 1);
    assert_eq!(loaded.config, config::parse(&added, "lvsd.yaml").unwrap());
}

/// The benchmark's file (tests/bench/lvsd-bench.sh `gen_yaml`): `n` services of `reals` reals,
/// each with a tcp check.
fn bench_file(n: usize, reals: usize) -> String {
    let mut t = String::from("services:\n");
    for i in 0..n {
        t.push_str(&format!(
            "  - address: 10.1.{}.{}:80\n    scheduler: wlc\n    check:\n      type: tcp\n      interval: 2s\n      timeout: 1s\n      initial: up\n    reals:\n",
            i / 250,
            i % 250 + 1
        ));
        for j in 1..=reals {
            t.push_str(&format!(
                "      - address: 10.2.{}.{}\n",
                j / 250,
                j % 250 + 1
            ));
        }
    }
    t
}

/// The file with a weight on the first real of the first service (the benchmark's one-line
/// edit) and, with `last`, on the first real of the last service too.
fn weighted(text: &str, w: u8, last: bool) -> String {
    let line = "      - address: 10.2.0.2\n";
    let with = format!("{line}        weight: {w}\n");
    let mut t = text.replacen(line, &with, 1);
    if last {
        let at = t.rfind(line).unwrap();
        t.replace_range(at..at + line.len(), &with);
    }
    t
}

/// Timings of an in-place read of the benchmark's 10,000 × 10 file with checks, as the daemon
/// reads it (from the file, into the kept buffer): `cargo test --release -p lvsd-config --test
/// incremental -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing_of_an_edit_of_a_large_file() {
    let dir = std::env::temp_dir().join(format!("lvsd-incr-timing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lvsd.yaml");
    let base = bench_file(10_000, 10);
    std::fs::write(&path, &base).unwrap();
    let mut seen = config::Stamp::default();
    let t = std::time::Instant::now();
    let mut loaded = Loaded::load(&path, None, &mut seen).unwrap();
    eprintln!("cold load of {} bytes: {:?}", base.len(), t.elapsed());
    let mut time = |name: &str, text: &str, loaded: &mut Loaded| {
        let tmp = dir.join("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let t = std::time::Instant::now();
        let r = loaded.reread_file(&path, None, &mut seen).unwrap();
        let took = t.elapsed();
        let how = match &r {
            Reread::Same => "same".to_owned(),
            Reread::Edited { touched, .. } => format!("in place, {} touched", touched.len()),
            Reread::Whole(_) => "whole".to_owned(),
        };
        if let Reread::Whole(l) = r {
            loaded.replace(*l);
        }
        eprintln!("{name}: {took:?} ({how})");
    };
    for round in 0..3u8 {
        time(
            "one-line edit",
            &weighted(&base, 3 + round, false),
            &mut loaded,
        );
        time("back", &base, &mut loaded);
        time(
            "edit at both ends",
            &weighted(&base, 3 + round, true),
            &mut loaded,
        );
        time("back", &base, &mut loaded);
    }
    assert_eq!(loaded.config, config::parse(&base, "lvsd.yaml").unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The entries of `text`'s `services`, each with the blank lines after it, and the text before.
fn entries_of(text: &str) -> (String, Vec<String>) {
    let mut parts = text.split_inclusive('\n');
    let head: String = parts.by_ref().take(1).collect();
    let mut entries: Vec<String> = vec![];
    for line in parts {
        match entries.last_mut() {
            Some(e) if !line.starts_with("  - ") => e.push_str(line),
            _ => entries.push(line.to_owned()),
        }
    }
    (head, entries)
}

/// Reads `next` after `loaded`: what a full parse gives, and how many entries were parsed
/// (`None`: not in place).
fn reread_counted(loaded: &mut Loaded, next: &str) -> Option<usize> {
    let expect = config::parse(next, "lvsd.yaml").map_err(|e| e.to_string());
    match loaded.reread(next.as_bytes().to_vec(), "lvsd.yaml", None) {
        Ok(Reread::Edited { parsed, .. }) => {
            assert_eq!(Ok(loaded.config.clone()), expect);
            Some(parsed)
        }
        Ok(Reread::Whole(l)) => {
            assert_eq!(Ok(l.config.clone()), expect);
            loaded.replace(*l);
            None
        }
        Ok(Reread::Same) => panic!("the text changed"),
        Err(e) => {
            assert_eq!(Err(e.to_string()), expect);
            None
        }
    }
}

/// "An edit at both ends of a large file must not parse everything between them" (issue 29):
/// only the entries whose text is new are parsed, wherever they are.
#[test]
fn only_entries_whose_text_is_new_are_parsed() {
    let base = bench_file(2_000, 10);
    let mut loaded = Loaded::parse(base.clone(), "lvsd.yaml", None).unwrap();
    assert!(loaded.incremental());
    // Both ends.
    let ends = weighted(&base, 3, true);
    assert_eq!(reread_counted(&mut loaded, &ends), Some(2));
    assert_eq!(reread_counted(&mut loaded, &base), Some(2));
    // Both ends and the middle.
    let (head, entries) = entries_of(&base);
    let mut e = entries.clone();
    for i in [0, 1_000, 1_999] {
        e[i] = e[i].replace("scheduler: wlc", "scheduler: rr");
    }
    let three = format!("{head}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &three), Some(3));
    assert_eq!(reread_counted(&mut loaded, &base), Some(3));
    // An entry moved from the start to the end, and back: nothing to parse.
    let mut e = entries.clone();
    let first = e.remove(0);
    e.push(first);
    let moved = format!("{head}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &moved), Some(0));
    assert_eq!(reread_counted(&mut loaded, &base), Some(0));
    // Two swapped.
    let mut e = entries.clone();
    e.swap(3, 1_500);
    let swapped = format!("{head}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &swapped), Some(0));
    assert_eq!(reread_counted(&mut loaded, &base), Some(0));
    // A new entry between two old ones, at both ends.
    let new_entry = "  - address: 10.9.9.9:80\n    reals:\n      - address: 10.2.0.2\n";
    let mut e = entries.clone();
    e.insert(1_000, new_entry.to_owned());
    e.insert(1, new_entry.replace("10.9.9.9", "10.9.9.8"));
    let inserted = format!("{head}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &inserted), Some(2));
    assert_eq!(reread_counted(&mut loaded, &base), Some(0));
    // An entry written twice: refused, as the full parse refuses it, and nothing changes.
    let before = loaded.config.clone();
    let mut e = entries.clone();
    e.insert(1_000, entries[5].clone());
    let twice = format!("{head}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &twice), None);
    assert_eq!(loaded.config, before);
    // Twice, the copy edited in between the two.
    let mut e = entries.clone();
    e.insert(6, entries[5].clone());
    e.insert(6, new_entry.to_owned());
    let between = format!("{head}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &between), None);
    assert_eq!(loaded.config, before);
    // A service's text changed at both ends to what the other had: both parsed.
    let mut e = entries.clone();
    e.swap(0, 1_999);
    e[0] = e[0].replace("10.2.0.2\n", "10.2.0.2\n        weight: 2\n");
    let mixed = format!("{head}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &mixed), Some(1));
    assert_eq!(reread_counted(&mut loaded, &base), Some(1));
    // The last entry ending without an end of line, moved to the middle.
    let cut = base.trim_end_matches('\n').to_owned();
    assert_eq!(reread_counted(&mut loaded, &cut), Some(1));
    let (head2, mut e) = entries_of(&cut);
    let last = e.pop().unwrap();
    e.insert(10, format!("{last}\n"));
    let mid = format!("{head2}{}", e.concat());
    assert_eq!(reread_counted(&mut loaded, &mid), Some(1));
}

/// Edits between unchanged entries: one that only changes an entry's last byte, or adds lines
/// after an entry that is otherwise the same, is found there, and only the entries it touched
/// are parsed.
#[test]
fn an_edit_between_unchanged_entries_is_found_at_their_edges() {
    let base = bench_file(300, 3);
    let (head, entries) = entries_of(&base);
    let mut loaded = Loaded::parse(base.clone(), "lvsd.yaml", None).unwrap();
    type Change<'a> = (usize, &'a dyn Fn(&str) -> String);
    let with = |edits: &[Change]| {
        let mut e = entries.clone();
        for (i, f) in edits {
            e[*i] = f(&e[*i]);
        }
        format!("{head}{}", e.concat())
    };
    let rr = |e: &str| e.replace("scheduler: wlc", "scheduler: rr");
    // A digit added at the end of the entry's last line: the old entry's last byte (its end
    // of line) is where the texts part.
    let longer = |e: &str| format!("{}9\n", e.trim_end_matches('\n'));
    assert!(entries[150].ends_with(".4\n"), "{}", entries[150]);
    let edited = with(&[(0, &rr), (150, &longer), (299, &rr)]);
    assert_eq!(reread_counted(&mut loaded, &edited), Some(3));
    assert_eq!(reread_counted(&mut loaded, &base), Some(3));
    // The end of that line taken away: the next entry's first line joins it, and the file is
    // refused as the full parse refuses it.
    let before = loaded.config.clone();
    let joined = |e: &str| format!("{} ", e.trim_end_matches('\n'));
    let edited = with(&[(0, &rr), (150, &joined), (299, &rr)]);
    assert_eq!(reread_counted(&mut loaded, &edited), None);
    assert_eq!(loaded.config, before);
    // The file's last byte: its last real's address made invalid.
    let last = |e: &str| format!("{}x", e.trim_end_matches('\n'));
    let edited = with(&[(0, &rr), (299, &last)]);
    assert_eq!(reread_counted(&mut loaded, &edited), None);
    assert_eq!(loaded.config, before);
    // A line added after an entry, indented as its own: the entry's old bytes are all there,
    // but it goes on.
    let weighted = |e: &str| format!("{e}        weight: 4\n");
    let edited = with(&[(0, &rr), (150, &weighted)]);
    assert_eq!(reread_counted(&mut loaded, &edited), Some(2));
    assert_eq!(reread_counted(&mut loaded, &base), Some(2));
}
