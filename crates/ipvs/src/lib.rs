//! Typed IPVS generic-netlink messages and an async, batching client.
//!
//! The kernel's IPVS table is read and written over the "IPVS" generic-netlink family; this crate
//! is the whole of lvsd's contact with it. Layers, top down:
//!
//! - [`Client`] (feature `client`, on by default): one socket, [`Client::execute`] for batches of [`Request`]s with a result per
//!   request, dumps ([`Client::services`], [`Client::dests`], [`Client::dump`]) and the small
//!   queries (info, timeouts, sync daemons).
//! - [`model`] (the `lvsd-model` crate, re-exported here, so `ipvs::ServiceKey`, `ipvs::save`,
//!   `ipvs::constants` and `ipvs::Request` are its items): services and destinations with
//!   identity, settings and statistics kept apart, write requests, the ipvsadm-save format.
//! - [`convert`]: the model to and from attributes, [`convert::request_message`] for a request.
//! - [`message`]: the attribute enums, each with an `Other` fallback, and [`IpvsMessage`].
//!
//! Decoding never panics: malformed input is a [`netlink_packet_core::DecodeError`], unknown
//! attributes are kept as `Other`.

#[cfg(feature = "client")]
pub mod client;
pub mod convert;
pub mod error;
pub mod message;
pub mod wire;

/// The IPVS model, netlink-free, in its own crate so that the planner and the configuration build
/// without this one; re-exported whole so that `ipvs::X` names every model item.
pub use ::model;

#[cfg(feature = "client")]
pub use client::{BatchResult, Client};
pub use error::Error;
pub use message::{DaemonAttr, DestAttr, IpvsAttr, IpvsCmd, IpvsMessage, ServiceAttr, StatsAttr};
pub use model::*;
pub use wire::{encode_message, encode_request};

/// Decodes one netlink message carrying an IPVS payload (any family ID): the entry point for
/// golden-byte tests and property tests. Never panics.
pub fn decode_message(bytes: &[u8]) -> Result<IpvsMessage, netlink_packet_core::DecodeError> {
    use netlink_packet_core::{NetlinkBuffer, ParseableParametrized};
    let nl = NetlinkBuffer::new_checked(bytes)?;
    let genl = netlink_packet_generic::GenlMessage::<IpvsMessage>::parse_with_param(
        nl.payload(),
        nl.message_type(),
    )?;
    Ok(genl.payload)
}
