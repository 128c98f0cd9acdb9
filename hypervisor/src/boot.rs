//! Boot: from the bootstrap's jump into Rust to the ready line.
//!
//! Reads the boot information (multiboot2 from GRUB, or the PVH start info
//! from QEMU's direct boot), parses the command line, builds the frame
//! allocator, heap and page tables, moves onto the boot CPU's own stack,
//! starts the other CPUs and reports `pavise: ready ...`. Fatal problems end
//! in one `pavise: fatal: ...` sentence and a clean stop.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::acpi::{self, RootTable};
use crate::arch::power::{self, ExitCode};
use crate::arch::{percpu, smp, time};
use crate::cmdline::{self, MAX_CPUS};
use crate::console;
use crate::mm::frame::{MemRegion, PhysRange, RegionKind};
use crate::mm::{self, frame::FRAME_SIZE, heap, paging};
use crate::println;

const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
const PROTOCOL_MULTIBOOT2: u32 = 1;
const PROTOCOL_PVH: u32 = 2;
const PVH_START_INFO_MAGIC: u32 = 0x336e_c578;

/// Pavise will not run with less free memory than this after boot.
const MIN_FREE_MIB: u64 = 32;
/// Assumed TSC rate when the PIT cannot be used for calibration.
const FALLBACK_TSC_PER_MS: u64 = 1_000_000;

const MAX_REGIONS: usize = 128;
const MAX_MODULES: usize = 16;
const CMDLINE_MAX: usize = 1024;

/// TSC at hypervisor entry: the zero of the boot clock.
static ENTRY_TSC: AtomicU64 = AtomicU64::new(0);

/// A module handed over by the boot loader.
#[derive(Clone, Copy)]
pub struct Module {
    pub start: u64,
    pub end: u64,
    string: [u8; MODULE_STRING_MAX],
    string_len: usize,
}

const MODULE_STRING_MAX: usize = 512;

impl Module {
    fn new(start: u64, end: u64, string: &[u8]) -> Self {
        let len = string.len().min(MODULE_STRING_MAX);
        let mut m = Self {
            start,
            end,
            string: [0; MODULE_STRING_MAX],
            string_len: len,
        };
        m.string[..len].copy_from_slice(&string[..len]);
        m
    }

    pub fn string(&self) -> &str {
        core::str::from_utf8(&self.string[..self.string_len]).unwrap_or("")
    }
}

/// What the boot loader told us, copied out of its structures.
pub struct BootInfo {
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    regions: [MemRegion; MAX_REGIONS],
    region_count: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    /// Memory the boot loader's own structures occupy.
    info_range: PhysRange,
    rsdp_root: Option<RootTable>,
    loader: &'static str,
}

impl BootInfo {
    fn empty(loader: &'static str) -> Self {
        Self {
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            regions: [MemRegion {
                start: 0,
                len: 0,
                kind: RegionKind::Reserved,
            }; MAX_REGIONS],
            region_count: 0,
            modules: [Module::new(0, 0, b""); MAX_MODULES],
            module_count: 0,
            info_range: PhysRange::new(0, 0),
            rsdp_root: None,
            loader,
        }
    }

    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    fn set_cmdline(&mut self, bytes: &[u8]) {
        let len = bytes.len().min(CMDLINE_MAX);
        self.cmdline[..len].copy_from_slice(&bytes[..len]);
        self.cmdline_len = len;
    }

    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..self.region_count]
    }

    fn push_region(&mut self, region: MemRegion) {
        if self.region_count < MAX_REGIONS {
            self.regions[self.region_count] = region;
            self.region_count += 1;
        }
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }

    fn push_module(&mut self, module: Module) -> Result<(), BootError> {
        if self.module_count == MAX_MODULES {
            return Err(BootError::TooManyModules);
        }
        self.modules[self.module_count] = module;
        self.module_count += 1;
        Ok(())
    }
}

