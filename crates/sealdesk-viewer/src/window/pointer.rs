//! Mouse input: positions through the [`Fit`], buttons, and the wheel accumulator.

use std::time::{Duration, Instant};

use sealdesk_proto::control::ControlMessage;
use winit::event::{MouseButton, MouseScrollDelta};

use super::layout::Fit;

/// Pixels of a pixel-precise scroll (touchpads on some platforms) that make one wheel notch
/// (120 units): about three lines of text.
pub const PIXELS_PER_NOTCH: f64 = 50.0;

/// Wheel units per notch ([`ControlMessage::Wheel`]).
const UNITS_PER_NOTCH: f64 = 120.0;

/// The X button number for a winit button; `None` for buttons the protocol does not carry.
pub(crate) fn button_number(button: MouseButton) -> Option<u8> {
    match button {
        MouseButton::Left => Some(1),
        MouseButton::Middle => Some(2),
        MouseButton::Right => Some(3),
        MouseButton::Back => Some(8),
        MouseButton::Forward => Some(9),
        MouseButton::Other(_) => None,
    }
}

/// How long after a raw wheel-button release its echo may still arrive.
const ECHO_WINDOW: Duration = Duration::from_millis(100);

/// Drops the second wheel event winit 0.30 reports for one click of a core wheel button.
///
/// winit 0.30's X11 backend turns X buttons 4–7 into a [`MouseScrollDelta::LineDelta`] on the
/// press *and* on the release (winit issue #1606; fixed upstream after 0.30.13), so a wheel
/// that reaches X as button clicks — XTest, evdev wheel emulation, nested or remote X servers —
/// would scroll twice as far. Wheels with smooth-scroll axes (libinput) come as axis motion
/// and are not affected. winit also reports the raw XInput button events (while the window has
/// the focus, and before the window's own event), which tell the release apart: after a raw
/// release of button 4–7, the next wheel event in that button's direction is its echo.
#[derive(Debug, Default)]
pub(crate) struct WheelEcho {
    pending: Option<(f32, f32, Instant)>,
}

impl WheelEcho {
    /// A raw (device) button event.
    pub(crate) fn raw_button(&mut self, button: u32, pressed: bool, now: Instant) {
        let delta = match button {
            4 => (0.0, 1.0),
            5 => (0.0, -1.0),
            6 => (1.0, 0.0),
            7 => (-1.0, 0.0),
            _ => return,
        };
        self.pending = (!pressed).then_some((delta.0, delta.1, now));
    }

    /// True if `delta` is the echo of a wheel-button release (and should be dropped).
    pub(crate) fn is_echo(&mut self, delta: &MouseScrollDelta, now: Instant) -> bool {
        let Some((x, y, at)) = self.pending else {
            return false;
        };
        let echo = matches!(*delta, MouseScrollDelta::LineDelta(dx, dy) if dx == x && dy == y)
            && now.saturating_duration_since(at) <= ECHO_WINDOW;
        if echo {
            self.pending = None;
        }
        echo
    }
}

/// The pointer's state between events.
#[derive(Debug, Default)]
pub(crate) struct Pointer {
    monitor: u8,
    /// The last position sent, to skip moves within one picture pixel.
    last_sent: Option<(u8, u16, u16)>,
    /// Where the pointer is in the window, if it is known.
    position: Option<(f64, f64)>,
    wheel_x: f64,
    wheel_y: f64,
}

impl Pointer {
    /// Later moves are on monitor `index`.
    pub(crate) fn set_monitor(&mut self, index: u8) {
        self.monitor = index;
    }

    /// The pointer moved to (`wx`, `wy`) in the window; the move to send, if any.
    pub(crate) fn moved(&mut self, wx: f64, wy: f64, fit: Option<&Fit>) -> Option<ControlMessage> {
        self.position = Some((wx, wy));
        self.resend(fit)
    }

