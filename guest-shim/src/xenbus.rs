//! The front-end side of the xenbus handshake (io/xenbus.h), shared by the
//! split-driver front ends ([`crate::blkfront`], [`crate::netfront`]):
//! reading a peer's nodes (which it may have filled with anything),
//! waiting for its `state`, and publishing several nodes in one
//! transaction.

use alloc::format;
use alloc::string::String;

use pv_abi::xenbus::XenbusState;

use crate::time;
use crate::xenstore::{XenStore, XsError};

const MS: u64 = 1_000_000;
/// How often a transaction that conflicts (EAGAIN) is retried.
const TX_RETRIES: u32 = 16;

/// Why reading or waiting failed; each front end's error type converts
/// from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XenbusError {
    /// A XenStore request failed.
    Xenstore(XsError),
    /// A node that must be a number (or a state) is not.
    BadNode(&'static str),
    /// The state wanted was not reached before the deadline.
    Timeout,
    /// The peer's `state` node vanished (or never appeared) by the
    /// deadline.
    Gone,
}

impl From<XsError> for XenbusError {
    fn from(e: XsError) -> Self {
        XenbusError::Xenstore(e)
    }
}

/// Whether a XenStore error is the server's ENOENT.
pub fn is_enoent(e: &XsError) -> bool {
    matches!(e, XsError::Server(s) if s == "ENOENT")
}

/// A node's text, without the NUL some writers append and surrounding
/// blanks; `None` if absent.
pub fn read_opt(xs: &mut XenStore, path: &str) -> Result<Option<String>, XenbusError> {
    match xs.read(path) {
        Ok(s) => Ok(Some(String::from(s.trim_end_matches('\0').trim()))),
        Err(e) if is_enoent(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A decimal node; absent is `None`, anything but a number is
/// `BadNode(name)`.
pub fn read_num(
    xs: &mut XenStore,
    path: &str,
    name: &'static str,
) -> Result<Option<u64>, XenbusError> {
    match read_opt(xs, path)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| XenbusError::BadNode(name)),
    }
}

/// A 0/1 feature node (absent = 0; any other number counts as set).
pub fn read_flag(xs: &mut XenStore, path: &str, name: &'static str) -> Result<bool, XenbusError> {
    Ok(read_num(xs, path, name)?.unwrap_or(0) != 0)
}

/// The state a peer published (`None` when absent or not a state).
pub fn read_state(xs: &mut XenStore, path: &str) -> Result<Option<XenbusState>, XenbusError> {
    Ok(read_opt(xs, path)?.and_then(|s| XenbusState::parse(&s)))
}

/// Polls `<dir>/state` until `done` says stop (Ok(true): reached,
/// Ok(false): keep waiting, Err: give up), or the deadline (system time,
/// ns) passes: then `Gone` if the node is absent, else `Timeout`. It
/// polls rather than waiting for a watch event because
/// `XenStore::next_event` has no time-out; the interval grows from 1 ms
/// to 16 ms, which a handshake never notices.
pub fn wait_state<E: From<XenbusError>>(
    xs: &mut XenStore,
    dir: &str,
    deadline: u64,
    mut done: impl FnMut(&mut XenStore, Option<XenbusState>) -> Result<bool, E>,
) -> Result<XenbusState, E> {
    let path = format!("{dir}/state");
    let mut interval = MS;
    loop {
        let state = read_state(xs, &path)?;
        if done(xs, state)? {
            return Ok(state.unwrap_or(XenbusState::Unknown));
        }
        let now = time::system_time_ns();
        if now >= deadline {
            return Err(if state.is_none() {
                XenbusError::Gone.into()
            } else {
                XenbusError::Timeout.into()
            });
        }
        time::sleep_ns(interval.min(deadline.saturating_sub(now)));
        interval = (interval * 2).min(16 * MS);
    }
}

/// Writes every `(path, value)` in one transaction, retried while it
/// conflicts (EAGAIN), so that a backend watching any of them sees all
/// or none.
pub fn write_all(xs: &mut XenStore, nodes: &[(String, String)]) -> Result<(), XsError> {
    for _ in 0..TX_RETRIES {
        let tx = xs.transaction_start()?;
        for (path, value) in nodes {
            if let Err(e) = xs.write_tx(tx, path, value) {
                let _ = xs.transaction_end(tx, false);
                return Err(e);
            }
        }
        match xs.transaction_end(tx, true) {
            Ok(()) => return Ok(()),
            Err(XsError::Server(s)) if s == "EAGAIN" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(XsError::Server(String::from("EAGAIN")))
}
