//! What the engine talks to, as traits: the IPVS table, the host, the ownership records and
//! the clock. Production is [`System`]: the netlink client, rtnetlink and `/proc/sys`, the
//! state directory, the system clock. The engine's tests put a simulated kernel, host and disk
//! behind the same traits (`crate::sim`) and run it through seeded schedules of edits, faults
//! and kills that replay exactly.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;
use ipvs::{BatchResult, Dest, Request, Service, ServiceKey, SyncDaemon, Timeouts};
use plan::Owned;
use plan::host::{HostObserved, HostOp, HostOwned, Sysctl};

use crate::state_file::{self, Unreadable};

/// One connection to the IPVS table.
#[allow(async_fn_in_trait)]
pub trait Table {
    /// Every service, in kernel order.
    async fn services(&mut self) -> Result<Vec<Service>, ipvs::Error>;
    /// The destinations of `keys` whose digest changed since the one given (see
    /// [`ipvs::Client::dests_if_changed`]).
    async fn dests_if_changed<T: Send + 'static>(
        &mut self,
        keys: &[(ServiceKey, Option<u64>)],
        f: fn(Vec<Dest>) -> T,
    ) -> Result<Vec<(u64, Option<T>)>, ipvs::Error>;
    /// One service, if the kernel has it.
    async fn service(&mut self, key: &ServiceKey) -> Result<Option<Service>, ipvs::Error>;
    /// One service's destinations, in kernel order.
    async fn dests(&mut self, key: &ServiceKey) -> Result<Vec<Dest>, ipvs::Error>;
    /// The connection timeouts.
    async fn timeouts(&mut self) -> Result<Timeouts, ipvs::Error>;
    /// The sync daemons running.
    async fn daemons(&mut self) -> Result<Vec<SyncDaemon>, ipvs::Error>;
    /// One request.
    async fn apply(&mut self, request: Request) -> Result<(), ipvs::Error>;
    /// Requests in order, one result each; a failure does not stop the others.
    async fn execute(&mut self, requests: &[Request]) -> BatchResult;
}

/// The host a role changes.
#[allow(async_fn_in_trait)]
pub trait HostIo {
    /// Interfaces, addresses and the values of `keys`.
    async fn observe(&self, keys: &BTreeSet<Sysctl>) -> Result<HostObserved, host::Error>;
    /// Carries out one operation.
    async fn execute(&self, op: &HostOp) -> Result<(), host::Error>;
}

/// How the engine reaches the world. Connections are opened on first use and again after a
/// failure; records are read at the start and whenever one could not be.
#[allow(async_fn_in_trait)]
pub trait Io {
    /// A connection to the IPVS table.
    type Table: Table;
    /// A connection to the host.
    type Host: HostIo;
    /// Opens a connection to the IPVS table.
    async fn connect_table(&mut self) -> Result<Self::Table, ipvs::Error>;
    /// Opens a connection to the host.
    fn connect_host(&mut self) -> Result<Self::Host, host::Error>;
    /// The table's ownership record (`Ok(empty)` when there is none yet).
    fn load_owned(&mut self) -> Result<Owned, Unreadable>;
    /// The host's ownership record.
    fn load_host(&mut self) -> Result<HostOwned, Unreadable>;
    /// Saves the table's record, durably, before returning.
    fn save_owned(&mut self, owned: &Owned) -> Result<()>;
    /// Saves the host's record, durably, before returning.
    fn save_host(&mut self, owned: &HostOwned) -> Result<()>;
    /// Seconds since the Unix epoch: the clock drain deadlines use (they survive restarts).
    fn now(&self) -> u64;
}

/// The real kernel, host, disk and clock.
pub struct System {
    state_dir: PathBuf,
}

impl System {
    /// The world as lvsd runs in it, with its records in `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        System { state_dir }
    }
}

impl Io for System {
    type Table = ipvs::Client;
    type Host = host::Host;

    async fn connect_table(&mut self) -> Result<ipvs::Client, ipvs::Error> {
        ipvs::Client::connect().await
    }

    fn connect_host(&mut self) -> Result<host::Host, host::Error> {
        host::Host::connect()
    }

    fn load_owned(&mut self) -> Result<Owned, Unreadable> {
        state_file::load(&self.state_dir)
    }

    fn load_host(&mut self) -> Result<HostOwned, Unreadable> {
        state_file::load_host(&self.state_dir)
    }

    fn save_owned(&mut self, owned: &Owned) -> Result<()> {
        state_file::save(&self.state_dir, owned)
    }

    fn save_host(&mut self, owned: &HostOwned) -> Result<()> {
        state_file::save_host(&self.state_dir, owned)
    }

    fn now(&self) -> u64 {
        crate::engine::now()
    }
}

impl Table for ipvs::Client {
    async fn services(&mut self) -> Result<Vec<Service>, ipvs::Error> {
        ipvs::Client::services(self).await
    }

    async fn dests_if_changed<T: Send + 'static>(
        &mut self,
        keys: &[(ServiceKey, Option<u64>)],
        f: fn(Vec<Dest>) -> T,
    ) -> Result<Vec<(u64, Option<T>)>, ipvs::Error> {
        ipvs::Client::dests_if_changed(self, keys, f).await
    }

    async fn service(&mut self, key: &ServiceKey) -> Result<Option<Service>, ipvs::Error> {
        ipvs::Client::service(self, key).await
    }

    async fn dests(&mut self, key: &ServiceKey) -> Result<Vec<Dest>, ipvs::Error> {
        ipvs::Client::dests(self, key).await
    }

    async fn timeouts(&mut self) -> Result<Timeouts, ipvs::Error> {
        ipvs::Client::timeouts(self).await
    }

    async fn daemons(&mut self) -> Result<Vec<SyncDaemon>, ipvs::Error> {
        ipvs::Client::daemons(self).await
    }

    async fn apply(&mut self, request: Request) -> Result<(), ipvs::Error> {
        ipvs::Client::apply(self, request).await
    }

    async fn execute(&mut self, requests: &[Request]) -> BatchResult {
        ipvs::Client::execute(self, requests).await
    }
}

impl HostIo for host::Host {
    async fn observe(&self, keys: &BTreeSet<Sysctl>) -> Result<HostObserved, host::Error> {
        host::Host::observe(self, keys).await
    }

    async fn execute(&self, op: &HostOp) -> Result<(), host::Error> {
        host::Host::execute(self, op).await
    }
}
