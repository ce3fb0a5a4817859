//! The viewer window: shows the remote screen and turns the local user's mouse and keyboard into
//! control messages (DESIGN.md §5).
//!
//! [`open`] starts a window on its own thread (winit's X11 backend, softbuffer for the pixels)
//! and returns a [`WindowHandle`]. The rest of the viewer feeds it [`ToWindow`] messages —
//! decoded pictures, the remote cursor shape, a stats line — and receives [`FromWindow`]
//! messages — [`ControlMessage`]s to put on the `control` channel, and [`FromWindow::Closed`]
//! when the user closes the window.
//!
//! # What the window does
//!
//! * **Picture.** The newest [`Picture`] is scaled to fit the window with its aspect ratio
//!   kept; the rest of the window is dark bars. Scaling is a separable SIMD convolution
//!   (`fast_image_resize`) whose kernel widens with the downscaling ratio, so every source
//!   pixel contributes and text stays legible: Hamming-windowed when shrinking, Catmull-Rom
//!   when enlarging; a picture that fits exactly is copied unfiltered. 1920×1080 → 1280×720
//!   costs about 2.5 ms on the window thread (AVX2, release build). Pictures queue at most one
//!   deep: a frame sent while the previous one is still undrawn replaces it.
//! * **Pointer.** Window positions map back through the fit to picture pixels and go out as
//!   [`ControlMessage::PointerMove`] on the monitor set with [`ToWindow::Monitor`] (0 until
//!   then). Positions over the bars are clamped to the nearest picture edge, so edge-triggered
//!   things on the host (hot corners, auto-hiding panels) are easy to reach. Nothing is sent
//!   before the first picture (there is nothing to map to) or when the position did not change
//!   in picture pixels. Buttons: left 1, middle 2, right 3, back 8, forward 9 (others are not
//!   sent). The wheel goes out as [`ControlMessage::Wheel`] in 1/120 notch units, positive `dy`
//!   down and `dx` right; a wheel notch is 120, a smooth-scroll or pixel delta is accumulated
//!   and sent in whole units, the remainder kept (pixel deltas count
//!   [`PIXELS_PER_NOTCH`] pixels per notch).
//! * **Keyboard.** Every key goes out as [`ControlMessage::Key`] with an X11 keysym taken from
//!   the key *without* modifiers (the layout's first level: Shift+A is `Shift_L` then `a`), so
//!   a press and its release always agree; modifiers are keys of their own (`Shift_L`,
//!   `Control_R`, `ISO_Level3_Shift`, …), keypad keys are `KP_*`, characters are their Latin-1
//!   code or `0x0100_0000 +` the Unicode code point. Each physical key remembers the keysym
//!   its press sent and its release sends the same one; a release whose press this window did
//!   not send is dropped. Auto-repeat is forwarded as repeated presses without releases
//!   (what X clients expect); the host should therefore not add its own server-side repeat
//!   to injected keys. Keys and clicks the window manager keeps for itself (e.g. Alt+Tab)
//!   never reach the window.
//! * **Release.** When the window loses the keyboard focus, is fully covered or is closed, it
//!   sends [`ControlMessage::ReleaseAll`] and forgets what was held, so nothing stays pressed
//!   on the host.
//! * **Cursor.** [`ToWindow::Cursor`] with an image makes the local pointer look like the
//!   remote one, scaled like the picture (between ½× and 2×, at most
//!   [`MAX_CURSOR_SHOWN`] pixels a side); a fully transparent image hides the pointer.
//!   `Cursor(None)` — and any image that is malformed or over [`MAX_CURSOR_SIDE`] a side —
//!   shows the local default arrow.
//! * **Stats.** [`ToWindow::Stats`] shows one line in the bottom-left corner, light text on a
//!   darkened box, in an 8×8 bitmap font (ASCII and Latin-1; anything else draws as `?`); an
//!   empty line removes it. The window title is [`WindowConfig::title`].
//!
//! Nothing here logs screen content, cursor images or keys.
//!
//! # Limits
//!
//! winit allows **one event loop per process**, and its X11 backend opens the display named by
//! `$DISPLAY` once per process: [`open`] succeeds at most once in a process, on one display. It
//! first checks (with a separate short-lived connection) that the display can be reached and
//! has the RANDR, XInputExtension and XKEYBOARD extensions, and that `libxkbcommon-x11` can be
//! loaded, so those failures are errors that leave the one chance unused.
//!
//! Xlib (which winit uses underneath) **ends the process** when the X server goes away while
//! the window is open; there is no error to catch.
//!
//! winit 0.30 reports a wheel that reaches X as core button clicks (XTest, evdev wheel
//! emulation, nested or remote X servers) twice, on the press and on the release. The window
//! drops the second one using the raw XInput button events, which winit delivers only while
//! the window has the keyboard focus: scrolling an unfocused window with such a wheel still
//! counts double. Smooth-scrolling wheels (libinput) are not affected.
//!
//! # Driving it
//!
//! ```no_run
//! use sealdesk_viewer::window::{self, FromWindow, Picture, ToWindow, WindowConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (to_session, from_window) = std::sync::mpsc::channel();
//! let handle = window::open(
//!     WindowConfig { title: "sealdesk — office pc".into() },
//!     move |event| {
//!         // Called on the window thread: hand the event to the session, never block here.
//!         let _ = to_session.send(event);
//!     },
//! )?;
//! // Decoder thread: every decoded picture (B, G, R, A bytes).
//! handle.send(ToWindow::Frame(Picture { width: 2, height: 1, bgra: vec![0; 8] }))?;
//! handle.send(ToWindow::Stats("60 fps · 180 kbps · rtt 2 ms · direct".into()))?;
//! // Session loop: control messages go to the `control` data channel.
//! while let Ok(event) = from_window.recv() {
//!     match event {
//!         FromWindow::Control(message) => { /* send `message` to the host */ let _ = message; }
//!         FromWindow::Closed => break,
//!         _ => {}
//!     }
//! }
//! // When the session ends first instead: handle.send(ToWindow::Close)?;
//! handle.join()?;
//! # Ok(())
//! # }
//! ```

