//! Civil time: epoch milliseconds plus a fixed UTC offset to a calendar date
//! and wall-clock time, with integer arithmetic only (no clock, no time zone
//! database, no floats).
//!
//! The conversion uses Howard Hinnant's `days_from_civil` / `civil_from_days`
//! algorithms on the proleptic Gregorian calendar, in `i64`.
//!
//! Valid range: every epoch millisecond `ms >= 0` (always true for `u64`)
//! whose *local* time (`ms + offset`) falls in a year up to 9999. The local
//! time may fall on 1969-12-31 (for example `ms = 0` in UTC-05:00); that is
//! still valid. Anything later than 9999-12-31 23:59:59.999 local is out of
//! range, because `%Y` is exactly four digits.

/// The largest accepted UTC offset magnitude, in minutes (UTC-14:00..=UTC+14:00).
pub const MAX_OFFSET_MINUTES: i16 = 840;

/// Japan Standard Time, UTC+09:00: the offset of the reference layout and
/// the default of every command.
pub const JST_OFFSET_MINUTES: i16 = 540;

/// Milliseconds per day.
const MS_PER_DAY: i64 = 86_400_000;

/// The first local millisecond past the valid range: 10000-01-01T00:00:00.000.
const LOCAL_MS_LIMIT: i64 = 253_402_300_800_000;

/// A local calendar date and wall-clock time (second precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilTime {
    /// Year, 1969..=9999.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=31.
    pub day: u8,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=59.
    pub second: u8,
    /// Day of the year, 1..=366 (1 is January 1st).
    pub day_of_year: u16,
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d`.
///
/// `m` is 1..=12 and `d` 1..=31; the result is meaningful for any `i64` year
/// whose day count fits in `i64` (far beyond the years this crate uses).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` that is `z` days after
/// 1970-01-01 (negative `z` is before it).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let (year, month, day, _) = civil_and_day_of_year(z);
    (year, month, day)
}

/// [`civil_from_days`] plus the day of the year (1 is January 1st), from the
/// same intermediate values: the algorithm counts days from March 1st, so
/// January and February are the last 31 + 28 (or 29) days of its year.
fn civil_and_day_of_year(z: i64) -> (i64, u32, u32, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = if m <= 2 { y + 1 } else { y };
    let day_of_year = if m <= 2 {
        doy - 306 + 1 // January 1st is day 306 from March 1st
    } else {
        doy + 59 + i64::from(is_leap_year(year)) + 1
    };
    (year, m, d, day_of_year)
}

/// Whether `year` is a Gregorian leap year.
pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The local civil time of `epoch_ms` (milliseconds since 1970-01-01T00:00Z)
/// at a fixed offset of `offset_minutes` east of UTC.
///
/// Returns `None` when the result is out of range (local year past 9999) or
/// the offset is outside ±[`MAX_OFFSET_MINUTES`].
pub fn local_time(epoch_ms: u64, offset_minutes: i16) -> Option<CivilTime> {
    if offset_minutes.unsigned_abs() > MAX_OFFSET_MINUTES.unsigned_abs() {
        return None;
    }
    let ms = i64::try_from(epoch_ms).ok()?;
    let local = ms.checked_add(i64::from(offset_minutes) * 60_000)?;
    if local >= LOCAL_MS_LIMIT {
        return None;
    }
    let days = local.div_euclid(MS_PER_DAY);
    let secs_of_day = local.rem_euclid(MS_PER_DAY) / 1000;
    let (year, month, day, day_of_year) = civil_and_day_of_year(days);
    Some(CivilTime {
        year: u16::try_from(year).ok()?,
        month: month as u8,
        day: day as u8,
        hour: (secs_of_day / 3600) as u8,
        minute: (secs_of_day / 60 % 60) as u8,
        second: (secs_of_day % 60) as u8,
        day_of_year: day_of_year as u16,
    })
}

/// Formats an offset in minutes as `+HH:MM` / `-HH:MM` (e.g. 540 -> `+09:00`).
pub fn format_offset(offset_minutes: i16) -> alloc::string::String {
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let abs = offset_minutes.unsigned_abs();
    alloc::format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
}

