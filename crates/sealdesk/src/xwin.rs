//! What the demo's desktop and the session bench draw with: a plain X client's full-screen
//! window (override-redirect: no window manager is needed) and a GC with the `fixed` font,
//! which every X server has built in.

use anyhow::Context as _;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Gcontext, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;

/// A mapped window covering the screen.
pub(crate) struct Canvas {
    pub(crate) conn: RustConnection,
    pub(crate) window: Window,
    /// Foreground/background as given, the `fixed` font, no graphics exposures.
    pub(crate) gc: Gcontext,
    pub(crate) width: u16,
    pub(crate) height: u16,
}

impl Canvas {
    /// Opens `display` and maps a full-screen window with `background`, receiving `events`.
    pub(crate) fn open(
        display: &str,
        background: u32,
        foreground: u32,
        events: EventMask,
    ) -> anyhow::Result<Self> {
        let (conn, screen) = RustConnection::connect(Some(display))
            .with_context(|| format!("cannot open display {display}"))?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .context("the display has no such screen")?;
        let (root_window, width, height) = (root.root, root.width_in_pixels, root.height_in_pixels);
        let window = conn.generate_id()?;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root_window,
            0,
            0,
            width,
            height,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &CreateWindowAux::new()
                .background_pixel(background)
                .override_redirect(1)
                .event_mask(events),
        )?;
        conn.map_window(window)?;
        let font = conn.generate_id()?;
        conn.open_font(font, b"fixed")?;
        let gc = conn.generate_id()?;
        conn.create_gc(
            gc,
            window,
            &CreateGCAux::new()
                .foreground(foreground)
                .background(background)
                .font(font)
                .graphics_exposures(0),
        )?;
        Ok(Self {
            conn,
            window,
            gc,
            width,
            height,
        })
    }
}
