//! The write hot path: a [`Request`] written straight into the send buffer as netlink bytes,
//! without building the typed attribute tree first. A batch of 100,000 objects is mostly this.
//!
//! It must produce exactly the bytes of the typed path (`convert::request_message` then emit); the
//! golden tests compare it with ipvsadm's traffic and a property test with the typed encoder.

use netlink_packet_core::{
    Emitable, NLA_F_NESTED, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_generic::{GenlFamily, GenlMessage};

use crate::constants::*;
use crate::message::{IpvsMessage, inet_addr_bytes};
use crate::model::*;
use crate::request::Request;

fn attr(tx: &mut Vec<u8>, kind: u16, value: &[u8]) {
    tx.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    tx.extend_from_slice(&kind.to_ne_bytes());
    tx.extend_from_slice(value);
    pad(tx);
}

fn pad(tx: &mut Vec<u8>) {
    while tx.len() % 4 != 0 {
        tx.push(0);
    }
}

fn attr_str(tx: &mut Vec<u8>, kind: u16, s: &str) {
    tx.extend_from_slice(&((5 + s.len()) as u16).to_ne_bytes());
    tx.extend_from_slice(&kind.to_ne_bytes());
    tx.extend_from_slice(s.as_bytes());
    tx.push(0);
    pad(tx);
}

fn nest_begin(tx: &mut Vec<u8>, kind: u16) -> usize {
    let at = tx.len();
    tx.extend_from_slice(&[0, 0]);
    tx.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn nest_end(tx: &mut [u8], at: usize) {
    let len = (tx.len() - at) as u16;
    tx[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

fn service_key(tx: &mut Vec<u8>, key: &ServiceKey) {
    attr(tx, IPVS_SVC_ATTR_AF, &key.family().to_raw().to_ne_bytes());
    match key {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => {
            attr(tx, IPVS_SVC_ATTR_PROTOCOL, &protocol.to_raw().to_ne_bytes());
            attr(tx, IPVS_SVC_ATTR_ADDR, &inet_addr_bytes(addr));
            attr(tx, IPVS_SVC_ATTR_PORT, &port.to_be_bytes());
        }
        ServiceKey::Fwmark { mark, .. } => attr(tx, IPVS_SVC_ATTR_FWMARK, &mark.to_ne_bytes()),
    }
}

fn service_block(tx: &mut Vec<u8>, key: &ServiceKey, spec: Option<&ServiceSpec>) {
    let at = nest_begin(tx, IPVS_CMD_ATTR_SERVICE);
    service_key(tx, key);
    if let Some(spec) = spec {
        attr_str(tx, IPVS_SVC_ATTR_SCHED_NAME, &spec.scheduler);
        if let Some(pe) = &spec.pe_name {
            attr_str(tx, IPVS_SVC_ATTR_PE_NAME, pe);
        }
        let mut flags = [0u8; 8];
        flags[..4].copy_from_slice(&spec.flags.0.to_ne_bytes());
        flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
        attr(tx, IPVS_SVC_ATTR_FLAGS, &flags);
        attr(tx, IPVS_SVC_ATTR_TIMEOUT, &spec.timeout.to_ne_bytes());
        attr(
            tx,
            IPVS_SVC_ATTR_NETMASK,
            &spec.netmask.to_raw().to_ne_bytes(),
        );
    }
    nest_end(tx, at);
}

fn dest_block(tx: &mut Vec<u8>, key: &DestKey, spec: Option<&DestSpec>) {
    let at = nest_begin(tx, IPVS_CMD_ATTR_DEST);
    attr(
        tx,
        IPVS_DEST_ATTR_ADDR_FAMILY,
        &key.family().to_raw().to_ne_bytes(),
    );
    attr(tx, IPVS_DEST_ATTR_ADDR, &inet_addr_bytes(&key.addr));
    attr(tx, IPVS_DEST_ATTR_PORT, &key.port.to_be_bytes());
    if let Some(s) = spec {
        attr(
            tx,
            IPVS_DEST_ATTR_FWD_METHOD,
            &s.forward.to_raw().to_ne_bytes(),
        );
        attr(tx, IPVS_DEST_ATTR_WEIGHT, &s.weight.to_ne_bytes());
        attr(tx, IPVS_DEST_ATTR_TUN_TYPE, &[s.tunnel_type.to_raw()]);
        attr(tx, IPVS_DEST_ATTR_TUN_PORT, &s.tunnel_port.to_be_bytes());
        attr(tx, IPVS_DEST_ATTR_TUN_FLAGS, &s.tunnel_flags.to_ne_bytes());
        attr(
            tx,
            IPVS_DEST_ATTR_U_THRESH,
            &s.upper_threshold.to_ne_bytes(),
        );
        attr(
            tx,
            IPVS_DEST_ATTR_L_THRESH,
            &s.lower_threshold.to_ne_bytes(),
        );
    }
    nest_end(tx, at);
}

fn command(req: &Request) -> u8 {
    match req {
        Request::NewService(..) => IPVS_CMD_NEW_SERVICE,
        Request::SetService(..) => IPVS_CMD_SET_SERVICE,
        Request::DelService(..) => IPVS_CMD_DEL_SERVICE,
        Request::NewDest(..) => IPVS_CMD_NEW_DEST,
        Request::SetDest(..) => IPVS_CMD_SET_DEST,
        Request::DelDest(..) => IPVS_CMD_DEL_DEST,
        Request::Flush => IPVS_CMD_FLUSH,
        Request::Zero(_) => IPVS_CMD_ZERO,
        Request::SetTimeouts(_) => IPVS_CMD_SET_CONFIG,
        Request::NewDaemon(_) => IPVS_CMD_NEW_DAEMON,
        Request::DelDaemon(_) => IPVS_CMD_DEL_DAEMON,
    }
}

/// Appends a request for the destinations of `key` (a dump): the read hot path, one per service
/// when a whole table is read.
pub fn push_get_dests(tx: &mut Vec<u8>, key: &ServiceKey, family_id: u16, flags: u16, seq: u32) {
    let start = header(tx, IPVS_CMD_GET_DEST, family_id, flags, seq);
    service_block(tx, key, None);
    finish(tx, start);
}

/// Starts a message: the netlink and generic-netlink headers, its length patched by
/// [`finish`]. Returns where it starts.
fn header(tx: &mut Vec<u8>, cmd: u8, family_id: u16, flags: u16, seq: u32) -> usize {
    let start = tx.len();
    tx.extend_from_slice(&[0; 4]); // length, patched by `finish`
    tx.extend_from_slice(&family_id.to_ne_bytes());
    tx.extend_from_slice(&flags.to_ne_bytes());
    tx.extend_from_slice(&seq.to_ne_bytes());
    tx.extend_from_slice(&[0; 4]); // port id: the kernel fills it in
    tx.extend_from_slice(&[cmd, IPVS_GENL_VERSION, 0, 0]);
    start
}

/// Writes the length of the message that starts at `start`.
fn finish(tx: &mut [u8], start: usize) {
    let len = (tx.len() - start) as u32;
    tx[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends `req` to `tx` as one netlink message of the IPVS family.
pub fn push_request(tx: &mut Vec<u8>, req: &Request, family_id: u16, flags: u16, seq: u32) {
    let start = header(tx, command(req), family_id, flags, seq);
    match req {
        Request::NewService(k, s) | Request::SetService(k, s) => service_block(tx, k, Some(s)),
        Request::DelService(k) | Request::Zero(Some(k)) => service_block(tx, k, None),
        Request::NewDest(k, d, s) | Request::SetDest(k, d, s) => {
            service_block(tx, k, None);
            dest_block(tx, d, Some(s));
        }
        Request::DelDest(k, d) => {
            service_block(tx, k, None);
            dest_block(tx, d, None);
        }
        Request::Flush | Request::Zero(None) => {}
        Request::SetTimeouts(t) => {
            attr(tx, IPVS_CMD_ATTR_TIMEOUT_TCP, &t.tcp.to_ne_bytes());
            attr(tx, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, &t.tcp_fin.to_ne_bytes());
            attr(tx, IPVS_CMD_ATTR_TIMEOUT_UDP, &t.udp.to_ne_bytes());
        }
        Request::NewDaemon(d) => {
            let at = nest_begin(tx, IPVS_CMD_ATTR_DAEMON);
            attr(tx, IPVS_DAEMON_ATTR_STATE, &d.state.to_raw().to_ne_bytes());
            attr_str(tx, IPVS_DAEMON_ATTR_MCAST_IFN, &d.mcast_ifn);
            attr(tx, IPVS_DAEMON_ATTR_SYNC_ID, &d.sync_id.to_ne_bytes());
            if let Some(v) = d.sync_maxlen {
                attr(tx, IPVS_DAEMON_ATTR_SYNC_MAXLEN, &v.to_ne_bytes());
            }
            if let Some(v) = d.mcast_port {
                attr(tx, IPVS_DAEMON_ATTR_MCAST_PORT, &v.to_ne_bytes());
            }
            if let Some(v) = d.mcast_ttl {
                attr(tx, IPVS_DAEMON_ATTR_MCAST_TTL, &[v]);
            }
            if let Some(v) = d.mcast_group {
                attr(tx, IPVS_DAEMON_ATTR_MCAST_GROUP, &v.octets());
            }
            if let Some(v) = d.mcast_group6 {
                attr(tx, IPVS_DAEMON_ATTR_MCAST_GROUP6, &v.octets());
            }
            nest_end(tx, at);
        }
        Request::DelDaemon(s) => {
            let at = nest_begin(tx, IPVS_CMD_ATTR_DAEMON);
            attr(tx, IPVS_DAEMON_ATTR_STATE, &s.to_raw().to_ne_bytes());
            nest_end(tx, at);
        }
    }
    finish(tx, start);
}

/// Appends one netlink message to `tx`.
pub(crate) fn push_message<F>(tx: &mut Vec<u8>, genl: GenlMessage<F>, flags: u16, seq: u32)
where
    F: GenlFamily + Emitable + std::fmt::Debug,
    GenlMessage<F>: NetlinkSerializable,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    msg.finalize();
    let start = tx.len();
    tx.resize(start + msg.buffer_len(), 0);
    msg.serialize(&mut tx[start..]);
}

/// Encodes one request as the bytes of a netlink message, exactly as the client's batches send it
/// (for golden-byte tests and tools that capture traffic).
pub fn encode_request(request: &Request, family_id: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut tx = Vec::new();
    push_request(&mut tx, request, family_id, flags, seq);
    tx
}

/// Encodes any IPVS message with the given netlink header fields.
pub fn encode_message(msg: IpvsMessage, family_id: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(msg);
    genl.set_resolved_family_id(family_id);
    let mut tx = Vec::new();
    push_message(&mut tx, genl, flags, seq);
    tx
}
