//! The shared-ring protocol of Xen's io/ring.h, as index arithmetic:
//! free-running u32 producer/consumer indices, slots masked by a
//! power-of-two size, and the notification rule — after publishing a new
//! producer index, notify the other side only if the index it asked to be
//! woken at (`req_event`/`rsp_event`) lies in the range just published.
//! Pure, host-tested; the console and XenStore rings use it.

/// Entries between `cons` and `prod` (what the consumer may take), or
/// `None` if the producer claims more than the ring holds (a lying peer).
pub fn unconsumed(prod: u32, cons: u32, size: u32) -> Option<u32> {
    let n = prod.wrapping_sub(cons);
    (n <= size).then_some(n)
}

/// Free slots for the producer, or `None` for impossible indices.
pub fn free(prod: u32, cons: u32, size: u32) -> Option<u32> {
    unconsumed(prod, cons, size).map(|used| size - used)
}

/// The slot an index names (size is a power of two).
pub fn slot(index: u32, size: u32) -> usize {
    (index & (size - 1)) as usize
}

/// Xen's RING_PUSH_*_AND_CHECK_NOTIFY: having moved the producer from
/// `old` to `new`, notify iff the peer's `event` index was passed.
pub fn need_notify(new: u32, old: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// The consumer side's RING_FINAL_CHECK: the event index to publish
/// before sleeping (wake me at the next entry after `cons`).
pub fn next_event(cons: u32) -> u32 {
    cons.wrapping_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_wraparound() {
        assert_eq!(unconsumed(5, 3, 8), Some(2));
        assert_eq!(unconsumed(2, u32::MAX - 1, 8), Some(4));
        assert_eq!(unconsumed(20, 3, 8), None);
        assert_eq!(free(5, 3, 8), Some(6));
        assert_eq!(free(11, 3, 8), Some(0));
        assert_eq!(slot(u32::MAX, 1024), 1023);
        assert_eq!(slot(1024, 1024), 0);
    }

    #[test]
    fn notification_rule() {
        // Peer wants a wake-up at index 5: publishing 3..6 passes it.
        assert!(need_notify(6, 3, 5));
        // Publishing 6..8 does not (it was already due before).
        assert!(!need_notify(8, 6, 5));
        // Across the wrap.
        assert!(need_notify(2, u32::MAX - 1, 0));
        assert!(!need_notify(2, u32::MAX - 1, 3));
        assert_eq!(next_event(u32::MAX), 0);
    }
}
