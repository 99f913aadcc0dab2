//! Result values as JSON (docs/CONTROL.md, "Kinds"), decoded from the
//! binary wire format tokio-postgres receives: numbers, booleans, strings,
//! JSON as JSON, arrays as arrays; numeric, timestamps, intervals, inet and
//! uuid as their PostgreSQL text form; bytea as `\x…` hex. A type with no
//! decoder here becomes the string `<unsupported type T>` and is listed by
//! the caller, never an error. Parameters go the other way in text form
//! ([`TextParam`]), so the server converts them to whatever type it infers.

use std::error::Error;
use std::fmt::Write as _;

use bytes::BytesMut;
use postgres_types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use serde_json::Value;
use tokio_postgres::Row;

/// A bound parameter in text form (or NULL), accepted for any type.
#[derive(Debug, Clone)]
pub struct TextParam(pub Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The raw bytes of any column.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// One row as a JSON array; names of undecodable types are added to `unsupported`.
pub fn row_to_json(row: &Row, unsupported: &mut Vec<String>) -> Value {
    let mut out = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match row.try_get::<_, Option<Raw<'_>>>(i) {
            Ok(Some(Raw(bytes))) => decode(column.type_(), bytes, unsupported),
            Ok(None) => Value::Null,
            Err(e) => Value::String(format!("<undecodable: {e}>")),
        };
        out.push(value);
    }
    Value::Array(out)
}

/// Decodes one non-NULL value of type `ty`.
pub fn decode(ty: &Type, raw: &[u8], unsupported: &mut Vec<String>) -> Value {
    match decode_known(ty, raw, unsupported) {
        Some(v) => v,
        None => {
            let name = ty.name().to_owned();
            if !unsupported.contains(&name) {
                unsupported.push(name.clone());
            }
            Value::String(format!("<unsupported type {name}>"))
        }
    }
}

