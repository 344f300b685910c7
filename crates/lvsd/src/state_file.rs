//! The ownership records on disk: which services lvsd manages and which drains are under way
//! (`owned`), and what a host role put on the host (`host`): addresses lvsd added, links it
//! brought up, sysctls it changed with their original values. They live under `/run/lvsd/`
//! because they describe kernel state, which does not survive a reboot either. Both are
//! versioned JSON that round-trips every value lvsd can hold (property-tested), written
//! atomically and durably (own temp file, fsync, rename, fsync of the directory); the line
//! format of before is still read, so an upgrade keeps what the old version recorded. A record
//! that exists but cannot be read is an error ([`Unreadable`]), never an empty record.
//!
//! ```text
//! {"record": "lvsd ownership record: …", "version": 2,
//! "services": [
//!   {"service":"tcp 172.16.1.50 80","drain_timeout":30,"deadline":null,
//!    "reals":[{"addr":"172.16.1.101","port":80}],
//!    "draining":[{"addr":"172.16.1.102","port":80,"deadline":1764000000}]}
//! ],
//! "timeouts": {"original":[900,120,300],"set":[600,120,30]},
//! "sync": ["master","backup"]}
//! ```
//! ```text
//! {"record": "lvsd host record: …", "version": 2,
//!  "addresses": [{"interface": "lo", "addr": "172.16.1.50"}], "links_up": ["tunl0"],
//!  "sysctls": [{"key": "net/ipv4/vs/sync_threshold", "original": "3 50", "set": "3 10"}]}
//! ```

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use ipvs::{DaemonState, DestKey, Family, Protocol, ServiceKey, Timeouts};
use plan::globals::OwnedTimeouts;
use plan::host::{HostAddr, HostOwned, OwnedSysctl, Sysctl};
use plan::{Owned, OwnedService};

/// A service key in the words the records use (`tcp 172.16.1.50 80`, `fwmark 1 ipv4`).
pub(crate) fn key_words(k: &ServiceKey) -> String {
    match k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            let p = match protocol {
                Protocol::Tcp => "tcp".to_owned(),
                Protocol::Udp => "udp".to_owned(),
                Protocol::Sctp => "sctp".to_owned(),
                Protocol::Other(n) => format!("proto{n}"),
            };
            format!("{p} {addr} {port}")
        }
        ServiceKey::Fwmark { mark, family } => {
            let f = if *family == Family::Inet6 {
                "ipv6"
            } else {
                "ipv4"
            };
            format!("fwmark {mark} {f}")
        }
    }
}

/// A service key from the words [`key_words`] wrote.
pub(crate) fn parse_key(w: &[&str]) -> Option<ServiceKey> {
    match w {
        ["fwmark", mark, fam, ..] => Some(ServiceKey::Fwmark {
            mark: mark.parse().ok()?,
            family: if *fam == "ipv6" {
                Family::Inet6
            } else {
                Family::Inet
            },
        }),
        [proto, addr, port, ..] => Some(ServiceKey::Addr {
            protocol: match *proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                p => Protocol::Other(p.strip_prefix("proto")?.parse().ok()?),
            },
            addr: addr.parse().ok()?,
            port: port.parse().ok()?,
        }),
        _ => None,
    }
}

