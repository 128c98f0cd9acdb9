//! The XenStore wire protocol (io/xs_wire.h): the message header
//! `xsd_sockmsg` and its types, the error names sent in XS_ERROR replies,
//! size limits, and the shared ring page `xenstore_domain_interface`
//! (two 1 KiB byte rings with free-running indices, used like the
//! console's: see [`crate::console::readable`]).
//!
//! A message is the 16-byte header followed by `len` payload bytes,
//! usually NUL-separated strings.

use crate::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

abi_enum! {
    /// `enum xsd_sockmsg_type` (`XS_*`).
    pub enum XsdSockmsgType: u32 {
        /// `XS_CONTROL` (alias `XS_DEBUG`).
        Control = 0,
        Directory = 1,
        Read = 2,
        GetPerms = 3,
        Watch = 4,
        Unwatch = 5,
        TransactionStart = 6,
        TransactionEnd = 7,
        Introduce = 8,
        Release = 9,
        GetDomainPath = 10,
        Write = 11,
        Mkdir = 12,
        Rm = 13,
        SetPerms = 14,
        WatchEvent = 15,
        Error = 16,
        IsDomainIntroduced = 17,
        Resume = 18,
        SetTarget = 19,
        /// 20 was `XS_RESTRICT`, removed.
        ResetWatches = 21,
        DirectoryPart = 22,
        GetFeature = 23,
        SetFeature = 24,
        GetQuota = 25,
        SetQuota = 26,
        /// `XS_INVALID`: guaranteed never to be a valid type.
        Invalid = 0xffff,
    }
}

/// `XS_TYPE_COUNT`: valid types are below this.
pub const XS_TYPE_COUNT: u32 = 27;

/// `xsd_sockmsg_type` values as plain `u32` constants.
pub mod msg {
    pub const CONTROL: u32 = 0;
    pub const DEBUG: u32 = CONTROL;
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const GET_PERMS: u32 = 3;
    pub const WATCH: u32 = 4;
    pub const UNWATCH: u32 = 5;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const INTRODUCE: u32 = 8;
    pub const RELEASE: u32 = 9;
    pub const GET_DOMAIN_PATH: u32 = 10;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const SET_PERMS: u32 = 14;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
    pub const IS_DOMAIN_INTRODUCED: u32 = 17;
    pub const RESUME: u32 = 18;
    pub const SET_TARGET: u32 = 19;
    pub const RESET_WATCHES: u32 = 21;
    pub const DIRECTORY_PART: u32 = 22;
    pub const GET_FEATURE: u32 = 23;
    pub const SET_FEATURE: u32 = 24;
    pub const GET_QUOTA: u32 = 25;
    pub const SET_QUOTA: u32 = 26;
    pub const INVALID: u32 = 0xffff;
}

/// `struct xsd_sockmsg`: the header of every request and reply.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XsdSockmsg {
    /// `XS_*` ([`XsdSockmsgType`]).
    pub r#type: u32,
    /// Echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside transactions.
    pub tx_id: u32,
    /// Payload bytes that follow.
    pub len: u32,
}

impl XsdSockmsg {
    /// Whether `len` is within [`XENSTORE_PAYLOAD_MAX`].
    pub const fn len_ok(&self) -> bool {
        self.len as usize <= XENSTORE_PAYLOAD_MAX
    }

    /// The header at the start of `bytes`, if there are enough of them.
    pub fn parse(bytes: &[u8]) -> Option<XsdSockmsg> {
        XsdSockmsg::read_from_prefix(bytes).ok().map(|(h, _)| h)
    }
}

/// `enum xs_watch_type`: fields of an XS_WATCH_EVENT payload.
pub const XS_WATCH_PATH: u32 = 0;
/// See [`XS_WATCH_PATH`].
pub const XS_WATCH_TOKEN: u32 = 1;

