//! Where the config comes from: the file (and its included files) behind the configured path,
//! the watch on their directories, the stamp of what the last read saw, and the last good config
//! the reads left in force. Reading and looking at the files is I/O, done here; when to do
//! either is `decide`'s.

use std::path::Path;

use anyhow::{Context, Result};
use config::{Loaded, Stamp};

use super::Settings;
use super::decide::Reloaded;
use super::reload;
use super::watch::{Watch, WatchKind};
use crate::engine::Engine;
use crate::io::Io;

/// The config's files, their watch and what was last read of them.
pub(super) struct Source {
    /// The watch on the config's directories (its events reach the loop on their own).
    watch: Watch,
    /// What the last read saw, accepted or not: a look at the files compares them with it
    /// (a resync notices other files behind the paths: an event the watch lost).
    read: Stamp,
    /// The last good config (`None` only while a reload is reading it, or after the thread
    /// reading it was lost, which ends the daemon).
    loaded: Option<Loaded>,
}

impl Source {
    /// Watches the config's directory, then reads the config (off the runtime) and follows the
    /// directories of its included files. The read is stamped from the files it read: a file
    /// renamed into place at any moment of this is either the one read or an event (or, in an
    /// included directory watched only once the read named it, seen by the look at the stamp
    /// that `decide` asks for first). `written(whole)` is called for every write the watch sees.
    pub(super) async fn open(
        settings: &Settings,
        kind: WatchKind,
        written: impl Fn(bool) + Send + 'static,
    ) -> Result<Source> {
        crate::fault::point(crate::fault::START_BEFORE_WATCH);
        let mut watch = Watch::new(kind, &settings.config, written)?;
        crate::fault::point(crate::fault::START_BEFORE_READ);
        let (path, role) = (settings.config.clone(), settings.role);
        let (loaded, read) = super::off_loop(move || {
            let mut seen = Stamp::default();
            let loaded = Loaded::load(&path, role, &mut seen);
            (loaded, seen)
        })
        .await
        .context("read the config")?;
        let loaded = loaded?;
        crate::fault::point(crate::fault::START_AFTER_READ);
        // Every file of the generation: whoever can write one of them controls its services.
        if !settings.allow_insecure_config {
            if let Some(why) = loaded.included_files().find_map(crate::perms::insecure) {
                anyhow::bail!("{why}");
            }
        }
        watch.follow(loaded.include_dirs());
        Ok(Source {
            watch,
            read,
            loaded: Some(loaded),
        })
    }

    /// The config in force.
    pub(super) fn loaded(&self) -> Option<&Loaded> {
        self.loaded.as_ref()
    }

    /// The number of services the config in force has.
    pub(super) fn services(&self) -> usize {
        self.loaded
            .as_ref()
            .map_or(0, |l| l.config.desired.services.len())
    }

    /// Watches anew the directories the config resolves through now (a ConfigMap swap moves
    /// the file into a new directory; a directory may have been replaced).
    pub(super) fn refresh_watch(&mut self) {
        if let Err(e) = self.watch.refresh() {
            tracing::warn!("{e:#}");
        }
    }

    /// Whether the files at the config's paths (`main`) are no longer those the last read saw
    /// (off the runtime: a directory of included files is listed and each file looked at).
    pub(super) async fn moved(&self, main: &Path) -> bool {
        let (read, path) = (self.read.clone(), main.to_path_buf());
        super::off_loop(move || read.moved(&path))
            .await
            .unwrap_or(true)
    }

    /// Reads the config again and follows the directories it includes now; an error is fatal
    /// (see [`reload::reload`]). A config file found gone is [`Reloaded::Gone`].
    pub(super) async fn reload<I: Io>(
        &mut self,
        settings: &Settings,
        engine: &mut Engine<I>,
    ) -> Result<Reloaded> {
        crate::fault::point(crate::fault::RELOAD_BEFORE_READ);
        let (outcome, read) = reload::reload(settings, &mut self.loaded, engine).await?;
        crate::fault::point(crate::fault::RELOAD_AFTER_READ);
        self.read = read;
        if let Some(l) = &self.loaded {
            self.watch.follow(l.include_dirs());
        }
        Ok(match outcome {
            Reloaded::Unchanged if !self.read.is_present() => Reloaded::Gone,
            o => o,
        })
    }
}