/// Parses a UTC offset written `+09:00`, `-05:30`, `+0900`, `+09`, `Z` or
/// `UTC` into minutes, the inverse of [`format_offset`]. `None` unless the
/// sign and two-digit hours are there and the result is within
/// ±[`MAX_OFFSET_MINUTES`].
pub fn parse_offset(text: &str) -> Option<i16> {
    let text = text.trim();
    if matches!(text, "Z" | "z" | "UTC" | "utc") {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().split_first()? {
        (b'+', rest) => (1, rest),
        (b'-', rest) => (-1, rest),
        _ => return None,
    };
    let (hours, minutes) = match *rest {
        [h1, h2] => ([h1, h2], [b'0', b'0']),
        [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => ([h1, h2], [m1, m2]),
        _ => return None,
    };
    let two_digits = |pair: [u8; 2]| {
        pair.iter()
            .all(u8::is_ascii_digit)
            .then(|| i16::from(pair[0] - b'0') * 10 + i16::from(pair[1] - b'0'))
    };
    let (hours, minutes) = (two_digits(hours)?, two_digits(minutes)?);
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= MAX_OFFSET_MINUTES).then_some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JST: i16 = 540;

    fn ct(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, doy: u16) -> CivilTime {
        CivilTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            day_of_year: doy,
        }
    }

    /// Epoch ms of a UTC civil time, via the function under test's inverse.
    fn utc_ms(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, ms: i64) -> u64 {
        let days = days_from_civil(y, mo, d);
        ((days * 86_400 + h * 3600 + mi * 60 + s) * 1000 + ms) as u64
    }

    #[test]
    fn offsets_parse_in_every_usual_spelling_and_round_trip() {
        assert_eq!(parse_offset("+09:00"), Some(JST_OFFSET_MINUTES));
        assert_eq!(parse_offset("+0900"), Some(540));
        assert_eq!(parse_offset("+09"), Some(540));
        assert_eq!(parse_offset(" -05:30 "), Some(-330));
        assert_eq!(parse_offset("Z"), Some(0));
        assert_eq!(parse_offset("UTC"), Some(0));
        assert_eq!(parse_offset("+14:00"), Some(MAX_OFFSET_MINUTES));
        assert_eq!(parse_offset("-14:00"), Some(-MAX_OFFSET_MINUTES));
        for bad in [
            "9",
            "+9",
            "+14:01",
            "+09:60",
            "+0:900",
            "JST",
            "",
            "+09:0",
            "+1a:00",
            "+09::0",
            "+09:",
            "09:00",
            "+-9:00",
            "+０９:00",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
        for minutes in -MAX_OFFSET_MINUTES..=MAX_OFFSET_MINUTES {
            assert_eq!(parse_offset(&format_offset(minutes)), Some(minutes));
        }
    }

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(local_time(0, 0), Some(ct(1970, 1, 1, 0, 0, 0, 1)));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 1750991540913 = 2025-06-27T02:32:20.913Z = 11:32:20 JST.
        assert_eq!(
            local_time(1_750_991_540_913, JST),
            Some(ct(2025, 6, 27, 11, 32, 20, 178))
        );
        assert_eq!(
            local_time(1_750_991_540_913, 0),
            Some(ct(2025, 6, 27, 2, 32, 20, 178))
        );
    }

    #[test]
    fn jst_day_boundary() {
        let before = utc_ms(2025, 6, 30, 14, 59, 59, 999);
        assert_eq!(before, 1_751_295_599_999);
        assert_eq!(
            local_time(before, JST),
            Some(ct(2025, 6, 30, 23, 59, 59, 181))
        );
        assert_eq!(
            local_time(before + 1, JST),
            Some(ct(2025, 7, 1, 0, 0, 0, 182))
        );
    }

    #[test]
    fn year_end_in_jst() {
        let last = utc_ms(2025, 12, 31, 14, 59, 59, 999);
        assert_eq!(
            local_time(last, JST),
            Some(ct(2025, 12, 31, 23, 59, 59, 365))
        );
        assert_eq!(local_time(last + 1, JST), Some(ct(2026, 1, 1, 0, 0, 0, 1)));
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(2100));
        assert!(!is_leap_year(2025));
        let feb29 = utc_ms(2024, 2, 29, 0, 0, 0, 0);
        assert_eq!(local_time(feb29, 0), Some(ct(2024, 2, 29, 0, 0, 0, 60)));
        assert_eq!(
            local_time(utc_ms(2024, 12, 31, 12, 0, 0, 0), 0)
                .unwrap()
                .day_of_year,
            366
        );
        // 2100-02-28 is followed by March 1st.
        let feb28 = utc_ms(2100, 2, 28, 23, 59, 59, 0);
        assert_eq!(
            local_time(feb28 + 1000, 0),
            Some(ct(2100, 3, 1, 0, 0, 0, 60))
        );
        // 2000-02-29 exists.
        let y2k = utc_ms(2000, 2, 28, 23, 59, 59, 0);
        assert_eq!(
            local_time(y2k + 1000, 0),
            Some(ct(2000, 2, 29, 0, 0, 0, 60))
        );
    }

    #[test]
    fn past_2038_and_range_end() {
        // 2038-01-19T03:14:08Z, one second past the 32-bit time_t limit.
        assert_eq!(
            local_time(2_147_483_648_000, 0),
            Some(ct(2038, 1, 19, 3, 14, 8, 19))
        );
        assert_eq!(
            local_time(utc_ms(2100, 1, 1, 0, 0, 0, 0), 0),
            Some(ct(2100, 1, 1, 0, 0, 0, 1))
        );
        let last = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        assert_eq!(last, utc_ms(9999, 12, 31, 23, 59, 59, 999));
        assert_eq!(local_time(last, 0), Some(ct(9999, 12, 31, 23, 59, 59, 365)));
        assert_eq!(local_time(last + 1, 0), None);
        // The same instant is already year 10000 in JST.
        assert_eq!(local_time(last, JST), None);
        assert_eq!(
            local_time(last - 9 * 3_600_000, JST),
            Some(ct(9999, 12, 31, 23, 59, 59, 365))
        );
        // ...but still 9999 west of UTC.
        assert!(local_time(last + 1, -300).is_some());
        assert_eq!(local_time(u64::MAX, 0), None);
        assert_eq!(local_time(i64::MAX as u64, -840), None);
    }

    #[test]
    fn before_epoch_locally() {
        assert_eq!(local_time(0, -300), Some(ct(1969, 12, 31, 19, 0, 0, 365)));
        assert_eq!(local_time(0, -840), Some(ct(1969, 12, 31, 10, 0, 0, 365)));
    }

    #[test]
    fn offsets() {
        assert_eq!(local_time(0, 841), None);
        assert_eq!(local_time(0, -841), None);
        assert_eq!(local_time(0, i16::MIN), None);
        assert_eq!(local_time(0, 840), Some(ct(1970, 1, 1, 14, 0, 0, 1)));
        assert_eq!(local_time(0, 345), Some(ct(1970, 1, 1, 5, 45, 0, 1)));
        assert_eq!(format_offset(540), "+09:00");
        assert_eq!(format_offset(0), "+00:00");
        assert_eq!(format_offset(-300), "-05:00");
        assert_eq!(format_offset(345), "+05:45");
        assert_eq!(format_offset(-840), "-14:00");
    }

    /// A deliberately naive reference: walk the calendar day by day.
    #[test]
    fn days_match_a_naive_calendar_walk() {
        let month_len = |y: i64, m: u32| match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            _ if is_leap_year(y) => 29,
            _ => 28,
        };
        let (mut y, mut m, mut d) = (1969_i64, 1_u32, 1_u32);
        let mut z = -365_i64;
        let mut doy = 1_i64;
        while y <= 9999 {
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
            assert_eq!(civil_from_days(z), (y, m, d), "{z}");
            assert_eq!(z - days_from_civil(y, 1, 1) + 1, doy);
            assert_eq!(civil_and_day_of_year(z), (y, m, d, doy), "{z}");
            z += 1;
            d += 1;
            doy += 1;
            if d > month_len(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                    doy = 1;
                }
            }
        }
        assert_eq!(z, days_from_civil(10000, 1, 1));
        assert_eq!(z * MS_PER_DAY, LOCAL_MS_LIMIT);
    }

    proptest! {
        #[test]
        fn civil_round_trip(z in -800_000_i64..3_000_000) {
            let (y, m, d) = civil_from_days(z);
            prop_assert!((1..=12).contains(&m));
            prop_assert!((1..=31).contains(&d));
            prop_assert_eq!(days_from_civil(y, m, d), z);
        }

        #[test]
        fn local_time_is_consistent(ms in 0_u64..LOCAL_MS_LIMIT as u64, off in -840_i16..=840) {
            let local = ms as i64 + i64::from(off) * 60_000;
            match local_time(ms, off) {
                None => prop_assert!(local >= LOCAL_MS_LIMIT),
                Some(t) => {
                    let back = days_from_civil(i64::from(t.year), u32::from(t.month), u32::from(t.day))
                        * MS_PER_DAY
                        + (i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second)) * 1000;
                    prop_assert_eq!(back, local - local.rem_euclid(1000));
                    prop_assert!(t.hour < 24 && t.minute < 60 && t.second < 60);
                    let year_len = if is_leap_year(i64::from(t.year)) { 366 } else { 365 };
                    prop_assert!(t.day_of_year >= 1 && t.day_of_year <= year_len);
                    prop_assert_eq!(local_time(ms, off), Some(t));
                }
            }
        }

        #[test]
        fn any_input_is_safe(ms in any::<u64>(), off in any::<i16>()) {
            let _ = local_time(ms, off);
        }
    }
}
