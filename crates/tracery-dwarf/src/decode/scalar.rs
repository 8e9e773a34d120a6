//! Integers, floats, bools and characters from their bytes.

use crate::{types::Encoding, value::Value};

pub(super) fn unsigned(bytes: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = bytes.len().min(16);
    b[..n].copy_from_slice(&bytes[..n]);
    u128::from_le_bytes(b)
}

pub(super) fn signed(bytes: &[u8]) -> i128 {
    let n = bytes.len().min(16);
    if n == 0 {
        return 0;
    }
    let shift = 128 - 8 * n as u32;
    ((unsigned(bytes) << shift) as i128) >> shift
}

pub(super) fn base(enc: Encoding, bytes: &[u8]) -> Value {
    match enc {
        Encoding::Signed | Encoding::SignedChar => Value::Int(signed(bytes)),
        Encoding::Unsigned | Encoding::UnsignedChar | Encoding::Other(_) => {
            Value::UInt(unsigned(bytes))
        }
        Encoding::Bool => Value::Bool(bytes.iter().any(|&b| b != 0)),
        Encoding::Utf => match char::from_u32(unsigned(bytes) as u32) {
            Some(c) => Value::Char(c),
            None => Value::unavailable(format!("invalid char {:#x}", unsigned(bytes))),
        },
        Encoding::Float => {
            if let Ok(b) = <[u8; 4]>::try_from(bytes) {
                Value::Float(f64::from(f32::from_le_bytes(b)))
            } else if let Ok(b) = <[u8; 8]>::try_from(bytes) {
                Value::Float(f64::from_le_bytes(b))
            } else if let (10 | 16, Some(v)) = (bytes.len(), x87(bytes)) {
                Value::Float(v)
            } else {
                Value::unavailable(format!("{}-byte float", bytes.len()))
            }
        }
    }
}

/// An x87 80-bit extended float (C `long double`), rounded to the nearest double; `None`
/// for fewer than 10 bytes.
fn x87(bytes: &[u8]) -> Option<f64> {
    let (mantissa, rest) = bytes.split_first_chunk::<8>()?;
    let mantissa = u64::from_le_bytes(*mantissa);
    let (se, _) = rest.split_first_chunk::<2>()?;
    let se = u16::from_le_bytes(*se);
    let sign = if se & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from(se & 0x7fff);
    if exp == 0x7fff {
        return Some(if mantissa << 1 == 0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        });
    }
    let e = if exp == 0 {
        1 - 16383 - 63
    } else {
        exp - 16383 - 63
    };
    Some(sign * (mantissa as f64) * 2f64.powi(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_floats_and_chars() {
        assert_eq!(
            base(Encoding::Signed, &(-7i32).to_le_bytes()),
            Value::Int(-7)
        );
        assert_eq!(
            base(Encoding::Unsigned, &3u32.to_le_bytes()),
            Value::UInt(3)
        );
        assert_eq!(
            base(Encoding::Signed, &i128::MIN.to_le_bytes()),
            Value::Int(i128::MIN)
        );
        assert_eq!(
            base(Encoding::Float, &19.5f64.to_le_bytes()),
            Value::Float(19.5)
        );
        assert_eq!(
            base(Encoding::Float, &1.25f32.to_le_bytes()),
            Value::Float(1.25)
        );
        assert_eq!(base(Encoding::Bool, &[1]), Value::Bool(true));
        assert_eq!(
            base(Encoding::Utf, &('é' as u32).to_le_bytes()),
            Value::Char('é')
        );
        // 19.5 as an x87 extended: mantissa 0x9c00.., exponent 16383 + 4.
        let mut ld = [0u8; 16];
        ld[..8].copy_from_slice(&0x9c00_0000_0000_0000u64.to_le_bytes());
        ld[8..10].copy_from_slice(&(16383u16 + 4).to_le_bytes());
        assert_eq!(base(Encoding::Float, &ld), Value::Float(19.5));
    }
}
