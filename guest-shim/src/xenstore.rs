//! XenStore client: the `xs_wire` protocol over the shared ring page and
//! event channel the domain builder gives every DomU
//! (`HVM_PARAM_STORE_PFN/EVTCHN`), with watches and transactions.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use pv_abi::hypercall::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
use pv_abi::ring;
use pv_abi::xenstore::ring::{REQ, REQ_CONS, REQ_PROD, RSP, RSP_CONS, RSP_PROD, SIZE as RING_SIZE};
use pv_abi::xenstore::{HEADER_LEN as HEADER, PAYLOAD_MAX};

use crate::{events, hypercall};

pub use pv_abi::xenstore::msg;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XsError {
    /// The server answered with this errno name ("ENOENT", "EACCES", ...).
    Server(String),
    /// No store ring (running bare, or the builder gave none).
    NoStore,
    TooBig,
    Malformed,
}

pub struct XenStore {
    ring: *mut u8,
    port: u32,
    /// Whether waits sleep on the port (shared info is mapped, the port
    /// masked) rather than yield.
    sleeps: bool,
    next_req: u32,
    /// Watch events that arrived while waiting for a reply.
    events: VecDeque<(String, String)>,
}

fn ring_u32(ring: *mut u8, offset: usize) -> &'static AtomicU32 {
    // SAFETY: the ring page is mapped (identity) and these are aligned
    // u32 fields of xenstore_domain_interface shared with the server.
    unsafe { AtomicU32::from_ptr(ring.add(offset) as *mut u32) }
}

impl XenStore {
    /// Connects to the store the hypervisor advertises.
    pub fn connect() -> Result<Self, XsError> {
        let pfn = hypercall::hvm_get_param(HVM_PARAM_STORE_PFN).map_err(|_| XsError::NoStore)?;
        let port =
            hypercall::hvm_get_param(HVM_PARAM_STORE_EVTCHN).map_err(|_| XsError::NoStore)?;
        if pfn == 0 {
            return Err(XsError::NoStore);
        }
        let port = port as u32;
        // Masked, the port's events only set its pending bit, which
        // SCHEDOP_poll sees and no upcall handler takes away.
        let sleeps = crate::shared_info::map().is_ok();
        if sleeps {
            events::mask_port(port);
        }
        Ok(Self {
            ring: (pfn << 12) as *mut u8,
            port,
            sleeps,
            next_req: 1,
            events: VecDeque::new(),
        })
    }

    /// Sleeps until the server signals the port (it moved the ring), or
    /// at most `WAIT_NS`; the pending bit was cleared before the ring was
    /// last looked at, so a signal since then ends the poll at once.
    fn wait_for_server(&self) {
        /// A bound on a wait, should a signal ever be missed.
        const WAIT_NS: u64 = 10_000_000;
        let deadline = crate::time::system_time_ns().saturating_add(WAIT_NS);
        if !self.sleeps || hypercall::sched_poll(&[self.port], deadline).is_err() {
            let _ = hypercall::sched_yield();
        }
    }

    /// Before a look at the ring: forget the signals already seen.
    fn clear_signal(&self) {
        if self.sleeps {
            events::clear_pending(self.port);
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            self.clear_signal();
            let cons = ring_u32(self.ring, REQ_CONS).load(Ordering::Acquire);
            let prod = ring_u32(self.ring, REQ_PROD).load(Ordering::Acquire);
            // A server that corrupts the indices gets nothing more.
            let Some(space) = ring::free_slots(prod, cons, RING_SIZE) else {
                return;
            };
            if space == 0 {
                let _ = events::send(self.port);
                self.wait_for_server();
                continue;
            }
            let n = (space as usize).min(bytes.len() - done);
            // SAFETY: req[] of the ring page; n <= the free slots <= its size.
            unsafe {
                crate::byte_ring::put(self.ring, REQ, RING_SIZE, prod, &bytes[done..done + n])
            };
            ring_u32(self.ring, REQ_PROD).store(prod.wrapping_add(n as u32), Ordering::Release);
            done += n;
        }
        let _ = events::send(self.port);
    }

