//! How often Dom0 looks at a device it must poll (the control channel):
//! soon after traffic, less and less often while it stays quiet, so an
//! idle Dom0 sleeps instead of waking every millisecond.

/// A poll interval that doubles while nothing happens and drops back to
/// its shortest on activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    shortest_ns: u64,
    longest_ns: u64,
    now_ns: u64,
}

impl Backoff {
    pub const fn new(shortest_ns: u64, longest_ns: u64) -> Self {
        Self {
            shortest_ns,
            longest_ns,
            now_ns: shortest_ns,
        }
    }

    /// The interval to sleep next, after a look that found `activity`.
    pub fn next(&mut self, activity: bool) -> u64 {
        let interval = if activity {
            self.shortest_ns
        } else {
            self.now_ns
        };
        self.now_ns = if activity {
            self.shortest_ns
        } else {
            self.now_ns.saturating_mul(2).min(self.longest_ns)
        };
        interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quiet_doubles_up_to_the_longest_and_activity_resets() {
        let mut b = Backoff::new(1, 8);
        let quiet: Vec<u64> = (0..6).map(|_| b.next(false)).collect();
        assert_eq!(quiet, [1, 2, 4, 8, 8, 8]);
        assert_eq!(b.next(true), 1);
        assert_eq!(b.next(false), 1);
        assert_eq!(b.next(false), 2);
    }

    proptest! {
        #[test]
        fn always_within_bounds(shortest in 1u64..1_000_000, factor in 1u64..1000, looks in proptest::collection::vec(any::<bool>(), 0..100)) {
            let longest = shortest * factor;
            let mut b = Backoff::new(shortest, longest);
            for activity in looks {
                let next = b.next(activity);
                prop_assert!(next >= shortest && next <= longest);
                if activity {
                    prop_assert_eq!(next, shortest);
                }
            }
        }
    }
}
