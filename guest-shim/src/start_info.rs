//! The PVH `hvm_start_info` the domain builder (or QEMU) hands over in %ebx,
//! read into a safe view.

pub const MAGIC: u32 = 0x336e_c578;
pub const SIF_PRIVILEGED: u32 = 1 << 0;
pub const SIF_INITDOMAIN: u32 = 1 << 1;

#[derive(Clone, Copy, Debug)]
pub struct StartInfo {
    pub flags: u32,
    pub nr_modules: u32,
    cmdline: &'static str,
    pub memmap_entries: u32,
    memmap: u64,
}

fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: the start info lives in our identity-mapped memory, put
    // there by the loader; fields are read at hvm_start_info's offsets.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

impl StartInfo {
    /// # Safety
    /// `addr` must be the start-info address passed at entry.
    pub unsafe fn from_addr(addr: u64) -> Option<Self> {
        if addr == 0 || read::<u32>(addr) != MAGIC {
            return None;
        }
        let cmdline_addr: u64 = read(addr + 24);
        let cmdline = if cmdline_addr == 0 {
            ""
        } else {
            let len = (0..4096)
                .find(|&i| read::<u8>(cmdline_addr + i) == 0)
                .unwrap_or(0);
            // SAFETY: NUL-terminated string in our memory, length found above.
            let bytes =
                unsafe { core::slice::from_raw_parts(cmdline_addr as *const u8, len as usize) };
            core::str::from_utf8(bytes).unwrap_or("")
        };
        Some(Self {
            flags: read(addr + 8),
            nr_modules: read(addr + 12),
            cmdline,
            memmap: read(addr + 40),
            memmap_entries: read(addr + 48),
        })
    }

    pub fn cmdline(&self) -> &'static str {
        self.cmdline
    }

    pub fn privileged(&self) -> bool {
        self.flags & SIF_PRIVILEGED != 0
    }

    /// Memory map entries: (address, size, type).
    pub fn memmap(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        (0..self.memmap_entries as u64).map(|i| {
            let e = self.memmap + i * 24;
            (read(e), read(e + 8), read(e + 16))
        })
    }
}
