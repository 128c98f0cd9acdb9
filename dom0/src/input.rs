//! Serial console input routing, like Xen's console switching: what is
//! typed goes to one DomU's PV console (`in` ring) or to Dom0, whose
//! lines are commands. Ctrl-A three times in a row moves the input on:
//! Dom0, then each DomU console in turn, then Dom0 again. Pure logic; the
//! glue in `console.rs` reads CONSOLEIO and writes the rings.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use pv_abi::console::{IN_SIZE, writable};

use crate::store::{DomId, Shutdown};

/// Ctrl-A, Xen's default `conswitch` key.
pub const CONSWITCH: u8 = 0x01;
/// Presses in a row that switch the input.
pub const CONSWITCH_PRESSES: u8 = 3;
/// Ctrl-], xl's key to leave `xl console`: back to Dom0's command line.
pub const DETACH: u8 = 0x1d;
/// Longest Dom0 command line kept; later bytes of a longer line are
/// dropped.
pub const LINE_MAX: usize = 256;

/// Who gets the serial input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Dom0,
    Domu(DomId),
}

impl Focus {
    /// At boot: the DomU if exactly one DomU console is connected, Dom0
    /// otherwise.
    pub fn initial(consoles: &[DomId]) -> Self {
        match consoles {
            [only] => Self::Domu(*only),
            _ => Self::Dom0,
        }
    }

    /// After Ctrl-A x3: Dom0 -> the lowest DomU -> the next higher ... ->
    /// Dom0.
    pub fn next(self, consoles: &[DomId]) -> Self {
        let after = match self {
            Self::Dom0 => None,
            Self::Domu(d) => Some(d),
        };
        consoles
            .iter()
            .copied()
            .filter(|&c| after.is_none_or(|a| c > a))
            .min()
            .map_or(Self::Dom0, Self::Domu)
    }

    /// The line printed when the input moves (and at boot).
    pub fn announcement(self) -> String {
        let to = match self {
            Self::Dom0 => "dom0".to_string(),
            Self::Domu(d) => format!("d{d}"),
        };
        format!("dom0: *** serial input -> {to} (type Ctrl-A three times to switch)")
    }
}

/// Spots Ctrl-A pressed three times in a row. Ctrl-As are held back
/// until it is clear they are not a switch; any other byte releases them
/// (so a single Ctrl-A still reaches the guest), as in Xen.
#[derive(Clone, Debug, Default)]
pub struct Conswitch {
    held: u8,
}

impl Conswitch {
    /// Feeds one byte: appends to `out` the bytes to pass on, and returns
    /// true if the input is to switch.
    pub fn feed(&mut self, byte: u8, out: &mut Vec<u8>) -> bool {
        if byte == CONSWITCH {
            self.held += 1;
            if self.held == CONSWITCH_PRESSES {
                self.held = 0;
                return true;
            }
            return false;
        }
        out.extend(core::iter::repeat_n(CONSWITCH, self.held as usize));
        self.held = 0;
        out.push(byte);
        false
    }
}

/// What to do with input, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put these bytes in the DomU's console `in` ring.
    ToDomu(DomId, Vec<u8>),
    /// The input moved: print [`Focus::announcement`].
    Switched(Focus),
    /// A complete line typed to Dom0 (a command).
    Line(String),
}

/// The routing state: focus, Ctrl-A detector and Dom0's line buffer.
#[derive(Clone, Debug)]
pub struct Router {
    consoles: Vec<DomId>,
    focus: Focus,
    conswitch: Conswitch,
    line: Vec<u8>,
    /// Focused by `xl console`: Ctrl-] comes back to Dom0. (Reached with
    /// Ctrl-A, a DomU gets every other byte, Ctrl-] too.)
    attached: bool,
}

impl Router {
    /// `consoles`: the DomUs whose consoles are connected.
    pub fn new(consoles: &[DomId]) -> Self {
        Self {
            consoles: consoles.to_vec(),
            focus: Focus::initial(consoles),
            conswitch: Conswitch::default(),
            line: Vec::new(),
            attached: false,
        }
    }

    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// The connected DomU consoles changed (a domain was created or went):
    /// input for a DomU that is gone comes back to Dom0. True if the
    /// focus moved.
    pub fn set_consoles(&mut self, consoles: &[DomId]) -> bool {
        self.consoles = consoles.to_vec();
        match self.focus {
            Focus::Domu(d) if !self.consoles.contains(&d) => {
                self.focus = Focus::Dom0;
                self.attached = false;
                self.line.clear();
                true
            }
            _ => false,
        }
    }

