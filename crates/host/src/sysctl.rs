//! Sysctls as files under `/proc/sys` (what `sysctl(8)` reads and writes; lvsd never runs it).
//! `/proc/sys/net` shows the network namespace of the process, so a daemon in a container with
//! host networking sees the host's values.

use std::io;
use std::path::{Path, PathBuf};

use plan::host::Sysctl;

use crate::Error;

/// Where sysctls live; a directory in tests.
#[derive(Debug, Clone)]
pub struct Sysctls {
    root: PathBuf,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls::at("/proc/sys")
    }
}

impl Sysctls {
    /// Sysctls under `root` instead of `/proc/sys`.
    pub fn at(root: impl AsRef<Path>) -> Self {
        Sysctls {
            root: root.as_ref().to_path_buf(),
        }
    }

    fn path(&self, key: &Sysctl) -> PathBuf {
        self.root.join(&key.0)
    }

    /// The value, its words joined by single spaces (the kernel prints `sync_threshold` as
    /// `3\t50`, and takes `3 50`); `None` when the sysctl does not exist.
    pub fn read(&self, key: &Sysctl) -> Result<Option<String>, Error> {
        match std::fs::read_to_string(self.path(key)) {
            Ok(s) => Ok(Some(s.split_whitespace().collect::<Vec<_>>().join(" "))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Sysctl {
                op: format!("read {key}"),
                source,
            }),
        }
    }

    /// Writes `value`, then reads it back: the kernel may clamp or refuse a value silently.
    pub fn write(&self, key: &Sysctl, value: &str) -> Result<(), Error> {
        let op = || format!("write {key} = {value}");
        let path = self.path(key);
        // Never create a file: a sysctl that is not there is an error, not a new file.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| Error::Sysctl { op: op(), source })?;
        io::Write::write_all(&mut f, format!("{value}\n").as_bytes())
            .map_err(|source| Error::Sysctl { op: op(), source })?;
        drop(f);
        match self.read(key)? {
            Some(v) if v == value => Ok(()),
            got => Err(Error::Sysctl {
                op: op(),
                source: io::Error::other(format!(
                    "the kernel kept {}",
                    got.as_deref().unwrap_or("nothing")
                )),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reads_trimmed_writes_and_never_creates() {
        let dir = std::env::temp_dir().join(format!("lvsd-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/ipv4/conf/eth0.100")).unwrap();
        std::fs::write(dir.join("net/ipv4/conf/eth0.100/arp_ignore"), "0\n").unwrap();
        std::fs::create_dir_all(dir.join("net/ipv4/vs")).unwrap();
        std::fs::write(dir.join("net/ipv4/vs/sync_threshold"), "3\t50\n").unwrap();
        let s = Sysctls::at(&dir);
        let key = Sysctl("net/ipv4/conf/eth0.100/arp_ignore".into());
        assert_eq!(key.to_string(), "net.ipv4.conf.eth0/100.arp_ignore");
        assert_eq!(s.read(&key).unwrap().as_deref(), Some("0"));
        s.write(&key, "1").unwrap();
        assert_eq!(s.read(&key).unwrap().as_deref(), Some("1"));
        let pair = Sysctl("net/ipv4/vs/sync_threshold".into());
        assert_eq!(s.read(&pair).unwrap().as_deref(), Some("3 50"));
        s.write(&pair, "4 60").unwrap();
        let absent = Sysctl("net/ipv6/conf/all/forwarding".into());
        assert_eq!(s.read(&absent).unwrap(), None);
        let e = s.write(&absent, "1").unwrap_err();
        assert_eq!(e.errno(), Some(2), "{e}");
        assert!(!dir.join("net/ipv6/conf/all/forwarding").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
