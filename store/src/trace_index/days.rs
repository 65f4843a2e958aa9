//! UTC days, the unit of index partitions and of retention: the day of a span, and the
//! `YYYY-MM-DD` name of a day (tantivy's day directories, OpenSearch's daily indices).

/// Nanoseconds in one UTC day.
pub const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

/// The UTC day (days since the unix epoch) a span starting at `start_unix_nano` belongs to.
pub fn day_of(start_unix_nano: u64) -> u32 {
    (start_unix_nano / DAY_NANOS) as u32
}

/// Directory name of a day partition: `YYYY-MM-DD`.
pub fn day_dir_name(day: u32) -> String {
    let (y, m, d) = civil_from_days(day as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses a directory name written by [`day_dir_name`].
pub fn parse_day_dir_name(name: &str) -> Option<u32> {
    let mut parts = name.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let day = u32::try_from(days).ok()?;
    (day_dir_name(day) == name).then_some(day)
}

// Howard Hinnant's calendar algorithms (proleptic Gregorian, UTC), the one copy clew has.

/// Days since 1970-01-01 → (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_round_trip() {
        assert_eq!(day_dir_name(0), "1970-01-01");
        assert_eq!(
            day_dir_name(day_of(1_700_000_000_000_000_000)),
            "2023-11-14"
        );
        for day in [0u32, 1, 59, 60, 365, 10_957, 19_675, 213_503] {
            assert_eq!(parse_day_dir_name(&day_dir_name(day)), Some(day));
        }
        assert_eq!(day_dir_name(day_of(u64::MAX)), "2554-07-21");
        assert_eq!(parse_day_dir_name("2023-02-30"), None);
        assert_eq!(parse_day_dir_name("wal"), None);
    }
}
