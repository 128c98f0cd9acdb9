//! A page of another domain mapped into one of ours (XENMEM_add_to_physmap_batch
//! with XENMAPSPACE_gmfn_foreign), as the console and XenStore backends map
//! a DomU's ring. The mapping is undone when it goes, so our page never
//! returns to the heap while it still shows the other domain's.

use alloc::format;
use alloc::string::String;

use guest_shim::hypercall;
use guest_shim::pages::PageBuf;
use pv_abi::PAGE_SIZE;

pub struct ForeignPage {
    page: PageBuf,
}

impl ForeignPage {
    /// Maps `domid`'s frame `gfn`; `what` names it in the error sentence.
    pub fn map(domid: u16, gfn: u64, what: &str) -> Result<Self, String> {
        let page = PageBuf::zeroed(PAGE_SIZE)
            .ok_or_else(|| format!("no page to map d{domid}'s {what}"))?;
        hypercall::map_foreign_page(domid, gfn, page.addr() / PAGE_SIZE as u64)
            .map_err(|e| format!("cannot map d{domid}'s {what}: {e:?}"))?;
        Ok(Self { page })
    }

    /// The mapped page's first byte (PAGE_SIZE bytes).
    pub fn ptr(&self) -> *mut u8 {
        self.page.addr() as *mut u8
    }
}

impl Drop for ForeignPage {
    fn drop(&mut self) {
        // If the other domain has gone the hypervisor has already put our
        // page back, and this is refused; either way ours is ours again.
        let _ = hypercall::unmap_foreign_page(self.page.addr() / PAGE_SIZE as u64);
    }
}
