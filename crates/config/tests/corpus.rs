//! Issue 27, class 8: keepalived.conf and ldirectord.cf files written by others (public
//! repositories; each file's source is in `fixtures/corpus/SOURCES.md`), each imported: it
//! converts and what it becomes passes lvsd's reader, or it is refused with an error at a line
//! of the file. `fixtures/corpus/expected.txt` holds each file's verdict (`FILE ok` or
//! `FILE error:<text the first error line holds>`), so a change in what a file becomes is a
//! failure here. `LVSD_CORPUS_SHOW=1` prints every file's verdict as the table writes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// `ok`, or `error:` and the first line of the error (which must cite a line of the file).
fn verdict(dir: &str, path: &Path) -> String {
    let text = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&text);
    let out = match dir {
        "keepalived" => config::import::keepalived(&text, path),
        _ => config::import::ldirectord(&text, path),
    };
    match out {
        Ok(c) => {
            if let Err(e) = config::parse(&c.yaml, "converted.yaml") {
                panic!(
                    "{}: converted, but lvsd refuses what it became: {e}\n{}",
                    path.display(),
                    c.yaml
                );
            }
            "ok".into()
        }
        Err(e) => {
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default().to_owned();
            let at = format!("{}:", path.display());
            let rest = first.strip_prefix(&at).unwrap_or_else(|| {
                panic!("{}: the error does not cite the file: {e}", path.display())
            });
            assert!(
                rest.split(':')
                    .next()
                    .is_some_and(|l| l.parse::<u64>().is_ok_and(|l| l > 0)),
                "{}: the error does not cite a line of the file: {e}",
                path.display()
            );
            format!("error:{}", rest.split_once(": ").map_or(rest, |(_, m)| m))
        }
    }
}

#[test]
fn every_corpus_file_imports_or_is_refused_at_a_line_as_expected() {
    let expected = std::fs::read_to_string(corpus().join("expected.txt")).unwrap();
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for line in expected
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (file, v) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        assert!(
            want.insert(file.to_owned(), v.to_owned()).is_none(),
            "{file} twice"
        );
    }
    let show = std::env::var_os("LVSD_CORPUS_SHOW").is_some();
    let mut seen = 0;
    let mut wrong = vec![];
    for dir in ["keepalived", "ldirectord"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            let got = verdict(dir, &path);
            if show {
                println!("{name} {got}");
            }
            seen += 1;
            match want.remove(&name) {
                None => wrong.push(format!("{name}: not in expected.txt (it gives: {got})")),
                Some(w) if w == "ok" && got != "ok" => {
                    wrong.push(format!("{name}: expected ok, got {got}"))
                }
                Some(w)
                    if w != "ok"
                        && !(w.starts_with("error:")
                            && got.starts_with("error:")
                            && got.contains(&w["error:".len()..])) =>
                {
                    wrong.push(format!("{name}: expected {w}, got {got}"))
                }
                Some(_) => {}
            }
        }
    }
    for name in want.keys() {
        wrong.push(format!("{name}: in expected.txt but not in the corpus"));
    }
    assert!(
        seen >= 30,
        "the corpus holds {seen} files; at least 30 are wanted"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