/// Why boot cannot go on; each prints as one sentence.
enum BootError {
    UnknownProtocol(u32),
    BadMultibootMagic(u32),
    BadMultibootInfo,
    BadStartInfo(u32),
    NoMemoryMap,
    TooManyModules,
    TooLittleMemory { free_mib: u64 },
    OutOfMemory(&'static str),
    TooManyCpus { found: usize },
    Cmdline(alloc::string::String),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownProtocol(p) => write!(f, "entered through an unknown boot protocol ({p})"),
            Self::BadMultibootMagic(m) => write!(
                f,
                "the boot loader passed magic {m:#x}, not multiboot2's {MULTIBOOT2_MAGIC:#x} — boot Pavise with GRUB's `multiboot2` command"
            ),
            Self::BadMultibootInfo => f.write_str("the multiboot2 boot information is malformed"),
            Self::BadStartInfo(m) => write!(
                f,
                "the PVH start info has magic {m:#x}, not {PVH_START_INFO_MAGIC:#x}"
            ),
            Self::NoMemoryMap => f.write_str("the boot loader gave no memory map"),
            Self::TooManyModules => {
                write!(
                    f,
                    "more than {MAX_MODULES} boot modules — pass fewer modules"
                )
            }
            Self::TooLittleMemory { free_mib } => write!(
                f,
                "only {free_mib} MiB of usable memory; Pavise needs at least {MIN_FREE_MIB} MiB — give the machine more memory"
            ),
            Self::OutOfMemory(what) => write!(f, "out of memory while setting up {what}"),
            Self::TooManyCpus { found } => write!(
                f,
                "the machine has {found} CPUs but Pavise supports at most {MAX_CPUS} — boot with maxcpus={MAX_CPUS} or fewer CPUs"
            ),
            Self::Cmdline(text) => f.write_str(text),
        }
    }
}

fn fatal(err: BootError) -> ! {
    println!("pavise: fatal: {err}");
    power::stop(ExitCode::BootError)
}

fn multiboot2_region_kind(typ: multiboot2::MemoryAreaType) -> RegionKind {
    use multiboot2::MemoryAreaType as T;
    match typ {
        T::Available => RegionKind::Usable,
        T::AcpiAvailable => RegionKind::AcpiReclaimable,
        T::ReservedHibernate => RegionKind::AcpiNvs,
        T::Defective => RegionKind::Defective,
        _ => RegionKind::Reserved,
    }
}

fn from_multiboot2(info_addr: u32, magic: u32) -> Result<BootInfo, BootError> {
    if magic != MULTIBOOT2_MAGIC {
        return Err(BootError::BadMultibootMagic(magic));
    }
    // SAFETY: GRUB passed this address with the multiboot2 magic; it lies
    // in the identity-mapped first 4 GiB and nothing writes it during boot.
    let mbi = unsafe {
        multiboot2::BootInformation::load(info_addr as *const multiboot2::BootInformationHeader)
    }
    .map_err(|_| BootError::BadMultibootInfo)?;
    let mut boot = BootInfo::empty("GRUB (multiboot2)");
    boot.info_range = PhysRange::new(mbi.start_address() as u64, mbi.end_address() as u64);
    if let Some(Ok(cmdline)) = mbi.command_line_tag().map(|t| t.cmdline()) {
        boot.set_cmdline(cmdline.as_bytes());
    }
    let map = mbi.memory_map_tag().ok_or(BootError::NoMemoryMap)?;
    for area in map.memory_areas() {
        boot.push_region(MemRegion {
            start: area.start_address(),
            len: area.size(),
            kind: multiboot2_region_kind(area.typ()),
        });
    }
    for module in mbi.module_tags() {
        let string = module.cmdline().unwrap_or("");
        boot.push_module(Module::new(
            module.start_address() as u64,
            module.end_address() as u64,
            string.as_bytes(),
        ))?;
    }
    boot.rsdp_root = if let Some(v2) = mbi.rsdp_v2_tag() {
        Some(RootTable::Xsdt(v2.xsdt_address() as u64))
    } else {
        mbi.rsdp_v1_tag()
            .map(|v1| RootTable::Rsdt(v1.rsdt_address() as u32))
    };
    Ok(boot)
}

