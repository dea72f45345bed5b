//! Durations as settings and requests write them: `250ms`, `90s`, `15m`,
//! `12h`, `30d` (pure).

use std::time::Duration;

/// Durations as `250ms`, `90s`, `15m`, `12h`, `30d`.
pub fn parse(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| "expected a duration such as 250ms, 90s, 15m, 12h or 30d".to_owned())?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(amount)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m, h or d")),
    };
    amount
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| "duration is too long".to_owned())
}

/// The shortest way [`parse`] reads back as the same duration.
pub fn show(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    for (unit, per) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds >= per && seconds.is_multiple_of(per) {
            return format!("{}{unit}", seconds / per);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_show_back() {
        for (text, duration) in [
            ("90s", Duration::from_secs(90)),
            ("15m", Duration::from_secs(900)),
            ("12h", Duration::from_secs(43_200)),
            ("30d", Duration::from_secs(2_592_000)),
            ("250ms", Duration::from_millis(250)),
        ] {
            assert_eq!(parse(text), Ok(duration));
            assert_eq!(show(duration), text);
        }
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show(Duration::ZERO), "0s");
        for bad in [
            "",
            "s",
            "10",
            "10w",
            "5x",
            "m",
            "-5s",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
