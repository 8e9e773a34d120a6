//! Go runtime values as Go's `%v` shows them: interfaces by their dynamic type and value,
//! `time.Time`, `time.Duration`, and channels by length, capacity and state.
//!
//! Times, durations and channels decode to a named leaf ([`Value::Enum`] without fields):
//! the renderers print its text bare, as `%v` does, and JSON carries it as a string.

use super::{Bytes, Decoder};
use crate::{
    fetch_plan::{Candidate, Follow, RegionId},
    types::{Type, TypeId, TypeKind},
    value::Value,
};

/// Seconds from Go's internal epoch (January 1, year 1) to 1885 (the `wall` epoch) and to
/// 1970 (Unix), as in Go's `time` package.
const WALL_TO_INTERNAL: i64 = (1884 * 365 + 1884 / 4 - 1884 / 100 + 1884 / 400) * 86400;
const UNIX_TO_INTERNAL: i64 = (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * 86400;
/// `wall`'s flag for a time carrying a monotonic reading in `ext`.
const HAS_MONOTONIC: u64 = 1 << 63;
const NSEC_MASK: u64 = (1 << 30) - 1;

fn leaf(name: &str, text: String) -> Value {
    Value::Enum {
        name: name.to_string(),
        variant: text,
        fields: Vec::new(),
    }
}

fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::Str { text, .. } => Some(text.clone()),
        _ => None,
    }
}

