//! Port I/O as a DomU sees it: nothing is there. As Xen does for PVH
//! guests, a port reads as all ones and writes are dropped — with one
//! deliberate difference, the PIT's counters, which read as zero.
//!
//! Why: with no PIT, Linux's quick TSC calibration reads the channel-2
//! counter waiting for its high byte to leave 0xff, 50 000 times over
//! (100 000 exits, 1.5 s of its boot on Xen under QEMU, measured in
//! LINUX-PVH.md). A counter that reads 0 is a stopped counter to it: the
//! calibration gives up after two reads, and Linux takes the TSC
//! frequency from the pvclock as it does on Xen anyway. Any other guest
//! sees an absent or stopped timer either way.

/// The 8254 PIT's three counter ports.
pub const PIT_COUNTERS: core::ops::RangeInclusive<u16> = 0x40..=0x42;

/// What an IN of `size` bytes (1, 2 or 4) from `port` reads.
pub fn read(port: u16, size: u8) -> u32 {
    let ones = if size >= 4 {
        u32::MAX
    } else {
        (1u32 << (size * 8)) - 1
    };
    if PIT_COUNTERS.contains(&port) {
        0
    } else {
        ones
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbacked_ports_read_all_ones_and_the_pit_counters_zero() {
        assert_eq!(read(0x61, 1), 0xff);
        assert_eq!(read(0xcfc, 4), 0xffff_ffff);
        assert_eq!(read(0x71, 2), 0xffff);
        assert_eq!(read(0x43, 1), 0xff, "the PIT's command port is write-only");
        for port in PIT_COUNTERS {
            assert_eq!(read(port, 1), 0);
        }
    }
}
