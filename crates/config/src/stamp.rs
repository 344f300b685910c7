//! What the files of a config were when lvsd read them, and whether their paths still lead to
//! those files. The daemon watches the config's directory before it reads, so a change made
//! after that is an event; a stamp covers what the watch cannot: an event the kernel dropped, a
//! directory replaced under its watch, or an included directory that is watched only once the
//! read has named it. Each file's stamp is taken from the descriptor its bytes were read
//! through, before they were read: a file renamed into place during or after the read is never
//! taken for the one read, and a file written while it was read shows a newer stamp than the
//! one recorded.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::IncludeDir;

/// One file as it was: device, inode, size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    /// The stamp of an opened file (from `fstat`).
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    /// What `path` leads to now (symlinks followed); `None` when nothing is there.
    pub fn at(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| FileStamp::of(&m))
    }
}

/// A generation as one read saw it: the main file, the directories and patterns its `include`
/// names, and each included file the patterns matched. Filled whatever the read's outcome: a
/// rejected file is stamped too, so the daemon knows when the file there is no longer the one
/// it rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub(crate) main: Option<FileStamp>,
    pub(crate) dirs: Vec<IncludeDir>,
    pub(crate) included: Vec<(PathBuf, Option<FileStamp>)>,
}

impl Stamp {
    /// A stamp of the main file alone, as its path leads now: for a read that stopped before
    /// opening the file (its permissions refused).
    pub fn main_only(main: &Path) -> Self {
        Stamp {
            main: FileStamp::at(main),
            ..Stamp::default()
        }
    }

    /// What the same paths lead to now: the main file, and the included directories listed
    /// again the way the read listed them.
    pub fn now(&self, main: &Path) -> Stamp {
        let included = if self.dirs.is_empty() {
            vec![]
        } else {
            crate::include::listing(&self.dirs, main)
                .files
                .into_iter()
                .map(|(p, _)| {
                    let s = FileStamp::at(&p);
                    (p, s)
                })
                .collect()
        };
        Stamp {
            main: FileStamp::at(main),
            dirs: self.dirs.clone(),
            included,
        }
    }

    /// True when the read found its main file (a missing one is not a config).
    pub fn is_present(&self) -> bool {
        self.main.is_some()
    }

    /// True when the files at these paths are no longer the ones read: one was replaced,
    /// written, added or removed since.
    pub fn moved(&self, main: &Path) -> bool {
        self.now(main) != *self
    }
}
