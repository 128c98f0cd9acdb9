//! The PV console ring (io/console.h, `xencons_interface`): in[1024],
//! out[2048], then in_cons, in_prod, out_cons, out_prod (u32 each).

pub const IN: usize = 0;
pub const IN_SIZE: u32 = 1024;
pub const OUT: usize = 1024;
pub const OUT_SIZE: u32 = 2048;
pub const IN_CONS: usize = 3072;
pub const IN_PROD: usize = 3076;
pub const OUT_CONS: usize = 3080;
pub const OUT_PROD: usize = 3084;
