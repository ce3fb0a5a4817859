//! Checks before winit is touched: winit can create an event loop only once per process and
//! panics on some missing pieces, so what can be checked up front is, with a clear error.

use x11rb::connection::RequestConnection;

use super::WindowError;

/// Extensions winit's X11 backend requires.
const EXTENSIONS: [&str; 3] = ["RANDR", "XInputExtension", "XKEYBOARD"];

/// The display in `$DISPLAY` answers and has [`EXTENSIONS`], and libxkbcommon(-x11) loads.
pub(crate) fn check() -> Result<(), WindowError> {
    let display = std::env::var("DISPLAY").unwrap_or_default();
    let no_display = |reason: String| WindowError::NoDisplay {
        display: display.clone(),
        reason,
    };
    if display.is_empty() {
        return Err(no_display("DISPLAY is not set".into()));
    }
    if !display_number_fits(&display) {
        // x11rb 0.13 adds the number to TCP port 6000 in a u16 and panics on overflow.
        return Err(no_display("the display number is out of range".into()));
    }
    let (conn, _screen) = x11rb::connect(Some(&display)).map_err(|e| no_display(e.to_string()))?;
    for name in EXTENSIONS {
        let present = conn
            .extension_information(name)
            .map_err(|e| no_display(e.to_string()))?
            .is_some();
        if !present {
            return Err(WindowError::MissingExtension(name));
        }
    }
    drop(conn);
    if xkbcommon_dl::xkbcommon_option().is_none() {
        return Err(WindowError::MissingLibrary {
            library: "libxkbcommon.so.0",
            package: "libxkbcommon0",
        });
    }
    if xkbcommon_dl::x11::xkbcommon_x11_option().is_none() {
        return Err(WindowError::MissingLibrary {
            library: "libxkbcommon-x11.so.0",
            package: "libxkbcommon-x11-0",
        });
    }
    Ok(())
}

/// The display number in `[host]:number[.screen]` (or a path to a socket, which has none)
/// leaves room for its TCP port, 6000 + number.
fn display_number_fits(display: &str) -> bool {
    let Some((_, rest)) = display.rsplit_once(':') else {
        return true;
    };
    let number = rest.split('.').next().unwrap_or_default();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        // Not a number: x11rb reports it as a parse error.
        return true;
    }
    number
        .parse::<u64>()
        .is_ok_and(|n| n <= u64::from(u16::MAX - 6000))
}

#[cfg(test)]
mod tests {
    use super::display_number_fits;

    #[test]
    fn display_numbers() {
        assert!(display_number_fits(":0"));
        assert!(display_number_fits("localhost:10.0"));
        assert!(display_number_fits(":59535"));
        assert!(!display_number_fits(":59536"));
        assert!(!display_number_fits(":65000"));
        assert!(!display_number_fits("host:4294967295.1"));
        assert!(!display_number_fits(":99999999999999999999"));
        assert!(display_number_fits("/tmp/.X11-unix/X0"));
        assert!(display_number_fits(":x"));
    }
}