/// Reads `T` from an identity-mapped physical address below 4 GiB.
///
/// # Safety
/// `addr` must point at readable memory holding a `T`.
unsafe fn read_phys<T: Copy>(addr: u64) -> T {
    // SAFETY: the caller vouches for the address; unaligned reads are fine.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// Reads a NUL-terminated string at `addr`, at most `max` bytes.
///
/// # Safety
/// `addr..addr+max` must be readable (or the string end sooner).
unsafe fn c_string_len(addr: u64, max: usize) -> usize {
    // SAFETY: forwarded to the caller.
    (0..max)
        .find(|&i| unsafe { read_phys::<u8>(addr + i as u64) } == 0)
        .unwrap_or(max)
}

fn from_pvh(info_addr: u32) -> Result<BootInfo, BootError> {
    let base = info_addr as u64;
    // SAFETY: the PVH loader passes the start info's address in %ebx; the
    // first 4 GiB are identity-mapped. Fields are read at the offsets of
    // hvm_start_info (XEN-ABI.md) and the magic is checked first.
    unsafe {
        let magic: u32 = read_phys(base);
        if magic != PVH_START_INFO_MAGIC {
            return Err(BootError::BadStartInfo(magic));
        }
        let mut boot = BootInfo::empty("PVH direct boot");
        let nr_modules: u32 = read_phys(base + 12);
        let modlist: u64 = read_phys(base + 16);
        let cmdline: u64 = read_phys(base + 24);
        let rsdp: u64 = read_phys(base + 32);
        let memmap: u64 = read_phys(base + 40);
        let memmap_entries: u32 = read_phys(base + 48);
        boot.info_range = PhysRange::new(base, base + 56);
        if cmdline != 0 {
            let len = c_string_len(cmdline, CMDLINE_MAX);
            let bytes = core::slice::from_raw_parts(cmdline as *const u8, len);
            boot.set_cmdline(bytes);
        }
        for i in 0..nr_modules as u64 {
            let entry = modlist + i * 32;
            let (paddr, size, string): (u64, u64, u64) = (
                read_phys(entry),
                read_phys(entry + 8),
                read_phys(entry + 16),
            );
            let text: &[u8] = if string == 0 {
                b""
            } else {
                core::slice::from_raw_parts(
                    string as *const u8,
                    c_string_len(string, MODULE_STRING_MAX),
                )
            };
            boot.push_module(Module::new(paddr, paddr.saturating_add(size), text))?;
        }
        if memmap == 0 || memmap_entries == 0 {
            return Err(BootError::NoMemoryMap);
        }
        for i in 0..memmap_entries.min(MAX_REGIONS as u32) as u64 {
            let entry = memmap + i * 24;
            let (addr, size, typ): (u64, u64, u32) = (
                read_phys(entry),
                read_phys(entry + 8),
                read_phys(entry + 16),
            );
            let kind = match typ {
                1 => RegionKind::Usable,
                3 => RegionKind::AcpiReclaimable,
                4 => RegionKind::AcpiNvs,
                5 => RegionKind::Defective,
                _ => RegionKind::Reserved,
            };
            boot.push_region(MemRegion {
                start: addr,
                len: size,
                kind,
            });
        }
        if rsdp != 0 {
            let bytes = core::slice::from_raw_parts(rsdp as *const u8, 36);
            boot.rsdp_root = acpi::parse_rsdp(bytes).ok();
        }
        Ok(boot)
    }
}

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Everything the frame allocator must never hand out.
fn reserved_ranges(boot: &BootInfo) -> ([PhysRange; MAX_MODULES + 2], usize) {
    let mut ranges = [PhysRange::new(0, 0); MAX_MODULES + 2];
    ranges[0] = PhysRange::new(
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    );
    ranges[1] = boot.info_range;
    for (i, m) in boot.modules().iter().enumerate() {
        ranges[2 + i] = PhysRange::new(m.start, m.end);
    }
    (ranges, 2 + boot.module_count)
}

/// Entry from the bootstrap (`main.rs`), on the boot stack, interrupts off.
pub extern "C" fn entry(protocol: u32, info_addr: u32, magic: u32) -> ! {
    ENTRY_TSC.store(time::rdtsc(), Ordering::SeqCst);
    time::set_system_time_zero(ENTRY_TSC.load(Ordering::SeqCst));
    console::init();
    // Crash reports from the trap handlers go out through the console's
    // lock-free path (arch knows nothing above it: it is handed the writer).
    crate::arch::idt::set_reporter(console::write_fmt_emergency);
    crate::arch::lapic::disable_legacy_pic();
    let boot = match protocol {
        PROTOCOL_MULTIBOOT2 => from_multiboot2(info_addr, magic),
        PROTOCOL_PVH => from_pvh(info_addr),
        other => Err(BootError::UnknownProtocol(other)),
    };
    let boot = boot.unwrap_or_else(|e| fatal(e));
    let cmdline = boot.cmdline();
    power::set_qemu_exit(cmdline::requests_qemu_exit(cmdline));
    // Command-line errors are reported after the heap exists (they format).
    let options = cmdline::parse(cmdline);
    let level = options
        .as_ref()
        .map(|o| o.loglvl)
        .unwrap_or(cmdline::LogLevel::Info);
    console::init_log(level.filter());

    if time::calibrate().is_none() {
        time::assume_rate(FALLBACK_TSC_PER_MS);
        log::warn!("PIT calibration failed; assuming a 1 GHz TSC");
    }

    let (reserved, n) = reserved_ranges(&boot);
    mm::init_frames(boot.regions(), &reserved[..n]);
    let free_mib = mm::frames().free_bytes() >> 20;
    if free_mib < MIN_FREE_MIB {
        fatal(BootError::TooLittleMemory { free_mib });
    }
    heap::init().unwrap_or_else(|what| fatal(BootError::OutOfMemory(what)));
    cmdline::save(cmdline);
    let options = match options {
        Ok(o) => o,
        Err(e) => fatal(BootError::Cmdline(alloc::format!("{e}"))),
    };
    log::info!(
        "Pavise {} booted by {} with '{}'",
        env!("CARGO_PKG_VERSION"),
        boot.loader,
        cmdline
    );
    let untracked = mm::frames().untracked_bytes();
    if untracked > 0 {
        log::warn!("{} MiB of memory above 64 GiB left unused", untracked >> 20);
    }

    smp::install_trampoline();
    paging::init(boot.regions()).unwrap_or_else(|_| fatal(BootError::OutOfMemory("page tables")));
    let stacks = paging::map_cpu_stacks(0)
        .unwrap_or_else(|_| fatal(BootError::OutOfMemory("the boot CPU's stacks")));
    let context = BspContext {
        rsdp_root: boot.rsdp_root,
        maxcpus: options.maxcpus,
        selftest: options.selftest,
        modules: boot.modules().to_vec(),
        exit_when_done: options.exit_when_done,
        memcheck: options.memcheck,
        bench: options.bench,
    };
    // SAFETY: the stack was just mapped; `bsp_main` never returns, so
    // nothing on the boot stack is used again.
    unsafe { switch_stack(stacks.main_top, &context) }
}

/// What the boot CPU carries over to its own stack.
struct BspContext {
    rsdp_root: Option<RootTable>,
    maxcpus: Option<usize>,
    selftest: Option<cmdline::Selftest>,
    modules: Vec<Module>,
    exit_when_done: bool,
    memcheck: bool,
    bench: bool,
}

/// Moves onto `stack_top` and calls `bsp_main(context)`.
///
/// # Safety
/// `stack_top` must be the top of a mapped, unused stack; `context` must
/// stay valid (it lives on the old stack, which is never unwound).
unsafe fn switch_stack(stack_top: u64, context: &BspContext) -> ! {
    // SAFETY: per the function contract; bsp_main is `-> !`.
    unsafe {
        core::arch::asm!(
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "call {main}",
            "ud2",
            stack = in(reg) stack_top,
            main = sym bsp_main,
            in("rdi") context as *const BspContext,
            options(noreturn)
        )
    }
}

extern "C" fn bsp_main(context: &BspContext) -> ! {
    let stacks = paging::stacks_of(0);
    let bsp = smp::init_this_cpu(0, &stacks);
    if let Some(test) = context.selftest {
        run_selftest(test);
    }

    let madt = match discover_cpus(context.rsdp_root) {
        Ok(madt) => Some(madt),
        Err(e) => {
            log::warn!("CPU discovery failed ({e}); running on the boot CPU only");
            None
        }
    };
    let apic_ids = madt.as_ref().map_or(Vec::new(), |m| m.apic_ids.clone());
    if apic_ids.len() > MAX_CPUS && context.maxcpus.is_none() {
        fatal(BootError::TooManyCpus {
            found: apic_ids.len(),
        });
    }
    let want = context.maxcpus.unwrap_or(MAX_CPUS).min(MAX_CPUS);
    let others: Vec<u32> = apic_ids
        .iter()
        .copied()
        .filter(|&id| id != bsp.apic_id)
        .take(want - 1)
        .collect();
    smp::start_aps(&others);

    let free_mib = mm::frames().free_bytes() >> 20;
    if context.bench {
        crate::timeline::enable();
        crate::timeline::mark_at("hypervisor_entry", ENTRY_TSC.load(Ordering::SeqCst));
        crate::timeline::mark("hypervisor_ready");
    }
    println!(
        "pavise: ready in {} ms: {} CPUs, {} MiB free",
        time::ms_since(ENTRY_TSC.load(Ordering::SeqCst)),
        smp::online(),
        free_mib
    );
    if context.modules.is_empty() {
        log::info!("nothing to run");
        power::stop(ExitCode::Success)
    }
    let dmar = match find_table(context.rsdp_root, b"DMAR") {
        Some(table) => acpi::parse_dmar(table).unwrap_or_else(|e| {
            log::warn!("the DMAR table is unusable ({e}); no IOMMU");
            Vec::new()
        }),
        None => Vec::new(),
    };
    crate::domain::devices::init(madt.as_ref(), &dmar);
    start_domains(context)
}

/// Builds the manifest's domains (the first module is Dom0) and turns
/// every CPU into a scheduler.
fn start_domains(context: &BspContext) -> ! {
    use crate::domain::{builder, manifest, registry};
    match crate::virt::enable_this_cpu(0) {
        Ok(backend) => log::info!("guests run on {}", backend.name()),
        Err(e) => {
            println!("pavise: fatal: cannot run domains: {e}");
            power::stop(ExitCode::BootError);
        }
    }
    registry::set_exit_when_done(context.exit_when_done, context.memcheck);
    match time::read_rtc() {
        Some(now) => crate::domain::events::set_boot_wallclock(
            now.saturating_sub(time::system_time_ns() / 1_000_000_000),
        ),
        None => log::warn!("the RTC gave no valid date; guests' wallclock starts at 1970"),
    }
    if context.bench {
        const ROUND_TRIPS: u32 = 10_000;
        match crate::virt::bare_exit_cycles(ROUND_TRIPS) {
            Ok(cycles) => {
                println!("pavise: bench: bare_vmexit_cycles={cycles} ({ROUND_TRIPS} round trips)")
            }
            Err(e) => println!("pavise: bench: bare exit loop failed: {e}"),
        }
        crate::timeline::mark("bare_exits_measured");
    }
    // A module whose string is `ramdisk` belongs to the domain before it.
    let module_bytes = |m: &&Module| {
        let len = (m.end - m.start) as usize;
        // SAFETY: the boot loader put the module there; the frame allocator
        // never hands out its frames, and it is identity-mapped.
        unsafe { core::slice::from_raw_parts(m.start as *const u8, len) }
    };
    let mut domains: Vec<(&Module, Option<&Module>)> = Vec::new();
    // Files for Dom0's toolstack, as its start-info modules (name, bytes).
    let mut files: Vec<(&str, &[u8])> = Vec::new();
    for module in &context.modules {
        match manifest::file_name(module.string()) {
            Some(Ok(name)) => {
                files.push((name, module_bytes(&module)));
                continue;
            }
            Some(Err(e)) => {
                println!("pavise: {e}; ignored");
                continue;
            }
            None => {}
        }
        match domains.last_mut() {
            Some((_, ramdisk @ None)) if manifest::is_ramdisk(module.string()) => {
                *ramdisk = Some(module)
            }
            _ if manifest::is_ramdisk(module.string()) => {
                println!("pavise: a ramdisk module follows no domain module; ignored")
            }
            _ => domains.push((module, None)),
        }
    }
    let specs: Vec<_> = domains
        .iter()
        .enumerate()
        .map(|(index, (module, _))| manifest::parse(module.string(), index))
        .collect();
    let mut built = 0;
    for (index, (module, ramdisk)) in domains.iter().enumerate() {
        let privileged = index == 0;
        let mut spec = match &specs[index] {
            Ok(spec) => spec.clone(),
            Err(e) => {
                println!(
                    "pavise: d{index}: bad module string '{}': {e}",
                    module.string()
                );
                continue;
            }
        };
        if privileged {
            // Dom0's toolstack learns the boot-time DomUs from its command
            // line (it did not create them, so it has no other record of
            // their names), as a dom0less Xen tells its control domain.
            for (id, domu) in specs.iter().enumerate().skip(1) {
                if let Ok(d) = domu {
                    spec.cmdline.push_str(&manifest::domu_word(id as u16, d));
                }
            }
        }
        let mut dma_pool = None;
        if privileged && !files.is_empty() {
            // Dom0 holds the files in its memory, on top of what it asked.
            let bytes: u64 = files
                .iter()
                .map(|(_, b)| (b.len() as u64).next_multiple_of(4096))
                .sum();
            spec.mem_mib += bytes.div_ceil(1 << 20) + 1;
        }
        if privileged {
            dma_pool = crate::domain::devices::reserve_dma_pool(spec.mem_mib << 20);
            match dma_pool {
                Some(base) => spec.cmdline.push_str(&format!(
                    " pavise.dma={:#x}:{:#x}",
                    base.start(),
                    crate::domain::devices::DMA_POOL_BYTES
                )),
                None => println!("pavise: no room for Dom0's DMA pool: its drivers get no disk"),
            }
        }
        let image = module_bytes(module);
        let ramdisk = ramdisk.as_ref().map(module_bytes);
        let watched = !privileged;
        // Its ramdisk first (with no name), then, for Dom0, the files.
        let mut modules: Vec<builder::Module> = ramdisk
            .map(|bytes| builder::Module { bytes, cmdline: "" })
            .into_iter()
            .collect();
        if privileged {
            modules.extend(
                files
                    .iter()
                    .map(|&(cmdline, bytes)| builder::Module { bytes, cmdline }),
            );
        }
        let modules = modules.as_slice();
        if index == 1 {
            registry::note_free_before_domus();
        }
        match builder::build(index as u16, &spec, image, modules, privileged, watched) {
            Ok(d) => {
                if privileged {
                    crate::domain::devices::give_to_dom0(&d, dma_pool);
                }
                built += 1;
                println!(
                    "pavise: d{} ({}) built: {} MiB, {} vCPU{}{}{}",
                    d.id,
                    d.name,
                    spec.mem_mib,
                    spec.vcpus,
                    if spec.vcpus == 1 { "" } else { "s" },
                    ramdisk.map_or(String::new(), |r| format!(
                        ", ramdisk of {} KiB",
                        r.len() >> 10
                    )),
                    if privileged { ", privileged" } else { "" }
                );
            }
            Err(e) => println!("pavise: d{index} ({}) not built: {e}", spec.name),
        }
    }
    if built == 0 {
        println!("pavise: no domain could be built");
        power::stop(ExitCode::GuestFailed);
    }
    // Waiting for DomUs none of which could be built would wait for ever.
    let domus_asked = domains.len() > 1;
    if context.exit_when_done && domus_asked && registry::watched_live() == 0 {
        println!(
            "pavise: no DomU could be built (see above), so exit_when_done has nothing to wait for: stopping"
        );
        power::stop(ExitCode::GuestFailed);
    }
    crate::timeline::mark("domains_built");
    smp::release_aps(ap_joins_scheduler);
    crate::domain::sched::run_cpu()
}

/// An application processor, released once domains exist: the
/// virtualization extension on, then the scheduler.
fn ap_joins_scheduler(index: usize) -> ! {
    if let Err(e) = crate::virt::enable_this_cpu(index) {
        log::warn!("cpu{index}: cannot run guests: {e}");
        power::halt_forever();
    }
    crate::domain::sched::run_cpu()
}

/// Faults on purpose; each must end in a clean diagnostic and stop.
fn run_selftest(test: cmdline::Selftest) {
    use cmdline::Selftest;
    log::warn!("selftest: faulting on purpose ({test:?})");
    match test {
        Selftest::PageFault => {
            // SAFETY: not safe at all — page 0 is unmapped on purpose and
            // this read must fault; the trap handler stops the machine.
            let value = unsafe { core::ptr::read_volatile(core::hint::black_box(8) as *const u64) };
            log::error!("selftest: read {value:#x} from an unmapped page");
        }
        // SAFETY: deliberately executes an undefined instruction (#UD).
        Selftest::InvalidOpcode => unsafe { core::arch::asm!("ud2") },
        Selftest::StackOverflow => {
            let depth = recurse(core::hint::black_box(0));
            log::error!("selftest: recursed {depth} times without hitting the guard page");
        }
        Selftest::Panic => panic!("selftest: panicking on purpose"),
    }
}

/// Eats 4 KiB of stack per call until the guard page stops it.
fn recurse(depth: u64) -> u64 {
    let mut pad = [0u8; 4096];
    core::hint::black_box(&mut pad);
    if depth > 1_000_000 {
        depth
    } else {
        recurse(depth + 1) + pad[depth as usize % 4096] as u64
    }
}

/// The ACPI MADT: the enabled CPUs' APIC ids, the I/O APICs.
fn discover_cpus(root: Option<RootTable>) -> Result<acpi::Madt, acpi::AcpiError> {
    let root = match root {
        Some(r) => r,
        None => find_rsdp().ok_or(acpi::AcpiError::BadSignature)?,
    };
    let (addr, wide, sig) = match root {
        RootTable::Rsdt(a) => (a as u64, false, b"RSDT"),
        RootTable::Xsdt(a) => (a, true, b"XSDT"),
    };
    let root_table = acpi::validate_sdt(phys_table(addr)?, sig)?;
    for table_addr in acpi::root_entries(root_table, wide) {
        let table = phys_table(table_addr)?;
        if table.get(..4) == Some(b"APIC") {
            return acpi::parse_madt(acpi::validate_sdt(table, b"APIC")?);
        }
    }
    Err(acpi::AcpiError::BadSignature)
}

/// The validated ACPI table with `signature`, if the firmware has one.
fn find_table(root: Option<RootTable>, signature: &[u8; 4]) -> Option<&'static [u8]> {
    let root = root.or_else(find_rsdp)?;
    let (addr, wide, sig) = match root {
        RootTable::Rsdt(a) => (a as u64, false, b"RSDT"),
        RootTable::Xsdt(a) => (a, true, b"XSDT"),
    };
    let root_table = acpi::validate_sdt(phys_table(addr).ok()?, sig).ok()?;
    acpi::root_entries(root_table, wide)
        .filter_map(|a| phys_table(a).ok())
        .find(|t| t.get(..4) == Some(&signature[..]))
        .and_then(|t| acpi::validate_sdt(t, signature).ok())
}

