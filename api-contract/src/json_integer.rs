//! Integers of JSON request bodies as JSON Schema defines them: a number with no fractional
//! part, `10.0` as well as `10` (serde's integer types refuse `10.0`). The OpenAPI document
//! says `type: integer`; a client that writes `10.0` follows it and must not be refused.
//!
//! Use with `#[serde(default, deserialize_with = "json_integer::option")]` on `Option<T>`
//! fields, `json_integer::required` on plain ones and `json_integer::option_vec` on
//! `Option<Vec<T>>`.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

fn integral<T: TryFrom<i128>, E: Error>(n: &Number) -> Result<T, E> {
    let value: Option<i128> = if let Some(i) = n.as_i64() {
        Some(i.into())
    } else if let Some(u) = n.as_u64() {
        Some(u.into())
    } else {
        // Within ±2^63 a float's integral value converts exactly; beyond it no field fits.
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.3e18)
            .map(|f| f as i128)
    };
    let value = value.ok_or_else(|| E::custom(format!("{n} is not an integer")))?;
    T::try_from(value).map_err(|_| E::custom(format!("{n} is out of range")))
}

pub fn required<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
    integral(&Number::deserialize(d)?)
}

pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Number>::deserialize(d)?
        .map(|n| integral(&n))
        .transpose()
}

pub fn option_vec<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Option::<Vec<Number>>::deserialize(d)?
        .map(|v| v.iter().map(integral).collect())
        .transpose()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Body {
        #[serde(default, deserialize_with = "super::option")]
        small: Option<i32>,
        #[serde(deserialize_with = "super::required")]
        count: u64,
        #[serde(default, deserialize_with = "super::option_vec")]
        ids: Option<Vec<i64>>,
    }

    fn parse(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers_and_the_rest_is_refused() {
        assert_eq!(
            parse(r#"{"small": 10.0, "count": 7, "ids": [1, 2.0]}"#),
            Ok(Body {
                small: Some(10),
                count: 7,
                ids: Some(vec![1, 2])
            })
        );
        // Needs serde_json's float_roundtrip: the default parser may land one
        // ulp off (…961.5) and refuse an integer the client sent exactly.
        assert_eq!(
            parse(r#"{"count": 1, "ids": [-3677460416048962.0, 52314484.0]}"#),
            Ok(Body {
                small: None,
                count: 1,
                ids: Some(vec![-3_677_460_416_048_962, 52_314_484])
            })
        );
        assert_eq!(
            parse(r#"{"count": 1e3}"#),
            Ok(Body {
                small: None,
                count: 1000,
                ids: None
            })
        );
        assert!(parse(r#"{"small": null, "count": 1}"#).is_ok());
        for bad in [
            r#"{"count": 1.5}"#,
            r#"{"count": -1}"#,
            r#"{"count": "1"}"#,
            r#"{"small": 3000000000, "count": 1}"#,
            r#"{"count": 1e300}"#,
            r#"{"ids": [1.5], "count": 1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
