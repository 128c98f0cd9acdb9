//! Calendar arithmetic for the wallclock Pavise gives guests (shared
//! info's `wc_sec`): RTC date and time → seconds since the Unix epoch.
//! Pure, host-tested.

/// Days from 1970-01-01 to the given proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch, or `None` for an impossible date.
pub fn unix_seconds(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<u64> {
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days as u64 * 86_400 + hour as u64 * 3600 + minute as u64 * 60 + second as u64)
}

/// A BCD byte as binary.
pub fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0xf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(unix_seconds(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_seconds(2000, 3, 1, 0, 0, 0), Some(951_868_800));
        assert_eq!(unix_seconds(2026, 11, 22, 14, 0, 0), Some(1_795_356_000));
        assert_eq!(unix_seconds(2024, 2, 29, 12, 30, 15), Some(1_709_209_815));
        assert_eq!(unix_seconds(2024, 13, 1, 0, 0, 0), None);
        assert_eq!(unix_seconds(1969, 12, 31, 0, 0, 0), None);
        assert_eq!(from_bcd(0x59), 59);
    }
}