/// The table record as written: versioned JSON. A service is named as the line format named it
/// (`tcp 172.16.1.50 80`, `fwmark 7 ipv4`), which `lvsd status` and people read alike.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableRecord {
    /// What the file is, for a person who opens it.
    record: String,
    version: u32,
    services: Vec<ServiceRecord>,
    timeouts: Option<TimeoutsRecord>,
    sync: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceRecord {
    service: String,
    drain_timeout: u64,
    deadline: Option<u64>,
    reals: Vec<RealRecord>,
    draining: Vec<DrainingRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RealRecord {
    addr: IpAddr,
    port: u16,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainingRecord {
    addr: IpAddr,
    port: u16,
    deadline: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsRecord {
    original: [u32; 3],
    set: [u32; 3],
}

/// The table record's format version; a later one is refused, not guessed at.
const TABLE_RECORD_VERSION: u32 = 2;

fn daemon_word(d: DaemonState) -> String {
    match d {
        DaemonState::Master => "master".into(),
        DaemonState::Backup => "backup".into(),
        DaemonState::Other(n) => format!("state {n}"),
    }
}

fn daemon_of(w: &str) -> Option<DaemonState> {
    match w {
        "master" => Some(DaemonState::Master),
        "backup" => Some(DaemonState::Backup),
        w => w
            .strip_prefix("state ")
            .and_then(|n| n.parse().ok())
            .map(DaemonState::Other),
    }
}

/// Renders the table record.
///
/// Written straight into one string (no record built first, no string a service): this is the
/// intent saved before the first write of a pass, in series with it, and a cold apply of
/// 10,000 services renders it whole. Byte for byte what serializing the [`TableRecord`] with
/// serde writes (a test holds the two to each other).
pub fn render(owned: &Owned) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(
        96 + owned
            .services
            .values()
            .map(|s| 96 + 40 * s.reals.len() + 56 * s.draining.len())
            .sum::<usize>(),
    );
    // Values are written by serde_json as it writes them in a record (writing into memory
    // cannot fail).
    let value = |out: &mut Vec<u8>, v: &dyn erased::Value| v.write(out);
    out.extend_from_slice(b"{\"record\": ");
    value(&mut out, &TABLE_RECORD_TITLE);
    out.extend_from_slice(b", \"version\": ");
    value(&mut out, &TABLE_RECORD_VERSION);
    out.extend_from_slice(b",\n\"services\": [");
    for (i, (k, s)) in owned.services.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n  " } else { b",\n  " });
        out.extend_from_slice(b"{\"service\":");
        value(&mut out, &key_words(k));
        out.extend_from_slice(b",\"drain_timeout\":");
        value(&mut out, &s.drain_timeout);
        out.extend_from_slice(b",\"deadline\":");
        value(&mut out, &s.service_deadline);
        out.extend_from_slice(b",\"reals\":[");
        for (j, r) in s.reals.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"addr\":");
            value(&mut out, &r.addr);
            out.extend_from_slice(b",\"port\":");
            value(&mut out, &r.port);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"draining\":[");
        for (j, (r, d)) in s.draining.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"addr\":");
            value(&mut out, &r.addr);
            out.extend_from_slice(b",\"port\":");
            value(&mut out, &r.port);
            out.extend_from_slice(b",\"deadline\":");
            value(&mut out, d);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
    // serde_json writes UTF-8 only.
    let mut out = String::from_utf8(out).unwrap_or_default();
    render_globals(owned, &mut out);
    out
}

/// A value serde_json writes, behind one signature (the renderer writes several kinds).
mod erased {
    /// Something serde_json can write.
    pub(super) trait Value {
        /// Appends its JSON to `out`.
        fn write(&self, out: &mut Vec<u8>);
    }

    impl<T: serde::Serialize + ?Sized> Value for T {
        fn write(&self, out: &mut Vec<u8>) {
            // Writing plain values into memory cannot fail.
            let _ = serde_json::to_writer(&mut *out, self);
        }
    }
}

/// The end of the table record: the timeouts and sync daemons lvsd set.
fn render_globals(owned: &Owned, out: &mut String) {
    let t = |t: &Timeouts| [t.tcp, t.tcp_fin, t.udp];
    let timeouts = owned.globals.timeouts.as_ref().map(|o| TimeoutsRecord {
        original: t(&o.original),
        set: t(&o.set),
    });
    let sync: Vec<String> = owned
        .globals
        .daemons
        .iter()
        .map(|d| daemon_word(*d))
        .collect();
    // Serializing plain values cannot fail.
    out.push_str(&format!(
        "\n],\n\"timeouts\": {},\n\"sync\": {}}}\n",
        serde_json::to_string(&timeouts).unwrap_or_default(),
        serde_json::to_string(&sync).unwrap_or_default()
    ));
}

