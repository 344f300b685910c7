//! Shell-style wildcards for `include:` (lvsd's, and keepalived's `include` directive): `*`,
//! `?`, `[abc]`, `[a-z]`, `[!x]`, and keepalived's csh-style braces `{a,b}`. As in a shell, a
//! wildcard never matches a leading `.`, so editors' hidden temporary files and a ConfigMap's
//! `..data` are never read as config.

use std::path::{Component, Path, PathBuf};

/// True when `s` holds a wildcard.
pub(crate) fn has_wildcard(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Whether the file name `name` matches the one-component pattern `pattern`.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    // Iterative with backtracking to the last `*`: linear for the patterns configs use.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni]) {
                        if ok {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        // An unclosed `[` is itself.
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `[...]` class at the start of `p`: whether `c` is in it, and its length; `None` when the
/// bracket is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while let Some(&x) = p.get(i) {
        if x == ']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            let hi = p[i + 2];
            if x <= c && c <= hi {
                found = true;
            }
            i += 3;
        } else {
            if x == c {
                found = true;
            }
            i += 1;
        }
    }
    None
}

/// csh-style braces, expanded: `a{b,c}d` is `abd` and `acd`, nested too. At most 1,000
/// results (a pattern that expands further is cut there).
pub(crate) fn expand_braces(s: &str) -> Vec<String> {
    const MAX: usize = 1000;
    let mut out = vec![];
    expand_into(s, &mut out, MAX);
    out
}

fn expand_into(s: &str, out: &mut Vec<String>, max: usize) {
    if out.len() >= max {
        return;
    }
    let Some(open) = s.find('{') else {
        out.push(s.to_owned());
        return;
    };
    // The matching close and the top-level commas.
    let mut depth = 0;
    let mut commas = vec![];
    let mut close = None;
    for (i, c) in s[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let Some(close) = close.filter(|_| !commas.is_empty()) else {
        out.push(s.to_owned());
        return;
    };
    let (head, tail) = (&s[..open], &s[close + 1..]);
    let mut from = open + 1;
    for end in commas.into_iter().chain([close]) {
        expand_into(&format!("{head}{}{tail}", &s[from..end]), out, max);
        from = end + 1;
    }
}

/// The paths matching `pattern` (wildcards in any component), sorted; a pattern without
/// wildcards is itself when it exists. Directories that cannot be read match nothing.
pub(crate) fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = match comp {
            Component::Normal(p) => p.to_string_lossy().into_owned(),
            other => {
                for f in &mut found {
                    f.push(other.as_os_str());
                }
                continue;
            }
        };
        let mut next = vec![];
        for base in &found {
            if !has_wildcard(&part) {
                next.push(base.join(&part));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| matches(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_a_shell_does() {
        assert!(matches("*.yaml", "web.yaml"));
        assert!(!matches("*.yaml", "web.yaml.swp"));
        assert!(!matches("*.yaml", ".web.yaml"));
        assert!(!matches("*", "..data"));
        assert!(matches(".*", ".hidden"));
        assert!(matches("web-?.yaml", "web-1.yaml"));
        assert!(!matches("web-?.yaml", "web-10.yaml"));
        assert!(matches("[ab]*.conf", "api.conf"));
        assert!(!matches("[!ab]*.conf", "api.conf"));
        assert!(matches("[a-c]x", "bx"));
        assert!(matches("*a*b*c", "xxaxxbxxc"));
        assert!(!matches("*a*b*c", "xxaxxbxx"));
        assert!(matches("lit", "lit"));
        assert!(matches("[x", "[x"));
    }

    #[test]
    fn braces_expand_like_csh() {
        assert_eq!(expand_braces("a{b,c}d"), vec!["abd", "acd"]);
        assert_eq!(expand_braces("{x,y{1,2}}"), vec!["x", "y1", "y2"]);
        assert_eq!(expand_braces("no{brace"), vec!["no{brace"]);
        assert_eq!(expand_braces("{one}"), vec!["{one}"]);
    }
}
