//! A configuration directory: `include:` in the main file, one generation read and validated
//! together, each problem at its own file's line and column, duplicates across files naming
//! both places, and the daemon's reread seeing files added, replaced and removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("lvsd-include-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("conf.d")).unwrap();
        Dir(d)
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        // As configuration management does: a temp file renamed into place.
        let tmp = p.with_extension("tmp~");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }
    fn main(&self) -> PathBuf {
        self.0.join("lvsd.yaml")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MAIN: &str = "host: {role: director, interface: eth0}
include: [conf.d/*.yaml]
services:
  - name: main-svc
    address: 10.0.0.1:80
    reals: [{address: 10.0.1.1}]
";

fn svc(name: &str, vip: &str) -> String {
    format!(
        "services:\n  - name: {name}\n    address: {vip}:80\n    reals:\n      - address: 10.0.1.2\n"
    )
}

fn key(vip: &str) -> model::ServiceKey {
    model::ServiceKey::tcp(vip.parse().unwrap(), 80)
}

fn err(p: &Path) -> String {
    match config::load(p) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_generation_is_every_file_with_where_each_service_came_from() {
    let d = Dir::new("merge");
    d.write("lvsd.yaml", MAIN);
    d.write("conf.d/web.yaml", &svc("web", "10.0.0.2"));
    d.write("conf.d/api.yaml", &svc("api", "10.0.0.3"));
    // Not read: hidden, another extension, a ConfigMap's `..data`.
    d.write("conf.d/.web.yaml.swp", "garbage: [");
    d.write("conf.d/notes.txt", "garbage: [");
    std::fs::create_dir_all(d.0.join("conf.d/..data")).unwrap();
    let c = config::load(&d.main()).unwrap();
    assert_eq!(c.desired.services.len(), 3);
    let main = d.main().display().to_string();
    let web = d.0.join("conf.d/web.yaml").display().to_string();
    assert_eq!(c.sources.file_of(&key("10.0.0.1")), Some(main.as_str()));
    assert_eq!(c.sources.file_of(&key("10.0.0.2")), Some(web.as_str()));
    assert_eq!(c.sources.files.len(), 3);
    // The same verdict from check, which lists the files.
    let s = config::check_as(&d.main(), None).unwrap();
    assert_eq!((s.services, s.reals), (3, 3));
    assert_eq!(s.files.len(), 3);
    assert!(
        s.files
            .iter()
            .any(|f| f.path == web && f.services.len() == 1)
    );
    // The included files' services are a director's: their VIPs go on eth0.
    assert_eq!(c.host.role, plan::host::Role::Director);
}

#[test]
fn an_error_anywhere_is_at_its_own_file_and_nothing_is_taken() {
    let d = Dir::new("errors");
    d.write(
        "lvsd.yaml",
        &MAIN.replace("scheduler", "x").replace(
            "reals: [{address: 10.0.1.1}]",
            "scheduler: dr\n    reals: [{address: 10.0.1.1}]",
        ),
    );
    d.write("conf.d/a.yaml", "services:\n  - address: 10.0.0.2:80\n    reals:\n      - address: 10.0.1.2\n        wieght: 2\n");
    d.write("conf.d/b.yaml", &svc("b", "10.0.0.3"));
    let e = err(&d.main());
    let main = d.main().display().to_string();
    let a = d.0.join("conf.d/a.yaml").display().to_string();
    assert!(
        e.contains(&format!("{main}:6:16: `dr` is a forwarding method")),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "{a}:5:9: unknown key `wieght`; did you mean `weight`?"
        )),
        "{e}"
    );
    // For machines: each with its file, what is wrong apart from how to fix it.
    let located = config::load(&d.main()).unwrap_err().located().0;
    let l = located.iter().find(|l| l.file == a).unwrap();
    assert_eq!((l.line, l.col), (5, 9));
    assert_eq!(l.message, "unknown key `wieght`");
    assert!(
        l.hint
            .as_deref()
            .unwrap()
            .starts_with("did you mean `weight`?")
    );
}

#[test]
fn sections_other_than_services_belong_in_the_main_file() {
    let d = Dir::new("sections");
    d.write("lvsd.yaml", MAIN);
    d.write(
        "conf.d/a.yaml",
        "host: {role: none}\nipvs: {timeouts: {tcp: 900s}}\ninclude: [x.yaml]\nservices: []\n",
    );
    let e = err(&d.main());
    let a = d.0.join("conf.d/a.yaml").display().to_string();
    assert!(
        e.contains(&format!("{a}:1:7: `host` belongs in the main config")),
        "{e}"
    );
    assert!(
        e.contains(&format!("{a}:2:7: `ipvs` belongs in the main config")),
        "{e}"
    );
    assert!(
        e.contains(&format!("{a}:3:10: `include` belongs in the main config")),
        "{e}"
    );
}

#[test]
fn a_service_in_two_files_names_both_places() {
    let d = Dir::new("dup");
    d.write("lvsd.yaml", MAIN);
    d.write("conf.d/a.yaml", &svc("a", "10.0.0.2"));
    d.write(
        "conf.d/b.yaml",
        &format!("# the same VIP again\n{}", svc("main-svc", "10.0.0.2")),
    );
    let e = err(&d.main());
    let a = d.0.join("conf.d/a.yaml").display().to_string();
    let b = d.0.join("conf.d/b.yaml").display().to_string();
    let main = d.main().display().to_string();
    assert!(
        e.contains(&format!(
            "{b}:3:5: duplicate service TCP 10.0.0.2:80: also defined in {a}:2"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "duplicate service name `main-svc`: also used in {main}:4"
        )),
        "{e}"
    );
}

#[test]
fn included_services_are_checked_against_the_main_files_host() {
    let d = Dir::new("host");
    d.write("lvsd.yaml", MAIN);
    d.write(
        "conf.d/lo.yaml",
        "services:\n  - address: 127.0.0.1:80\n    reals: []\n",
    );
    let e = err(&d.main());
    assert!(
        e.contains("lo.yaml:2:14: `127.0.0.1` is a loopback address"),
        "{e}"
    );
    assert!(
        e.contains("with role director lvsd would add it to `eth0`"),
        "{e}"
    );
}

#[test]
fn what_the_patterns_name_must_be_there() {
    let d = Dir::new("patterns");
    d.write(
        "lvsd.yaml",
        "include:\n  - conf.d/*.yaml\n  - missing.yaml\n  - nodir/*.yaml\n  - '*/x.yaml'\nservices: []\n",
    );
    let e = err(&d.main());
    assert!(
        e.contains("lvsd.yaml:3:5: `")
            && e.contains("missing.yaml` does not exist: create it, or remove it from `include`"),
        "{e}"
    );
    assert!(e.contains("lvsd.yaml:4:5: the directory `"), "{e}");
    assert!(
        e.contains("lvsd.yaml:5:5: `*/x.yaml`: only the file name may hold wildcards"),
        "{e}"
    );
    // A pattern that matches nothing yet is a valid, empty directory (a fresh install).
    d.write("lvsd.yaml", "include: [conf.d/*.yaml]\nservices: []\n");
    let c = config::load(&d.main()).unwrap();
    assert!(c.desired.services.is_empty());
    assert!(c.sources.includes());
    // The main file itself is not read twice by a pattern that matches it.
    d.write(
        "lvsd.yaml",
        "include: ['*.yaml']\nhost: {role: none}\nservices: []\n",
    );
    config::load(&d.main()).unwrap();
}