mod app;
mod cursor;
mod keys;
mod layout;
mod overlay;
mod pointer;
mod preflight;
mod render;
mod sprite;

use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use sealdesk_proto::control::ControlMessage;
use winit::event_loop::EventLoopProxy;

pub use cursor::{MAX_CURSOR_SHOWN, MAX_CURSOR_SIDE};
pub use pointer::PIXELS_PER_NOTCH;

/// How the window is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowConfig {
    /// The window title, e.g. `"sealdesk — office pc"`.
    pub title: String,
}

/// A decoded picture: `width × height` pixels, row after row with no padding, 4 bytes each in
/// B, G, R, A memory order (alpha is ignored).
///
/// A picture whose `bgra` is not exactly `4 · width · height` bytes is not shown (the previous
/// one stays); a 0-pixel picture clears the window to the bar colour.
#[derive(Clone, PartialEq, Eq)]
pub struct Picture {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// The pixels.
    pub bgra: Vec<u8>,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the pixels: logs must not contain screen content.
        f.debug_struct("Picture")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.bgra.len())
            .finish()
    }
}

/// The remote cursor's shape.
#[derive(Clone, PartialEq, Eq)]
pub struct CursorImage {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Hotspot column (clamped into the image).
    pub hot_x: u32,
    /// Hotspot row (clamped into the image).
    pub hot_y: u32,
    /// `4 · width · height` bytes: R, G, B, A per pixel, straight (not premultiplied) alpha —
    /// the layout of [`ControlMessage::CursorShape`].
    pub rgba: Vec<u8>,
}

impl std::fmt::Debug for CursorImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("hot_x", &self.hot_x)
            .field("hot_y", &self.hot_y)
            .finish_non_exhaustive()
    }
}

