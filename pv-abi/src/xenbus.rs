//! io/xenbus.h: the states a split driver's front and back end publish in
//! their XenStore `state` nodes, as decimal text.

abi_enum! {
    /// `enum xenbus_state`.
    pub enum XenbusState: u32 {
        Unknown = 0,
        Initialising = 1,
        /// The back end is waiting for the front end's details (ring, port).
        InitWait = 2,
        /// The front end has published its details.
        Initialised = 3,
        Connected = 4,
        /// Either end is going away.
        Closing = 5,
        Closed = 6,
        Reconfiguring = 7,
        Reconfigured = 8,
    }
}

impl XenbusState {
    /// Reads a `state` node; anything but a known decimal number is `None`
    /// (the node belongs to a possibly hostile peer).
    pub fn parse(text: &str) -> Option<Self> {
        let n: u32 = text.trim_end_matches('\0').parse().ok()?;
        Self::try_from(n).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_parsing() {
        assert_eq!(XenbusState::Connected.raw(), 4);
        assert_eq!(XenbusState::Closed.raw(), 6);
        assert_eq!(XenbusState::parse("3"), Some(XenbusState::Initialised));
        assert_eq!(XenbusState::parse("9"), None);
        assert_eq!(XenbusState::parse("x"), None);
        assert_eq!(XenbusState::parse(""), None);
    }
}
