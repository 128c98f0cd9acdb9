//! The PV console ring page (io/console.h, `struct xencons_interface`):
//! `in` (back end → guest, 1024 bytes) and `out` (guest → back end, 2048
//! bytes) byte rings with free-running `u32` indices masked by the ring
//! size, plus the helpers that compute how much may be read or written.
//!
//! Helpers take `(prod, cons, size)` like [`crate::ring`], and return
//! `None` when the indices are impossible (`prod - cons > size`): the
//! other side of a console ring is never trusted.

use crate::ring;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XENCONS_RING_IDX`.
pub type XenconsRingIdx = u32;

/// `XENCONSOLE_CONNECTED`.
pub const XENCONSOLE_CONNECTED: u8 = 0;
/// `XENCONSOLE_DISCONNECTED`.
pub const XENCONSOLE_DISCONNECTED: u8 = 1;

/// `struct xencons_interface`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenconsInterface {
    /// Input to the guest (C field `in`).
    pub r#in: [u8; 1024],
    /// Output from the guest.
    pub out: [u8; 2048],
    pub in_cons: XenconsRingIdx,
    pub in_prod: XenconsRingIdx,
    pub out_cons: XenconsRingIdx,
    pub out_prod: XenconsRingIdx,
    /// `XENCONSOLE_*`: set by the back end around reconnection.
    pub connection: u8,
    pub pad: [u8; 3],
}

zeroed_default!(XenconsInterface);

/// Offset of `in`.
pub const IN: usize = 0;
/// Size of `in`.
pub const IN_SIZE: u32 = 1024;
/// Offset of `out`.
pub const OUT: usize = 1024;
/// Size of `out`.
pub const OUT_SIZE: u32 = 2048;
/// Offset of `in_cons`.
pub const IN_CONS: usize = 3072;
/// Offset of `in_prod`.
pub const IN_PROD: usize = 3076;
/// Offset of `out_cons`.
pub const OUT_CONS: usize = 3080;
/// Offset of `out_prod`.
pub const OUT_PROD: usize = 3084;
/// Offset of `connection`.
pub const CONNECTION: usize = 3088;
/// `sizeof(struct xencons_interface)`.
pub const XENCONS_INTERFACE_SIZE: usize = 3092;

/// `MASK_XENCONS_IDX`: the byte an index names in a ring of `size` bytes
/// (a power of two).
pub const fn mask_xencons_idx(idx: XenconsRingIdx, size: u32) -> usize {
    ring::ring_index(idx, size)
}

/// Bytes the consumer may read.
pub const fn readable(prod: XenconsRingIdx, cons: XenconsRingIdx, size: u32) -> Option<u32> {
    ring::unconsumed(prod, cons, size)
}

/// Bytes the producer may write.
pub const fn writable(prod: XenconsRingIdx, cons: XenconsRingIdx, size: u32) -> Option<u32> {
    ring::free_slots(prod, cons, size)
}

/// The readable bytes up to the end of the buffer, as `(offset, len)`
/// within the ring buffer: copy these, advance `cons` by `len`, repeat.
pub const fn contiguous_readable(
    prod: XenconsRingIdx,
    cons: XenconsRingIdx,
    size: u32,
) -> Option<(usize, usize)> {
    match readable(prod, cons, size) {
        Some(n) => Some(contiguous(cons, n, size)),
        None => None,
    }
}

/// The writable bytes up to the end of the buffer, as `(offset, len)`
/// within the ring buffer: fill these, advance `prod` by `len`, repeat.
pub const fn contiguous_writable(
    prod: XenconsRingIdx,
    cons: XenconsRingIdx,
    size: u32,
) -> Option<(usize, usize)> {
    match writable(prod, cons, size) {
        Some(n) => Some(contiguous(prod, n, size)),
        None => None,
    }
}

/// `n` bytes from index `idx`, cut at the end of the buffer.
const fn contiguous(idx: XenconsRingIdx, n: u32, size: u32) -> (usize, usize) {
    let start = mask_xencons_idx(idx, size);
    let to_end = size as usize - start;
    let len = if (n as usize) < to_end {
        n as usize
    } else {
        to_end
    };
    (start, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout() {
        assert_eq!(size_of::<XenconsInterface>(), 3092);
        assert_eq!(offset_of!(XenconsInterface, r#in), 0);
        assert_eq!(offset_of!(XenconsInterface, out), 1024);
        assert_eq!(offset_of!(XenconsInterface, in_cons), 3072);
        assert_eq!(offset_of!(XenconsInterface, in_prod), 3076);
        assert_eq!(offset_of!(XenconsInterface, out_cons), 3080);
        assert_eq!(offset_of!(XenconsInterface, out_prod), 3084);
        assert_eq!(offset_of!(XenconsInterface, connection), 3088);
        assert_eq!(IN, offset_of!(XenconsInterface, r#in));
        assert_eq!(OUT, offset_of!(XenconsInterface, out));
        assert_eq!(IN_CONS, offset_of!(XenconsInterface, in_cons));
        assert_eq!(IN_PROD, offset_of!(XenconsInterface, in_prod));
        assert_eq!(OUT_CONS, offset_of!(XenconsInterface, out_cons));
        assert_eq!(OUT_PROD, offset_of!(XenconsInterface, out_prod));
        assert_eq!(CONNECTION, offset_of!(XenconsInterface, connection));
        assert_eq!(XENCONS_INTERFACE_SIZE, size_of::<XenconsInterface>());
        assert_eq!(IN_SIZE as usize, size_of::<[u8; 1024]>());
        assert_eq!(OUT_SIZE as usize, size_of::<[u8; 2048]>());
    }

    #[test]
    fn counts() {
        assert_eq!(readable(10, 4, OUT_SIZE), Some(6));
        assert_eq!(writable(10, 4, OUT_SIZE), Some(2042));
        assert_eq!(readable(2048, 0, OUT_SIZE), Some(2048));
        assert_eq!(writable(2048, 0, OUT_SIZE), Some(0));
        assert_eq!(readable(2049, 0, OUT_SIZE), None);
        assert_eq!(writable(0, 1, IN_SIZE), None);
        // Wrapped u32 indices.
        assert_eq!(readable(5, u32::MAX - 4, IN_SIZE), Some(10));
        assert_eq!(writable(5, u32::MAX - 4, IN_SIZE), Some(1014));
    }

    #[test]
    fn contiguous_chunks() {
        // 6 bytes at 1020..1026 of a 1024 ring: 4 now, 2 after the wrap.
        assert_eq!(contiguous_readable(1026, 1020, IN_SIZE), Some((1020, 4)));
        assert_eq!(contiguous_readable(1026, 1024, IN_SIZE), Some((0, 2)));
        // Writing from 1022 with the consumer at 1000: 2 bytes to the end.
        assert_eq!(contiguous_writable(1022, 1000, IN_SIZE), Some((1022, 2)));
        assert_eq!(contiguous_writable(1024, 1000, IN_SIZE), Some((0, 1000)));
        // Full and empty.
        assert_eq!(contiguous_writable(3048, 1000, OUT_SIZE), Some((1000, 0)));
        assert_eq!(contiguous_readable(7, 7, OUT_SIZE), Some((7, 0)));
        // Across the u32 wrap: index u32::MAX is byte 1023.
        assert_eq!(contiguous_readable(3, u32::MAX, IN_SIZE), Some((1023, 1)));
        assert_eq!(contiguous_readable(5000, 0, IN_SIZE), None);
        assert_eq!(mask_xencons_idx(2048 + 5, OUT_SIZE), 5);
    }
}
