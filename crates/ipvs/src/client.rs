//! The IPVS client: one long-lived generic-netlink socket, the family resolved once, writes sent
//! in batches and dumps read with a large buffer.
//!
//! # Batching
//! The kernel runs the messages of one `sendmsg` in order and answers every failing message with
//! an error carrying that message's sequence number, whether or not it asked for an ack; a
//! success is answered only when asked. So a batch asks an ack only of the last message of each
//! chunk: when that ack arrives, every earlier message of the chunk has been run, and every one
//! without an error succeeded. Chunks are bounded so that the worst case — every message failing —
//! still fits in the socket's receive buffer.

use std::os::fd::AsFd;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NlasIterator,
    ParseableParametrized, parse_u16,
};
use netlink_packet_generic::{
    GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket, protocols::NETLINK_GENERIC};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};

use crate::constants::*;
use crate::convert::{
    DIGEST_START, daemon_from_attrs, dest_from_bytes, fold_dest_digest, service_from_attrs,
    service_from_bytes, service_key_attrs,
};
use crate::error::Error;
use crate::message::{IpvsAttr, IpvsCmd, IpvsMessage};
use crate::model::*;
use crate::request::Request;
use crate::wire::push_message;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Socket buffers asked for (granted in full with CAP_NET_ADMIN, which IPVS needs anyway).
const SOCKET_BUFFER: usize = 8 << 20;
/// Bytes of requests per `sendmsg`; measured gains stop well below this.
const CHUNK_BYTES: usize = 64 << 10;
/// Receive buffer: larger than any single datagram the kernel builds (dumps top out at 32 KiB).
const RX_BYTES: usize = 256 << 10;
/// Receive-buffer bytes one error reply may cost (its skb truesize), for bounding chunks.
const ERROR_REPLY_COST: usize = 2048;
/// How long to wait for the kernel's next reply before giving the connection up. It answers
/// a request (even a chunk of a batch) while the request is sent, so silence this long means
/// the socket is of no use any more.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The outcome of one request of a batch, in the order the requests were given.
pub type BatchResult = Vec<Result<(), Error>>;

/// A connection to the kernel's IPVS family in the network namespace it was opened in.
pub struct Client {
    sock: TokioSocket,
    family_id: u16,
    seq: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
    chunk_msgs: usize,
    writes: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("family_id", &self.family_id)
            .field("seq", &self.seq)
            .field("chunk_msgs", &self.chunk_msgs)
            .finish_non_exhaustive()
    }
}

fn io_err(op: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        op: op.to_string(),
        source,
    }
}

fn decode_err(op: &str) -> impl FnOnce(DecodeError) -> Error + '_ {
    move |source| Error::Decode {
        op: op.to_string(),
        source,
    }
}

/// Walks the netlink messages of one datagram.
fn messages(buf: &[u8]) -> impl Iterator<Item = Result<NetlinkBuffer<&[u8]>, DecodeError>> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off >= buf.len() {
            return None;
        }
        match NetlinkBuffer::new_checked(&buf[off..]) {
            Ok(m) => {
                off += (m.length() as usize + 3) & !3;
                Some(Ok(m))
            }
            Err(e) => {
                off = buf.len();
                Some(Err(e))
            }
        }
    })
}

/// The errno of an `NLMSG_ERROR` payload; 0 is an ack.
fn error_code(payload: &[u8]) -> Result<i32, DecodeError> {
    let raw: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DecodeError::buffer_too_small(payload.len(), 4))?;
    Ok(-i32::from_ne_bytes(raw))
}