impl Decoder<'_> {
    /// Go values that read differently from their DWARF type; `None` for the others.
    pub(super) fn go_value(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        t: &Type,
        nest: usize,
    ) -> Option<Value> {
        match &t.kind {
            TypeKind::Aggregate(_) if t.name == "time.Time" => {
                Some(self.go_time(r, b, off, t, nest))
            }
            TypeKind::Base(_) if t.name == "time.Duration" => Some(match b.word(off) {
                Ok(d) => leaf(&t.name, go_duration(d as i64)),
                Err(hole) => hole,
            }),
            TypeKind::Pointer {
                target: Some(target),
                ..
            } if self.plan.types.name_of(*target).starts_with("hchan<") => {
                Some(self.go_chan(r, b, off, *target))
            }
            _ => None,
        }
    }

    /// `chan int (len 2, cap 4, open)` from the `hchan` header captured at the hit.
    fn go_chan(&self, r: RegionId, b: &Bytes, off: u64, hchan: TypeId) -> Value {
        let address = match b.word(off) {
            Ok(a) => a,
            Err(hole) => return hole,
        };
        if address == 0 {
            return Value::Null;
        }
        let types = &self.plan.types;
        let name = types.name_of(hchan);
        let elem = name
            .strip_prefix("hchan<")
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or("?");
        let hr = match self.plan.follows.get(&(r, off)) {
            Some(Follow::Region(h)) => *h,
            Some(Follow::Budget) => return Value::unavailable("capture budget exhausted"),
            Some(Follow::Skipped(why)) => return Value::unavailable(why.clone()),
            None => return Value::unavailable("channel header not captured"),
        };
        let hb = self.region(hr);
        let field = |n: &str| match types.strip(hchan).map(|(_, t)| &t.kind) {
            Some(TypeKind::Aggregate(a)) => {
                a.members.iter().find(|m| m.name == n).map(|m| m.offset)
            }
            _ => None,
        };
        let (Some(q), Some(c), Some(cl)) = (field("qcount"), field("dataqsiz"), field("closed"))
        else {
            return Value::unavailable("channel header without qcount, dataqsiz and closed");
        };
        let closed = match hb.read(cl, 4) {
            Ok(x) => u32::from_le_bytes([x[0], x[1], x[2], x[3]]) != 0,
            Err(hole) => return hole,
        };
        match (hb.word(q), hb.word(c)) {
            (Ok(len), Ok(cap)) => {
                let state = if closed { "closed" } else { "open" };
                leaf(
                    &format!("chan {elem}"),
                    format!("chan {elem} (len {len}, cap {cap}, {state})"),
                )
            }
            (Err(hole), _) | (_, Err(hole)) => hole,
        }
    }

    /// `time.Time { wall, ext, loc }` as `%v` writes it. The zone is UTC when `loc` is nil,
    /// else the location's cached zone when it covers this time; otherwise the time is
    /// written in UTC and says the zone was not captured.
    fn go_time(&self, r: RegionId, b: &Bytes, off: u64, t: &Type, _nest: usize) -> Value {
        let TypeKind::Aggregate(agg) = &t.kind else {
            return Value::unavailable("time.Time is not a struct");
        };
        let at = |n: &str| agg.members.iter().find(|m| m.name == n).map(|m| m.offset);
        let (Some(w), Some(e), Some(l)) = (at("wall"), at("ext"), at("loc")) else {
            return Value::unavailable("time.Time without wall, ext and loc");
        };
        let (wall, ext, loc) = match (b.word(off + w), b.word(off + e), b.word(off + l)) {
            (Ok(w), Ok(e), Ok(l)) => (w, e as i64, l),
            (Err(hole), ..) | (_, Err(hole), _) | (.., Err(hole)) => return hole,
        };
        let nsec = (wall & NSEC_MASK) as u32;
        let (internal, mono) = if wall & HAS_MONOTONIC != 0 {
            (WALL_TO_INTERNAL + ((wall << 1) >> 31) as i64, Some(ext))
        } else {
            (ext, None)
        };
        let unix = internal.wrapping_sub(UNIX_TO_INTERNAL);
        let (offset, zone, note) = if loc == 0 {
            (0, "UTC".to_string(), None)
        } else {
            match self.go_zone(r, off + l, unix) {
                Ok((offset, zone)) => (offset, zone, None),
                Err(why) => (0, "UTC".to_string(), Some(why)),
            }
        };
        let mut text = format_time(unix, nsec, offset, &zone);
        if let Some(m) = mono {
            text.push_str(&monotonic(m));
        }
        if let Some(why) = note {
            text.push_str(&format!(" (shown in UTC: {why})"));
        }
        leaf(&t.name, text)
    }

    /// The zone (offset east of UTC, abbreviation) of `loc` at `unix` seconds, from the
    /// location's one-entry cache.
    fn go_zone(&self, r: RegionId, loc_at: u64, unix: i64) -> Result<(i64, String), String> {
        let types = &self.plan.types;
        let lr = match self.plan.follows.get(&(r, loc_at)) {
            Some(Follow::Region(x)) => *x,
            Some(Follow::Skipped(why)) => return Err(why.clone()),
            Some(Follow::Budget) => return Err("capture budget exhausted".into()),
            None => return Err("location not captured".into()),
        };
        let members =
            |ty: Option<TypeId>| match ty.and_then(|t| types.strip(t)).map(|(_, t)| &t.kind) {
                Some(TypeKind::Aggregate(a)) => Some(a.members.clone()),
                _ => None,
            };
        let loc_members = members(self.plan.regions[lr].ty).ok_or("location of unknown type")?;
        let at = |ms: &[crate::types::Member], n: &str| {
            ms.iter().find(|m| m.name == n).map(|m| (m.offset, m.ty))
        };
        let lb = self.region(lr);
        let word = |b: &Bytes, o: Option<(u64, TypeId)>| o.and_then(|(o, _)| b.word(o).ok());
        let name = at(&loc_members, "name")
            .and_then(|(o, ty)| str_of(&self.value(lr, &lb, o, ty, 1)))
            .unwrap_or_else(|| "?".into());
        let (start, end) = (
            word(&lb, at(&loc_members, "cacheStart")),
            word(&lb, at(&loc_members, "cacheEnd")),
        );
        let cz = at(&loc_members, "cacheZone").ok_or("location without cacheZone")?;
        let covered =
            matches!((start, end), (Some(s), Some(e)) if (s as i64) <= unix && unix < (e as i64));
        if !covered || word(&lb, Some(cz)).unwrap_or(0) == 0 {
            return Err(format!(
                "the zone of location {name} at this time was not captured"
            ));
        }
        let zr = match self.plan.follows.get(&(lr, cz.0)) {
            Some(Follow::Region(x)) => *x,
            _ => return Err(format!("the zone of location {name} was not captured")),
        };
        let zb = self.region(zr);
        let zm = members(self.plan.regions[zr].ty).ok_or("zone of unknown type")?;
        let offset = word(&zb, at(&zm, "offset")).ok_or("zone offset not captured")? as i64;
        let abbrev = at(&zm, "name")
            .and_then(|(o, ty)| str_of(&self.value(zr, &zb, o, ty, 1)))
            .unwrap_or_default();
        Ok((offset, abbrev))
    }

    /// An interface at `off` (type word, data word): its dynamic type's name from the
    /// runtime type descriptor, and its value when the plan prepared that type.
    pub(super) fn interface(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        eface: bool,
        nest: usize,
    ) -> Value {
        let word = match b.word(off) {
            Ok(w) => w,
            Err(hole) => return hole,
        };
        if word == 0 {
            return Value::Null;
        }
        let type_ptr = if eface {
            Ok(word)
        } else {
            // iface: the first word is an itab; its `_type` is at offset 8.
            self.payload(r, off).and_then(|(_, itab)| itab.word(8))
        };
        let go = self.plan.go_types.as_ref();
        let rt = type_ptr.ok().and_then(|p| go?.offset_of(p, self.bias));
        let name = rt.and_then(|o| go?.names.get(&o).cloned());
        let prepared = go.and_then(|g| g.values.get(&(r, off)));
        let value = match (rt.and_then(|o| go?.types.get(&o)), prepared) {
            (Some(ty), Some(cands)) => Some(match cands.iter().find(|c| c.ty == *ty) {
                Some(c) => self.iface_data(r, b, off, c, nest),
                None => Value::unavailable(format!(
                    "not captured: the plan prepared {} other dynamic types",
                    cands.len()
                )),
            }),
            _ => None,
        };
        Value::Interface {
            type_name: name.unwrap_or_else(|| "unknown".into()),
            value: value.map(Box::new),
        }
    }

    fn iface_data(&self, r: RegionId, b: &Bytes, off: u64, c: &Candidate, nest: usize) -> Value {
        let data = match b.word(off + 8) {
            Ok(d) => d,
            Err(hole) => return hole,
        };
        let types = &self.plan.types;
        if !c.direct {
            if data == 0 {
                return Value::unavailable("null data pointer");
            }
            return match c.region {
                Some(v) => self.value(v, &self.region(v), 0, c.ty, nest + 1),
                None => Value::unavailable("value of unknown size"),
            };
        }
        let target = match types.strip(c.ty).map(|(_, t)| &t.kind) {
            Some(TypeKind::Pointer { target, .. }) => *target,
            // A struct or array of one pointer, or a map or channel: the word is the value.
            _ => return self.value(r, b, off + 8, c.ty, nest + 1),
        };
        if data == 0 {
            return Value::Null;
        }
        match (c.region, target) {
            (Some(v), Some(t)) => Value::Pointer {
                address: data,
                target: Some(Box::new(self.value(v, &self.region(v), 0, t, nest + 1))),
            },
            _ => self.value(r, b, off + 8, c.ty, nest + 1),
        }
    }
}