/// What the table record says it is, for a person who opens it.
const TABLE_RECORD_TITLE: &str = "lvsd ownership record: services lvsd manages. Do not edit.";

/// [`render`] as it was written before: a [`TableRecord`] serialized by serde, one line a
/// service. The test that holds the fast rendering to it.
#[cfg(test)]
fn render_with_serde(owned: &Owned) -> String {
    let services: Vec<ServiceRecord> = owned
        .services
        .iter()
        .map(|(k, s)| ServiceRecord {
            service: key_words(k),
            drain_timeout: s.drain_timeout,
            deadline: s.service_deadline,
            reals: s
                .reals
                .iter()
                .map(|r| RealRecord {
                    addr: r.addr,
                    port: r.port,
                })
                .collect(),
            draining: s
                .draining
                .iter()
                .map(|(r, d)| DrainingRecord {
                    addr: r.addr,
                    port: r.port,
                    deadline: *d,
                })
                .collect(),
        })
        .collect();
    let mut out = format!(
        "{{\"record\": {}, \"version\": {},\n\"services\": [",
        serde_json::to_string(TABLE_RECORD_TITLE).unwrap_or_default(),
        TABLE_RECORD_VERSION
    );
    for (i, s) in services.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
    render_globals(owned, &mut out);
    out
}

fn parse_table_json(text: &str) -> Result<Owned, Damage> {
    let r: TableRecord = serde_json::from_str(text).map_err(|e| Damage {
        line: e.line(),
        what: format!("not a table record lvsd can read ({e})"),
    })?;
    if r.version != TABLE_RECORD_VERSION {
        return Err(Damage {
            line: 1,
            what: format!(
                "version {} (this lvsd reads version {TABLE_RECORD_VERSION}): written by another lvsd",
                r.version
            ),
        });
    }
    let bad = |what: String| Damage { line: 1, what };
    let mut owned = Owned::default();
    for s in r.services {
        let words: Vec<&str> = s.service.split_whitespace().collect();
        let key = parse_key(&words)
            .filter(|_| words.len() == 3)
            .ok_or_else(|| bad(format!("`{}` names no service", s.service)))?;
        let entry = OwnedService {
            reals: s
                .reals
                .iter()
                .map(|r| DestKey {
                    addr: r.addr,
                    port: r.port,
                })
                .collect(),
            drain_timeout: s.drain_timeout,
            draining: s
                .draining
                .iter()
                .map(|d| {
                    (
                        DestKey {
                            addr: d.addr,
                            port: d.port,
                        },
                        d.deadline,
                    )
                })
                .collect(),
            service_deadline: s.deadline,
        };
        if owned.services.insert(key, entry).is_some() {
            return Err(bad(format!("service `{}` is there twice", s.service)));
        }
    }
    let t = |a: [u32; 3]| Timeouts {
        tcp: a[0],
        tcp_fin: a[1],
        udp: a[2],
    };
    owned.globals.timeouts = r.timeouts.map(|o| OwnedTimeouts {
        original: t(o.original),
        set: t(o.set),
    });
    for w in &r.sync {
        let d = daemon_of(w).ok_or_else(|| bad(format!("`{w}` is no sync daemon")))?;
        owned.globals.daemons.insert(d);
    }
    Ok(owned)
}

/// Parses a table record: the JSON lvsd writes, or the line format lvsd wrote before (read so
/// that an upgrade keeps what the old version recorded).
pub fn parse(text: &str) -> Result<Owned, Damage> {
    if text.trim_start().starts_with('{') {
        return parse_table_json(text);
    }
    parse_lines(text).map_err(Damage::at)
}

/// A `tcp,tcp_fin,udp` triple of the line format.
fn parse_timeouts(s: &str) -> Option<Timeouts> {
    let mut it = s.split(',').map(str::parse::<u32>);
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(Ok(tcp)), Some(Ok(tcp_fin)), Some(Ok(udp)), None) => {
            Some(Timeouts { tcp, tcp_fin, udp })
        }
        _ => None,
    }
}