/// Turns a kernel errno for `req` into an error that names what went wrong.
pub fn request_error(req: &Request, errno: Errno) -> Error {
    let op = req.to_string();
    match (req, errno) {
        (_, Errno::EPERM) => Error::PermissionDenied { op },
        (Request::NewService(_, s) | Request::SetService(_, s), Errno::ENOENT) => {
            Error::SchedulerMissing {
                op,
                scheduler: s.scheduler.clone(),
            }
        }
        (Request::NewService(k, _), Errno::EEXIST) => Error::Exists {
            op,
            object: format!("service {k}"),
        },
        (Request::NewDest(k, d, _), Errno::EEXIST) => Error::Exists {
            op,
            object: format!("real server {d} of {k}"),
        },
        (r, Errno::ESRCH) if r.service().is_some() => Error::NotFound {
            object: format!(
                "service {}",
                r.service().map(ToString::to_string).unwrap_or_default()
            ),
            op,
            errno,
        },
        (Request::NewDaemon(_), Errno::EINVAL) => Error::Explained {
            op,
            errno,
            why: "the kernel refuses connection sync while the table holds a real server of the other address family (tunnel forwarding across families): remove it, or run without `ha.sync`".into(),
        },
        (Request::NewDaemon(d), Errno::ENODEV) => Error::Explained {
            why: format!("interface `{}` does not exist (ha.sync.interface)", d.mcast_ifn),
            op,
            errno,
        },
        (Request::NewDaemon(_), Errno::EEXIST) => Error::Explained {
            op,
            errno,
            why: "a sync daemon of this kind already runs (someone else's, e.g. keepalived's lvs_sync_daemon): lvsd replaces only one it can see with other settings".into(),
        },
        (Request::DelDaemon(_), Errno::ESRCH) => Error::Explained {
            op,
            errno,
            why: "no such sync daemon runs".into(),
        },
        (Request::SetDest(k, d, _) | Request::DelDest(k, d), Errno::ENOENT) => Error::NotFound {
            op,
            object: format!("real server {d} of {k}"),
            errno,
        },
        _ => Error::Kernel { op, errno },
    }
}

impl Client {
    /// Opens the socket and resolves the IPVS family.
    ///
    /// Fails with [`Error::ModuleNotLoaded`] when the kernel has no IPVS family.
    pub async fn connect() -> Result<Client, Error> {
        let op = "open the IPVS netlink socket";
        let mut sock = TokioSocket::new(NETLINK_GENERIC).map_err(io_err(op))?;
        sock.socket_mut().bind_auto().map_err(io_err(op))?;
        let s = sock.socket_ref();
        // Errors without an echo of the request: smaller replies, more of them fit.
        let _ = s.set_cap_ack(true);
        for force_ok in [
            setsockopt(&s.as_fd(), sockopt::RcvBufForce, &SOCKET_BUFFER).is_ok(),
            setsockopt(&s.as_fd(), sockopt::SndBufForce, &SOCKET_BUFFER).is_ok(),
        ] {
            if !force_ok {
                // Without CAP_NET_ADMIN the forced sizes fail; the normal ones are capped by
                // net.core.{r,w}mem_max, and chunks shrink to match below.
                let _ = setsockopt(&s.as_fd(), sockopt::RcvBuf, &SOCKET_BUFFER);
                let _ = setsockopt(&s.as_fd(), sockopt::SndBuf, &SOCKET_BUFFER);
            }
        }
        let rcvbuf = s.get_rx_buf_sz().unwrap_or(212_992);
        let mut client = Client {
            sock,
            family_id: 0,
            seq: 1,
            tx: Vec::with_capacity(CHUNK_BYTES + 4096),
            rx: Vec::with_capacity(RX_BYTES),
            chunk_msgs: (rcvbuf / ERROR_REPLY_COST).clamp(16, 4096),
            writes: 0,
        };
        client.family_id = client.resolve_family().await?;
        Ok(client)
    }