    fn get(&mut self, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            self.clear_signal();
            let cons = ring_u32(self.ring, RSP_CONS).load(Ordering::Acquire);
            let prod = ring_u32(self.ring, RSP_PROD).load(Ordering::Acquire);
            let Some(available) = ring::unconsumed(prod, cons, RING_SIZE) else {
                return;
            };
            let available = available as usize;
            if available == 0 {
                self.wait_for_server();
                continue;
            }
            let n = available.min(buf.len() - done);
            // SAFETY: rsp[] of the ring page; n <= the unconsumed bytes <= its size.
            unsafe {
                crate::byte_ring::take(self.ring, RSP, RING_SIZE, cons, &mut buf[done..done + n])
            };
            ring_u32(self.ring, RSP_CONS).store(cons.wrapping_add(n as u32), Ordering::SeqCst);
            done += n;
            // The server waits for room only on a full ring: tell it
            // then, and only then (`room_news_due`, Linux's xb_read rule).
            let prod = ring_u32(self.ring, RSP_PROD).load(Ordering::SeqCst);
            if ring::room_news_due(prod, cons, RING_SIZE) {
                let _ = events::send(self.port);
            }
        }
    }

    /// Reads one message: (type, req_id, payload).
    fn receive(&mut self) -> Result<(u32, u32, Vec<u8>), XsError> {
        let mut header = [0u8; HEADER];
        self.get(&mut header);
        let word =
            |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
        let (kind, req_id, len) = (word(0), word(1), word(3) as usize);
        if len > PAYLOAD_MAX {
            return Err(XsError::Malformed);
        }
        let mut payload = alloc::vec![0u8; len];
        self.get(&mut payload);
        Ok((kind, req_id, payload))
    }

    /// One request and its reply (watch events met on the way are kept).
    pub fn request(&mut self, kind: u32, tx: u32, parts: &[&[u8]]) -> Result<Vec<u8>, XsError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > PAYLOAD_MAX {
            return Err(XsError::TooBig);
        }
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let mut msg = Vec::with_capacity(HEADER + len);
        for w in [kind, req_id, tx, len as u32] {
            msg.extend_from_slice(&w.to_le_bytes());
        }
        for p in parts {
            msg.extend_from_slice(p);
        }
        self.put(&msg);
        loop {
            let (rkind, rid, payload) = self.receive()?;
            if rkind == msg::WATCH_EVENT {
                self.events.push_back(split_event(&payload));
                continue;
            }
            if rid != req_id {
                continue;
            }
            if rkind == msg::ERROR {
                let name = payload.split(|&b| b == 0).next().unwrap_or(&[]);
                return Err(XsError::Server(String::from_utf8_lossy(name).into_owned()));
            }
            return Ok(payload);
        }
    }

    fn path_arg(path: &str) -> Vec<u8> {
        let mut v = Vec::from(path.as_bytes());
        v.push(0);
        v
    }

    /// Writes our node `path` (absolute, under our home) and lets every
    /// domain read it (owner us, others `r`): a flag a peer polls for.
    pub fn publish(&mut self, path: &str, value: &str) -> Result<(), XsError> {
        let me = crate::domid().unwrap_or(0);
        self.write(path, value)?;
        self.request(
            msg::SET_PERMS,
            0,
            &[alloc::format!("{path}\0r{me}\0").as_bytes()],
        )
        .map(|_| ())
    }

    /// Reads `path` until it exists (and we may read it), yielding the
    /// vCPU between tries; `None` after `tries` tries.
    pub fn await_node(&mut self, path: &str, tries: u32) -> Option<String> {
        for _ in 0..tries {
            if let Ok(value) = self.read(path) {
                return Some(value);
            }
            let _ = crate::hypercall::sched_yield();
        }
        None
    }

    pub fn read(&mut self, path: &str) -> Result<String, XsError> {
        self.read_tx(0, path)
    }

    pub fn read_tx(&mut self, tx: u32, path: &str) -> Result<String, XsError> {
        let v = self.request(msg::READ, tx, &[&Self::path_arg(path)])?;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    pub fn write(&mut self, path: &str, value: &str) -> Result<(), XsError> {
        self.write_tx(0, path, value)
    }

    pub fn write_tx(&mut self, tx: u32, path: &str, value: &str) -> Result<(), XsError> {
        self.request(msg::WRITE, tx, &[&Self::path_arg(path), value.as_bytes()])
            .map(|_| ())
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        self.request(msg::MKDIR, 0, &[&Self::path_arg(path)])
            .map(|_| ())
    }

    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        self.request(msg::RM, 0, &[&Self::path_arg(path)])
            .map(|_| ())
    }

    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, XsError> {
        let v = self.request(msg::DIRECTORY, 0, &[&Self::path_arg(path)])?;
        Ok(v.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    pub fn get_domain_path(&mut self, domid: u16) -> Result<String, XsError> {
        let id = alloc::format!("{domid}");
        let v = self.request(msg::GET_DOMAIN_PATH, 0, &[&Self::path_arg(&id)])?;
        let s = v.split(|&b| b == 0).next().unwrap_or(&[]);
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.request(
            msg::WATCH,
            0,
            &[&Self::path_arg(path), &Self::path_arg(token)],
        )
        .map(|_| ())
    }

    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.request(
            msg::UNWATCH,
            0,
            &[&Self::path_arg(path), &Self::path_arg(token)],
        )
        .map(|_| ())
    }

    pub fn transaction_start(&mut self) -> Result<u32, XsError> {
        let v = self.request(msg::TRANSACTION_START, 0, &[b"\0"])?;
        let s = core::str::from_utf8(v.split(|&b| b == 0).next().unwrap_or(&[]))
            .map_err(|_| XsError::Malformed)?;
        s.parse().map_err(|_| XsError::Malformed)
    }

    /// Ends a transaction; `Err(Server("EAGAIN"))` means a conflict.
    pub fn transaction_end(&mut self, tx: u32, commit: bool) -> Result<(), XsError> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(msg::TRANSACTION_END, tx, &[arg]).map(|_| ())
    }

    /// The next watch event (path, token), waiting for one.
    pub fn next_event(&mut self) -> Result<(String, String), XsError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            let (kind, _, payload) = self.receive()?;
            if kind == msg::WATCH_EVENT {
                self.events.push_back(split_event(&payload));
            }
        }
    }
}

fn split_event(payload: &[u8]) -> (String, String) {
    let mut parts = payload
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}
