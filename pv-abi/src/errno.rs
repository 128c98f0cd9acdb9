//! Xen errno values (errno.h) and their encoding in hypercall results:
//! a failing hypercall returns the negated errno in `rax`.
//!
//! `Errno` is a newtype rather than an enum so that any value a peer
//! returns can be carried and printed, known or not.

use core::fmt;

/// A Xen errno value (positive, as in errno.h).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Errno(i32);

/// Declares the errno constants and the name table from one list.
macro_rules! errnos {
    ($( $(#[$doc:meta])* $name:ident = $value:literal ),+ $(,)?) => {
        impl Errno {
            $( $(#[$doc])* pub const $name: Errno = Errno($value); )+
        }

        /// Every errno of errno.h with its name, in header order
        /// (aliases left out: see [`Errno::EWOULDBLOCK`]).
        pub const ERRNO_NAMES: &[(Errno, &str)] = &[$( (Errno::$name, stringify!($name)) ),+];
    };
}

errnos! {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory.
    ENOENT = 2,
    /// No such process (unknown domain).
    ESRCH = 3,
    /// Interrupted system call.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// Argument list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Bad file number (bad port).
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Try again.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address (bad guest pointer).
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// File exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// File table overflow.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// No space left on device.
    ENOSPC = 28,
    /// Read-only file system.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Math argument out of domain.
    EDOM = 33,
    /// Result not representable.
    ERANGE = 34,
    /// Resource deadlock would occur.
    EDEADLK = 35,
    /// File name too long.
    ENAMETOOLONG = 36,
    /// No record locks available.
    ENOLCK = 37,
    /// Function not implemented (unknown hypercall or sub-op).
    ENOSYS = 38,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// No data available.
    ENODATA = 61,
    /// Timer expired.
    ETIME = 62,
    /// Not a data message.
    EBADMSG = 74,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    EILSEQ = 84,
    /// Interrupted system call should be restarted.
    ERESTART = 85,
    /// Socket operation on non-socket.
    ENOTSOCK = 88,
    /// Message too large.
    EMSGSIZE = 90,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Transport endpoint is already connected.
    EISCONN = 106,
    /// Transport endpoint is not connected.
    ENOTCONN = 107,
    /// Connection timed out.
    ETIMEDOUT = 110,
    /// Connection refused.
    ECONNREFUSED = 111,
}

impl Errno {
    /// Alias of [`Errno::EAGAIN`].
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// Alias of [`Errno::EDEADLK`].
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// An errno from its positive value; `None` unless `value > 0`.
    pub const fn new(value: i32) -> Option<Errno> {
        if value > 0 { Some(Errno(value)) } else { None }
    }

    /// The positive errno value.
    pub const fn get(self) -> i32 {
        self.0
    }

    /// The hypercall return value reporting this error: `-errno`.
    pub const fn as_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// The error a hypercall return value reports, or `None` if `ret` is
    /// not negative (success) or too large in magnitude to be an errno.
    pub const fn from_ret(ret: i64) -> Option<Errno> {
        if ret < 0 && ret >= -(i32::MAX as i64) {
            Some(Errno(-ret as i32))
        } else {
            None
        }
    }

    /// Splits a hypercall return value into success (the non-negative
    /// value) or the error. A negative value beyond the errno range
    /// (which no hypervisor returns) is reported as `ERANGE`.
    pub const fn check_ret(ret: i64) -> Result<u64, Errno> {
        if ret >= 0 {
            Ok(ret as u64)
        } else {
            match Errno::from_ret(ret) {
                Some(e) => Err(e),
                None => Err(Errno::ERANGE),
            }
        }
    }

    /// The header name (`"EINVAL"`), if this is a known value.
    pub fn name(self) -> Option<&'static str> {
        ERRNO_NAMES
            .iter()
            .find(|(e, _)| *e == self)
            .map(|&(_, name)| name)
    }

    /// The errno a header name stands for (`"EINVAL"` → `EINVAL`),
    /// including the aliases `EWOULDBLOCK` and `EDEADLOCK`.
    pub fn from_name(name: &str) -> Option<Errno> {
        match name {
            "EWOULDBLOCK" => Some(Errno::EWOULDBLOCK),
            "EDEADLOCK" => Some(Errno::EDEADLOCK),
            _ => ERRNO_NAMES
                .iter()
                .find(|&&(_, n)| n == name)
                .map(|&(e, _)| e),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<Errno> for i64 {
    /// The hypercall return value (`-errno`).
    fn from(e: Errno) -> i64 {
        e.as_ret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_errno_h() {
        let expected = [
            (Errno::EPERM, 1),
            (Errno::ENOENT, 2),
            (Errno::ESRCH, 3),
            (Errno::E2BIG, 7),
            (Errno::EBADF, 9),
            (Errno::EAGAIN, 11),
            (Errno::ENOMEM, 12),
            (Errno::EACCES, 13),
            (Errno::EFAULT, 14),
            (Errno::EBUSY, 16),
            (Errno::EEXIST, 17),
            (Errno::EISDIR, 21),
            (Errno::EINVAL, 22),
            (Errno::ENOSPC, 28),
            (Errno::EROFS, 30),
            (Errno::ERANGE, 34),
            (Errno::ENOSYS, 38),
            (Errno::ENOTEMPTY, 39),
            (Errno::ETIME, 62),
            (Errno::EOPNOTSUPP, 95),
            (Errno::ENOBUFS, 105),
            (Errno::EISCONN, 106),
            (Errno::ECONNREFUSED, 111),
        ];
        for (e, v) in expected {
            assert_eq!(e.get(), v);
        }
        assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
        assert_eq!(Errno::EDEADLOCK.get(), 35);
        assert_eq!(ERRNO_NAMES.len(), 49);
    }

    #[test]
    fn return_encoding() {
        assert_eq!(Errno::EFAULT.as_ret(), -14);
        assert_eq!(i64::from(Errno::ENOSYS), -38);
        assert_eq!(Errno::from_ret(-38), Some(Errno::ENOSYS));
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret(5), None);
        assert_eq!(Errno::from_ret(i64::MIN), None);
        assert_eq!(Errno::check_ret(7), Ok(7));
        assert_eq!(Errno::check_ret(-1), Err(Errno::EPERM));
        assert_eq!(Errno::check_ret(i64::MIN), Err(Errno::ERANGE));
        for &(e, _) in ERRNO_NAMES {
            assert_eq!(Errno::from_ret(e.as_ret()), Some(e));
        }
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(-3), None);
        assert_eq!(Errno::new(3), Some(Errno::ESRCH));
    }

    #[test]
    fn names() {
        assert_eq!(Errno::EINVAL.name(), Some("EINVAL"));
        assert_eq!(Errno::E2BIG.name(), Some("E2BIG"));
        assert_eq!(Errno::new(200).and_then(Errno::name), None);
        assert_eq!(Errno::from_name("ENOENT"), Some(Errno::ENOENT));
        assert_eq!(Errno::from_name("EWOULDBLOCK"), Some(Errno::EAGAIN));
        assert_eq!(Errno::from_name("nope"), None);
    }
}