/// `xsd_errors[]`: the errno names an XS_ERROR reply carries (as a
/// NUL-terminated string), in header order. New ones are only appended.
pub const XSD_ERRORS: [(Errno, &str); 16] = [
    (Errno::EINVAL, "EINVAL"),
    (Errno::EACCES, "EACCES"),
    (Errno::EEXIST, "EEXIST"),
    (Errno::EISDIR, "EISDIR"),
    (Errno::ENOENT, "ENOENT"),
    (Errno::ENOMEM, "ENOMEM"),
    (Errno::ENOSPC, "ENOSPC"),
    (Errno::EIO, "EIO"),
    (Errno::ENOTEMPTY, "ENOTEMPTY"),
    (Errno::ENOSYS, "ENOSYS"),
    (Errno::EROFS, "EROFS"),
    (Errno::EBUSY, "EBUSY"),
    (Errno::EAGAIN, "EAGAIN"),
    (Errno::EISCONN, "EISCONN"),
    (Errno::E2BIG, "E2BIG"),
    (Errno::EPERM, "EPERM"),
];

/// The XS_ERROR name for `errno`, if XenStore has one.
pub fn xsd_error_name(errno: Errno) -> Option<&'static str> {
    XSD_ERRORS
        .iter()
        .find(|&&(e, _)| e == errno)
        .map(|&(_, name)| name)
}

/// The errno an XS_ERROR name stands for (payload without its NUL).
pub fn xsd_error_from_name(name: &[u8]) -> Option<Errno> {
    XSD_ERRORS
        .iter()
        .find(|&&(_, n)| n.as_bytes() == name)
        .map(|&(e, _)| e)
}

/// `XENSTORE_PAYLOAD_MAX`: longest payload; violating it is very bad.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: longest absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: longest relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// `XENSTORE_RING_SIZE`: bytes in each of `req` and `rsp`.
pub const XENSTORE_RING_SIZE: u32 = 1024;
/// `XENSTORE_RING_IDX`.
pub type XenstoreRingIdx = u32;

/// `MASK_XENSTORE_IDX`.
pub const fn mask_xenstore_idx(idx: XenstoreRingIdx) -> usize {
    crate::ring::ring_index(idx, XENSTORE_RING_SIZE)
}

/// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`: the `error` field exists.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `XENSTORE_SERVER_FEATURE_WATCHDEPTH`.
pub const XENSTORE_SERVER_FEATURE_WATCHDEPTH: u32 = 4;
/// `XENSTORE_SERVER_FEATURE_DOMID_ANY`.
pub const XENSTORE_SERVER_FEATURE_DOMID_ANY: u32 = 8;
/// `XENSTORE_CONNECTED`: steady state.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`: reconnection in progress.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `XENSTORE_ERROR_NONE`.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `XENSTORE_ERROR_COMM`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `XENSTORE_ERROR_RINGIDX`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`: protocol violation (payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `struct xenstore_domain_interface`: the XenStore ring page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenstoreDomainInterface {
    /// Requests to the XenStore daemon.
    pub req: [u8; 1024],
    /// Replies and watch events.
    pub rsp: [u8; 1024],
    pub req_cons: XenstoreRingIdx,
    pub req_prod: XenstoreRingIdx,
    pub rsp_cons: XenstoreRingIdx,
    pub rsp_prod: XenstoreRingIdx,
    /// `XENSTORE_SERVER_FEATURE_*`.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*`.
    pub error: u32,
    /// The ring's event channel (when the server advertises it).
    pub evtchn_port: u32,
}

zeroed_default!(XenstoreDomainInterface);

/// `sizeof(struct xenstore_domain_interface)`.
pub const XENSTORE_DOMAIN_INTERFACE_SIZE: usize = 2080;

/// Offsets in the ring page and the ring size (names used by Dom0 and
/// guest-shim).
pub mod ring {
    /// [`super::XENSTORE_RING_SIZE`].
    pub const SIZE: u32 = super::XENSTORE_RING_SIZE;
    pub const REQ: usize = 0;
    pub const RSP: usize = 1024;
    pub const REQ_CONS: usize = 2048;
    pub const REQ_PROD: usize = 2052;
    pub const RSP_CONS: usize = 2056;
    pub const RSP_PROD: usize = 2060;
    pub const SERVER_FEATURES: usize = 2064;
    pub const CONNECTION: usize = 2068;
    pub const ERROR: usize = 2072;
    pub const EVTCHN_PORT: usize = 2076;
}