/// An ACPI table in identity-mapped firmware memory, sized by its header.
fn phys_table(addr: u64) -> Result<&'static [u8], acpi::AcpiError> {
    const MAX_TABLE: usize = 1 << 20;
    if addr == 0 || addr >= (4 << 30) {
        return Err(acpi::AcpiError::Truncated);
    }
    // SAFETY: firmware tables below 4 GiB are identity-mapped and never
    // written by Pavise; the length is bounded before the slice is made.
    unsafe {
        let header = core::slice::from_raw_parts(addr as *const u8, acpi::SDT_HEADER_LEN);
        let len = acpi::sdt_length(header).ok_or(acpi::AcpiError::Truncated)?;
        if !(acpi::SDT_HEADER_LEN..=MAX_TABLE).contains(&len) {
            return Err(acpi::AcpiError::Truncated);
        }
        Ok(core::slice::from_raw_parts(addr as *const u8, len))
    }
}

/// Scans the BIOS areas for the RSDP (the PC way when no loader said).
fn find_rsdp() -> Option<RootTable> {
    // SAFETY: the EBDA pointer at 0x40e and the BIOS ROM area are legacy
    // PC memory below 1 MiB, identity-mapped and read-only to us.
    let ebda = unsafe { read_phys::<u16>(0x40e) } as u64 * 16;
    let areas = [(ebda, ebda + 1024), (0xe0000, 0x100000)];
    for (start, end) in areas {
        if start == 0 {
            continue;
        }
        let mut addr = start;
        while addr + 36 <= end {
            // SAFETY: inside the legacy areas above.
            let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, 36) };
            if let Ok(root) = acpi::parse_rsdp(bytes) {
                return Some(root);
            }
            addr += 16;
        }
    }
    None
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        power::halt_forever();
    }
    let cpu = percpu::current_index();
    match info.location() {
        Some(l) => console::write_fmt_emergency(format_args!(
            "pavise: panic on cpu{cpu} at {}:{}: {}\n",
            l.file(),
            l.line(),
            info.message()
        )),
        None => console::write_fmt_emergency(format_args!(
            "pavise: panic on cpu{cpu}: {}\n",
            info.message()
        )),
    }
    let rbp: u64;
    // SAFETY: reads the frame pointer register only.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp) };
    crate::arch::idt::print_backtrace(rbp);
    power::stop(ExitCode::Crash)
}

#[allow(dead_code)]
const _: () = assert!(FRAME_SIZE == 4096);
