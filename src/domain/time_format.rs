//! serde formats for timestamps: RFC 3339 text for people (JSON), integer
//! milliseconds for the store (bincode), chosen by `is_human_readable`.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

/// Formats an instant as RFC 3339 with millisecond precision and a `Z` suffix.
pub fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn from_millis<E: Error>(ms: i64) -> Result<DateTime<Utc>, E> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| E::custom(format!("timestamp {ms} ms is out of range")))
}

pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&rfc3339(at))
    } else {
        s.serialize_i64(at.timestamp_millis())
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    if d.is_human_readable() {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| D::Error::custom(format!("invalid RFC 3339 time {text:?}: {e}")))
    } else {
        from_millis(i64::deserialize(d)?)
    }
}

/// The same formats for optional instants.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            at.as_ref().map(rfc3339).serialize(s)
        } else {
            at.map(|at| at.timestamp_millis()).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        if d.is_human_readable() {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => DateTime::parse_from_rfc3339(&text)
                    .map(|at| Some(at.with_timezone(&Utc)))
                    .map_err(|e| D::Error::custom(format!("invalid RFC 3339 time {text:?}: {e}"))),
            }
        } else {
            Option::<i64>::deserialize(d)?.map(from_millis).transpose()
        }
    }
}