    /// The move for the last known position under a (maybe new) fit, unless already sent.
    pub(crate) fn resend(&mut self, fit: Option<&Fit>) -> Option<ControlMessage> {
        let (wx, wy) = self.position?;
        let (px, py) = fit?.picture_at(wx, wy);
        let x = u16::try_from(px).unwrap_or(u16::MAX);
        let y = u16::try_from(py).unwrap_or(u16::MAX);
        let key = (self.monitor, x, y);
        if self.last_sent == Some(key) {
            return None;
        }
        self.last_sent = Some(key);
        Some(ControlMessage::PointerMove {
            monitor: self.monitor,
            x,
            y,
        })
    }

    /// The picture pixel last sent, while the pointer is over the window.
    pub(crate) fn local_pixel(&self) -> Option<(u16, u16)> {
        self.position.and(self.last_sent).map(|(_, x, y)| (x, y))
    }

    /// The pointer left the window: the next move is sent even if it lands on the same pixel.
    pub(crate) fn left(&mut self) {
        self.position = None;
        self.last_sent = None;
    }

    /// A wheel event; the message to send once a whole unit has accumulated.
    pub(crate) fn wheel(&mut self, delta: MouseScrollDelta) -> Option<ControlMessage> {
        // winit: positive means the content moves right/down, i.e. the wheel turned left/up;
        // the protocol's positive dx is right and dy is down.
        let (ux, uy) = match delta {
            MouseScrollDelta::LineDelta(x, y) => (
                -f64::from(x) * UNITS_PER_NOTCH,
                -f64::from(y) * UNITS_PER_NOTCH,
            ),
            MouseScrollDelta::PixelDelta(p) => (
                -p.x * UNITS_PER_NOTCH / PIXELS_PER_NOTCH,
                -p.y * UNITS_PER_NOTCH / PIXELS_PER_NOTCH,
            ),
        };
        let dx = accumulate(&mut self.wheel_x, ux);
        let dy = accumulate(&mut self.wheel_y, uy);
        (dx != 0 || dy != 0).then_some(ControlMessage::Wheel { dx, dy })
    }

    /// Forget partial wheel turns (focus lost).
    pub(crate) fn reset_wheel(&mut self) {
        self.wheel_x = 0.0;
        self.wheel_y = 0.0;
    }
}

