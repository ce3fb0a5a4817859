//! Screen capture, video coding and input injection for sealdesk on X11 — an `[os]` crate
//! (DESIGN.md §5, §9).
//!
//! * [`capture::Capturer`] grabs frames of a monitor (or the whole root window) with MIT-SHM into
//!   a memfd shared with the X server, reports what changed with XDamage
//!   ([`capture::Capturer::poll_damage`]) and follows the cursor with XFixes
//!   ([`capture::Capturer::poll_cursor`]).
//! * [`input::Injector`] injects pointer, wheel and key events with XTest, remembers every key and
//!   button it holds down and releases them all on [`input::Injector::release_all`] or drop.
//! * [`clipboard::Clipboard`] syncs text with the X `CLIPBOARD` selection: it serves the peer's
//!   text to local programs and reports what they copy, on a thread of its own.
//!
//! * [`convert::I420Frame`] converts captured BGRX to I420 and decoded I420 back to BGRA/RGBA
//!   (SIMD, the `yuv` crate).
//! * [`encode::Encoder`] and [`decode::Decoder`] wrap libvpx (Debian `libvpx-dev`) for realtime
//!   VP9 (default) and VP8 with screen-content tuning, CBR and keyframes only on request.
//!
//! Capture and injection talk to the X server with [`x11rb`]'s pure-Rust connection (no
//! libxcb), each on its own connection, so they can live on different threads.
//!
//! # Driving it
//!
//! A host loop polls damage, grabs only when something changed, and hands the frame (and the
//! dirty rectangles) to the encoder; input from the `control` channel goes to the injector, and
//! when the session ends the injector releases whatever the peer left pressed:
//!
//! ```no_run
//! use sealdesk_media::capture::Capturer;
//! use sealdesk_media::convert::I420Frame;
//! use sealdesk_media::encode::{Encoder, EncoderConfig};
//! use sealdesk_media::input::{Button, Injector};
//! use sealdesk_media::Codec;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut capturer = Capturer::connect(None)?; // $DISPLAY
//! let monitor = capturer.monitors()?.into_iter().next().ok_or("no monitor")?;
//! let mut injector = Injector::connect(None)?;
//! // Even sizes only: a real host crops an odd monitor by one pixel.
//! let mut encoder = Encoder::new(
//!     Codec::Vp9,
//!     monitor.rect.width,
//!     monitor.rect.height,
//!     EncoderConfig::default(),
//! )?;
//!
//! // Once per frame tick (e.g. every 33 ms):
//! let dirty = capturer.poll_damage()?;
//! if dirty.iter().any(|r| r.intersects(&monitor.rect)) {
//!     let frame = capturer.grab(monitor.rect)?;
//!     // frame.data() is BGRX, frame.stride() bytes per row: convert to I420 and encode.
//!     let i420 = I420Frame::from_capture(&frame)?;
//!     let pts_ms = 0; // milliseconds since the stream started
//!     let keyframe_requested = false; // a PLI arrived
//!     for encoded in encoder.encode(&i420, pts_ms, keyframe_requested)? {
//!         // one RTP frame each: str0m's Writer::write(pt, now, rtp_time, encoded.data)
//!         let _ = (encoded.keyframe, encoded.data.len());
//!     }
//! }
//! // The congestion controller's estimate moved:
//! encoder.set_bitrate(2_500)?;
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
pub mod clipboard;
pub mod convert;
pub mod decode;
pub mod encode;
mod geometry;
pub mod input;
mod vpx;
mod x11;
pub mod xvfb;

pub use geometry::{Monitor, Rect};
pub use vpx::{Codec, VpxError};
pub use x11::XError;

#[cfg(test)]
mod tests {
    /// Capture and injection run on their own threads in the host.
    #[test]
    fn capturer_and_injector_are_send() {
        fn send<T: Send>() {}
        send::<crate::capture::Capturer>();
        send::<crate::input::Injector>();
        send::<crate::clipboard::Clipboard>();
        send::<crate::encode::Encoder>();
        send::<crate::decode::Decoder>();
    }

    /// The host calls the clipboard from its session task and forwards changes elsewhere.
    #[test]
    fn clipboard_is_sync() {
        fn sync<T: Sync>() {}
        sync::<crate::clipboard::Clipboard>();
    }
}