/// Size of the [`XsdSockmsg`] header.
pub const HEADER_LEN: usize = core::mem::size_of::<XsdSockmsg>();
/// [`XENSTORE_PAYLOAD_MAX`].
pub const PAYLOAD_MAX: usize = XENSTORE_PAYLOAD_MAX;
/// [`XENSTORE_ABS_PATH_MAX`].
pub const ABS_PATH_MAX: usize = XENSTORE_ABS_PATH_MAX;
/// [`XENSTORE_REL_PATH_MAX`].
pub const REL_PATH_MAX: usize = XENSTORE_REL_PATH_MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn message_types() {
        let expected = [
            (XsdSockmsgType::Control, msg::CONTROL, 0),
            (XsdSockmsgType::Directory, msg::DIRECTORY, 1),
            (XsdSockmsgType::Read, msg::READ, 2),
            (XsdSockmsgType::GetPerms, msg::GET_PERMS, 3),
            (XsdSockmsgType::Watch, msg::WATCH, 4),
            (XsdSockmsgType::Unwatch, msg::UNWATCH, 5),
            (XsdSockmsgType::TransactionStart, msg::TRANSACTION_START, 6),
            (XsdSockmsgType::TransactionEnd, msg::TRANSACTION_END, 7),
            (XsdSockmsgType::Introduce, msg::INTRODUCE, 8),
            (XsdSockmsgType::Release, msg::RELEASE, 9),
            (XsdSockmsgType::GetDomainPath, msg::GET_DOMAIN_PATH, 10),
            (XsdSockmsgType::Write, msg::WRITE, 11),
            (XsdSockmsgType::Mkdir, msg::MKDIR, 12),
            (XsdSockmsgType::Rm, msg::RM, 13),
            (XsdSockmsgType::SetPerms, msg::SET_PERMS, 14),
            (XsdSockmsgType::WatchEvent, msg::WATCH_EVENT, 15),
            (XsdSockmsgType::Error, msg::ERROR, 16),
            (
                XsdSockmsgType::IsDomainIntroduced,
                msg::IS_DOMAIN_INTRODUCED,
                17,
            ),
            (XsdSockmsgType::Resume, msg::RESUME, 18),
            (XsdSockmsgType::SetTarget, msg::SET_TARGET, 19),
            (XsdSockmsgType::ResetWatches, msg::RESET_WATCHES, 21),
            (XsdSockmsgType::DirectoryPart, msg::DIRECTORY_PART, 22),
            (XsdSockmsgType::GetFeature, msg::GET_FEATURE, 23),
            (XsdSockmsgType::SetFeature, msg::SET_FEATURE, 24),
            (XsdSockmsgType::GetQuota, msg::GET_QUOTA, 25),
            (XsdSockmsgType::SetQuota, msg::SET_QUOTA, 26),
            (XsdSockmsgType::Invalid, msg::INVALID, 0xffff),
        ];
        for (t, c, v) in expected {
            assert_eq!(t.raw(), v);
            assert_eq!(c, v);
            assert_eq!(XsdSockmsgType::try_from(v), Ok(t));
        }
        assert_eq!(XsdSockmsgType::ALL.len(), expected.len());
        assert_eq!(XsdSockmsgType::try_from(20), Err(20));
        assert_eq!(XsdSockmsgType::try_from(XS_TYPE_COUNT), Err(27));
    }

    #[test]
    fn header_layout() {
        assert_eq!(size_of::<XsdSockmsg>(), 16);
        assert_eq!(HEADER_LEN, 16);
        assert_eq!(offset_of!(XsdSockmsg, r#type), 0);
        assert_eq!(offset_of!(XsdSockmsg, req_id), 4);
        assert_eq!(offset_of!(XsdSockmsg, tx_id), 8);
        assert_eq!(offset_of!(XsdSockmsg, len), 12);
        let bytes = [2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, b'x'];
        let h = XsdSockmsg::parse(&bytes).unwrap();
        assert_eq!(XsdSockmsgType::try_from(h.r#type), Ok(XsdSockmsgType::Read));
        assert_eq!((h.req_id, h.tx_id, h.len), (7, 0, 5));
        assert!(h.len_ok());
        assert_eq!(XsdSockmsg::parse(&bytes[..15]), None);
        let big = XsdSockmsg {
            len: 4097,
            ..Default::default()
        };
        assert!(!big.len_ok());
    }

    #[test]
    fn ring_page_layout() {
        assert_eq!(size_of::<XenstoreDomainInterface>(), 2080);
        assert_eq!(XENSTORE_DOMAIN_INTERFACE_SIZE, 2080);
        assert_eq!(offset_of!(XenstoreDomainInterface, req), 0);
        assert_eq!(offset_of!(XenstoreDomainInterface, rsp), 1024);
        assert_eq!(offset_of!(XenstoreDomainInterface, req_cons), 2048);
        assert_eq!(offset_of!(XenstoreDomainInterface, req_prod), 2052);
        assert_eq!(offset_of!(XenstoreDomainInterface, rsp_cons), 2056);
        assert_eq!(offset_of!(XenstoreDomainInterface, rsp_prod), 2060);
        assert_eq!(offset_of!(XenstoreDomainInterface, server_features), 2064);
        assert_eq!(offset_of!(XenstoreDomainInterface, connection), 2068);
        assert_eq!(offset_of!(XenstoreDomainInterface, error), 2072);
        assert_eq!(offset_of!(XenstoreDomainInterface, evtchn_port), 2076);
        assert_eq!(ring::REQ, offset_of!(XenstoreDomainInterface, req));
        assert_eq!(ring::RSP, offset_of!(XenstoreDomainInterface, rsp));
        assert_eq!(
            ring::REQ_CONS,
            offset_of!(XenstoreDomainInterface, req_cons)
        );
        assert_eq!(
            ring::REQ_PROD,
            offset_of!(XenstoreDomainInterface, req_prod)
        );
        assert_eq!(
            ring::RSP_CONS,
            offset_of!(XenstoreDomainInterface, rsp_cons)
        );
        assert_eq!(
            ring::RSP_PROD,
            offset_of!(XenstoreDomainInterface, rsp_prod)
        );
        assert_eq!(
            ring::SERVER_FEATURES,
            offset_of!(XenstoreDomainInterface, server_features)
        );
        assert_eq!(
            ring::CONNECTION,
            offset_of!(XenstoreDomainInterface, connection)
        );
        assert_eq!(ring::ERROR, offset_of!(XenstoreDomainInterface, error));
        assert_eq!(
            ring::EVTCHN_PORT,
            offset_of!(XenstoreDomainInterface, evtchn_port)
        );
        assert_eq!(ring::SIZE, 1024);
        assert_eq!(mask_xenstore_idx(1025), 1);
        assert_eq!(mask_xenstore_idx(u32::MAX), 1023);
    }

    #[test]
    fn limits_and_errors() {
        assert_eq!(XENSTORE_PAYLOAD_MAX, 4096);
        assert_eq!(XENSTORE_ABS_PATH_MAX, 3072);
        assert_eq!(XENSTORE_REL_PATH_MAX, 2048);
        assert_eq!(PAYLOAD_MAX, 4096);
        assert_eq!(XSD_ERRORS[0], (Errno::EINVAL, "EINVAL"));
        assert_eq!(XSD_ERRORS[15], (Errno::EPERM, "EPERM"));
        for (e, name) in XSD_ERRORS {
            assert_eq!(e.name(), Some(name));
        }
        assert_eq!(xsd_error_name(Errno::ENOENT), Some("ENOENT"));
        assert_eq!(xsd_error_name(Errno::EFAULT), None);
        assert_eq!(xsd_error_from_name(b"EACCES"), Some(Errno::EACCES));
        assert_eq!(xsd_error_from_name(b"EFAULT"), None);
    }
}
