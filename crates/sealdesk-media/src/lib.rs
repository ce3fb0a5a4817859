//! Screen capture and input injection for the sealdesk host on X11 — an `[os]` crate
//! (DESIGN.md §5, §9).
//!
//! * [`capture::Capturer`] grabs frames of a monitor (or the whole root window) with MIT-SHM into
//!   a memfd shared with the X server, reports what changed with XDamage
//!   ([`capture::Capturer::poll_damage`]) and follows the cursor with XFixes
//!   ([`capture::Capturer::poll_cursor`]).
//! * [`input::Injector`] injects pointer, wheel and key events with XTest, remembers every key and
//!   button it holds down and releases them all on [`input::Injector::release_all`] or drop.
//!
//! Both talk to the X server with [`x11rb`]'s pure-Rust connection (no libxcb), each on its own
//! connection, so capture and injection can live on different threads. Encoding (libvpx) is not
//! part of this crate yet.
//!
//! # Driving it
//!
//! A host loop polls damage, grabs only when something changed, and hands the frame (and the
//! dirty rectangles) to the encoder; input from the `control` channel goes to the injector, and
//! when the session ends the injector releases whatever the peer left pressed:
//!
//! ```no_run
//! use sealdesk_media::capture::Capturer;
//! use sealdesk_media::input::{Button, Injector};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut capturer = Capturer::connect(None)?; // $DISPLAY
//! let monitor = capturer.monitors()?.into_iter().next().ok_or("no monitor")?;
//! let mut injector = Injector::connect(None)?;
//!
//! // Once per frame tick (e.g. every 33 ms):
//! let dirty = capturer.poll_damage()?;
//! if dirty.iter().any(|r| r.intersects(&monitor.rect)) {
//!     let frame = capturer.grab(monitor.rect)?;
//!     // frame.data() is BGRX, frame.stride() bytes per row: convert to I420 and encode.
//!     let _ = (frame.width(), frame.height(), frame.data().len());
//! }
//! let cursor = capturer.poll_cursor()?;
//! if let Some(shape) = &cursor.shape {
//!     // the cursor image changed: send shape.argb to the viewer
//!     let _ = shape.serial;
//! }
//!
//! // Input from the viewer, in monitor coordinates:
//! injector.move_pointer(&monitor, 100, 50)?;
//! injector.button(Button::Left, true)?;
//! injector.button(Button::Left, false)?;
//! injector.key(0x0061, true)?; // XK_a
//! injector.key(0x0061, false)?;
//!
//! // Session over (also done by Drop):
//! injector.release_all()?;
//! # Ok(())
//! # }
//! ```

pub mod capture;
mod geometry;
pub mod input;
mod x11;

pub use geometry::{Monitor, Rect};
pub use x11::XError;

#[cfg(test)]
mod tests {
    /// Capture and injection run on their own threads in the host.
    #[test]
    fn capturer_and_injector_are_send() {
        fn send<T: Send>() {}
        send::<crate::capture::Capturer>();
        send::<crate::input::Injector>();
    }
}