/// Parses the line format lvsd wrote before the JSON record; `Err` names the first line that
/// makes no sense.
fn parse_lines(text: &str) -> Result<Owned, usize> {
    let mut owned = Owned::default();
    let mut current: Option<(ServiceKey, OwnedService)> = None;
    for (i, line) in text.lines().enumerate() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let bad = i + 1;
        let dest = |a: &str, p: &str| -> Option<DestKey> {
            Some(DestKey {
                addr: a.parse::<IpAddr>().ok()?,
                port: p.parse().ok()?,
            })
        };
        match w.as_slice() {
            [] => {}
            [c, ..] if c.starts_with('#') => {}
            ["service", rest @ ..] => {
                if let Some((k, s)) = current.take() {
                    owned.services.insert(k, s);
                }
                let key = parse_key(rest).ok_or(bad)?;
                let mut s = OwnedService::default();
                for kv in rest.iter().filter_map(|w| w.split_once('=')) {
                    match kv {
                        ("drain_timeout", v) => s.drain_timeout = v.parse().map_err(|_| bad)?,
                        ("deadline", "-") => {}
                        ("deadline", v) => s.service_deadline = Some(v.parse().map_err(|_| bad)?),
                        _ => return Err(bad),
                    }
                }
                current = Some((key, s));
            }
            ["real", a, p] => {
                let (_, s) = current.as_mut().ok_or(bad)?;
                s.reals.insert(dest(a, p).ok_or(bad)?);
            }
            ["timeouts", original, set] => {
                let original = original
                    .strip_prefix("original=")
                    .and_then(parse_timeouts)
                    .ok_or(bad)?;
                let set = set
                    .strip_prefix("set=")
                    .and_then(parse_timeouts)
                    .ok_or(bad)?;
                owned.globals.timeouts = Some(OwnedTimeouts { original, set });
            }
            ["sync", state] => {
                owned.globals.daemons.insert(match *state {
                    "master" => DaemonState::Master,
                    "backup" => DaemonState::Backup,
                    _ => return Err(bad),
                });
            }
            ["draining", a, p, d] => {
                let (_, s) = current.as_mut().ok_or(bad)?;
                s.draining
                    .insert(dest(a, p).ok_or(bad)?, d.parse().map_err(|_| bad)?);
            }
            _ => return Err(bad),
        }
    }
    if let Some((k, s)) = current.take() {
        owned.services.insert(k, s);
    }
    Ok(owned)
}

/// Opens the state file `p` with `opts`, never through a link: the last part of the path is
/// not followed (`O_NOFOLLOW`) and nothing blocks on a FIFO (`O_NONBLOCK`). A link planted in
/// the state directory would otherwise have lvsd, as root, write any file on the system.
pub fn open(opts: &mut std::fs::OpenOptions, p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = opts
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => std::io::Error::other(format!(
                "{} is a symbolic link, and lvsd opens no state file through one (it could make lvsd write any file): remove it",
                config::printable(&p.display().to_string())
            )),
            _ => e,
        })?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file: remove it",
            config::printable(&p.display().to_string())
        )));
    }
    Ok(f)
}

/// Reads the state file `p` whole, as [`open`] opens it.
pub fn read(p: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    open(std::fs::OpenOptions::new().read(true), p)?.read_to_string(&mut text)?;
    Ok(text)
}

/// A record that exists but cannot be read. lvsd cannot tell what it made from it, so the
/// part the record covers (the table, or the host) is not touched until the record is fixed or
/// removed: treating it as empty would turn what lvsd made into something it leaves behind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the ownership record {path} cannot be read ({why}); lvsd changes nothing it covers until it can: restore it, or remove it if nothing of lvsd's is left there (lvsd then owns nothing of it)"
)]
pub struct Unreadable {
    /// The record's path.
    pub path: String,
    /// What is wrong with it.
    pub why: String,
}

