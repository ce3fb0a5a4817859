//! How devices, dates and safety numbers are shown to people, shared by `devices` and `pair`.

use std::time::{SystemTime, UNIX_EPOCH};

use sealdesk_auth::safety::SafetyNumber;
use sealdesk_auth::trust::check_label;

/// The label used when the hostname is not usable.
pub(crate) const FALLBACK_LABEL: &str = "sealdesk device";

/// Seconds since the Unix epoch, now (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's name as a device label, or [`FALLBACK_LABEL`].
pub(crate) fn default_label() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    let name = name.trim();
    if check_label(name).is_ok() && name != "localhost" && name != "(none)" {
        name.to_owned()
    } else {
        FALLBACK_LABEL.to_owned()
    }
}

/// A label another device chose, made safe for a terminal: control and bidirectional
/// formatting characters (which can reorder what the user reads) become `�`.
pub(crate) fn safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM` in UTC for a Unix time.
pub(crate) fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Howard Hinnant's `civil_from_days` for days since 1970-01-01 (non-negative only).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The safety number as three indented lines of four groups.
pub(crate) fn safety_lines(n: &SafetyNumber, indent: &str) -> String {
    n.grouped()
        .lines()
        .map(|l| format!("{indent}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pads `s` with spaces to `width` characters (by `char` count).
pub(crate) fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc(4_107_542_400), "2100-03-01 00:00");
    }

    #[test]
    fn peer_labels_cannot_reorder_the_terminal() {
        assert_eq!(safe("alice\u{202e}cod.exe"), "alice\u{fffd}cod.exe");
        assert_eq!(safe("bob\x1b[2J"), "bob\u{fffd}[2J");
        assert_eq!(safe("Zoë's laptop"), "Zoë's laptop");
    }

    #[test]
    fn the_default_label_is_valid() {
        assert!(check_label(&default_label()).is_ok());
    }
}
