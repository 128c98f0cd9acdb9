//! Live domains: the `Domain` and its vCPUs, the registry of domains by
//! id, lifecycle (shutdown, crash, teardown) and the exit-when-done watch.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use spin::Mutex;

use crate::arch::power::{self, ExitCode};
use crate::mm::frame::Frame;
use crate::mm::guest::{GuestPaging, GuestView, P2m};
use crate::mm::{IdentityMap, scrub_and_free};
use crate::println;
use crate::virt::{SecondLevelPaging, Vcpu, VirtError};

pub type DomId = u16;

/// Why a hypervisor page cannot go to the asked guest frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// The frame is not part of the domain's memory.
    NotRam,
    /// A foreign, granted or other special page is there.
    SlotInUse,
}

/// Why a domain ended, as Xen's `SHUTDOWN_*` reasons (plus crash causes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash(String),
    Watchdog,
    /// The toolstack destroyed it (`XEN_DOMCTL_destroydomain`).
    Destroyed,
    /// SCHEDOP_shutdown with a code Xen gives no name (5, soft_reset,
    /// and up): as Xen, the domain ends with it and the toolstack reads it.
    Code(u8),
}

impl core::fmt::Display for EndReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Poweroff => f.write_str("poweroff"),
            Self::Reboot => f.write_str("reboot"),
            Self::Suspend => f.write_str("suspend"),
            Self::Watchdog => f.write_str("watchdog"),
            Self::Destroyed => f.write_str("destroyed"),
            Self::Crash(cause) => write!(f, "crash: {cause}"),
            Self::Code(code) => write!(f, "shutdown with code {code}"),
        }
    }
}

/// vCPU scheduling states.
pub mod vcpu_state {
    pub const DOWN: u8 = 0;
    pub const RUNNABLE: u8 = 1;
    pub const RUNNING: u8 = 2;
    pub const BLOCKED: u8 = 3;
    /// Set aside while its domain is paused (`XEN_DOMCTL_pausedomain`).
    pub const PARKED: u8 = 4;
}

impl EndReason {
    /// A power-off, or a destroy (the toolstack's decision, not a failure
    /// of the guest).
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Poweroff | Self::Destroyed)
    }
}

/// [`Domain::shutdown_code`] of a domain that has not ended.
pub const NOT_SHUT_DOWN: u32 = u32::MAX;

impl EndReason {
    /// Xen's `SHUTDOWN_*` code (a destroyed domain is gone, not shut down:
    /// it reports `SHUTDOWN_poweroff` should anyone still look).
    pub fn shutdown_code(&self) -> u32 {
        use pv_abi::hypercall::ShutdownReason;
        match self {
            Self::Poweroff | Self::Destroyed => ShutdownReason::Poweroff,
            Self::Reboot => ShutdownReason::Reboot,
            Self::Suspend => ShutdownReason::Suspend,
            Self::Crash(_) => ShutdownReason::Crash,
            Self::Watchdog => ShutdownReason::Watchdog,
            Self::Code(code) => return u32::from(*code),
        }
        .raw()
    }
}

/// Most pauses the toolstack may stack on one domain (Xen's limit).
pub const PAUSE_COUNT_MAX: u32 = 255;

pub struct VcpuSlot {
    pub cpu: Vcpu,
    /// The MSRs Pavise emulates for this vCPU.
    pub msrs: crate::platform::msr::MsrState,
    pub initialised: bool,
    /// Nested-mapping generation this vCPU's TLB reflects.
    pub mapping_generation: u64,
}

pub struct Memory {
    pub p2m: P2m,
    pub second_level: SecondLevelPaging,
    /// Hypervisor-owned pages placed in the physmap at the guest's
    /// request (shared info, grant table frames): gfn → frame.
    pub special: BTreeMap<u64, Frame>,
    /// Frames `XENMEM_increase_reservation` gave the domain: a translated
    /// guest gets no address for them (as on Xen), so they only count
    /// against its reservation until it is torn down.
    pub loose: Vec<Frame>,
    /// RAM slots backed by the domain's own frames (Xen's `tot_pages`
    /// without the loose ones), kept as they change.
    pub owned: u64,
}

impl Memory {
    /// Backs RAM frames `first..end` with zeroed frames, in the physmap
    /// and the nested page tables: all or none (false if one is outside
    /// RAM or already backed, the domain would own more than `max_pages`,
    /// or no frame — below `limit`, if given — or table page is left).
    pub fn back(&mut self, first: u64, end: u64, max_pages: u64, limit: Option<u64>) -> bool {
        use crate::mm::frame::FRAME_SIZE;
        use crate::mm::guest::Gfn;
        if (first..end).any(|g| !self.p2m.is_ram(Gfn(g)) || self.p2m.get(Gfn(g)).is_some())
            || self.total_pages().saturating_add(end - first) > max_pages
        {
            return false;
        }
        for gfn in first..end {
            let frame = crate::mm::frames().alloc();
            let Some(frame) = frame.filter(|f| limit.is_none_or(|l| f.start() + FRAME_SIZE <= l))
            else {
                if let Some(f) = frame {
                    scrub_and_free(f);
                }
                self.unback(first, gfn);
                return false;
            };
            crate::mm::zero_frame(frame);
            if self.second_level.map(gfn * FRAME_SIZE, frame).is_err() {
                scrub_and_free(frame);
                self.unback(first, gfn);
                return false;
            }
            let _ = self.p2m.set(Gfn(gfn), Some(frame));
            self.owned += 1;
        }
        true
    }