/// What the rest of the viewer tells the window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToWindow {
    /// Show this picture. The newest wins: an older one not yet drawn is dropped.
    Frame(Picture),
    /// The remote cursor's shape; `None` shows the local default arrow. A fully transparent
    /// image hides the pointer (the remote cursor is hidden).
    Cursor(Option<CursorImage>),
    /// One short line for the overlay, e.g. `"60 fps · 180 kbps · rtt 2 ms · direct"`; empty
    /// hides the overlay.
    Stats(String),
    /// Where the host's pointer is, in picture pixels. When it is not where the local pointer
    /// is (someone at the host moved it), the window draws the host's cursor there.
    CursorAt {
        /// Column.
        x: i32,
        /// Row.
        y: i32,
    },
    /// The remote monitor the pictures show: the `monitor` of every later
    /// [`ControlMessage::PointerMove`].
    Monitor {
        /// Index into the host's monitor layout.
        index: u8,
    },
    /// The session ended: close the window (no [`FromWindow::Closed`] follows) and let
    /// [`WindowHandle::join`] return.
    Close,
}

/// What the window tells the rest of the viewer, on the window thread.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FromWindow {
    /// Input for the host: [`ControlMessage::PointerMove`], [`ControlMessage::PointerButton`],
    /// [`ControlMessage::Wheel`], [`ControlMessage::Key`] or [`ControlMessage::ReleaseAll`].
    Control(ControlMessage),
    /// The user closed the window (a [`ControlMessage::ReleaseAll`] came just before). The
    /// window is gone; [`WindowHandle::join`] returns.
    Closed,
    /// The user asked for the next (`forward`) or previous monitor of the host with
    /// Ctrl+Alt+Shift+→ / ←; the viewer picks the index and sends
    /// [`ControlMessage::SelectMonitor`].
    SwitchMonitor {
        /// Next (true) or previous.
        forward: bool,
    },
}

/// Why the window could not be opened or stopped working.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// No X display could be reached (`$DISPLAY` unset or wrong, or the server is gone).
    #[error("cannot open the X display {display:?} ({reason}); set DISPLAY to a running X server, or use the headless mode")]
    NoDisplay {
        /// `$DISPLAY` as found (empty when unset).
        display: String,
        /// What went wrong.
        reason: String,
    },
    /// The X server lacks an extension the window needs.
    #[error("the X server has no {0} extension, which the viewer window needs")]
    MissingExtension(&'static str),
    /// A shared library the window loads at run time is missing.
    #[error("cannot load {library}; install it with: sudo apt-get install -y {package}")]
    MissingLibrary {
        /// The library's file name.
        library: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// A window was already opened in this process (winit allows one event loop per process).
    #[error(
        "a viewer window was already opened in this process; only one is possible per process"
    )]
    AlreadyOpened,
    /// winit or softbuffer failed to set the window up.
    #[error("cannot create the viewer window: {0}")]
    Platform(String),
    /// The window thread could not be started.
    #[error("cannot start the window thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The window is closed (by the user, by [`ToWindow::Close`] or by a failure).
    #[error("the viewer window is closed")]
    Closed,
    /// The window thread panicked (a bug in the window).
    #[error("the viewer window thread panicked")]
    Panicked,
}

/// What wakes the window's event loop.
#[derive(Debug)]
enum Wake {
    /// A picture is waiting in the [`FrameSlot`].
    Frame,
    /// Any other message.
    Message(ToWindow),
}

/// The newest undrawn picture, shared between [`WindowHandle::send`] and the window thread.
#[derive(Debug, Default)]
struct Slot {
    picture: Option<Picture>,
    /// Set by the window thread when it ends; later frames are refused.
    closed: bool,
}

type FrameSlot = Arc<Mutex<Slot>>;

fn lock(slot: &FrameSlot) -> std::sync::MutexGuard<'_, Slot> {
    // A panic while holding this lock leaves a consistent Option/bool behind.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running window: send it [`ToWindow`] messages from any thread, then [`join`] it.