#[test]
fn the_daemon_rereads_a_generation_when_a_file_is_added_replaced_or_removed() {
    let d = Dir::new("reread");
    d.write("lvsd.yaml", MAIN);
    d.write("conf.d/web.yaml", &svc("web", "10.0.0.2"));
    let mut l = config::Loaded::load(&d.main(), None, &mut config::Stamp::default()).unwrap();
    assert_eq!(l.config.desired.services.len(), 2);
    assert_eq!(l.include_dirs().len(), 1);
    assert!(l.include_dirs()[0].matches("api.yaml"));
    assert!(!l.include_dirs()[0].matches(".api.yaml"));
    assert!(matches!(
        l.reread_file(&d.main(), None, &mut config::Stamp::default())
            .unwrap(),
        config::Reread::Same
    ));
    let take = |l: &mut config::Loaded| match l
        .reread_file(&d.main(), None, &mut config::Stamp::default())
        .unwrap()
    {
        config::Reread::Whole(new) => {
            l.replace(*new);
            l.config
                .desired
                .services
                .keys()
                .copied()
                .collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    d.write("conf.d/api.yaml", &svc("api", "10.0.0.3"));
    assert_eq!(
        take(&mut l),
        vec![key("10.0.0.1"), key("10.0.0.2"), key("10.0.0.3")]
    );
    d.write("conf.d/api.yaml", &svc("api", "10.0.0.4"));
    assert_eq!(
        take(&mut l),
        vec![key("10.0.0.1"), key("10.0.0.2"), key("10.0.0.4")]
    );
    std::fs::remove_file(d.0.join("conf.d/web.yaml")).unwrap();
    assert_eq!(take(&mut l), vec![key("10.0.0.1"), key("10.0.0.4")]);
    // A broken file: refused whole, the last good generation stays.
    d.write("conf.d/api.yaml", "services:\n  - address: 10.0.0.4\n");
    assert!(
        l.reread_file(&d.main(), None, &mut config::Stamp::default())
            .is_err()
    );
    assert_eq!(l.config.desired.services.len(), 2);
}

/// Loads `d`'s main file; returns the config and the stamp of what was read.
fn load_stamped(d: &Dir) -> (config::Loaded, config::Stamp) {
    let mut seen = config::Stamp::default();
    let l = config::Loaded::load(&d.main(), None, &mut seen).unwrap();
    (l, seen)
}

#[test]
fn a_stamp_says_when_any_file_of_a_generation_is_no_longer_the_one_read() {
    let d = Dir::new("stamp");
    d.write("lvsd.yaml", MAIN);
    d.write("conf.d/web.yaml", &svc("web", "10.0.0.2"));
    // Files the pattern does not match, and a directory it does, change nothing.
    d.write("conf.d/notes.txt", "x");
    let (_, seen) = load_stamped(&d);
    assert!(!seen.moved(&d.main()), "nothing changed since the read");
    d.write("conf.d/other.txt", "y");
    assert!(!seen.moved(&d.main()), "a file the patterns do not match");
    // Each change a lost event would hide.
    type Change = Box<dyn Fn(&Dir)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "main renamed over",
            Box::new(|d: &Dir| {
                d.write("lvsd.yaml", &format!("{MAIN}\n"));
            }),
        ),
        (
            "a file renamed into the directory",
            Box::new(|d: &Dir| {
                d.write("conf.d/api.yaml", &svc("api", "10.0.0.3"));
            }),
        ),
        (
            "an included file replaced",
            Box::new(|d: &Dir| {
                d.write("conf.d/web.yaml", &svc("web", "10.0.0.4"));
            }),
        ),
        (
            "an included file removed",
            Box::new(|d: &Dir| std::fs::remove_file(d.0.join("conf.d/web.yaml")).unwrap()),
        ),
        (
            "an included file written in place",
            Box::new(|d: &Dir| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(d.0.join("conf.d/web.yaml"))
                    .and_then(|mut f| std::io::Write::write_all(&mut f, b"# more\n"))
                    .unwrap();
            }),
        ),
    ];
    for (what, change) in cases {
        d.write("lvsd.yaml", MAIN);
        d.write("conf.d/web.yaml", &svc("web", "10.0.0.2"));
        let _ = std::fs::remove_file(d.0.join("conf.d/api.yaml"));
        let (_, seen) = load_stamped(&d);
        assert!(!seen.moved(&d.main()), "{what}: quiet before the change");
        change(&d);
        assert!(seen.moved(&d.main()), "{what}: not seen");
    }
}

