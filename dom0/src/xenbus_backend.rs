//! The back end half of a xenbus device, shared by blkback (`vbd`) and
//! netback (`vif`): each round, read the front end's `state`, decide with
//! the state machine of `dom0::blkback::on_frontend_state`, and apply its
//! actions (connect, disconnect, write our `state`).

use alloc::format;
use alloc::string::String;

use dom0::blkback::{BackendAction, on_frontend_state};
use dom0::store::Store;
use guest_shim::println;
use pv_abi::xenbus::XenbusState;

/// What a backend keeps per device, for [`follow_frontend`].
pub trait Devices {
    /// Device `i`'s front end and back end directories, its back end
    /// state and whether it is connected; `None` once it is gone.
    fn xenbus(&self, i: usize) -> Option<(String, String, XenbusState, bool)>;
    /// Records the back end state just written.
    fn set_state(&mut self, i: usize, state: XenbusState);
    /// Reads the front end's nodes, maps its rings, binds its channel(s).
    fn connect(&mut self, i: usize, store: &mut Store) -> Result<(), String>;
    /// Stops serving device `i` (unbinds, unmaps).
    fn disconnect(&mut self, i: usize);
    /// How messages name device `i` (e.g. `d1 xvda`, `d1 vif0`).
    fn name(&self, i: usize) -> String;
}

/// Of the domains `domids` (each device's, so repeats are fine), those
/// that no longer exist: their devices are to be removed.
pub fn gone_domains(domids: impl Iterator<Item = u16>) -> alloc::vec::Vec<u16> {
    use pv_abi::hypercall::HVM_PARAM_STORE_EVTCHN;
    let mut gone: alloc::vec::Vec<u16> = domids
        .filter(|&d| guest_shim::hypercall::hvm_get_param_of(d, HVM_PARAM_STORE_EVTCHN).is_err())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    gone
}

/// Puts `device` in slot `index` of `devices`: the slot of a removed
/// device (reused), or one past the end.
pub fn place<T>(devices: &mut alloc::vec::Vec<T>, index: usize, device: T) {
    if index == devices.len() {
        devices.push(device);
    } else {
        devices[index] = device;
    }
}

fn write_state(
    devices: &mut impl Devices,
    i: usize,
    back: &str,
    state: XenbusState,
    store: &mut Store,
) {
    let _ = store.local_write(&format!("{back}/state"), &format!("{}", state.raw()));
    devices.set_state(i, state);
}

/// Follows device `i`'s front end one step; true if anything changed.
/// A failed connect writes Closing (Linux: `xenbus_dev_fatal`).
pub fn follow_frontend(devices: &mut impl Devices, i: usize, store: &mut Store) -> bool {
    let Some((front, back, state, connected)) = devices.xenbus(i) else {
        return false;
    };
    let frontend = store
        .local_read(&format!("{front}/state"))
        .and_then(|s| XenbusState::parse(&s));
    let actions = on_frontend_state(state, frontend, connected);
    let moved = !actions.is_empty();
    for action in actions {
        match action {
            BackendAction::None => {}
            BackendAction::Connect => {
                if let Err(why) = devices.connect(i, store) {
                    println!("dom0: {}: cannot connect: {why}", devices.name(i));
                    write_state(devices, i, &back, XenbusState::Closing, store);
                    return true;
                }
            }
            BackendAction::Disconnect => devices.disconnect(i),
            BackendAction::SetState(s) => write_state(devices, i, &back, s, store),
        }
    }
    moved
}