///
/// Dropping the handle without joining asks the window to close and does not wait.
///
/// [`join`]: WindowHandle::join
#[derive(Debug)]
pub struct WindowHandle {
    proxy: EventLoopProxy<Wake>,
    slot: FrameSlot,
    thread: Option<JoinHandle<Result<(), WindowError>>>,
}

/// Opens the viewer window on a thread of its own and returns once the window exists.
///
/// `events` is called on the window thread for every [`FromWindow`]; it must return quickly
/// (hand the event to a channel), or input and drawing stall. Fails with
/// [`WindowError::NoDisplay`], [`WindowError::MissingExtension`] or
/// [`WindowError::MissingLibrary`] before anything is created, and with
/// [`WindowError::AlreadyOpened`] on a second call in the same process (see the
/// [module docs](self#limits)).
pub fn open(
    config: WindowConfig,
    events: impl FnMut(FromWindow) + Send + 'static,
) -> Result<WindowHandle, WindowError> {
    preflight::check()?;
    let slot = FrameSlot::default();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let thread_slot = Arc::clone(&slot);
    let thread = std::thread::Builder::new()
        .name("sealdesk-window".into())
        .spawn(move || app::run(config, Box::new(events), thread_slot, ready_tx))
        .map_err(WindowError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(proxy)) => Ok(WindowHandle {
            proxy,
            slot,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        // The thread ended without a word: it failed before the window existed, or panicked.
        Err(mpsc::RecvError) => match thread.join() {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(WindowError::Closed),
            Err(_) => Err(WindowError::Panicked),
        },
    }
}

impl WindowHandle {
    /// Hands a message to the window and wakes it; never blocks on drawing. A
    /// [`ToWindow::Frame`] replaces one still waiting to be drawn. Fails with
    /// [`WindowError::Closed`] once the window is gone.
    pub fn send(&self, msg: ToWindow) -> Result<(), WindowError> {
        match msg {
            ToWindow::Frame(picture) => {
                let was_empty = {
                    let mut slot = lock(&self.slot);
                    if slot.closed {
                        return Err(WindowError::Closed);
                    }
                    slot.picture.replace(picture).is_none()
                };
                // Only the first picture into an empty slot needs a wake-up; later ones are
                // picked up by the same one.
                if was_empty {
                    self.proxy
                        .send_event(Wake::Frame)
                        .map_err(|_| WindowError::Closed)?;
                }
                Ok(())
            }
            other => self
                .proxy
                .send_event(Wake::Message(other))
                .map_err(|_| WindowError::Closed),
        }
    }

    /// True once the window is gone (closed by the user, by [`ToWindow::Close`], or failed).
    pub fn is_closed(&self) -> bool {
        lock(&self.slot).closed
    }

    /// Waits for the window thread to end — after [`ToWindow::Close`] or the user closing the
    /// window — and returns how it ended.
    pub fn join(mut self) -> Result<(), WindowError> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(WindowError::Panicked)),
            None => Ok(()),
        }
    }
}

impl Drop for WindowHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Not joined: ask the window to go away; it is fine if it already has.
            let _ = self.proxy.send_event(Wake::Message(ToWindow::Close));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<WindowHandle>();
        send_sync::<ToWindow>();
        send_sync::<FromWindow>();
    }

    #[test]
    fn debug_never_shows_pixels() {
        let picture = Picture {
            width: 1,
            height: 1,
            bgra: vec![0xab, 0xcd, 0xef, 0x12],
        };
        let text = format!("{:?}", ToWindow::Frame(picture));
        assert!(!text.contains("171") && !text.contains("ab"), "{text}");
        let cursor = CursorImage {
            width: 1,
            height: 1,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![0xab, 0xcd, 0xef, 0x12],
        };
        let text = format!("{cursor:?}");
        assert!(!text.contains("171"), "{text}");
    }
}