#[test]
fn a_rejected_generation_is_stamped_too_and_stays_quiet() {
    let d = Dir::new("stamp-rejected");
    d.write("lvsd.yaml", MAIN);
    d.write("conf.d/web.yaml", &svc("web", "10.0.0.2"));
    let (mut l, _) = load_stamped(&d);
    // An included file that is invalid, one that names the main file, a missing directory.
    d.write("conf.d/bad.yaml", "services:\n  - address: nowhere\n");
    let mut seen = config::Stamp::default();
    assert!(l.reread_file(&d.main(), None, &mut seen).is_err());
    assert!(!seen.moved(&d.main()), "the rejected generation, as read");
    d.write(
        "lvsd.yaml",
        &MAIN.replace(
            "[conf.d/*.yaml]",
            "[conf.d/*.yaml, '*.yaml', gone.d/*.yaml]",
        ),
    );
    assert!(seen.moved(&d.main()));
    assert!(l.reread_file(&d.main(), None, &mut seen).is_err());
    assert!(
        !seen.moved(&d.main()),
        "a missing directory, listed the same way"
    );
    // A file that cannot be read at all: stamped as the path leads, quiet too.
    std::fs::remove_file(d.main()).unwrap();
    assert!(l.reread_file(&d.main(), None, &mut seen).is_err());
    assert!(!seen.moved(&d.main()), "a missing main file");
    d.write("lvsd.yaml", MAIN);
    assert!(seen.moved(&d.main()), "the main file back");
}