    /// `xl console N`: the input goes to DomU `dom` until Ctrl-] (or
    /// Ctrl-A three times). False if it has no console here.
    pub fn attach(&mut self, dom: DomId) -> bool {
        if !self.consoles.contains(&dom) {
            return false;
        }
        self.focus = Focus::Domu(dom);
        self.line.clear();
        self.attached = true;
        true
    }

    /// Routes what was typed. Bytes for a DomU go through unchanged; for
    /// Dom0 they are collected into lines (CR or LF ends one, backspace
    /// and DEL erase, other control bytes are ignored).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut pass = Vec::new();
        let mut to_domu: Vec<u8> = Vec::new();
        for &byte in bytes {
            pass.clear();
            if self.conswitch.feed(byte, &mut pass) {
                if let Focus::Domu(d) = self.focus
                    && !to_domu.is_empty()
                {
                    actions.push(Action::ToDomu(d, core::mem::take(&mut to_domu)));
                }
                self.line.clear();
                self.attached = false;
                self.focus = self.focus.next(&self.consoles);
                actions.push(Action::Switched(self.focus));
                continue;
            }
            for &b in &pass {
                match self.focus {
                    Focus::Domu(d) if b == DETACH && self.attached => {
                        self.attached = false;
                        if !to_domu.is_empty() {
                            actions.push(Action::ToDomu(d, core::mem::take(&mut to_domu)));
                        }
                        self.focus = Focus::Dom0;
                        actions.push(Action::Switched(self.focus));
                    }
                    Focus::Domu(_) => to_domu.push(b),
                    Focus::Dom0 => self.dom0_byte(b, &mut actions),
                }
            }
        }
        if let Focus::Domu(d) = self.focus
            && !to_domu.is_empty()
        {
            actions.push(Action::ToDomu(d, to_domu));
        }
        actions
    }

    fn dom0_byte(&mut self, b: u8, actions: &mut Vec<Action>) {
        match b {
            b'\r' | b'\n' if !self.line.is_empty() => {
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                actions.push(Action::Line(line));
            }
            b'\r' | b'\n' => {}
            0x08 | 0x7f => {
                self.line.pop();
            }
            b if b < 0x20 => {}
            b if self.line.len() < LINE_MAX => self.line.push(b),
            _ => {}
        }
    }
}

/// The sentence printed once a shutdown request was written.
pub fn asked(dom: DomId, kind: Shutdown) -> String {
    let what = match kind {
        Shutdown::Poweroff => "power off",
        Shutdown::Reboot => "reboot",
    };
    format!("dom0: asked d{dom} to {what}")
}

