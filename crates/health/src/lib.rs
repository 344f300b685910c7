//! Health checks, the effectful half: [`probe`] runs one tcp, http, https (rustls) or exec check
//! with a hard timeout; [`Monitor`] keeps one task per distinct probe (checks of the same target
//! with the same probe settings share it), bounded in concurrency, and reports on a channel what
//! each check's results change. What a result means (rise/fall, drain, fallback) is
//! decided by the pure `plan::health`.

mod monitor;
mod probe;

pub use monitor::{Monitor, OnStart, Report, probe_bound};
pub use probe::{Outcome, judge, probe};