/// Adds `units` to `acc` and takes out the whole units, at most one `i16` worth per event
/// (anything beyond is dropped, not carried into a flood of messages).
fn accumulate(acc: &mut f64, units: f64) -> i16 {
    if !units.is_finite() {
        return 0;
    }
    // Turning back drops the remainder of the other direction, so reversing is immediate.
    if units != 0.0 && acc.signum() != units.signum() {
        *acc = 0.0;
    }
    *acc += units;
    let whole = acc.trunc().clamp(f64::from(i16::MIN), f64::from(i16::MAX));
    if whole.abs() >= f64::from(i16::MAX) {
        *acc = 0.0;
    } else {
        *acc -= whole;
    }
    // In i16 range after the clamp; `as` saturates anyway.
    whole as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use winit::dpi::PhysicalPosition;

    fn wheel(p: &mut Pointer, d: MouseScrollDelta) -> Option<(i16, i16)> {
        match p.wheel(d)? {
            ControlMessage::Wheel { dx, dy } => Some((dx, dy)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wheel_notches_and_directions() {
        let mut p = Pointer::default();
        // X button 5 (down) arrives as LineDelta(0, -1).
        assert_eq!(
            wheel(&mut p, MouseScrollDelta::LineDelta(0.0, -1.0)),
            Some((0, 120))
        );
        assert_eq!(
            wheel(&mut p, MouseScrollDelta::LineDelta(0.0, 1.0)),
            Some((0, -120))
        );
        // Button 7 (right) is LineDelta(-1, 0).
        assert_eq!(
            wheel(&mut p, MouseScrollDelta::LineDelta(-1.0, 0.0)),
            Some((120, 0))
        );
        assert_eq!(
            wheel(&mut p, MouseScrollDelta::LineDelta(0.0, -2.5)),
            Some((0, 300))
        );
    }

    #[test]
    fn pixel_deltas_accumulate_without_loss() {
        let mut p = Pointer::default();
        let mut total = 0i32;
        for _ in 0..100 {
            let d = MouseScrollDelta::PixelDelta(PhysicalPosition::new(0.0, -0.3));
            if let Some((_, dy)) = wheel(&mut p, d) {
                total += i32::from(dy);
            }
        }
        // 30 pixels down = 72 units; at most one unit left in the accumulator.
        assert!((71..=72).contains(&total), "{total}");
        // Reversing starts from zero rather than paying back the remainder.
        let d = MouseScrollDelta::PixelDelta(PhysicalPosition::new(0.0, 1.0));
        assert_eq!(wheel(&mut p, d), Some((0, -2)));
    }

    #[test]
    fn absurd_wheel_values_are_bounded() {
        let mut p = Pointer::default();
        assert_eq!(
            wheel(&mut p, MouseScrollDelta::LineDelta(f32::NAN, f32::INFINITY)),
            None
        );
        assert_eq!(
            wheel(&mut p, MouseScrollDelta::LineDelta(-1e30, 1e30)),
            Some((i16::MAX, i16::MIN))
        );
        // Nothing carried over from the huge one.
        assert_eq!(
            wheel(&mut p, MouseScrollDelta::LineDelta(0.0, 1.0)),
            Some((0, -120))
        );
    }

    #[test]
    fn moves_are_mapped_and_deduplicated() {
        let fit = Fit::new(640, 360, 960, 600).unwrap();
        let mut p = Pointer::default();
        assert_eq!(p.moved(10.0, 10.0, None), None, "no picture yet");
        p.set_monitor(2);
        assert_eq!(
            p.moved(480.0, 300.0, Some(&fit)),
            Some(ControlMessage::PointerMove {
                monitor: 2,
                x: 320,
                y: 180
            })
        );
        // Same picture pixel at 1.5×: nothing new.
        assert_eq!(p.moved(480.4, 300.2, Some(&fit)), None);
        assert!(p.moved(483.0, 300.0, Some(&fit)).is_some());
        p.left();
        assert!(p.moved(483.0, 300.0, Some(&fit)).is_some());
        let big = Fit::new(100_000, 100_000, 10, 10).unwrap();
        assert_eq!(
            p.moved(9.0, 9.0, Some(&big)),
            Some(ControlMessage::PointerMove {
                monitor: 2,
                x: u16::MAX,
                y: u16::MAX
            })
        );
    }

    #[test]
    fn wheel_button_release_echo_is_dropped() {
        let t0 = Instant::now();
        let down = MouseScrollDelta::LineDelta(0.0, -1.0);
        let up = MouseScrollDelta::LineDelta(0.0, 1.0);
        let mut e = WheelEcho::default();
        // Smooth-scroll wheels: no raw button events, nothing dropped.
        assert!(!e.is_echo(&down, t0));
        // Button 5 click: press, wheel, release, echo.
        e.raw_button(5, true, t0);
        assert!(!e.is_echo(&down, t0));
        e.raw_button(5, false, t0);
        assert!(e.is_echo(&down, t0));
        assert!(!e.is_echo(&down, t0), "only one echo per release");
        // Another direction, or too late: not an echo.
        e.raw_button(5, false, t0);
        assert!(!e.is_echo(&up, t0));
        e.raw_button(4, false, t0);
        assert!(!e.is_echo(&up, t0 + Duration::from_secs(1)));
        // Other buttons do not matter.
        e.raw_button(1, false, t0);
        assert!(!e.is_echo(&down, t0));
    }

    #[test]
    fn buttons() {
        assert_eq!(button_number(MouseButton::Left), Some(1));
        assert_eq!(button_number(MouseButton::Middle), Some(2));
        assert_eq!(button_number(MouseButton::Right), Some(3));
        assert_eq!(button_number(MouseButton::Back), Some(8));
        assert_eq!(button_number(MouseButton::Forward), Some(9));
        assert_eq!(button_number(MouseButton::Other(12)), None);
    }
}
