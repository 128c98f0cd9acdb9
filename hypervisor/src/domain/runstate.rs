//! vCPU runstate (vcpu.h `vcpu_runstate_info`): how long each vCPU has
//! been running, runnable, blocked and offline, kept per vCPU and copied
//! into the guest area registered with VCPUOP_register_runstate_memory_area
//! whenever the vCPU starts or stops running on a CPU, as Xen does. Linux
//! needs it for its clock (steal time) and refuses to boot without it.
//!
//! The area is a guest-virtual address, so it is written only while the
//! vCPU's own page tables are loaded: at the start and end of its slices.
//! With VMASST_TYPE_runstate_update_flag the guest sees
//! `XEN_RUNSTATE_UPDATE` in `state_entry_time` while the copy is made.

use pv_abi::hypercall::{
    RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING, VcpuRunstateInfo,
    XEN_RUNSTATE_UPDATE,
};

/// One vCPU's runstate accounting (pure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runstate {
    pub info: VcpuRunstateInfo,
    /// The registered guest-virtual address (0: none).
    pub area: u64,
}

/// The states a vCPU moves between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Runnable,
    Blocked,
    Offline,
}

impl State {
    fn raw(self) -> i32 {
        match self {
            State::Running => RUNSTATE_RUNNING,
            State::Runnable => RUNSTATE_RUNNABLE,
            State::Blocked => RUNSTATE_BLOCKED,
            State::Offline => RUNSTATE_OFFLINE,
        }
    }
}

impl Runstate {
    /// A vCPU created at system time `now`: offline until it first runs.
    pub fn new(now: u64) -> Self {
        Self {
            info: VcpuRunstateInfo {
                state: RUNSTATE_OFFLINE,
                state_entry_time: now,
                ..Default::default()
            },
            area: 0,
        }
    }

    /// Accounts the time since the last change to the old state and enters
    /// `state` at `now` (system time never goes back; a clock that does
    /// adds nothing).
    pub fn change(&mut self, state: State, now: u64) {
        let old = self.info.state as usize;
        let spent = now.saturating_sub(self.info.state_entry_time);
        if let Some(t) = self.info.time.get_mut(old) {
            *t = t.saturating_add(spent);
        }
        self.info.state = state.raw();
        self.info.state_entry_time = now.max(self.info.state_entry_time);
    }

    /// The three writes of an update that the guest may watch: the entry
    /// time flagged as being updated, the whole record, the entry time
    /// without the flag. Without the assist only the record.
    pub fn guest_copy(&self, update_flag: bool) -> ([u64; 2], VcpuRunstateInfo) {
        let flagged = self.info.state_entry_time | XEN_RUNSTATE_UPDATE;
        let mut record = self.info;
        if update_flag {
            record.state_entry_time = flagged;
        }
        ([flagged, self.info.state_entry_time], record)
    }
}

/// Enters `state` for `vcpu` now and copies the record into its area
/// through the vCPU's current page tables (a bad area is the guest's
/// problem: the copy is skipped, as in Xen).
#[cfg(target_os = "none")]
pub fn switch(
    domain: &super::registry::Domain,
    vcpu: usize,
    paging: crate::mm::guest::GuestPaging,
    state: State,
) {
    use crate::mm::guest::Gva;
    use core::sync::atomic::Ordering;
    let mut runstate = domain.runstates[vcpu].lock();
    runstate.change(state, crate::arch::time::system_time_ns());
    if runstate.area == 0 {
        return;
    }
    let flag = domain.runstate_update_flag.load(Ordering::Relaxed);
    let ([first, last], record) = runstate.guest_copy(flag);
    let entry_time = Gva(runstate.area + 8);
    domain.with_guest(paging, |g| {
        if flag {
            let _ = g.write_obj(entry_time, &first);
        }
        let _ = g.write_obj(Gva(runstate.area), &record);
        if flag {
            let _ = g.write_obj(entry_time, &last);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_goes_to_the_state_that_was_left() {
        let mut r = Runstate::new(100);
        r.change(State::Running, 150);
        r.change(State::Blocked, 400);
        r.change(State::Runnable, 1000);
        r.change(State::Running, 1010);
        assert_eq!(r.info.time, [250, 10, 600, 50]);
        assert_eq!(
            (r.info.state, r.info.state_entry_time),
            (RUNSTATE_RUNNING, 1010)
        );
    }

    #[test]
    fn a_clock_that_goes_back_adds_nothing() {
        let mut r = Runstate::new(500);
        r.change(State::Running, 400);
        assert_eq!(r.info.time, [0; 4]);
        assert_eq!(r.info.state_entry_time, 500);
    }

    #[test]
    fn the_update_flag_marks_the_record_while_it_is_written() {
        let r = Runstate::new(7);
        let ([first, last], record) = r.guest_copy(true);
        assert_eq!(first, 7 | XEN_RUNSTATE_UPDATE);
        assert_eq!(record.state_entry_time, first);
        assert_eq!(last, 7);
        assert_eq!(r.guest_copy(false).1.state_entry_time, 7);
    }
}