    /// The generic-netlink ID the kernel gave the IPVS family.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// How many write messages this client has sent to the kernel; lets callers prove that a
    /// no-op reconcile wrote nothing.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    fn next_seq(&mut self, n: u32) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n.max(1));
        if self.seq == 0 {
            self.seq = 1;
        }
        s
    }

    async fn resolve_family(&mut self) -> Result<u16, Error> {
        let op = "resolve the IPVS generic-netlink family";
        let seq = self.next_seq(1);
        let mut genl = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_string())],
        });
        genl.finalize();
        self.tx.clear();
        push_message(&mut self.tx, genl, NLM_F_REQUEST | NLM_F_ACK, seq);
        self.sock.send(&self.tx).await.map_err(io_err(op))?;
        let mut family = None;
        loop {
            self.recv(op).await?;
            for m in messages(&self.rx) {
                let m = m.map_err(decode_err(op))?;
                if m.sequence_number() != seq {
                    continue;
                }
                match m.message_type() {
                    NLMSG_ERROR => {
                        return match error_code(m.payload()).map_err(decode_err(op))? {
                            0 => family.ok_or_else(|| Error::Decode {
                                op: op.to_string(),
                                source: DecodeError::from("no CTRL_ATTR_FAMILY_ID in the reply"),
                            }),
                            e if e == Errno::ENOENT as i32 => Err(Error::ModuleNotLoaded),
                            e if e == Errno::EPERM as i32 => {
                                Err(Error::PermissionDenied { op: op.to_string() })
                            }
                            e => Err(Error::Kernel {
                                op: op.to_string(),
                                errno: Errno::from_raw(e),
                            }),
                        };
                    }
                    GENL_ID_CTRL => {
                        let attrs = m.payload().get(4..).unwrap_or_default();
                        family = NlasIterator::new(attrs)
                            .filter_map(Result::ok)
                            .find(|n| n.kind() == CTRL_ATTR_FAMILY_ID)
                            .and_then(|n| parse_u16(n.value()).ok());
                    }
                    _ => {}
                }
            }
        }
    }

    async fn recv(&mut self, op: &str) -> Result<(), Error> {
        self.rx.clear();
        // The kernel answers during `sendmsg` and continues a dump during `recvmsg`, so the
        // reply is usually queued already: read it straight away (the socket does not block)
        // and wait for readiness only when there is nothing yet.
        match self.sock.socket_ref().recv(&mut self.rx, 0) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.rx.clear();
                match tokio::time::timeout(TIMEOUT, self.sock.recv(&mut self.rx)).await {
                    Ok(r) => r.map_err(io_err(op)),
                    Err(_) => Err(io_err(op)(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the kernel did not answer within {}s", TIMEOUT.as_secs()),
                    ))),
                }
            }
            Err(e) => Err(io_err(op)(e)),
        }
    }

    fn push(&mut self, msg: IpvsMessage, flags: u16, seq: u32) {
        let mut genl = GenlMessage::from_payload(msg);
        genl.set_resolved_family_id(self.family_id);
        push_message(&mut self.tx, genl, flags, seq);
    }

    /// Runs `requests` in order and returns one result per request. A failing request does not
    /// stop the others, and its error names the request and keeps the kernel's errno.
    pub async fn execute(&mut self, requests: &[Request]) -> BatchResult {
        let mut results: Vec<Option<Result<(), Error>>> = std::iter::repeat_with(|| None)
            .take(requests.len())
            .collect();
        let mut next = 0;
        while next < requests.len() {
            let start = next;
            let base = self.seq;
            self.tx.clear();
            let mut last_off = 0;
            while next < requests.len()
                && next - start < self.chunk_msgs
                && (next == start || self.tx.len() < CHUNK_BYTES)
            {
                last_off = self.tx.len();
                let seq = base.wrapping_add((next - start) as u32);
                crate::wire::push_request(
                    &mut self.tx,
                    &requests[next],
                    self.family_id,
                    NLM_F_REQUEST,
                    seq,
                );
                next += 1;
            }
            let count = next - start;
            self.next_seq(count as u32);
            // Ask an ack of the chunk's last message only: its answer closes the chunk.
            let mut last = NetlinkBuffer::new(&mut self.tx[last_off..]);
            last.set_flags(NLM_F_REQUEST | NLM_F_ACK);
            self.writes += count as u64;
            if let Err(e) = self
                .run_chunk(base, &requests[start..next], &mut results[start..next])
                .await
            {
                // The socket failed: nothing more is known about the unanswered requests.
                let msg = e.to_string();
                for (r, slot) in requests[start..].iter().zip(results[start..].iter_mut()) {
                    if slot.is_none() {
                        *slot = Some(Err(Error::Io {
                            op: r.to_string(),
                            source: std::io::Error::other(msg.clone()),
                        }));
                    }
                }
                break;
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
    }

    async fn run_chunk(
        &mut self,
        base: u32,
        reqs: &[Request],
        results: &mut [Option<Result<(), Error>>],
    ) -> Result<(), Error> {
        let op = "send an IPVS batch";
        self.sock.send(&self.tx).await.map_err(io_err(op))?;
        let last = base.wrapping_add(reqs.len() as u32 - 1);
        loop {
            self.recv(op).await?;
            let mut done = false;
            for m in messages(&self.rx) {
                let m = m.map_err(decode_err(op))?;
                let idx = m.sequence_number().wrapping_sub(base) as usize;
                if m.message_type() != NLMSG_ERROR || idx >= reqs.len() {
                    continue;
                }
                let code = error_code(m.payload()).map_err(decode_err(op))?;
                if code != 0 {
                    results[idx] = Some(Err(request_error(&reqs[idx], Errno::from_raw(code))));
                }
                done |= m.sequence_number() == last;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Runs one request and waits for its result.
    pub async fn apply(&mut self, request: Request) -> Result<(), Error> {
        self.execute(std::slice::from_ref(&request))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Sends one read request and hands every IPVS message of its reply (all parts of a dump) to
    /// `each` as its command and the bytes of its attributes.
    async fn query_each<F>(
        &mut self,
        msg: IpvsMessage,
        dump: bool,
        op: &str,
        each: F,
    ) -> Result<(), Error>
    where
        F: FnMut(u8, &[u8]) -> Result<(), DecodeError>,
    {
        let seq = self.next_seq(1);
        let flags = if dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        };
        self.tx.clear();
        self.push(msg, flags, seq);
        self.exchange(seq, op, each).await
    }

    /// Sends what `tx` holds and hands every IPVS message of the reply to request `seq` to
    /// `each`, until the dump ends or the kernel acknowledges.
    async fn exchange<F>(&mut self, seq: u32, op: &str, mut each: F) -> Result<(), Error>
    where
        F: FnMut(u8, &[u8]) -> Result<(), DecodeError>,
    {
        self.sock.send(&self.tx).await.map_err(io_err(op))?;
        let mut parts = 0u32;
        loop {
            self.recv(op).await?;
            if walk_replies(&self.rx, seq, self.family_id, op, &mut each)? {
                return Ok(());
            }
            // A long dump never makes the task wait (the kernel fills each read as it is
            // made): it gives the runtime its turn every few parts, so that whatever the
            // caller races it against is looked at (the daemon's look for a waiting edit
            // during the listing of 100,000 services, 2-5 s in the test VM).
            parts += 1;
            if parts % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Sends one read request and collects the typed IPVS messages of its reply.
    async fn query(
        &mut self,
        msg: IpvsMessage,
        dump: bool,
        op: &str,
    ) -> Result<Vec<IpvsMessage>, Error> {
        let mut out = Vec::new();
        self.query_each(msg, dump, op, |cmd, attrs| {
            let header = netlink_packet_generic::GenlHeader {
                cmd,
                version: IPVS_GENL_VERSION,
            };
            out.push(IpvsMessage::parse_with_param(attrs, header)?);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Every virtual service (`ipvsadm -Ln` without the destinations).
    ///
    /// A dump is a snapshot only when nothing else changes IPVS meanwhile: the kernel resumes a
    /// multi-part service dump by a position in its table of *every* network namespace, so
    /// services added or removed in any namespace during a dump (of more than about a hundred
    /// services) can make it skip or repeat entries. Callers that act on a dump verify what
    /// they write, or dump again.
    pub async fn services(&mut self) -> Result<Vec<Service>, Error> {
        let op = "list IPVS services";
        let mut out = Vec::new();
        // Decoded straight from the reply's bytes, like destinations.
        self.query_each(
            IpvsMessage::new(IpvsCmd::GetService, vec![]),
            true,
            op,
            |_, attrs| {
                for nla in NlasIterator::new(attrs) {
                    let nla = nla?;
                    if nla.kind() == IPVS_CMD_ATTR_SERVICE {
                        out.push(service_from_bytes(nla.value())?);
                    }
                }
                Ok(())
            },
        )
        .await?;
        Ok(out)
    }

    /// One virtual service, or `None` when the kernel has no such service.
    pub async fn service(&mut self, key: &ServiceKey) -> Result<Option<Service>, Error> {
        let op = format!("get service {key}");
        let msg = IpvsMessage::new(
            IpvsCmd::GetService,
            vec![IpvsAttr::Service(service_key_attrs(key))],
        );
        match self.query(msg, false, &op).await {
            Ok(replies) => replies
                .iter()
                .flat_map(|m| m.attrs.iter())
                .find_map(|a| match a {
                    IpvsAttr::Service(s) => Some(service_from_attrs(s).map_err(decode_err(&op))),
                    _ => None,
                })
                .transpose(),
            Err(Error::Kernel {
                errno: Errno::ESRCH,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The destinations of one service (none when the service does not exist: the kernel answers
    /// a destination dump of a missing service with an empty dump). Decodes straight from the
    /// reply's bytes: on a large table this is most of the work of a dump.
    pub async fn dests(&mut self, key: &ServiceKey) -> Result<Vec<Dest>, Error> {
        // A table read sends one of these per service: the request is written straight into
        // the buffer, and the operation named only if it fails.
        let seq = self.next_seq(1);
        self.tx.clear();
        crate::wire::push_get_dests(
            &mut self.tx,
            key,
            self.family_id,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        );
        let af = Some(key.family().to_raw());
        let mut out = Vec::new();
        self.exchange(seq, "list real servers", |_, attrs| {
            push_dests(&mut out, attrs, af)
        })
        .await
        .map_err(|e| e.with_op(|| format!("list real servers of {key}")))?;
        Ok(out)
    }

    /// The destinations of each of `keys`, in order. A large table is read by worker threads
    /// with a socket each (the kernel answers one destination dump per service, and the
    /// answering is CPU work that spreads over cores); a small one over this socket.
    pub async fn dests_of(&mut self, keys: &[ServiceKey]) -> Result<Vec<Vec<Dest>>, Error> {
        self.dests_with(keys, |d| d).await
    }

    /// [`Client::dests_of`], handing each service's destinations to `f` as soon as they are
    /// read (a large table is never held twice, once as `Dest`s and once as what the caller
    /// makes of them).
    pub async fn dests_with<T: Send + 'static>(
        &mut self,
        keys: &[ServiceKey],
        f: fn(Vec<Dest>) -> T,
    ) -> Result<Vec<T>, Error> {
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(4);
        if keys.len() < PARALLEL_FROM || workers < 2 {
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                out.push(f(self.dests(k).await?));
            }
            return Ok(out);
        }
        let family_id = self.family_id;
        let per = keys.len().div_ceil(workers);
        let jobs: Vec<_> = keys
            .chunks(per)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::with_capacity(chunk.len());
                    let mut dests = Vec::new();
                    read_dests_blocking(family_id, &chunk, |i, attrs| match attrs {
                        Some(a) => push_dests(&mut dests, a, Some(chunk[i].family().to_raw())),
                        None => {
                            out.push(f(std::mem::take(&mut dests)));
                            Ok(())
                        }
                    })?;
                    Ok::<_, Error>(out)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for job in jobs {
            let part = job.await.map_err(|e| Error::Io {
                op: "list real servers".to_owned(),
                source: std::io::Error::other(e.to_string()),
            })??;
            out.extend(part);
        }
        Ok(out)
    }

    /// [`Client::dests_with`] for a table read again: each service comes with the digest of
    /// its destinations as last read (see [`crate::convert::fold_dest_digest`]), and one whose
    /// destinations still fold to it is not decoded (`None`): the caller keeps what it made of
    /// them last time. Returns each service's digest now, and what `f` made of the ones that
    /// changed (or had no digest).
    pub async fn dests_if_changed<T: Send + 'static>(
        &mut self,
        keys: &[(ServiceKey, Option<u64>)],
        f: fn(Vec<Dest>) -> T,
    ) -> Result<Vec<(u64, Option<T>)>, Error> {
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(4);
        if keys.len() < PARALLEL_FROM || workers < 2 {
            let mut out = Vec::with_capacity(keys.len());
            let mut d = Digesting::default();
            for (k, prev) in keys {
                let seq = self.next_seq(1);
                self.tx.clear();
                crate::wire::push_get_dests(
                    &mut self.tx,
                    k,
                    self.family_id,
                    NLM_F_REQUEST | NLM_F_DUMP,
                    seq,
                );
                d.start();
                self.exchange(seq, "list real servers", |_, attrs| d.part(attrs))
                    .await
                    .map_err(|e| e.with_op(|| format!("list real servers of {k}")))?;
                out.push(d.finish(k, *prev, f)?);
            }
            return Ok(out);
        }
        let family_id = self.family_id;
        let per = keys.len().div_ceil(workers);
        let jobs: Vec<_> = keys
            .chunks(per)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                tokio::task::spawn_blocking(move || {
                    let services: Vec<ServiceKey> = chunk.iter().map(|(k, _)| *k).collect();
                    let mut out = Vec::with_capacity(chunk.len());
                    let mut d = Digesting::default();
                    d.start();
                    let mut failed = None;
                    read_dests_blocking(family_id, &services, |i, attrs| match attrs {
                        Some(a) => d.part(a),
                        None => {
                            match d.finish(&chunk[i].0, chunk[i].1, f) {
                                Ok(r) => out.push(r),
                                Err(e) => failed = Some(e),
                            }
                            d.start();
                            Ok(())
                        }
                    })?;
                    match failed {
                        Some(e) => Err(e),
                        None => Ok::<_, Error>(out),
                    }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for job in jobs {
            let part = job.await.map_err(|e| Error::Io {
                op: "list real servers".to_owned(),
                source: std::io::Error::other(e.to_string()),
            })??;
            out.extend(part);
        }
        Ok(out)
    }

    /// The whole table: every service with its destinations, in kernel order.
    pub async fn dump(&mut self) -> Result<Vec<(Service, Vec<Dest>)>, Error> {
        let services = self.services().await?;
        let keys: Vec<ServiceKey> = services.iter().map(|s| s.key).collect();
        let dests = self.dests_of(&keys).await?;
        Ok(services.into_iter().zip(dests).collect())
    }

    /// Version and connection-table size.
    pub async fn info(&mut self) -> Result<Info, Error> {
        let op = "get IPVS info";
        let replies = self
            .query(IpvsMessage::new(IpvsCmd::GetInfo, vec![]), false, op)
            .await?;
        let (mut version, mut size) = (None, None);
        for a in replies.iter().flat_map(|m| m.attrs.iter()) {
            match a {
                IpvsAttr::InfoVersion(v) => version = Some(*v),
                IpvsAttr::InfoConnTabSize(v) => size = Some(*v),
                _ => {}
            }
        }
        match (version, size) {
            (Some(version), Some(conn_tab_size)) => Ok(Info {
                version,
                conn_tab_size,
            }),
            _ => Err(Error::Decode {
                op: op.to_string(),
                source: DecodeError::from("reply lacks version or connection table size"),
            }),
        }
    }

    /// Connection timeouts.
    pub async fn timeouts(&mut self) -> Result<Timeouts, Error> {
        let op = "get IPVS timeouts";
        let replies = self
            .query(IpvsMessage::new(IpvsCmd::GetConfig, vec![]), false, op)
            .await?;
        let mut t = Timeouts::default();
        for a in replies.iter().flat_map(|m| m.attrs.iter()) {
            match a {
                IpvsAttr::TimeoutTcp(v) => t.tcp = *v,
                IpvsAttr::TimeoutTcpFin(v) => t.tcp_fin = *v,
                IpvsAttr::TimeoutUdp(v) => t.udp = *v,
                _ => {}
            }
        }
        Ok(t)
    }

    /// The running sync daemons.
    pub async fn daemons(&mut self) -> Result<Vec<SyncDaemon>, Error> {
        let op = "list IPVS sync daemons";
        let replies = self
            .query(IpvsMessage::new(IpvsCmd::GetDaemon, vec![]), true, op)
            .await?;
        blocks(&replies, op, |a| match a {
            IpvsAttr::Daemon(d) => Some(daemon_from_attrs(d)),
            _ => None,
        })
    }
}

/// Decodes the blocks `pick` selects from every message of a reply.
fn blocks<T>(
    replies: &[IpvsMessage],
    op: &str,
    pick: impl Fn(&IpvsAttr) -> Option<Result<T, DecodeError>>,
) -> Result<Vec<T>, Error> {
    replies
        .iter()
        .flat_map(|m| m.attrs.iter())
        .filter_map(pick)
        .map(|r| r.map_err(decode_err(op)))
        .collect()
}

/// Hands every IPVS message in `rx` that answers request `seq` to `each`; true once the answer
/// is complete (the dump's end, or the kernel's acknowledgement).
fn walk_replies<F>(
    rx: &[u8],
    seq: u32,
    family_id: u16,
    op: &str,
    each: &mut F,
) -> Result<bool, Error>
where
    F: FnMut(u8, &[u8]) -> Result<(), DecodeError>,
{
    for m in messages(rx) {
        let m = m.map_err(decode_err(op))?;
        if m.sequence_number() != seq {
            continue;
        }
        match m.message_type() {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = error_code(m.payload()).map_err(decode_err(op))?;
                return match code {
                    0 => Ok(true),
                    c if c == Errno::EPERM as i32 => {
                        Err(Error::PermissionDenied { op: op.to_string() })
                    }
                    c => Err(Error::Kernel {
                        op: op.to_string(),
                        errno: Errno::from_raw(c),
                    }),
                };
            }
            t if t == family_id => {
                let payload = m.payload();
                let (cmd, attrs) = match (payload.first(), payload.get(4..)) {
                    (Some(cmd), Some(attrs)) => (*cmd, attrs),
                    _ => {
                        return Err(decode_err(op)(DecodeError::buffer_too_small(
                            payload.len(),
                            4,
                        )));
                    }
                };
                each(cmd, attrs).map_err(decode_err(op))?;
            }
            _ => {}
        }
    }
    Ok(false)
}

/// Collects the destinations in one reply's attributes.
fn push_dests(out: &mut Vec<Dest>, attrs: &[u8], af: Option<u16>) -> Result<(), DecodeError> {
    for nla in NlasIterator::new(attrs) {
        let nla = nla?;
        if nla.kind() == IPVS_CMD_ATTR_DEST {
            out.push(dest_from_bytes(nla.value(), af)?);
        }
    }
    Ok(())
}

/// Reads the destinations of `keys` over a socket of its own, blocking: one of the workers of
/// [`Client::dests_of`] and [`Client::dests_if_changed`]. The attributes of every reply message
/// of the `i`-th service go to `each(i, Some(attrs))` as they arrive, and `each(i, None)`
/// follows its last.
fn read_dests_blocking(
    family_id: u16,
    keys: &[ServiceKey],
    mut each: impl FnMut(usize, Option<&[u8]>) -> Result<(), DecodeError>,
) -> Result<(), Error> {
    let op = "list real servers";
    let mut sock = netlink_sys::Socket::new(NETLINK_GENERIC).map_err(io_err(op))?;
    sock.bind_auto().map_err(io_err(op))?;
    let _ = sock.set_cap_ack(true);
    let timeout = nix::sys::time::TimeVal::new(TIMEOUT.as_secs() as i64, 0);
    setsockopt(&sock.as_fd(), sockopt::ReceiveTimeout, &timeout).map_err(|e| Error::Io {
        op: op.to_owned(),
        source: e.into(),
    })?;
    let mut tx = Vec::with_capacity(128);
    let mut rx: Vec<u8> = Vec::with_capacity(RX_BYTES);
    for (i, key) in keys.iter().enumerate() {
        let seq = i as u32 + 1;
        tx.clear();
        crate::wire::push_get_dests(&mut tx, key, family_id, NLM_F_REQUEST | NLM_F_DUMP, seq);
        sock.send(&tx, 0).map_err(io_err(op))?;
        loop {
            rx.clear();
            sock.recv(&mut rx, 0).map_err(io_err(op))?;
            let finished = walk_replies(&rx, seq, family_id, op, &mut |_, attrs| {
                each(i, Some(attrs))
            })
            .map_err(|e| e.with_op(|| format!("list real servers of {key}")))?;
            if finished {
                break;
            }
        }
        each(i, None).map_err(|e| Error::Decode {
            op: format!("list real servers of {key}"),
            source: e,
        })?;
    }
    Ok(())
}

/// One service's destinations as read for [`Client::dests_if_changed`]: the digest so far and
/// the raw attributes of its replies (decoded only if the digest changed).
#[derive(Default)]
struct Digesting {
    digest: u64,
    raw: Vec<u8>,
    /// Where each reply's attributes end in `raw`.
    ends: Vec<usize>,
}

impl Digesting {
    fn start(&mut self) {
        self.digest = DIGEST_START;
        self.raw.clear();
        self.ends.clear();
    }

    fn part(&mut self, attrs: &[u8]) -> Result<(), DecodeError> {
        for nla in NlasIterator::new(attrs) {
            let nla = nla?;
            if nla.kind() == IPVS_CMD_ATTR_DEST {
                fold_dest_digest(&mut self.digest, nla.value())?;
            }
        }
        self.raw.extend_from_slice(attrs);
        self.ends.push(self.raw.len());
        Ok(())
    }

    /// The digest, and what `f` makes of the destinations unless they fold to `prev`.
    fn finish<T>(
        &self,
        key: &ServiceKey,
        prev: Option<u64>,
        f: fn(Vec<Dest>) -> T,
    ) -> Result<(u64, Option<T>), Error> {
        if prev == Some(self.digest) {
            return Ok((self.digest, None));
        }
        let af = Some(key.family().to_raw());
        let mut dests = Vec::new();
        let mut from = 0;
        for end in &self.ends {
            push_dests(&mut dests, &self.raw[from..*end], af).map_err(|e| Error::Decode {
                op: format!("list real servers of {key}"),
                source: e,
            })?;
            from = *end;
        }
        Ok((self.digest, Some(f(dests))))
    }
}

/// Parts of a dump read between two turns given to the runtime (see `Client::exchange`).
const YIELD_EVERY: u32 = 4;

/// Services above which a table read spreads over worker threads.
const PARALLEL_FROM: usize = 512;
