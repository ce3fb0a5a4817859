//! A private Xvfb per test, and a plain x11rb client to draw and watch events with.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::time::{Duration, Instant};

use anyhow::bail;
use sealdesk_media::Rect;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Rectangle, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::COPY_DEPTH_FROM_PARENT;

/// How long to wait for an event to arrive.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running Xvfb (the library's launcher) and plain clients of it.
pub(crate) struct Xvfb {
    inner: sealdesk_media::xvfb::Xvfb,
    /// `":N"`.
    pub(crate) display: String,
}

impl Xvfb {
    /// Start `Xvfb` on a free display, `width`×`height` at depth 24, black root.
    pub(crate) fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        Self::start_with(width, height, &[])
    }

    /// [`Xvfb::start`] with extra server arguments (e.g. `["-extension", "RANDR"]`).
    pub(crate) fn start_with(width: u32, height: u32, extra: &[&str]) -> anyhow::Result<Self> {
        let inner = sealdesk_media::xvfb::Xvfb::start_with(width, height, extra)?;
        let display = inner.display().to_owned();
        Ok(Self { inner, display })
    }

    /// A fresh plain client connection and its root window.
    pub(crate) fn client(&self) -> anyhow::Result<(RustConnection, Window)> {
        let (conn, screen) = RustConnection::connect(Some(self.inner.display()))?;
        let root = conn.setup().roots[screen].root;
        Ok((conn, root))
    }
}

/// Round trip: every request sent before has been processed by the server.
pub(crate) fn sync(conn: &RustConnection) -> anyhow::Result<()> {
    conn.get_input_focus()?.reply()?;
    Ok(())
}

/// Create and map a top-level window at `rect` (no window manager: it appears as asked) with a
/// solid background and the given event mask, and wait until the server has mapped it.
pub(crate) fn window(
    conn: &RustConnection,
    root: Window,
    rect: Rect,
    background: u32,
    events: EventMask,
) -> anyhow::Result<Window> {
    let id = conn.generate_id()?;
    conn.create_window(
        COPY_DEPTH_FROM_PARENT,
        id,
        root,
        i16::try_from(rect.x)?,
        i16::try_from(rect.y)?,
        u16::try_from(rect.width)?,
        u16::try_from(rect.height)?,
        0,
        WindowClass::INPUT_OUTPUT,
        x11rb::COPY_FROM_PARENT,
        &CreateWindowAux::new()
            .background_pixel(background)
            .override_redirect(1)
            .event_mask(events),
    )?
    .check()?;
    conn.map_window(id)?.check()?;
    sync(conn)?;
    Ok(id)
}

/// Fill `rect` (window coordinates) of `window` with `rgb` (0xRRGGBB: a depth-24 TrueColor
/// pixel value).
pub(crate) fn fill(
    conn: &RustConnection,
    window: Window,
    rgb: u32,
    rect: Rect,
) -> anyhow::Result<()> {
    let gc = conn.generate_id()?;
    conn.create_gc(gc, window, &CreateGCAux::new().foreground(rgb))?
        .check()?;
    conn.poly_fill_rectangle(
        window,
        gc,
        &[Rectangle {
            x: i16::try_from(rect.x)?,
            y: i16::try_from(rect.y)?,
            width: u16::try_from(rect.width)?,
            height: u16::try_from(rect.height)?,
        }],
    )?
    .check()?;
    conn.free_gc(gc)?.check()?;
    sync(conn)
}

/// Wait for the next event matching `want`, skipping others, for up to 10 s.
pub(crate) fn wait_for<T>(
    conn: &RustConnection,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        while let Some(event) = conn.poll_for_event()? {
            if let Some(found) = want(&event) {
                return Ok(found);
            }
        }
        if Instant::now() > deadline {
            bail!("the expected X event did not arrive within 10 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every event that arrives within `quiet` of the previous one (after a round trip).
pub(crate) fn drain(conn: &RustConnection, quiet: Duration) -> anyhow::Result<Vec<Event>> {
    sync(conn)?;
    let mut events = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        while let Some(event) = conn.poll_for_event()? {
            events.push(event);
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(events)
}