/// How much of `len` bytes fits in a console `in` ring whose indices are
/// `prod` (ours) and `cons` (the guest's): `(written, dropped)`. Indices
/// the guest broke (more than a ring apart) take nothing.
pub fn fit_input(prod: u32, cons: u32, len: usize) -> (usize, usize) {
    let room = writable(prod, cons, IN_SIZE).unwrap_or(0) as usize;
    let n = room.min(len);
    (n, len - n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_domu_console_gets_the_input_at_boot() {
        assert_eq!(Focus::initial(&[]), Focus::Dom0);
        assert_eq!(Focus::initial(&[3]), Focus::Domu(3));
        assert_eq!(Focus::initial(&[1, 2]), Focus::Dom0);
    }

    #[test]
    fn switching_visits_dom0_then_each_domu_in_turn() {
        let c = [2, 1, 5];
        let mut f = Focus::Dom0;
        let mut seen = Vec::new();
        for _ in 0..5 {
            f = f.next(&c);
            seen.push(f);
        }
        use Focus::*;
        assert_eq!(seen, [Domu(1), Domu(2), Domu(5), Dom0, Domu(1)]);
        assert_eq!(Dom0.next(&[]), Dom0);
        assert_eq!(Domu(1).next(&[1]), Dom0);
        assert_eq!(
            Domu(1).announcement(),
            "dom0: *** serial input -> d1 (type Ctrl-A three times to switch)"
        );
        assert_eq!(
            Dom0.announcement(),
            "dom0: *** serial input -> dom0 (type Ctrl-A three times to switch)"
        );
    }

    #[test]
    fn three_ctrl_a_in_a_row_switch_fewer_pass_through() {
        let mut c = Conswitch::default();
        let mut out = Vec::new();
        assert!(!c.feed(1, &mut out));
        assert!(!c.feed(1, &mut out));
        assert!(out.is_empty()); // held back so far
        assert!(!c.feed(b'x', &mut out));
        assert_eq!(out, [1, 1, b'x']);
        out.clear();
        assert!(!c.feed(1, &mut out));
        assert!(!c.feed(1, &mut out));
        assert!(c.feed(1, &mut out));
        assert!(out.is_empty());
        // The count starts again after a switch.
        assert!(!c.feed(1, &mut out));
        assert!(!c.feed(b'y', &mut out));
        assert_eq!(out, [1, b'y']);
    }

    #[test]
    fn bytes_reach_the_focused_domu_unchanged() {
        let mut r = Router::new(&[1]);
        assert_eq!(r.focus(), Focus::Domu(1));
        let all: Vec<u8> = (0u8..=255).filter(|&b| b != CONSWITCH).collect();
        assert_eq!(r.feed(&all), [Action::ToDomu(1, all.clone())]);
        assert_eq!(r.feed(b"ls\r"), [Action::ToDomu(1, b"ls\r".to_vec())]);
        assert_eq!(r.feed(b""), []);
    }

    #[test]
    fn switching_routes_the_rest_elsewhere() {
        let mut r = Router::new(&[1, 2]);
        assert_eq!(r.focus(), Focus::Dom0);
        let got = r.feed(b"he\x01\x01\x01ab\x01\x01\x01cd\x01\x01\x01\x01\x01\x01x\r");
        assert_eq!(
            got,
            [
                Action::Switched(Focus::Domu(1)),
                Action::ToDomu(1, b"ab".to_vec()),
                Action::Switched(Focus::Domu(2)),
                Action::ToDomu(2, b"cd".to_vec()),
                Action::Switched(Focus::Dom0),
                Action::Switched(Focus::Domu(1)),
                Action::ToDomu(1, b"x\r".to_vec()),
            ]
        );
        // "he" typed to Dom0 before the switch was forgotten.
        r.feed(b"\x01\x01\x01\x01\x01\x01");
        assert_eq!(r.focus(), Focus::Dom0);
        assert_eq!(r.feed(b"help\n"), [Action::Line("help".into())]);
    }

    #[test]
    fn dom0_collects_lines_and_edits_them() {
        let mut r = Router::new(&[]);
        assert_eq!(r.feed(b"shux\x7ftdo"), []);
        assert_eq!(r.feed(b"wn 1\r\n\r"), [Action::Line("shutdown 1".into())]);
        assert_eq!(r.feed(b"a\x1b[Ab\x08c\n"), [Action::Line("a[Ac".into())]);
        let long = alloc::vec![b'z'; LINE_MAX + 10];
        let got = r.feed(&[long.as_slice(), b"\r"].concat());
        assert_eq!(got, [Action::Line("z".repeat(LINE_MAX))]);
    }

    #[test]
    fn shutdown_requests_are_announced() {
        assert_eq!(asked(1, Shutdown::Poweroff), "dom0: asked d1 to power off");
        assert_eq!(asked(2, Shutdown::Reboot), "dom0: asked d2 to reboot");
    }

    #[test]
    fn input_never_overruns_the_ring() {
        assert_eq!(fit_input(0, 0, 10), (10, 0));
        assert_eq!(fit_input(0, 0, 2000), (1024, 976));
        assert_eq!(fit_input(1024, 0, 1), (0, 1)); // full
        assert_eq!(fit_input(1000, 10, 100), (34, 66));
        assert_eq!(fit_input(5, u32::MAX - 4, 100), (100, 0)); // wrapped indices
        assert_eq!(fit_input(2000, 0, 5), (0, 5)); // the guest broke in_cons
    }
}

#[cfg(test)]
mod attach_tests {
    use super::*;

    #[test]
    fn console_attaches_and_ctrl_bracket_detaches() {
        let mut r = Router::new(&[1, 2]);
        assert_eq!(r.focus(), Focus::Dom0);
        assert!(!r.attach(7), "no console for d7");
        assert!(r.attach(2));
        let actions = r.feed(b"ls\x1dlist\r");
        assert_eq!(
            actions,
            [
                Action::ToDomu(2, b"ls".to_vec()),
                Action::Switched(Focus::Dom0),
                Action::Line("list".into()),
            ]
        );
    }

    #[test]
    fn a_console_that_goes_sends_the_input_back_to_dom0() {
        let mut r = Router::new(&[3]);
        assert_eq!(r.focus(), Focus::Domu(3));
        assert!(!r.set_consoles(&[3, 4]));
        assert_eq!(r.focus(), Focus::Domu(3));
        assert!(r.set_consoles(&[4]));
        assert_eq!(r.focus(), Focus::Dom0);
        assert_eq!(r.focus().next(&[4]), Focus::Domu(4));
    }
}
