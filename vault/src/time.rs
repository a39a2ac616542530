//! Clock helpers: unix times and the ISO-8601 forms upstream used.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in Unix microseconds.
pub fn now_micros() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

/// Now, in Unix seconds.
pub fn now_seconds() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `2026-11-25T11:07:47.074280+00:00` (the audit log's form, as Python's `isoformat()`).
pub fn iso_offset_micros(micros: i64) -> String {
    iso_micros(micros, "+00:00")
}

/// `2026-11-25T11:04:21.048190Z` (the record's form in upstream `get --json`).
pub fn iso_z_micros(micros: i64) -> String {
    iso_micros(micros, "Z")
}

fn iso_micros(micros: i64, zone: &str) -> String {
    let dt = from_micros(micros);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{zone}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.microsecond()
    )
}

/// `2026-11-25T11:04:21Z` for whole seconds.
pub fn iso_z_seconds(seconds: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    dt.replace_nanosecond(0).ok().and_then(|d| d.format(&Rfc3339).ok()).unwrap_or_default()
}

fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let micros = 1_795_000_000_123_456;
        assert_eq!(iso_offset_micros(micros), "2026-11-18T11:06:40.123456+00:00");
        assert_eq!(iso_z_micros(micros), "2026-11-18T11:06:40.123456Z");
        assert_eq!(iso_z_seconds(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(iso_offset_micros(0), "1970-01-01T00:00:00.000000+00:00");
    }
}