/// Go's `Duration.String`: `1.5s`, `2m0.5s`, `1h0m0s`, `250ms`, `1µs`, `0s`.
pub(crate) fn go_duration(d: i64) -> String {
    let mut u = d.unsigned_abs();
    let text = if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".into(),
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (f, whole) = fraction(u, prec);
        format!("{whole}{f}{unit}")
    } else {
        let (f, whole) = fraction(u, 9);
        u = whole;
        let mut s = format!("{}{f}s", u % 60);
        u /= 60;
        if u > 0 {
            s = format!("{}m{s}", u % 60);
            u /= 60;
            if u > 0 {
                s = format!("{u}h{s}");
            }
        }
        s
    };
    if d < 0 {
        format!("-{text}")
    } else {
        text
    }
}

/// `v / 10^prec` split as Go's `fmtFrac` does: the fraction (`.5`, trailing zeros and a
/// zero fraction dropped) and the whole part.
fn fraction(mut v: u64, prec: u32) -> (String, u64) {
    let mut digits = Vec::new();
    let mut print = false;
    for _ in 0..prec {
        let d = (v % 10) as u8;
        print = print || d != 0;
        if print {
            digits.push(b'0' + d);
        }
        v /= 10;
    }
    if print {
        digits.push(b'.');
    }
    digits.reverse();
    (String::from_utf8(digits).unwrap_or_default(), v)
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Go's `Time.String` without the monotonic part: `2006-01-02 15:04:05.999999999 -0700 MST`.
pub(crate) fn format_time(unix: i64, nsec: u32, offset: i64, zone: &str) -> String {
    let local = unix.wrapping_add(offset);
    let (days, secs) = (local.div_euclid(86400), local.rem_euclid(86400));
    let (y, mo, d) = civil(days);
    let (h, mi, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let (frac, _) = fraction(u64::from(nsec), 9);
    let sign = if offset < 0 { '-' } else { '+' };
    let zone_min = offset.unsigned_abs() / 60;
    let numeric = format!("{sign}{:02}{:02}", zone_min / 60, zone_min % 60);
    let zone = if zone.is_empty() {
        numeric.as_str()
    } else {
        zone
    };
    let year = if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    format!("{year}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{frac} {numeric} {zone}")
}

/// Go's ` m=+0.001234567` suffix for a time carrying a monotonic reading.
fn monotonic(ext: i64) -> String {
    let sign = if ext < 0 { '-' } else { '+' };
    let m = ext.unsigned_abs();
    let (m1, m2) = (m / 1_000_000_000, m % 1_000_000_000);
    let (m0, m1) = (m1 / 1_000_000_000, m1 % 1_000_000_000);
    if m0 != 0 {
        format!(" m={sign}{m0}{m1:09}.{m2:09}")
    } else {
        format!(" m={sign}{m1}.{m2:09}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (62_500_000_000, "1m2.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (-90_000_000_000, "-1m30s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d}");
        }
    }

    #[test]
    fn times_read_like_go() {
        // time.Date(2026, 12, 6, 10, 0, 0, 123000000, time.UTC).Unix() == 1796551200.
        assert_eq!(
            format_time(1_796_551_200, 123_000_000, 0, "UTC"),
            "2026-12-06 10:00:00.123 +0000 UTC"
        );
        // The zero Time.
        assert_eq!(
            format_time(-UNIX_TO_INTERNAL, 0, 0, "UTC"),
            "0001-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            format_time(0, 5, -7 * 3600, "MST"),
            "1969-12-31 17:00:00.000000005 -0700 MST"
        );
        assert_eq!(monotonic(1_234_567), " m=+0.001234567");
    }
}
