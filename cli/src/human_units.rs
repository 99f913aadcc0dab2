//! Numbers as people read them: IEC byte sizes, percentages.

const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `512 B`, `8.0 MiB`, `1.5 GiB`.
pub fn bytes(n: i64) -> String {
    if n.unsigned_abs() < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Share of block reads served from shared buffers, `99.5%`; `-` when nothing was read.
pub fn hit_ratio(hit: Option<i64>, read: Option<i64>) -> String {
    match (hit, read) {
        (Some(hit), Some(read)) if hit >= 0 && read >= 0 && hit + read > 0 => {
            format!("{:.1}%", hit as f64 * 100.0 / (hit + read) as f64)
        }
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(8_192_000), "7.8 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(bytes(i64::MAX), "8.0 EiB");
        assert_eq!(bytes(-2048), "-2.0 KiB");
    }

    #[test]
    fn ratios() {
        assert_eq!(hit_ratio(Some(90), Some(10)), "90.0%");
        assert_eq!(hit_ratio(Some(0), Some(0)), "-");
        assert_eq!(hit_ratio(None, Some(1)), "-");
        assert_eq!(hit_ratio(Some(1), Some(0)), "100.0%");
    }
}