    /// `XENMEM_populate_physmap` over RAM that is already backed: as Xen's
    /// `guest_physmap_add_page`, fresh zeroed frames take the slots and
    /// the old ones stay the domain's, unmapped (loose), within
    /// `max_pages`. All or none; the caller has checked that every slot
    /// holds the domain's own frame.
    pub fn replace(&mut self, first: u64, end: u64, max_pages: u64, limit: Option<u64>) -> bool {
        use crate::mm::frame::FRAME_SIZE;
        use crate::mm::guest::Gfn;
        if (first..end).any(|g| !self.p2m.is_ram(Gfn(g)) || self.p2m.get(Gfn(g)).is_none())
            || self.total_pages().saturating_add(end - first) > max_pages
        {
            return false;
        }
        let mut fresh = Vec::new();
        for _ in first..end {
            match crate::mm::frames().alloc() {
                Some(f) if limit.is_none_or(|l| f.start() + FRAME_SIZE <= l) => {
                    crate::mm::zero_frame(f);
                    fresh.push(f);
                }
                other => {
                    other.into_iter().chain(fresh).for_each(scrub_and_free);
                    return false;
                }
            }
        }
        for (gfn, frame) in (first..end).zip(fresh) {
            if let Ok(Some(old)) = self.p2m.set(Gfn(gfn), Some(frame)) {
                self.loose.push(old);
            }
            self.second_level.remap(gfn * FRAME_SIZE, frame);
        }
        true
    }

    /// Xen's `tot_pages`: see [`Domain::total_pages`].
    pub fn total_pages(&self) -> u64 {
        self.owned + self.loose.len() as u64
    }

    /// Takes back frames `first..upto` that [`Memory::back`] had just given.
    fn unback(&mut self, first: u64, upto: u64) {
        use crate::mm::frame::FRAME_SIZE;
        use crate::mm::guest::Gfn;
        for gfn in first..upto {
            if let Ok(Some(frame)) = self.p2m.set(Gfn(gfn), None) {
                self.second_level.unmap(gfn * FRAME_SIZE);
                scrub_and_free(frame);
                self.owned -= 1;
            }
        }
    }
}

pub const HVM_NR_PARAMS: usize = 64;
pub const VCPU_INFO_DEFAULT: u64 = u64::MAX;

pub struct Domain {
    pub id: DomId,
    pub name: String,
    pub privileged: bool,
    /// An exit-when-done run waits for this domain.
    pub watched: bool,
    /// RAM size (Xen's `max_pages`, in bytes): fixed by the boot-time
    /// builder, set by `XEN_DOMCTL_max_mem` for a run-time one.
    mem_bytes: AtomicU64,
    /// Built by the toolstack at run time: when it ends it stays, shut
    /// down, until the toolstack destroys it (Xen's behaviour, so the
    /// toolstack can read why and apply `on_poweroff`/`on_crash`).
    /// Boot-time domains are torn down at once.
    pub awaits_destroy: bool,
    /// Xen's `SHUTDOWN_*` code once it has ended ([`NOT_SHUT_DOWN`] before).
    shutdown_code: AtomicU32,
    /// Torn down: out of the registry, its channels and grants gone.
    removed: AtomicBool,
    /// vCPU 0 was handed to the scheduler.
    pub started: AtomicBool,
    pub memory: Mutex<Memory>,
    pub shared_info: Frame,
    pub vcpus: Vec<Mutex<VcpuSlot>>,
    pub vcpu_states: Vec<AtomicU8>,
    pub mapping_generation: AtomicU64,
    pub hvm_params: Mutex<[u64; HVM_NR_PARAMS]>,
    /// Per vCPU: registered vcpu_info as `gfn << 12 | offset`, or
    /// `VCPU_INFO_DEFAULT` for its slot in shared info.
    pub vcpu_info_at: Vec<AtomicU64>,
    /// Per vCPU: an upcall was raised and not yet injected.
    pub upcall_asserted: Vec<AtomicBool>,
    /// Per vCPU: vector set with HVMOP_set_evtchn_upcall_vector (0 = none).
    pub upcall_vector: Vec<AtomicU8>,
    /// Per vCPU: singleshot timer deadline in system-time ns (0 = none).
    pub timer_deadline: Vec<AtomicU64>,
    /// Per vCPU: SCHEDOP_poll time-out in system-time ns (0 = none).
    pub poll_deadline: Vec<AtomicU64>,
    /// Per vCPU: its emulated local APIC (its own lock: other vCPUs
    /// raise interrupts in it while it runs).
    pub lapics: Vec<Mutex<crate::platform::vlapic::VLapic>>,
    /// Per vCPU: runstate accounting and the guest's registered area.
    pub runstates: Vec<Mutex<super::runstate::Runstate>>,
    /// VMASST_TYPE_runstate_update_flag is on.
    pub runstate_update_flag: AtomicBool,
    /// Per vCPU: its APIC may have a vector to deliver (set whenever one
    /// is raised or the guest writes its APIC; saves a look before every
    /// entry).
    pub apic_hint: Vec<AtomicBool>,
    /// Per vCPU: counts its entries into and exits from guest mode (odd:
    /// in the guest now), so a TLB flush of all vCPUs can wait until each
    /// has left the guest once.
    pub guest_epoch: Vec<AtomicU64>,
    /// Per vCPU: the ports it waits on in SCHEDOP_poll (empty: not
    /// polling).
    pub poll_ports: Vec<Mutex<Vec<u32>>>,
    /// Per vCPU: INIT arrived, a STARTUP may start it.
    pub wait_for_sipi: Vec<AtomicBool>,
    /// Per vCPU: halted with interrupts off — down for good, as Xen
    /// counts it; when every vCPU is, the domain has powered off.
    pub halted_for_good: Vec<AtomicBool>,
    /// Pauses by the toolstack not yet undone (Xen's
    /// `controller_pause_count`): while non-zero no vCPU runs.
    pub pause_count: AtomicU32,
    /// Seconds added to the wallclock it reads (`XEN_DOMCTL_settimeoffset`).
    pub time_offset_seconds: AtomicI64,
    console_line: Mutex<Vec<u8>>,
    console_escape: Mutex<crate::console_filter::Escape>,
    dead: AtomicBool,
    /// Pages of other domains mapped into this one (gfn here → mapping).
    pub foreign_maps: Mutex<BTreeMap<u64, super::foreign::ForeignMap>>,
    /// Our gfns another domain has mapped (their frames are quarantined,
    /// not freed at once, when we die).
    pub lent: Mutex<alloc::collections::BTreeSet<u64>>,
    /// This domain's grant table frames.
    pub grant_table: Mutex<super::grants::TableFrames>,
    /// Grants of other domains mapped here, by handle.
    pub held_grants: Mutex<BTreeMap<u32, super::grants::HeldGrant>>,
}

