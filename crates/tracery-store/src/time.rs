//! `SystemTime` ↔ unix nanoseconds, the stored form of every time.

use std::time::{Duration, SystemTime};

use crate::StoreError;

/// Unix nanoseconds of `time`; times before 1970 or after 2262 do not fit an `i64`.
pub(crate) fn to_nanos(time: SystemTime, field: &'static str) -> Result<i64, StoreError> {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .ok_or(StoreError::OutOfRange {
            field,
            value: format!("{time:?}"),
        })
}

/// Inverse of [`to_nanos`]; a negative value (never written by this crate) reads as 1970.
pub(crate) fn from_nanos(nanos: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip_exactly() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789);
        assert_eq!(from_nanos(to_nanos(t, "time").unwrap()), t);
    }

    #[test]
    fn time_before_1970_is_an_error() {
        let t = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(
            to_nanos(t, "time"),
            Err(StoreError::OutOfRange { field: "time", .. })
        ));
    }
}
