//! The console ring: the last 16 KiB the hypervisor printed, as Xen's
//! `conring`, for Dom0 to read with `XEN_SYSCTL_readconsole` (`xl dmesg`).
//! Producer and consumer are free-running 32-bit indices; the consumer
//! only moves when the ring overflows or a reader clears it. Pure logic,
//! host-tested; `console` feeds it and `hypercall::sysctl` reads it.

/// Xen's default `conring_size`.
pub const SIZE: usize = 16 << 10;
const _: () = assert!(SIZE.is_power_of_two());

pub struct Conring {
    bytes: [u8; SIZE],
    /// Index of the oldest byte still held.
    consumer: u32,
    /// Index one past the newest byte.
    producer: u32,
}

impl Default for Conring {
    fn default() -> Self {
        Self::new()
    }
}

impl Conring {
    pub const fn new() -> Self {
        Self {
            bytes: [0; SIZE],
            consumer: 0,
            producer: 0,
        }
    }

    fn slot(index: u32) -> usize {
        index as usize & (SIZE - 1)
    }

    /// Appends `text`, dropping the oldest bytes once full.
    pub fn put(&mut self, text: &[u8]) {
        for &b in text {
            self.bytes[Self::slot(self.producer)] = b;
            self.producer = self.producer.wrapping_add(1);
        }
        if self.producer.wrapping_sub(self.consumer) as usize > SIZE {
            self.consumer = self.producer.wrapping_sub(SIZE as u32);
        }
    }

    /// True if `index` lies after the oldest byte, up to the newest
    /// (on either side of a wrap of the 32-bit counters): Xen's test for an
    /// incremental read's start.
    fn holds(&self, index: u32) -> bool {
        let (c, p) = (self.consumer, self.producer);
        if c <= p {
            c < index && index <= p
        } else {
            c < index || index <= p
        }
    }

    /// Copies held bytes into `out` as Xen's `read_console_ring`: from the
    /// oldest one, or from `from` when that lies in the ring. Returns how
    /// many bytes it copied and the index after them.
    pub fn read(&self, from: Option<u32>, out: &mut [u8]) -> (usize, u32) {
        let p = self.producer;
        let mut c = match from {
            Some(index) if self.holds(index) => index,
            _ => self.consumer,
        };
        let mut sofar = 0;
        while c != p && sofar < out.len() {
            let at = Self::slot(c);
            let len = (p.wrapping_sub(c) as usize)
                .min(SIZE - at)
                .min(out.len() - sofar);
            out[sofar..sofar + len].copy_from_slice(&self.bytes[at..at + len]);
            sofar += len;
            c = c.wrapping_add(len as u32);
        }
        (sofar, c)
    }

    /// Forgets the bytes before `index` (readconsole's `clear`, once the
    /// read reached the caller); an index no longer in the ring changes
    /// nothing.
    pub fn clear_to(&mut self, index: u32) {
        if self.holds(index) {
            self.consumer = index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(ring: &Conring, from: Option<u32>, max: usize) -> (Vec<u8>, u32) {
        let mut out = vec![0u8; max];
        let (n, next) = ring.read(from, &mut out);
        out.truncate(n);
        (out, next)
    }

    const FROM_START: Option<u32> = None;

    #[test]
    fn reads_what_was_put_and_follows_on_from_an_index() {
        let mut ring = Conring::new();
        ring.put(b"hello\n");
        let (text, next) = read_all(&ring, FROM_START, 100);
        assert_eq!(text, b"hello\n");
        assert_eq!(next, 6);
        ring.put(b"world\n");
        let (text, next) = read_all(&ring, Some(next), 100);
        assert_eq!(text, b"world\n");
        assert_eq!(next, 12);
        // Nothing new: nothing read, the index stays.
        let (text, again) = read_all(&ring, Some(next), 100);
        assert!(text.is_empty());
        assert_eq!(again, 12);
    }

    #[test]
    fn an_index_outside_the_ring_reads_from_the_oldest_byte() {
        let mut ring = Conring::new();
        ring.put(b"abc");
        for index in [0, 4, 1000, u32::MAX] {
            let (text, _) = read_all(&ring, Some(index), 10);
            assert_eq!(text, b"abc", "index {index}");
        }
    }

    #[test]
    fn overflow_keeps_the_newest_bytes_and_a_short_buffer_takes_a_prefix() {
        let mut ring = Conring::new();
        let text: Vec<u8> = (0..SIZE + 100).map(|i| (i % 251) as u8).collect();
        ring.put(&text);
        let (held, next) = read_all(&ring, FROM_START, SIZE * 2);
        assert_eq!(held, &text[100..]);
        assert_eq!(next as usize, SIZE + 100);
        let (prefix, next) = read_all(&ring, FROM_START, 10);
        assert_eq!(prefix, &text[100..110]);
        assert_eq!(next, 110);
    }

    #[test]
    fn clear_forgets_what_was_read() {
        let mut ring = Conring::new();
        ring.put(b"old\n");
        let (old, next) = read_all(&ring, FROM_START, 100);
        assert_eq!(old, b"old\n");
        ring.clear_to(next);
        ring.put(b"new\n");
        assert_eq!(read_all(&ring, FROM_START, 100).0, b"new\n");
        // A stale index (before the oldest byte) moves nothing back.
        ring.clear_to(1);
        assert_eq!(read_all(&ring, FROM_START, 100).0, b"new\n");
    }

    proptest! {
        /// Whatever was put and however it is read in pieces, incremental
        /// reads return exactly the bytes put, in order, while no more than
        /// the ring's size is outstanding.
        #[test]
        fn incremental_reads_see_every_byte_once(
            chunks in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..3000), 1usize..5000), 1..20),
            start in any::<u32>(),
        ) {
            let mut ring = Conring::new();
            // Start the counters anywhere, so wrapping is exercised.
            ring.consumer = start;
            ring.producer = start;
            let mut index = start;
            let mut put = Vec::new();
            let mut got = Vec::new();
            for (chunk, max) in chunks {
                ring.put(&chunk);
                put.extend_from_slice(&chunk);
                loop {
                    let (piece, next) = read_all(&ring, Some(index), max);
                    index = next;
                    if piece.is_empty() { break; }
                    got.extend_from_slice(&piece);
                }
            }
            prop_assert_eq!(got, put);
        }
    }
}
