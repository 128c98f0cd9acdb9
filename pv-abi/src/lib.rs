//! The guest ABI: Xen's public PVH interface as Rust types and constants,
//! shared by the hypervisor, guest-shim and Dom0 so that each number and
//! layout is written once.
//!
//! The reference is Xen's `xen/include/public/` (x86_64 ABI: `long`,
//! `xen_ulong_t`, `xen_pfn_t` and guest handles are all 64 bits). Every
//! `#[repr(C)]` type has a test of its size and field offsets against the
//! header, and derives zerocopy's `FromBytes`/`IntoBytes` so that it can be
//! copied out of and into guest memory without `unsafe`. Where C leaves
//! implicit padding the Rust type names it (`pad*` fields), because
//! `IntoBytes` forbids hidden padding bytes.
//!
//! Naming: a C `struct xen_foo_bar` becomes `FooBar` (the `xen_` prefix is
//! dropped; other prefixes such as `evtchn_`, `gnttab_`, `vcpu_`, `sched_`
//! stay), fields keep their C names, and each type's doc comment names the
//! C struct it mirrors. Constants keep their C spelling in upper case.
//!
//! Modules:
//! - [`errno`]: Xen errno values and hypercall return encoding;
//! - [`hypercall`]: hypercall numbers, `DOMID_*`, and the sub-ops and
//!   arguments of console_io, sched_op, vcpu_op, xen_version, hvm_op,
//!   vm_assist and multicall;
//! - [`memory`]: memory_op (`XENMEM_*`, `XENMAPSPACE_*`, physmap arguments);
//! - [`start_info`]: PVH boot (`hvm_start_info`, ELF notes);
//! - [`cpuid`]: hypervisor discovery leaves and the hypercall page;
//! - [`shared_info`]: `shared_info`, `vcpu_info`, `vcpu_time_info`;
//! - [`event_channel`]: `EVTCHNOP_*`, VIRQs, 2-level event channel layout;
//! - [`grant_table`]: grant table v1;
//! - [`physdev`]: physdev_op (pirqs of the privileged domain);
//! - [`ring`]: the io/ring.h shared-ring index protocol;
//! - [`console`]: the PV console ring page;
//! - [`xenstore`]: the XenStore wire protocol and ring page;
//! - [`xenbus`]: the split-driver states of io/xenbus.h;
//! - [`blkif`]: the block device protocol of io/blkif.h;
//! - [`netif`]: the network device protocol of io/netif.h.
#![no_std]

/// Defines a field-less `#[repr(int)]` enum of ABI numbers with
/// `TryFrom<int>` (the error is the unknown value), `From<Enum> for int`,
/// `raw()` and the list of all variants.
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr($repr)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $value ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The ABI number.
            pub const fn raw(self) -> $repr {
                self as $repr
            }
        }

        impl TryFrom<$repr> for $name {
            type Error = $repr;

            fn try_from(value: $repr) -> Result<Self, $repr> {
                match value {
                    $( $value => Ok($name::$variant), )+
                    other => Err(other),
                }
            }
        }

        impl $name {
            /// The variant for a register value, which must be exactly one
            /// of the ABI numbers (no truncation to the C type).
            pub fn from_reg(value: u64) -> Option<Self> {
                <$repr>::try_from(value)
                    .ok()
                    .and_then(|v| <Self as TryFrom<$repr>>::try_from(v).ok())
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> $repr {
                value as $repr
            }
        }
    };
}

/// `Default` as all-zero bytes, for ABI structs whose arrays are too long
/// for `#[derive(Default)]`.
macro_rules! zeroed_default {
    ($($ty:ty),+ $(,)?) => {
        $(
            impl Default for $ty {
                fn default() -> Self {
                    <$ty as zerocopy::FromZeros>::new_zeroed()
                }
            }
        )+
    };
}

pub mod blkif;
pub mod console;
pub mod cpuid;
pub mod domctl;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall;
pub mod memory;
pub mod netif;
pub mod physdev;
pub mod ring;
pub mod shared_info;
pub mod start_info;
pub mod sysctl;
pub mod xenbus;
pub mod xenstore;

pub use hypercall::{DOMID_SELF, DomId};

/// log2 of the page size of the ABI (`XEN_PAGE_SHIFT`).
pub const PAGE_SHIFT: u32 = 12;
/// The page size of the ABI (`XEN_PAGE_SIZE`): frame numbers count these.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