fn get<'a, T: FromSql<'a>>(ty: &Type, raw: &'a [u8]) -> Option<T> {
    T::from_sql(ty, raw).ok()
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn decode_known(ty: &Type, raw: &[u8], unsupported: &mut Vec<String>) -> Option<Value> {
    match ty.kind() {
        Kind::Enum(_) => {
            return std::str::from_utf8(raw)
                .ok()
                .map(|s| Value::String(s.to_owned()));
        }
        Kind::Domain(base) => return Some(decode(base, raw, unsupported)),
        Kind::Array(elem) => return decode_array(elem, raw, unsupported),
        _ => {}
    }
    Some(match *ty {
        Type::BOOL => Value::Bool(get(ty, raw)?),
        Type::INT2 => Value::from(get::<i16>(ty, raw)?),
        Type::INT4 => Value::from(get::<i32>(ty, raw)?),
        Type::INT8 => Value::from(get::<i64>(ty, raw)?),
        Type::OID | Type::XID | Type::CID | Type::REGCLASS | Type::REGPROC | Type::REGTYPE => {
            Value::from(u32::from_be_bytes(raw.try_into().ok()?))
        }
        Type::FLOAT4 => float(f64::from(get::<f32>(ty, raw)?)),
        Type::FLOAT8 => float(get::<f64>(ty, raw)?),
        Type::CHAR => Value::String(char::from(*raw.first()?).to_string()),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::XML
        | Type::JSONPATH => Value::String(std::str::from_utf8(raw).ok()?.to_owned()),
        Type::JSON => serde_json::from_slice(raw).ok()?,
        Type::JSONB => serde_json::from_slice(raw.strip_prefix(&[1u8])?).ok()?,
        Type::BYTEA => {
            let mut s = String::with_capacity(2 + raw.len() * 2);
            s.push_str("\\x");
            for b in raw {
                let _ = write!(s, "{b:02x}");
            }
            Value::String(s)
        }
        Type::UUID => {
            let b: [u8; 16] = raw.try_into().ok()?;
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        Type::TIMESTAMP => Value::String(get::<chrono::NaiveDateTime>(ty, raw)?.to_string()),
        Type::TIMESTAMPTZ => Value::String(
            get::<chrono::DateTime<chrono::Utc>>(ty, raw)?
                .format("%Y-%m-%d %H:%M:%S%.f+00")
                .to_string(),
        ),
        Type::DATE => Value::String(get::<chrono::NaiveDate>(ty, raw)?.to_string()),
        Type::TIME => Value::String(get::<chrono::NaiveTime>(ty, raw)?.to_string()),
        Type::NUMERIC => Value::String(numeric(raw)?),
        Type::INTERVAL => Value::String(interval(raw)?),
        Type::INET | Type::CIDR => Value::String(inet(ty, raw)?),
        Type::PG_LSN => {
            let v = u64::from_be_bytes(raw.try_into().ok()?);
            Value::String(format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff))
        }
        _ => return None,
    })
}

fn decode_array(elem: &Type, raw: &[u8], unsupported: &mut Vec<String>) -> Option<Value> {
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::types::array_from_sql;
    let array = array_from_sql(raw).ok()?;
    let dims: Vec<_> = array.dimensions().collect().ok()?;
    let mut values: Vec<Value> = Vec::new();
    let mut items = array.values();
    while let Ok(Some(item)) = items.next() {
        values.push(match item {
            Some(bytes) => decode(elem, bytes, unsupported),
            None => Value::Null,
        });
    }
    // Nest multi-dimensional arrays, innermost dimension last.
    for dim in dims.iter().skip(1).rev() {
        let len = usize::try_from(dim.len).ok().filter(|l| *l > 0)?;
        values = values
            .chunks(len)
            .map(|c| Value::Array(c.to_vec()))
            .collect();
    }
    Some(Value::Array(values))
}

/// The binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(raw: &[u8]) -> Option<String> {
    let word =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?])) };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        0xC000 => return Some("NaN".to_owned()),
        0xD000 => return Some("Infinity".to_owned()),
        0xF000 => return Some("-Infinity".to_owned()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let d = word(8 + 2 * i)?;
        if d > 9999 {
            return None;
        }
        digits.push(d);
    }
    let mut int_part = String::new();
    if weight >= 0 {
        for i in 0..=weight {
            let d = usize::try_from(i)
                .ok()
                .and_then(|i| digits.get(i))
                .copied()
                .unwrap_or(0);
            if int_part.is_empty() {
                if d != 0 {
                    int_part.push_str(&d.to_string());
                }
            } else {
                let _ = write!(int_part, "{d:04}");
            }
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    if dscale > 0 {
        // Digit groups after the decimal point start at index weight + 1.
        let mut i = weight + 1;
        while frac.len() < dscale {
            let d = if i < 0 {
                0
            } else {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| digits.get(i))
                    .copied()
                    .unwrap_or(0)
            };
            let _ = write!(frac, "{d:04}");
            i += 1;
        }
        frac.truncate(dscale);
    }
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    out.push_str(&int_part);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// Microseconds, days, months, shown as PostgreSQL does by default.
fn interval(raw: &[u8]) -> Option<String> {
    let micros = i64::from_be_bytes(raw.get(0..8)?.try_into().ok()?);
    let days = i32::from_be_bytes(raw.get(8..12)?.try_into().ok()?);
    let months = i32::from_be_bytes(raw.get(12..16)?.try_into().ok()?);
    let mut parts = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    let plural = |n: i64, unit: &str| {
        if n.abs() == 1 {
            format!("{n} {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if years != 0 {
        parts.push(plural(i64::from(years), "year"));
    }
    if mons != 0 {
        parts.push(plural(i64::from(mons), "mon"));
    }
    if days != 0 {
        parts.push(plural(i64::from(days), "day"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        let (h, rest) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rest) = (rest / 60_000_000, rest % 60_000_000);
        let (s, us) = (rest / 1_000_000, rest % 1_000_000);
        let mut t = format!("{sign}{h:02}:{min:02}:{s:02}");
        if us != 0 {
            let frac = format!("{us:06}");
            t.push('.');
            t.push_str(frac.trim_end_matches('0'));
        }
        parts.push(t);
    }
    Some(parts.join(" "))
}

fn inet(ty: &Type, raw: &[u8]) -> Option<String> {
    let v = postgres_protocol::types::inet_from_sql(raw).ok()?;
    let addr = v.addr();
    let full = if addr.is_ipv4() { 32 } else { 128 };
    if v.netmask() == full && *ty == Type::INET {
        Some(addr.to_string())
    } else {
        Some(format!("{addr}/{}", v.netmask()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_keep_every_digit() {
        assert_eq!(
            numeric(&num(2, 0, 0, 2, &[12, 3400])).as_deref(),
            Some("12.34")
        );
        assert_eq!(
            numeric(&num(1, -1, 0x4000, 4, &[5])).as_deref(),
            Some("-0.0005")
        );
        assert_eq!(numeric(&num(1, 1, 0, 0, &[1])).as_deref(), Some("10000"));
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).as_deref(), Some("0"));
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).as_deref(), Some("NaN"));
        assert_eq!(numeric(&[1, 2]), None, "truncated input is not a panic");
    }

    #[test]
    fn intervals_read_like_postgres() {
        let mut v = Vec::new();
        v.extend_from_slice(&(3_723_500_000i64).to_be_bytes());
        v.extend_from_slice(&2i32.to_be_bytes());
        v.extend_from_slice(&14i32.to_be_bytes());
        assert_eq!(
            interval(&v).as_deref(),
            Some("1 year 2 mons 2 days 01:02:03.5")
        );
        assert_eq!(interval(&[0; 3]), None);
    }
}
