//! Echo suppression for the relayed PV consoles. A DomU's CONSOLEIO_write
//! lines reach the serial console from the hypervisor, as `(dN) text`;
//! guests built for Xen (its test framework, for one) write each line
//! there and to their PV console ring too, which Dom0 relays. Dom0 reads
//! the hypervisor's console ring (`XEN_SYSCTL_readconsole`, incrementally),
//! remembers each domain's recent CONSOLEIO lines, and a ring line equal to
//! one of them is that line's echo: it is not shown again.
//!
//! Pure logic, host-tested; the console backend feeds it the ring's text
//! and asks it about each completed ring line.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// CONSOLEIO lines remembered per domain: a guest writes each line both
/// ways at once, so an echo follows its line closely.
const RECENT_MAX: usize = 32;
/// Longest line remembered: the hypervisor splits a guest's lines at 512
/// bytes, Dom0's relay at 256, so longer lines never match anyway.
const LINE_MAX: usize = 512;
/// Console-ring text kept of one line: the longest `(dN) ` prefix, a
/// remembered line's text, and one byte more, so a line cut short here is
/// still too long to be remembered.
const PARTIAL_MAX: usize = "(d65535) ".len() + LINE_MAX + 1;

pub struct Echoes {
    /// The hypervisor's console-ring text after its last newline.
    partial: Vec<u8>,
    /// Each domain's recent CONSOLEIO lines, oldest first, without prefix.
    recent: BTreeMap<u16, VecDeque<Vec<u8>>>,
    /// Where the next incremental read of the console ring starts.
    next: Option<u32>,
}

/// `(dN) text` → (N, text), for the lines the hypervisor prints for DomUs.
fn parse_line(line: &[u8]) -> Option<(u16, &[u8])> {
    let rest = line.strip_prefix(b"(d")?;
    let close = rest.iter().position(|&b| b == b')')?;
    let digits = core::str::from_utf8(&rest[..close]).ok()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let domid = digits.parse().ok()?;
    let text = rest[close + 1..].strip_prefix(b" ")?;
    Some((domid, text))
}

impl Default for Echoes {
    fn default() -> Self {
        Self::new()
    }
}

impl Echoes {
    pub const fn new() -> Self {
        Self {
            partial: Vec::new(),
            recent: BTreeMap::new(),
            next: None,
        }
    }

    /// Where the next read of the console ring starts (None: from its
    /// oldest byte).
    pub fn next_index(&self) -> Option<u32> {
        self.next
    }

    /// Takes console-ring text read up to `next`.
    pub fn feed(&mut self, text: &[u8], next: u32) {
        self.next = Some(next);
        for &b in text {
            if b == b'\n' {
                let line = core::mem::take(&mut self.partial);
                self.remember(&line);
            } else if self.partial.len() < PARTIAL_MAX {
                self.partial.push(b);
            }
        }
    }

    fn remember(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some((domid, text)) = parse_line(line) else {
            return;
        };
        if text.len() > LINE_MAX {
            return;
        }
        let recent = self.recent.entry(domid).or_default();
        if recent.len() == RECENT_MAX {
            recent.pop_front();
        }
        recent.push_back(text.to_vec());
    }

    /// Whether `line`, completed on `domid`'s PV console, echoes one of its
    /// recent CONSOLEIO lines. A match is used up, with the lines before
    /// it: each CONSOLEIO line silences at most one ring line.
    pub fn take(&mut self, domid: u16, line: &[u8]) -> bool {
        let Some(recent) = self.recent.get_mut(&domid) else {
            return false;
        };
        let Some(at) = recent.iter().position(|l| l == line) else {
            return false;
        };
        recent.drain(..=at);
        true
    }

    /// Forgets a domain's lines (it was destroyed, or its id is reused).
    pub fn forget(&mut self, domid: u16) {
        self.recent.remove(&domid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_hypervisors_domain_prefix_only() {
        assert_eq!(parse_line(b"(d1) hello"), Some((1, &b"hello"[..])));
        assert_eq!(parse_line(b"(d12) "), Some((12, &b""[..])));
        for line in [
            &b"pavise: x"[..],
            b"(d) x",
            b"(dx) y",
            b"(d1)x",
            b"(d99999) x",
            b"",
        ] {
            assert_eq!(parse_line(line), None, "{:?}", core::str::from_utf8(line));
        }
    }

    #[test]
    fn an_echo_is_silenced_once_and_other_lines_pass() {
        let mut e = Echoes::new();
        e.feed(
            b"pavise: booting\n(d1) both ways\n(d2) other domain\n(d1) par",
            60,
        );
        assert_eq!(e.next_index(), Some(60));
        assert!(e.take(1, b"both ways"));
        // Used up: the same text again on the ring is a new line.
        assert!(!e.take(1, b"both ways"));
        // Another domain's line is not this one's echo.
        assert!(!e.take(1, b"other domain"));
        // A line still being written is not remembered yet.
        assert!(!e.take(1, b"partial"));
        e.feed(b"tial\r\n", 66);
        assert!(e.take(1, b"partial"));
        assert!(e.take(2, b"other domain"));
    }

    #[test]
    fn a_match_uses_up_the_lines_before_it_and_forget_drops_a_domain() {
        let mut e = Echoes::new();
        e.feed(b"(d3) a\n(d3) b\n(d3) c\n", 0);
        assert!(e.take(3, b"b"));
        assert!(!e.take(3, b"a"));
        e.forget(3);
        assert!(!e.take(3, b"c"));
    }

    #[test]
    fn a_line_too_long_to_remember_is_not_remembered_cut_short() {
        let mut e = Echoes::new();
        let text = "x".repeat(LINE_MAX + 100);
        // The longest prefix a domain id has.
        e.feed(alloc::format!("(d32751) {text}\n").as_bytes(), 0);
        assert!(!e.take(32751, &text.as_bytes()[..LINE_MAX]));
        assert!(!e.take(32751, text.as_bytes()));
    }

    #[test]
    fn only_the_most_recent_lines_are_remembered() {
        let mut e = Echoes::new();
        for i in 0..RECENT_MAX + 5 {
            e.feed(alloc::format!("(d1) line {i}\n").as_bytes(), 0);
        }
        assert!(!e.take(1, b"line 4"));
        assert!(e.take(1, b"line 5"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]
        /// However the console ring's text is split into reads, the same
        /// lines are remembered; arbitrary bytes never panic.
        #[test]
        fn splitting_the_text_changes_nothing(
            lines in proptest::collection::vec((0u16..4, "[a-z ]{0,12}"), 0..20),
            noise in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut text = noise.clone();
            text.push(b'\n');
            for (d, l) in &lines {
                text.extend_from_slice(alloc::format!("(d{d}) {l}\n").as_bytes());
            }
            let mut whole = Echoes::new();
            whole.feed(&text, 0);
            let mut pieces = Echoes::new();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
            cuts.sort();
            let mut from = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                pieces.feed(&text[from..cut], 0);
                from = cut;
            }
            for (d, l) in &lines {
                prop_assert_eq!(whole.take(*d, l.as_bytes()), pieces.take(*d, l.as_bytes()));
            }
        }
    }
}