#[test]
fn a_configmap_swap_moves_the_stamp() {
    let d = Dir::new("stamp-configmap");
    std::fs::create_dir_all(d.0.join("..v1")).unwrap();
    d.write("..v1/lvsd.yaml", &svc("web", "10.0.0.2"));
    std::os::unix::fs::symlink("..v1", d.0.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/lvsd.yaml", d.main()).unwrap();
    let (_, seen) = load_stamped(&d);
    assert!(!seen.moved(&d.main()));
    std::fs::create_dir_all(d.0.join("..v2")).unwrap();
    d.write("..v2/lvsd.yaml", &svc("web", "10.0.0.2"));
    std::os::unix::fs::symlink("..v2", d.0.join("..data_tmp")).unwrap();
    std::fs::rename(d.0.join("..data_tmp"), d.0.join("..data")).unwrap();
    assert!(
        seen.moved(&d.main()),
        "the same bytes in another file: read again"
    );
}

/// Every spelling YAML gives a key means the same: an `include` written with escapes (which a
/// search of the bytes for `include` does not find) is honoured by every reading, never
/// silently dropped (applying the main file alone would remove the included services).
#[test]
fn an_include_key_spelled_with_escapes_is_still_an_include() {
    let spellings = [
        "\"\\x69nclude\": [conf.d/*.yaml]\n",
        "\"\\u0069nclude\": [conf.d/*.yaml]\n",
        "\"\\U00000069nclude\": [conf.d/*.yaml]\n",
        "? \"inc\\\n  lude\"\n: [conf.d/*.yaml]\n",
    ];
    for (i, spelt) in spellings.iter().enumerate() {
        let d = Dir::new(&format!("escaped-{i}"));
        let main = format!(
            "host: {{role: none}}\n{spelt}services:\n  - name: main-svc\n    address: 10.0.0.1:80\n    reals: [{{address: 10.0.1.1}}]\n"
        );
        assert!(!main.contains("include"), "{main}");
        d.write("lvsd.yaml", &main);
        d.write("conf.d/web.yaml", &svc("web", "10.0.0.2"));
        let c = config::load(&d.main()).unwrap_or_else(|e| panic!("{spelt}: {e}"));
        assert_eq!(c.desired.services.len(), 2, "{spelt}");
        let s = config::check_as(&d.main(), None).unwrap();
        assert_eq!(s.services, 2, "{spelt}");
        let (mut l, _) = load_stamped(&d);
        assert_eq!(l.config.desired.services.len(), 2, "{spelt}");
        assert_eq!(l.include_dirs().len(), 1, "{spelt}");
        // The daemon's reread of a file that gains the key.
        d.write("lvsd.yaml", &main.replace("10.0.0.1", "10.0.0.9"));
        let mut seen = config::Stamp::default();
        match l.reread_file(&d.main(), None, &mut seen).unwrap() {
            config::Reread::Whole(new) => assert_eq!(new.config.desired.services.len(), 2),
            other => panic!("{spelt}: {other:?}"),
        }
    }
}

/// Text read without its file (no directory to resolve against) that holds an `include` key,
/// however spelled, is refused at the key, not read as if the key were not there.
#[test]
fn an_include_in_text_without_its_file_is_refused_not_dropped() {
    let e = config::parse("\"\\x69nclude\": [conf.d/*.yaml]\nservices: []\n", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.yaml:1:"), "{e}");
    assert!(e.contains("include"), "{e}");
}

/// A file without `include` is read again in place, and only the bytes an edit brings are
/// looked through for one (an edit at both ends of a large file does not scan what lies
/// between): the same edit is read in place without the word, and whole, as a generation
/// would be, when a new entry holds it, at either end.
#[test]
fn the_bytes_an_edit_brings_are_looked_through_for_an_include() {
    let d = Dir::new("edit-spans");
    let entry = |i: usize, name: &str| {
        format!(
            "  - name: {name}\n    address: 10.0.0.{i}:80\n    reals:\n      - address: 10.0.1.{i}\n"
        )
    };
    let file = |first: &str, last: &str| {
        let mut t = String::from("host: {role: none}\nservices:\n");
        t += &entry(1, first);
        for i in 2..40 {
            t += &entry(i, &format!("svc{i}"));
        }
        t += &entry(40, last);
        t
    };
    d.write("lvsd.yaml", &file("first", "last"));
    let (mut l, _) = load_stamped(&d);
    assert!(l.incremental());
    let mut seen = config::Stamp::default();
    d.write("lvsd.yaml", &file("first-a", "last-a"));
    match l.reread_file(&d.main(), None, &mut seen).unwrap() {
        config::Reread::Edited {
            parsed, touched, ..
        } => {
            assert_eq!((parsed, touched.len()), (2, 2));
        }
        other => panic!("{other:?}"),
    }
    for (first, last) in [("include-a", "last-b"), ("first-b", "includes")] {
        d.write("lvsd.yaml", &file("first", "last"));
        let (mut l, _) = load_stamped(&d);
        d.write("lvsd.yaml", &file(first, last));
        match l.reread_file(&d.main(), None, &mut seen).unwrap() {
            config::Reread::Whole(new) => assert_eq!(new.config.desired.services.len(), 40),
            other => panic!("{first} {last}: {other:?}"),
        }
    }
}