/// Reads record `name` of `dir`; a missing file means the record's default (lvsd owns nothing
/// yet, no override, in rotation).
pub(crate) fn load_with<T: Default, E: std::fmt::Display>(
    dir: &Path,
    name: &str,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, Unreadable> {
    let p = dir.join(name);
    let unreadable = |why: String| Unreadable {
        path: p.display().to_string(),
        why,
    };
    match read(&p) {
        Ok(text) => parse(&text).map_err(|e| unreadable(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

/// Writes file `name` of `dir` so that it is either the old text or the new one, also across
/// a crash or a power cut: a temp file of this process's own (two writers never share one),
/// flushed to disk, renamed over the old one, and the directory flushed so the rename is too.
pub fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the state directory {}", dir.display()))?;
    let p = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // Created new (`O_EXCL`, which follows no link): what a crashed process of the same pid
    // left is removed first (a link is removed, not followed).
    let _ = std::fs::remove_file(&tmp);
    let written = open(
        std::fs::OpenOptions::new().write(true).create_new(true),
        &tmp,
    )
    .and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("write {}", tmp.display()));
    }
    std::fs::rename(&tmp, &p).with_context(|| format!("replace {}", p.display()))?;
    // The rename itself reaches the disk with the directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `text` to the file at `path` as [`write_atomic`] does (a reader such as keepalived's
/// `track_file` sees the old value or the new one, never a torn one).
pub fn write_value(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} is not a file name", path.display()))?;
    write_atomic(dir, name, text)
}

/// Loads the table record.
pub fn load(dir: &Path) -> Result<Owned, Unreadable> {
    load_with(dir, "owned", parse)
}

/// Saves the table record.
pub fn save(dir: &Path, owned: &Owned) -> Result<()> {
    write_atomic(dir, "owned", &render(owned))
}

/// The host record as written: versioned JSON, so that every value round-trips (a sysctl such
/// as `sync_threshold` holds several words, which the line format of old could not carry).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HostRecord {
    /// What the file is, for a person who opens it.
    record: String,
    version: u32,
    addresses: Vec<HostRecordAddr>,
    links_up: Vec<String>,
    sysctls: Vec<HostRecordSysctl>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HostRecordAddr {
    interface: String,
    addr: IpAddr,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HostRecordSysctl {
    key: String,
    original: String,
    set: String,
}

/// The host record's format version; a record of a later one is refused, not guessed at.
const HOST_RECORD_VERSION: u32 = 2;

/// Renders the host record.
pub fn render_host(owned: &HostOwned) -> String {
    let record = HostRecord {
        record: "lvsd host record: what lvsd's role put on this host. Do not edit.".into(),
        version: HOST_RECORD_VERSION,
        addresses: owned
            .addresses
            .iter()
            .map(|a| HostRecordAddr {
                interface: a.interface.clone(),
                addr: a.addr,
            })
            .collect(),
        links_up: owned.links_up.iter().cloned().collect(),
        sysctls: owned
            .sysctls
            .iter()
            .map(|(k, s)| HostRecordSysctl {
                key: k.0.clone(),
                original: s.original.clone(),
                set: s.set.clone(),
            })
            .collect(),
    };
    // Serializing plain strings, numbers and addresses cannot fail.
    let mut out = serde_json::to_string_pretty(&record).unwrap_or_default();
    out.push('\n');
    out
}

/// Why a record cannot be read: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct Damage {
    /// The line (1-based) where the record stops making sense.
    pub line: usize,
    /// What is wrong there.
    pub what: String,
}

impl Damage {
    fn at(line: usize) -> Self {
        Damage {
            line,
            what: "not what lvsd writes".into(),
        }
    }
}

/// Parses a host record: the JSON lvsd writes, or the line format lvsd wrote before (read so
/// that an upgrade keeps what the old version recorded). `Err` says where it makes no sense.
pub fn parse_host(text: &str) -> Result<HostOwned, Damage> {
    if text.trim_start().starts_with('{') {
        return parse_host_json(text);
    }
    parse_host_lines(text).map_err(Damage::at)
}

fn parse_host_json(text: &str) -> Result<HostOwned, Damage> {
    let r: HostRecord = serde_json::from_str(text).map_err(|e| Damage {
        line: e.line(),
        what: format!("not a host record lvsd can read ({e})"),
    })?;
    if r.version != HOST_RECORD_VERSION {
        return Err(Damage {
            line: 1,
            what: format!(
                "version {} (this lvsd reads version {HOST_RECORD_VERSION}): written by another lvsd",
                r.version
            ),
        });
    }
    let mut owned = HostOwned::default();
    for a in r.addresses {
        owned.addresses.insert(HostAddr {
            interface: a.interface,
            addr: a.addr,
        });
    }
    owned.links_up.extend(r.links_up);
    for s in r.sysctls {
        owned.sysctls.insert(
            Sysctl(s.key),
            OwnedSysctl {
                original: s.original,
                set: s.set,
            },
        );
    }
    Ok(owned)
}

/// The line format of lvsd before the JSON record. A sysctl's values may hold spaces (lvsd
/// wrote `original=3 50 set=3 10` for `sync_threshold`): they are split at the last ` set=`.
fn parse_host_lines(text: &str) -> Result<HostOwned, usize> {
    let mut owned = HostOwned::default();
    for (i, line) in text.lines().enumerate() {
        let bad = i + 1;
        if let Some(rest) = line.strip_prefix("sysctl ") {
            let (key, values) = rest.split_once(' ').ok_or(bad)?;
            let values = values.strip_prefix("original=").ok_or(bad)?;
            let (original, set) = values.rsplit_once(" set=").ok_or(bad)?;
            owned.sysctls.insert(
                Sysctl(key.to_owned()),
                OwnedSysctl {
                    original: original.to_owned(),
                    set: set.to_owned(),
                },
            );
            continue;
        }
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => {}
            [c, ..] if c.starts_with('#') => {}
            ["address", interface, addr] => {
                owned.addresses.insert(HostAddr {
                    interface: (*interface).to_owned(),
                    addr: addr.parse().map_err(|_| bad)?,
                });
            }
            ["link", name] => {
                owned.links_up.insert((*name).to_owned());
            }
            _ => return Err(bad),
        }
    }
    Ok(owned)
}

/// Loads the host record.
pub fn load_host(dir: &Path) -> Result<HostOwned, Unreadable> {
    load_with(dir, "host", parse_host)
}

/// Saves the host record.
pub fn save_host(dir: &Path, owned: &HostOwned) -> Result<()> {
    write_atomic(dir, "host", &render_host(owned))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut owned = Owned::default();
        let k = ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80);
        let mut s = OwnedService {
            drain_timeout: 30,
            service_deadline: Some(17),
            ..Default::default()
        };
        let d = DestKey {
            addr: "2001:db8::1".parse().unwrap(),
            port: 80,
        };
        s.reals.insert(d);
        s.draining.insert(d, 99);
        owned.services.insert(k, s);
        owned.services.insert(
            ServiceKey::Fwmark {
                mark: 7,
                family: Family::Inet6,
            },
            OwnedService::default(),
        );
        assert_eq!(parse(&render(&owned)), Ok(owned.clone()));
        owned.globals.timeouts = Some(OwnedTimeouts {
            original: Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            },
            set: Timeouts {
                tcp: 600,
                tcp_fin: 120,
                udp: 30,
            },
        });
        owned.globals.daemons.insert(DaemonState::Master);
        owned.globals.daemons.insert(DaemonState::Backup);
        assert_eq!(parse(&render(&owned)), Ok(owned));
    }

    #[test]
    fn damage_is_located() {
        assert_eq!(
            parse("service tcp 1.2.3.4 80 drain_timeout=3 deadline=-\nreal x 80\n")
                .map_err(|d| d.line),
            Err(2)
        );
        assert_eq!(parse("real 1.2.3.4 80\n").map_err(|d| d.line), Err(1));
        let e = parse("{\"record\": \"\", \"version\": 2, \"services\": [{\"service\": \"tcp x 80\", \"drain_timeout\": 1, \"deadline\": null, \"reals\": [], \"draining\": []}], \"timeouts\": null, \"sync\": []}").unwrap_err();
        assert!(e.what.contains("`tcp x 80` names no service"), "{e}");
        assert_eq!(
            parse_host("address lo 172.16.1.50\nsysctl a/b 0 1\n").map_err(|d| d.line),
            Err(2)
        );
        assert_eq!(
            parse_host("{\n  \"record\": \"x\",\n  \"version\": 2,\n  \"addresses\": 7\n}\n")
                .map_err(|d| d.line),
            Err(4)
        );
        let later = parse_host(
            "{\"record\":\"\",\"version\":3,\"addresses\":[],\"links_up\":[],\"sysctls\":[]}",
        )
        .unwrap_err();
        assert!(later.what.contains("version 3"), "{later}");
    }

    #[test]
    fn the_line_format_of_old_is_read_with_values_of_several_words() {
        // As lvsd wrote it for `ipvs.sysctl.sync_threshold: "3 50"` (deploy/ha/lvsd-pair.yaml).
        let old = "# lvsd host record\naddress eth0 172.16.1.50\nlink tunl0\nsysctl net/ipv4/vs/sync_threshold original=3 50 set=3 10\n";
        let owned = parse_host(old).unwrap();
        let s = &owned.sysctls[&Sysctl("net/ipv4/vs/sync_threshold".into())];
        assert_eq!((s.original.as_str(), s.set.as_str()), ("3 50", "3 10"));
        assert_eq!(owned.addresses.len(), 1);
        assert_eq!(parse_host(&render_host(&owned)), Ok(owned));
    }

    #[test]
    fn an_unreadable_record_is_an_error_never_an_empty_one() {
        let dir = std::env::temp_dir().join(format!("lvsd-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load_host(&dir), Ok(HostOwned::default()), "no record yet");
        std::fs::write(dir.join("host"), "address lo\n").unwrap();
        let e = load_host(&dir).unwrap_err().to_string();
        assert!(e.contains("cannot be read (line 1"), "{e}");
        assert!(e.contains("changes nothing it covers"), "{e}");
        std::fs::write(dir.join("owned"), "real 1.2.3.4 80\n").unwrap();
        assert!(load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn host_round_trip() {
        let mut owned = HostOwned::default();
        owned.addresses.insert(HostAddr {
            interface: "eth0.100".into(),
            addr: "2001:db8::50".parse().unwrap(),
        });
        owned.links_up.insert("tunl0".into());
        owned.sysctls.insert(
            Sysctl("net/ipv4/conf/all/arp_ignore".into()),
            OwnedSysctl {
                original: "0".into(),
                set: "1".into(),
            },
        );
        owned.sysctls.insert(
            Sysctl("net/ipv4/vs/sync_threshold".into()),
            OwnedSysctl {
                original: "3 50".into(),
                set: "3 10".into(),
            },
        );
        assert_eq!(parse_host(&render_host(&owned)), Ok(owned));
    }

    #[test]
    fn the_table_records_line_format_of_old_is_read() {
        let old = "# lvsd ownership record\nservice tcp 172.16.1.50 80 drain_timeout=30 deadline=-\nreal 172.16.1.101 80\ndraining 172.16.1.102 80 1764000000\ntimeouts original=900,120,300 set=600,120,30\nsync master\n";
        let owned = parse(old).unwrap();
        let k = ServiceKey::tcp("172.16.1.50".parse().unwrap(), 80);
        assert_eq!(owned.services[&k].reals.len(), 1);
        assert_eq!(owned.services[&k].draining.len(), 1);
        assert!(owned.globals.timeouts.is_some());
        assert_eq!(parse(&render(&owned)), Ok(owned));
    }

    fn any_key() -> impl proptest::strategy::Strategy<Value = ServiceKey> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<std::net::IpAddr>(), any::<u16>(), 0u16..300).prop_map(|(addr, port, p)| {
                ServiceKey::Addr {
                    protocol: match p {
                        6 => Protocol::Tcp,
                        17 => Protocol::Udp,
                        132 => Protocol::Sctp,
                        n if n % 3 == 0 => Protocol::Tcp,
                        n if n % 3 == 1 => Protocol::Udp,
                        n => Protocol::Other(n),
                    },
                    addr,
                    port,
                }
            }),
            (any::<u32>(), any::<bool>()).prop_map(|(mark, v6)| ServiceKey::Fwmark {
                mark,
                family: if v6 { Family::Inet6 } else { Family::Inet },
            }),
        ]
    }

    fn any_dest() -> impl proptest::strategy::Strategy<Value = DestKey> {
        use proptest::prelude::*;
        (any::<std::net::IpAddr>(), any::<u16>()).prop_map(|(addr, port)| DestKey { addr, port })
    }

    proptest::proptest! {
        /// Every table record lvsd can hold reads back as it was: services of every kind of
        /// key, reals, drains with deadlines, a service's deadline, timeouts, sync daemons.
        #[test]
        fn every_table_record_round_trips(
            services in proptest::collection::btree_map(
                any_key(),
                (
                    proptest::collection::btree_set(any_dest(), 0..4),
                    proptest::collection::btree_map(any_dest(), proptest::prelude::any::<u64>(), 0..3),
                    proptest::prelude::any::<u64>(),
                    proptest::option::of(proptest::prelude::any::<u64>()),
                ),
                0..6,
            ),
            timeouts in proptest::option::of(proptest::prelude::any::<([u32; 3], [u32; 3])>()),
            daemons in proptest::collection::btree_set(
                proptest::prop_oneof![
                    proptest::strategy::Just(DaemonState::Master),
                    proptest::strategy::Just(DaemonState::Backup),
                    proptest::strategy::Strategy::prop_map(3u32.., DaemonState::Other),
                ],
                0..3,
            ),
        ) {
            let mut owned = Owned::default();
            for (k, (reals, draining, drain_timeout, service_deadline)) in services {
                owned.services.insert(k, OwnedService { reals: reals.into_iter().collect(), draining, drain_timeout, service_deadline });
            }
            let t = |a: [u32; 3]| Timeouts { tcp: a[0], tcp_fin: a[1], udp: a[2] };
            owned.globals.timeouts = timeouts.map(|(o, s)| OwnedTimeouts { original: t(o), set: t(s) });
            owned.globals.daemons = daemons;
            // Byte for byte what serde writes of the record.
            proptest::prop_assert_eq!(render(&owned), render_with_serde(&owned));
            proptest::prop_assert_eq!(parse(&render(&owned)), Ok(owned));
        }

        /// Every host record lvsd can hold reads back as it was: any interface name, link,
        /// sysctl key and value (spaces, quotes, newlines, any character).
        #[test]
        fn every_host_record_round_trips(
            addrs in proptest::collection::vec((".{0,16}", proptest::prelude::any::<std::net::IpAddr>()), 0..4),
            links in proptest::collection::btree_set(".{0,16}", 0..4),
            sysctls in proptest::collection::btree_map(".{0,24}", (".{0,12}", ".{0,12}"), 0..4),
        ) {
            let mut owned = HostOwned::default();
            for (interface, addr) in addrs {
                owned.addresses.insert(HostAddr { interface, addr });
            }
            owned.links_up = links;
            for (k, (original, set)) in sysctls {
                owned.sysctls.insert(Sysctl(k), OwnedSysctl { original, set });
            }
            proptest::prop_assert_eq!(parse_host(&render_host(&owned)), Ok(owned));
        }
    }
}
