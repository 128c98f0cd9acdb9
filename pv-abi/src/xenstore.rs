//! XenStore wire protocol (io/xs_wire.h): message types, limits and the
//! ring page layout (`xenstore_domain_interface`).

/// `xsd_sockmsg_type`.
pub mod msg {
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const GET_PERMS: u32 = 3;
    pub const WATCH: u32 = 4;
    pub const UNWATCH: u32 = 5;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const INTRODUCE: u32 = 8;
    pub const RELEASE: u32 = 9;
    pub const GET_DOMAIN_PATH: u32 = 10;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const SET_PERMS: u32 = 14;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
}

/// Header size of `xsd_sockmsg` {type, req_id, tx_id, len}.
pub const HEADER_LEN: usize = 16;
pub const PAYLOAD_MAX: usize = 4096;
pub const ABS_PATH_MAX: usize = 3072;
pub const REL_PATH_MAX: usize = 2048;

/// `xenstore_domain_interface`: req[1024], rsp[1024], then the indices.
pub mod ring {
    pub const SIZE: u32 = 1024;
    pub const REQ: usize = 0;
    pub const RSP: usize = 1024;
    pub const REQ_CONS: usize = 2048;
    pub const REQ_PROD: usize = 2052;
    pub const RSP_CONS: usize = 2056;
    pub const RSP_PROD: usize = 2060;
}