impl Domain {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: DomId,
        name: String,
        privileged: bool,
        watched: bool,
        mem_bytes: u64,
        memory: Memory,
        shared_info: Frame,
        vcpus: Vec<Vcpu>,
    ) -> Self {
        let n = vcpus.len();
        Self {
            id,
            name,
            privileged,
            watched,
            mem_bytes: AtomicU64::new(mem_bytes),
            awaits_destroy: false,
            shutdown_code: AtomicU32::new(NOT_SHUT_DOWN),
            removed: AtomicBool::new(false),
            started: AtomicBool::new(false),
            memory: Mutex::new(memory),
            shared_info,
            vcpus: vcpus
                .into_iter()
                .map(|cpu| {
                    Mutex::new(VcpuSlot {
                        cpu,
                        msrs: Default::default(),
                        initialised: false,
                        mapping_generation: 0,
                    })
                })
                .collect(),
            vcpu_states: (0..n).map(|_| AtomicU8::new(vcpu_state::DOWN)).collect(),
            mapping_generation: AtomicU64::new(0),
            hvm_params: Mutex::new([0; HVM_NR_PARAMS]),
            vcpu_info_at: (0..n).map(|_| AtomicU64::new(VCPU_INFO_DEFAULT)).collect(),
            upcall_asserted: (0..n).map(|_| AtomicBool::new(false)).collect(),
            upcall_vector: (0..n).map(|_| AtomicU8::new(0)).collect(),
            timer_deadline: (0..n).map(|_| AtomicU64::new(0)).collect(),
            poll_deadline: (0..n).map(|_| AtomicU64::new(0)).collect(),
            lapics: (0..n)
                .map(|i| {
                    let id = crate::platform::cpuid::apic_id_of(i as u32);
                    Mutex::new(crate::platform::vlapic::VLapic::new(id, i == 0))
                })
                .collect(),
            runstates: (0..n)
                .map(|_| {
                    Mutex::new(super::runstate::Runstate::new(
                        crate::arch::time::system_time_ns(),
                    ))
                })
                .collect(),
            runstate_update_flag: AtomicBool::new(false),
            apic_hint: (0..n).map(|_| AtomicBool::new(false)).collect(),
            guest_epoch: (0..n).map(|_| AtomicU64::new(0)).collect(),
            poll_ports: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            wait_for_sipi: (0..n).map(|_| AtomicBool::new(false)).collect(),
            halted_for_good: (0..n).map(|_| AtomicBool::new(false)).collect(),
            pause_count: AtomicU32::new(0),
            time_offset_seconds: AtomicI64::new(0),
            console_line: Mutex::new(Vec::new()),
            console_escape: Mutex::new(Default::default()),
            foreign_maps: Mutex::new(BTreeMap::new()),
            lent: Mutex::new(alloc::collections::BTreeSet::new()),
            grant_table: Mutex::new(Default::default()),
            held_grants: Mutex::new(BTreeMap::new()),
            dead: AtomicBool::new(false),
        }
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// How the log names it: `d3 (web)`, or `d3` for a domain the
    /// toolstack built (its name lives in XenStore, not here).
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            alloc::format!("d{}", self.id)
        } else {
            alloc::format!("d{} ({})", self.id, self.name)
        }
    }

    /// Torn down (gone from the registry).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Its RAM size in bytes (Xen's `max_pages` × 4 KiB).
    pub fn mem_bytes(&self) -> u64 {
        self.mem_bytes.load(Ordering::SeqCst)
    }

    /// Sets the RAM size of a domain being built (`XEN_DOMCTL_max_mem`):
    /// the physmap gets room for that many pages, none populated yet.
    /// Shrinking below what is populated is refused.
    pub fn set_mem_bytes(&self, bytes: u64) -> Result<(), crate::mm::guest::ResizeError> {
        use crate::mm::frame::FRAME_SIZE;
        let mut memory = self.memory.lock();
        memory.p2m.resize_ram((bytes / FRAME_SIZE) as usize)?;
        self.mem_bytes.store(bytes, Ordering::SeqCst);
        Ok(())
    }

    /// Xen's `SHUTDOWN_*` code if it has ended and waits to be destroyed.
    pub fn shutdown_code(&self) -> Option<u32> {
        match self.shutdown_code.load(Ordering::SeqCst) {
            NOT_SHUT_DOWN => None,
            code => Some(code),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.pause_count.load(Ordering::SeqCst) != 0
    }

    /// CPU time its vCPUs have spent running, in ns.
    pub fn cpu_time_ns(&self) -> u64 {
        let now = crate::arch::time::system_time_ns();
        self.runstates
            .iter()
            .map(|r| {
                let r = r.lock();
                let running = r.info.time[pv_abi::hypercall::RUNSTATE_RUNNING as usize];
                if r.info.state == pv_abi::hypercall::RUNSTATE_RUNNING {
                    running + now.saturating_sub(r.info.state_entry_time)
                } else {
                    running
                }
            })
            .sum()
    }

    /// Pages of memory it owns (Xen's `tot_pages`): its backed RAM frames
    /// (a slot lent another domain's page still owns the page set aside)
    /// and loose frames, not the hypervisor's pages placed among them.
    pub fn total_pages(&self) -> u64 {
        self.memory.lock().total_pages()
    }

    /// The highest gfn its physmap has a page at (Xen's
    /// `domain_get_maximum_gpfn`), or 0 with none.
    pub fn max_gpfn(&self) -> u64 {
        let memory = self.memory.lock();
        memory.p2m.frames().map(|(g, _)| g.0).max().unwrap_or(0)
    }

    /// `XENMEM_increase_reservation` for one extent: `count` frames the
    /// domain owns without a physmap place, within its `max_pages`.
    pub fn take_loose_frames(&self, count: u64) -> bool {
        use crate::mm::frame::FRAME_SIZE;
        let mut memory = self.memory.lock();
        if memory.total_pages().saturating_add(count) > self.mem_bytes() / FRAME_SIZE {
            return false;
        }
        for taken in 0..count {
            let Some(frame) = crate::mm::frames().alloc() else {
                for _ in 0..taken {
                    if let Some(f) = memory.loose.pop() {
                        scrub_and_free(f);
                    }
                }
                return false;
            };
            crate::mm::zero_frame(frame);
            memory.loose.push(frame);
        }
        true
    }

    /// `XENMEM_decrease_reservation` for one page: gives the frame at
    /// `gfn` back to the hypervisor, leaving a hole the guest may fill
    /// again with `XENMEM_populate_physmap`. A hypervisor page placed
    /// there (shared info, a grant frame) only leaves the physmap, as on
    /// Xen. The freed frame waits in quarantine until no vCPU can still
    /// reach it through a stale translation; one a grant still maps
    /// elsewhere lives until that mapping goes.
    pub fn release_page(&self, gfn: u64) -> Result<(), ReleaseError> {
        self.take_out_of_physmap(gfn, Disposal::Free)
    }

    /// `XENMEM_remove_from_physmap` of a page of the domain's (Xen's
    /// `guest_physmap_remove_page`): the slot becomes a hole, the page
    /// stays the domain's, unmapped (a loose frame), so another domain
    /// may go on mapping it. A hypervisor page only leaves the slot.
    pub fn unhook_page(&self, gfn: u64) -> Result<(), ReleaseError> {
        self.take_out_of_physmap(gfn, Disposal::Keep)
    }

    fn take_out_of_physmap(&self, gfn: u64, disposal: Disposal) -> Result<(), ReleaseError> {
        use crate::mm::frame::FRAME_SIZE;
        use crate::mm::guest::Gfn;
        let _ownership = FRAME_OWNERSHIP.lock();
        // No foreign mapping can start while the lock is held.
        if disposal == Disposal::Free && super::foreign::is_mapped_elsewhere(self.id, gfn) {
            return Err(ReleaseError::MappedElsewhere);
        }
        let foreign = self.foreign_maps.lock();
        let mut memory = self.memory.lock();
        if foreign.contains_key(&gfn) || self.held_grants.lock().values().any(|h| h.gfn == gfn) {
            return Err(ReleaseError::NotOwned);
        }
        drop(foreign);
        if memory.special.remove(&gfn).is_some() {
            let _ = if memory.p2m.is_ram(Gfn(gfn)) {
                memory.p2m.set(Gfn(gfn), None)
            } else {
                memory.p2m.set_outside_ram(Gfn(gfn), None)
            };
            memory.second_level.unmap(gfn * FRAME_SIZE);
            drop(memory);
            self.mapping_generation.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        if !memory.p2m.is_ram(Gfn(gfn)) {
            return Err(ReleaseError::NotBacked);
        }
        let frame = memory.p2m.get(Gfn(gfn)).ok_or(ReleaseError::NotBacked)?;
        let _ = memory.p2m.set(Gfn(gfn), None);
        memory.second_level.unmap(gfn * FRAME_SIZE);
        memory.owned -= 1;
        if disposal == Disposal::Keep {
            memory.loose.push(frame);
        }
        drop(memory);
        self.mapping_generation.fetch_add(1, Ordering::SeqCst);
        if disposal == Disposal::Free && !super::grants::keep_if_mapped(frame) {
            super::foreign::quarantine(frame);
        }
        Ok(())
    }

    /// True if `gfn` holds a page the guest may not give up or reuse as
    /// a mapping slot (shared info, grant frames, foreign or granted pages).
    pub fn is_special_gfn(&self, gfn: u64) -> bool {
        self.memory.lock().special.contains_key(&gfn)
            || self.foreign_maps.lock().contains_key(&gfn)
            || self.held_grants.lock().values().any(|h| h.gfn == gfn)
    }

    /// Places a hypervisor-owned page (shared info, a grant frame) at
    /// `gfn`, moving it if it was elsewhere: in RAM the page there is
    /// freed; above RAM (Linux puts its grant frames in unpopulated space)
    /// the frame goes into the hole.
    pub fn place_special(&self, gfn: u64, frame: Frame) -> Result<(), PlacementError> {
        use crate::mm::frame::FRAME_SIZE;
        use crate::mm::guest::Gfn;
        let _ownership = FRAME_OWNERSHIP.lock();
        if self.foreign_maps.lock().contains_key(&gfn)
            || self.held_grants.lock().values().any(|h| h.gfn == gfn)
        {
            return Err(PlacementError::SlotInUse);
        }
        let mut memory = self.memory.lock();
        let in_ram = memory.p2m.is_ram(Gfn(gfn));
        let current = memory.p2m.get(Gfn(gfn));
        if current == Some(frame) {
            return Ok(());
        }
        if memory.special.contains_key(&gfn) {
            return Err(PlacementError::SlotInUse); // another special page lives there
        }
        if in_ram && current.is_none() {
            return Err(PlacementError::NotRam); // a hole left by a moved page
        }
        if !in_ram && current.is_some() {
            return Err(PlacementError::SlotInUse); // device memory lives there
        }
        if !in_ram {
            // Reserve the nested mapping first: it may need table pages.
            memory
                .p2m
                .set_outside_ram(Gfn(gfn), Some(frame))
                .map_err(|_| PlacementError::NotRam)?;
            if memory.second_level.map(gfn * FRAME_SIZE, frame).is_err() {
                let _ = memory.p2m.set_outside_ram(Gfn(gfn), None);
                return Err(PlacementError::NotRam);
            }
        }
        let previous = memory
            .special
            .iter()
            .find(|(_, f)| **f == frame)
            .map(|(g, _)| *g);
        if let Some(old) = previous {
            // Moving it: the old place becomes a hole.
            memory.special.remove(&old);
            if memory.p2m.is_ram(Gfn(old)) {
                let _ = memory.p2m.set(Gfn(old), None);
            } else {
                let _ = memory.p2m.set_outside_ram(Gfn(old), None);
            }
            memory.second_level.unmap(old * FRAME_SIZE);
        }
        if in_ram {
            let _ = memory.p2m.set(Gfn(gfn), Some(frame));
            memory.second_level.remap(gfn * FRAME_SIZE, frame);
        }
        memory.special.insert(gfn, frame);
        if current.is_some() {
            memory.owned -= 1; // the RAM page it replaced goes
        }
        drop(memory);
        if let Some(displaced) = current {
            // Another vCPU may reach it until its translations are flushed.
            super::foreign::quarantine(displaced);
        }
        self.mapping_generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `f` with a checked view of guest memory as the vCPU sees it.
    pub fn with_guest<R>(
        &self,
        paging: GuestPaging,
        f: impl FnOnce(&GuestView<'_, IdentityMap>) -> R,
    ) -> R {
        let memory = self.memory.lock();
        let view = GuestView {
            p2m: &memory.p2m,
            mem: &IdentityMap,
            paging,
        };
        f(&view)
    }

    /// Console output from the guest, printed a line at a time with the
    /// domain prefix so interleaved output stays readable. The privileged
    /// domain's goes out as it comes (it is the console: Dom0 relays the
    /// DomUs' rings with their prefixes, and an attached shell's prompt
    /// has no newline). Control characters never reach the terminal.
    pub fn console_write(&self, bytes: &[u8]) {
        const MAX_LINE: usize = 512;
        let mut line = self.console_line.lock();
        if self.privileged {
            let mut escape = self.console_escape.lock();
            let shown: alloc::vec::Vec<u8> = bytes
                .iter()
                .filter_map(|&b| crate::console_filter::pass(&mut escape, b))
                .collect();
            crate::console::write_fmt_unringed(format_args!(
                "{}",
                core::str::from_utf8(&shown).unwrap_or("")
            ));
            return;
        }
        for &b in bytes {
            if b == b'\n' || line.len() >= MAX_LINE {
                self.flush_line(&mut line);
                if b == b'\n' {
                    continue;
                }
            }
            if b == b'\r' {
                continue;
            }
            // A guest must not drive the host terminal.
            let mut escape = self.console_escape.lock();
            if let Some(shown) = crate::console_filter::pass(&mut escape, b)
                && shown != b'\x08'
            {
                line.push(shown);
            }
        }
    }

    fn flush_line(&self, line: &mut Vec<u8>) {
        let text = core::str::from_utf8(line).unwrap_or("");
        // As in Xen, the privileged domain's output is printed as it is: it
        // is Dom0 that relays the DomUs' console rings with their prefixes.
        if self.privileged {
            println!("{text}");
        } else {
            println!("(d{}) {}", self.id, text);
        }
        line.clear();
    }

    /// Prints what the domain left in its PV console ring that Dom0 has
    /// not read yet: a guest that panics and shuts down at once (Linux)
    /// would otherwise lose its last lines when its pages go away, before
    /// Dom0's console backend runs.
    fn flush_pv_console(&self) {
        use pv_abi::console::{OUT, OUT_CONS, OUT_PROD, OUT_SIZE, mask_xencons_idx, readable};
        let gfn = self.hvm_params.lock()[super::events::HVM_PARAM_CONSOLE_PFN];
        if gfn == 0 {
            return;
        }
        let Some(frame) = self.memory.lock().p2m.get(crate::mm::guest::Gfn(gfn)) else {
            return;
        };
        let cons = crate::mm::shared::load_u32(frame, OUT_CONS);
        let prod = crate::mm::shared::load_u32(frame, OUT_PROD);
        let Some(n) = readable(prod, cons, OUT_SIZE) else {
            return;
        };
        if n == 0 || !crate::mm::shared::compare_exchange_u32(frame, OUT_CONS, cons, prod) {
            return;
        }
        let mut bytes = alloc::vec![0u8; n as usize];
        for (i, b) in bytes.iter_mut().enumerate() {
            let at = OUT + mask_xencons_idx(cons.wrapping_add(i as u32), OUT_SIZE);
            *b = crate::mm::shared::load_u8(frame, at);
        }
        self.console_write(&bytes);
    }

    /// Ends the domain (first reason wins): prints the lifecycle line and
    /// tears it down — or, for one that awaits destroy, keeps it shut down
    /// until `end(Destroyed)`. Dom0 hears of it through VIRQ_DOM_EXC.
    pub fn end(&self, reason: EndReason) {
        if self.dead.swap(true, Ordering::SeqCst) {
            // Already shut down: a destroy now tears it down.
            if reason == EndReason::Destroyed && self.awaits_destroy && !self.is_removed() {
                println!("pavise: {} destroyed", self.label());
                self.tear_down();
            }
            return;
        }
        self.flush_pv_console();
        {
            let mut line = self.console_line.lock();
            if !line.is_empty() {
                self.flush_line(&mut line);
            }
        }
        println!("pavise: {} {}", self.label(), reason);
        crate::timeline::mark(format_args!("d{}_ended", self.id));
        self.shutdown_code
            .store(reason.shutdown_code(), Ordering::SeqCst);
        if reason == EndReason::Destroyed || !self.awaits_destroy {
            self.tear_down();
        }
        // As Xen's domain_shutdown/destroy: Dom0 hears of it.
        if self.id != 0
            && let Some(dom0) = lookup(0)
        {
            super::events::send_virq(&dom0, crate::evtchn::VIRQ_DOM_EXC, 0);
        }
        // How a toolstack-built domain ended is the toolstack's to judge
        // (its on_crash), not a failure of the run.
        note_end(self.watched, self.awaits_destroy || reason.is_clean());
    }

    /// Takes the ended domain out of the registry with its channels,
    /// grants and the pages others mapped of it; memory goes when the
    /// last vCPU stops using it.
    fn tear_down(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        DOMAINS.lock().remove(&self.id);
        super::events::remove_domain(self.id);
        super::foreign::revoke_all_of(self.id);
        super::grants::remove_domain(self);
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let memory = self.memory.get_mut();
        let foreign = self.foreign_maps.get_mut();
        let lent = self.lent.get_mut();
        for (gfn, frame) in memory.p2m.frames() {
            if memory.special.contains_key(&gfn.0) {
                continue; // freed below, once
            }
            match foreign.remove(&gfn.0) {
                // Another domain's page: not ours to free; ours was set aside.
                Some(map) => scrub_and_free(map.displaced),
                // Still grant-mapped elsewhere: it outlives us.
                None if super::grants::keep_if_mapped(frame) => {}
                None if lent.contains(&gfn.0) => super::foreign::quarantine(frame),
                None => scrub_and_free(frame),
            }
        }
        scrub_and_free(self.shared_info);
        for frame in core::mem::take(&mut self.grant_table.get_mut().frames) {
            scrub_and_free(frame);
        }
        for frame in core::mem::take(&mut memory.loose) {
            scrub_and_free(frame);
        }
        log::debug!("d{}: memory scrubbed and freed", self.id);
        // Last: memcheck counts the frames once this says they are back.
        if *self.removed.get_mut() {
            NOT_FREED.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

static DOMAINS: Mutex<BTreeMap<DomId, Arc<Domain>>> = Mutex::new(BTreeMap::new());

/// Held while a frame changes hands between domains — a foreign or
/// grant mapping reads the owner's frame and installs it, a page given
/// back leaves its owner — so a frame on its way out is never mapped in
/// flight by another domain (which would then reach memory recycled for
/// someone else).
pub static FRAME_OWNERSHIP: Mutex<()> = Mutex::new(());

/// What becomes of a page taken out of the physmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposal {
    /// Back to the hypervisor's pool (ballooned out).
    Free,
    /// Still the domain's, unmapped.
    Keep,
}

/// Why [`Domain::release_page`] refused (Xen stops the batch there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseError {
    /// Nothing of the domain's there (Xen's -ENOENT).
    NotBacked,
    /// Another domain's page is mapped there (Xen's -ENXIO).
    NotOwned,
    /// Another domain maps this page with `XENMAPSPACE_gmfn_foreign`:
    /// Xen would keep it alive by its reference; Pavise keeps it in place.
    MappedElsewhere,
}

pub fn register(domain: Arc<Domain>) {
    super::events::add_domain(&domain);
    super::grants::add_domain(domain.id);
    if domain.watched {
        WATCHED_LIVE.fetch_add(1, Ordering::SeqCst);
    }
    LIVE.fetch_add(1, Ordering::SeqCst);
    NOT_FREED.fetch_add(1, Ordering::SeqCst);
    DOMAINS.lock().insert(domain.id, domain);
}

/// A domain for the toolstack to build (`XEN_DOMCTL_createdomain`): its
/// vCPUs, shared info and an empty physmap, paused once by the
/// controller, registered, nothing running. It stays after it ends until
/// destroyed.
pub fn create_blank(id: DomId, vcpus: u32) -> Result<Arc<Domain>, VirtError> {
    let second_level = SecondLevelPaging::new()?;
    let mut cpus = Vec::new();
    for _ in 0..vcpus {
        cpus.push(Vcpu::new(&second_level)?);
    }
    let shared_info = crate::mm::frames().alloc().ok_or(VirtError::OutOfMemory)?;
    crate::mm::zero_frame(shared_info);
    let memory = Memory {
        p2m: P2m::new(0),
        second_level,
        special: BTreeMap::new(),
        loose: Vec::new(),
        owned: 0,
    };
    let mut domain = Domain::new(
        id,
        String::new(),
        false,
        false,
        0,
        memory,
        shared_info,
        cpus,
    );
    domain.awaits_destroy = true;
    *domain.pause_count.get_mut() = 1;
    let domain = Arc::new(domain);
    register(domain.clone());
    Ok(domain)
}

pub fn lookup(id: DomId) -> Option<Arc<Domain>> {
    DOMAINS.lock().get(&id).cloned()
}

/// Every live domain (a snapshot).
pub fn all() -> Vec<Arc<Domain>> {
    DOMAINS.lock().values().cloned().collect()
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static WATCHED_LIVE: AtomicUsize = AtomicUsize::new(0);
static WATCHED_FAILED: AtomicBool = AtomicBool::new(false);
static EXIT_WHEN_DONE: AtomicBool = AtomicBool::new(false);

/// Registered domains whose memory is not freed yet (torn-down ones
/// until their last user drops them).
static NOT_FREED: AtomicUsize = AtomicUsize::new(0);
/// Free frames once the boot-time Dom0 was built, before any DomU (0:
/// not yet known).
static FREE_BEFORE_DOMUS: AtomicUsize = AtomicUsize::new(0);
/// An exit-when-done stop waiting for Dom0 to catch up (and, with
/// `memcheck`, for the ended domains' memory).
#[derive(Clone, Copy)]
struct PendingStop {
    code: ExitCode,
    /// System time after which it stops regardless.
    deadline: u64,
    /// [`PRIVILEGED_BLOCKS`] when the last watched domain ended.
    blocks: u64,
    memcheck: bool,
}
static PENDING_STOP: Mutex<Option<PendingStop>> = Mutex::new(None);
/// How long a stop waits for memory to come back (quarantine is two
/// ticks; scrubbing a large domain under emulation takes a while).
const SETTLE_NS: u64 = 2_000_000_000;
/// How long a stop waits for Dom0 to have gone idle once.
const CATCH_UP_NS: u64 = 1_000_000_000;
/// Times a vCPU of the privileged domain blocked (went idle).
static PRIVILEGED_BLOCKS: AtomicU64 = AtomicU64::new(0);

/// The scheduler saw a vCPU of the privileged domain block: it has done
/// what there was to do (relayed the rings, said what it had to say).
pub fn note_privileged_block() {
    PRIVILEGED_BLOCKS.fetch_add(1, Ordering::SeqCst);
}

/// Notes the free frames before the first DomU is built.
pub fn note_free_before_domus() {
    let free = crate::mm::frames().free_frames();
    FREE_BEFORE_DOMUS.store(free, Ordering::SeqCst);
}

/// From the scheduler loop: carries out a pending exit-when-done stop
/// once every ended domain's frames are back in the pool (or the wait is
/// over), saying how free memory compares with before the DomUs. Dom0
/// and the other CPUs take a few frames of their own meanwhile, the same
/// in every run; `cargo xtask fuzz` compares the figure with a run whose
/// DomUs did nothing, so a frame leaked by what a guest did shows.
pub fn stop_when_settled() {
    let Some(pending) = *PENDING_STOP.lock() else {
        return;
    };
    // Dom0 relays the DomUs' console rings and reports their ends: the
    // machine stops once it has gone idle after the last one ended (so
    // its lines, and theirs, are out), or it is gone.
    let dom0_caught_up = PRIVILEGED_BLOCKS.load(Ordering::SeqCst) > pending.blocks
        || !all().iter().any(|d| d.privileged && !d.is_dead());
    let settled = if pending.memcheck {
        super::foreign::release_quarantine();
        NOT_FREED.load(Ordering::SeqCst) == DOMAINS.lock().len()
            && super::foreign::quarantined() == 0
    } else {
        true
    };
    if !(settled && dom0_caught_up) && crate::arch::time::system_time_ns() < pending.deadline {
        return;
    }
    if PENDING_STOP.lock().take().is_none() {
        return; // another CPU is stopping
    }
    let code = pending.code;
    if !pending.memcheck {
        power::stop(code);
    }
    let before = FREE_BEFORE_DOMUS.load(Ordering::SeqCst);
    let free = crate::mm::frames().free_frames();
    if free == before {
        println!("pavise: free memory: {free} frames, as before the DomUs");
    } else {
        println!(
            "pavise: free memory: {free} frames, {before} before the DomUs ({:+})",
            free as i64 - before as i64
        );
        let (pinned, orphans) = super::grants::pinned_and_orphaned();
        let live: Vec<String> = all()
            .iter()
            .map(|d| alloc::format!("d{} {} pages", d.id, d.total_pages()))
            .collect();
        println!(
            "pavise: memcheck: {} torn-down domains not freed, {} frames in quarantine, {pinned} grant-pinned ({orphans} orphaned); live: {}",
            NOT_FREED.load(Ordering::SeqCst) - live.len(),
            super::foreign::quarantined(),
            live.join(", ")
        );
    }
    power::stop(code);
}

/// Whether a [`Domain::guest_epoch`] value says the vCPU is in the guest.
pub fn in_guest(epoch: u64) -> bool {
    epoch % 2 == 1
}

/// Watched domains that have not ended yet.
pub fn watched_live() -> usize {
    WATCHED_LIVE.load(Ordering::SeqCst)
}

/// `memcheck`: an exit-when-done stop waits for memory to come back.
static MEMCHECK: AtomicBool = AtomicBool::new(false);

pub fn set_exit_when_done(enabled: bool, memcheck: bool) {
    EXIT_WHEN_DONE.store(enabled, Ordering::SeqCst);
    MEMCHECK.store(memcheck, Ordering::SeqCst);
}

/// Stops the machine when the watched domains (or all) have ended.
fn note_end(watched: bool, clean: bool) {
    if watched {
        if !clean {
            WATCHED_FAILED.store(true, Ordering::SeqCst);
        }
        let left = WATCHED_LIVE.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 && EXIT_WHEN_DONE.load(Ordering::SeqCst) {
            crate::timeline::mark("all_ended");
            let failed = WATCHED_FAILED.load(Ordering::SeqCst);
            println!(
                "pavise: all watched domains ended{}",
                if failed {
                    " (some did not power off cleanly)"
                } else {
                    ""
                }
            );
            let code = if failed {
                ExitCode::GuestFailed
            } else {
                ExitCode::Success
            };
            // Stopped from the scheduler loop once Dom0 has caught up
            // and, with memcheck, their memory is back (see
            // `stop_when_settled`): not here, inside the ending domain,
            // which still holds it.
            let memcheck = MEMCHECK.load(Ordering::SeqCst);
            let wait = if memcheck { SETTLE_NS } else { CATCH_UP_NS };
            *PENDING_STOP.lock() = Some(PendingStop {
                code,
                deadline: crate::arch::time::system_time_ns() + wait,
                blocks: PRIVILEGED_BLOCKS.load(Ordering::SeqCst),
                memcheck,
            });
        }
    } else if !clean {
        WATCHED_FAILED.store(true, Ordering::SeqCst);
    }
    if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
        println!("pavise: no domains left");
        let failed = WATCHED_FAILED.load(Ordering::SeqCst);
        power::stop(if failed {
            ExitCode::GuestFailed
        } else {
            ExitCode::Success
        });
    }
}
