//! Offsets and transitions of a time zone around a given instant.
//!
//! chrono-tz exposes offsets per instant but not its transition table, so
//! transitions are located by bisection over a short window.

use chrono::{DateTime, MappedLocalTime, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

/// Seconds covering every UTC offset in use (-12:00 to +14:00) with margin,
/// so an instant whose local time is a given naive time lies within this
/// distance of that naive time read as UTC.
const OFFSET_SPAN: i64 = 26 * 3_600;

/// Returns the UTC offset of `zone` at `timestamp`, in seconds east of UTC.
pub(super) fn offset_at(zone: Tz, timestamp: i64) -> Option<i64> {
    let instant = DateTime::from_timestamp(timestamp, 0)?;
    let offset = zone.offset_from_utc_datetime(&instant.naive_utc());
    Some(i64::from(offset.fix().local_minus_utc()))
}

/// Returns the local wall-clock time of `timestamp` in `zone`.
pub(super) fn local_time(zone: Tz, timestamp: i64) -> Option<NaiveDateTime> {
    let offset = offset_at(zone, timestamp)?;
    DateTime::from_timestamp(timestamp.checked_add(offset)?, 0).map(|local| local.naive_utc())
}

/// Returns the naive time as seconds since 1970-01-01 00:00, read as if it were UTC.
pub(super) fn naive_seconds(naive: NaiveDateTime) -> i64 {
    naive.and_utc().timestamp()
}

/// How a local wall-clock time maps to instants.
pub(super) enum Resolution {
    Single(i64),
    /// A time repeated by a fall-back change: both instants, earlier first.
    Repeated(i64, i64),
    /// A time skipped by a spring-forward change.
    Skipped,
}

pub(super) fn resolve(zone: Tz, naive: NaiveDateTime) -> Resolution {
    match zone.from_local_datetime(&naive) {
        MappedLocalTime::Single(instant) => Resolution::Single(instant.timestamp()),
        MappedLocalTime::Ambiguous(earlier, later) => {
            Resolution::Repeated(earlier.timestamp(), later.timestamp())
        }
        MappedLocalTime::None => Resolution::Skipped,
    }
}

/// Returns the first instant in `(low, high]` whose offset differs from the
/// offset at `low`, assuming at most one transition in that window. Returns
/// `high` when the offsets at both ends agree.
pub(super) fn transition_between(zone: Tz, mut low: i64, mut high: i64) -> i64 {
    let Some(offset_before) = offset_at(zone, low) else {
        return high;
    };
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if offset_at(zone, middle) == Some(offset_before) {
            low = middle;
        } else {
            high = middle;
        }
    }
    high
}

/// Returns the first instant after the spring-forward gap that contains
/// `naive`: the instant of the transition, whose local time ends the gap.
pub(super) fn gap_end(zone: Tz, naive: NaiveDateTime) -> Option<i64> {
    let naive = naive_seconds(naive);
    let before_offset = offset_at(zone, naive.checked_sub(OFFSET_SPAN)?)?;
    let after_gap = naive.checked_sub(before_offset)?;
    Some(transition_between(
        zone,
        after_gap.checked_sub(OFFSET_SPAN)?,
        after_gap,
    ))
}
