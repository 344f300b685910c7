//! The pure core of lvsd: desired state + observed state + what lvsd owns → an ordered list of
//! operations. No kernel, no clock, no I/O — so every rule of reconciliation (in-place edits,
//! ownership, drains, the removal guard) is tested with plain tables of cases. [`host`] does the
//! same for the host's role: VIPs on interfaces, sysctls, tunnel devices.

pub mod flat;
pub mod globals;
pub mod hashing;
pub mod health;
pub mod host;
pub mod op;
pub mod overlay;
pub mod planner;
pub mod ramp;
pub mod state;

pub use flat::{FlatMap, FlatSet};
pub use op::{DelReason, Op, flag_names, forward_name};
pub use planner::{Guard, Options, Plan, Waiting, mh_misaligned, plan, plan_services, stuck};
pub use state::{
    DEFAULT_DRAIN_TIMEOUT, Desired, DesiredService, Observed, ObservedReal, ObservedService, Owned,
    OwnedService, normalize_dest, normalize_service,
};
