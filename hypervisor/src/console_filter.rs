//! What of a guest's console output may reach the terminal: text, tab,
//! newline, carriage return and backspace (a shell's line editing) pass;
//! ANSI escape sequences (ESC [ … final byte, or ESC and one byte) are
//! dropped whole, so a guest can neither move the host terminal's cursor,
//! recolour it nor make it answer (busybox's shell asks for the cursor
//! position at every prompt); any other control or non-ASCII byte
//! becomes '?'. Pure logic, host-tested.

/// Where the filter is in an escape sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escape {
    #[default]
    Text,
    /// Just after ESC.
    Esc,
    /// Inside ESC [ … (parameters and intermediates).
    Csi,
}

const ESC: u8 = 0x1b;
const BACKSPACE: u8 = 0x08;

/// The byte to show for `b`, if any.
pub fn pass(state: &mut Escape, b: u8) -> Option<u8> {
    match *state {
        Escape::Esc => {
            *state = if b == b'[' { Escape::Csi } else { Escape::Text };
            None
        }
        Escape::Csi => {
            if (0x40..=0x7e).contains(&b) {
                *state = Escape::Text;
            } else if !(0x20..=0x3f).contains(&b) {
                // Not part of a CSI sequence: abandon it and show the byte.
                *state = Escape::Text;
                return pass(state, b);
            }
            None
        }
        Escape::Text => match b {
            ESC => {
                *state = Escape::Esc;
                None
            }
            b'\n' | b'\r' | b'\t' | BACKSPACE | 0x20..=0x7e => Some(b),
            _ => Some(b'?'),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Vec<u8> {
        let mut state = Escape::default();
        bytes.iter().filter_map(|&b| pass(&mut state, b)).collect()
    }

    #[test]
    fn escape_sequences_vanish_and_text_stays() {
        assert_eq!(run(b"/ # \x1b[6necho hi\r\n"), b"/ # echo hi\r\n");
        assert_eq!(run(b"\x1b[1;31mred\x1b[0m"), b"red");
        assert_eq!(run(b"a\x1bcb"), b"ab", "ESC c (reset) is dropped whole");
        assert_eq!(run(b"ab\x08 \x08"), b"ab\x08 \x08");
        assert_eq!(run(b"\x07bell\x00\xff"), b"?bell??");
        assert_eq!(
            run(b"\x1b[12\x01x"),
            b"?x",
            "a broken sequence ends at the stray byte"
        );
    }

    proptest::proptest! {
        #[test]
        fn nothing_that_drives_a_terminal_gets_through(bytes: Vec<u8>) {
            for b in run(&bytes) {
                proptest::prop_assert!(matches!(b, b'\n' | b'\r' | b'\t' | BACKSPACE | 0x20..=0x7e));
            }
        }
    }
}
