//! The cursor as XFixes reports it.

use x11rb::protocol::xfixes::GetCursorImageReply;

use super::CaptureError;

/// The cursor image, as `XFixesGetCursorImage` returns it. `Debug` leaves out the pixels.
#[derive(Clone, PartialEq, Eq)]
pub struct CursorShape {
    /// XFixes cursor serial: changes whenever the displayed cursor changes; equal serials mean
    /// equal images.
    pub serial: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Hotspot column: the pixel of the image that sits at the pointer position.
    pub hot_x: u32,
    /// Hotspot row.
    pub hot_y: u32,
    /// `width * height` pixels, row by row, each `0xAARRGGBB` with premultiplied alpha.
    pub argb: Vec<u32>,
}

impl std::fmt::Debug for CursorShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorShape")
            .field("serial", &self.serial)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("hot_x", &self.hot_x)
            .field("hot_y", &self.hot_y)
            .finish_non_exhaustive()
    }
}

impl CursorShape {
    pub(super) fn from_reply(reply: GetCursorImageReply) -> Result<Self, CaptureError> {
        let (width, height) = (u32::from(reply.width), u32::from(reply.height));
        let expected = usize::from(reply.width) * usize::from(reply.height);
        if reply.cursor_image.len() != expected {
            return Err(CaptureError::UnexpectedReply(format!(
                "cursor image of {width}x{height} has {} pixels",
                reply.cursor_image.len()
            )));
        }
        Ok(Self {
            serial: reply.cursor_serial,
            width,
            height,
            hot_x: u32::from(reply.xhot),
            hot_y: u32::from(reply.yhot),
            argb: reply.cursor_image,
        })
    }
}

/// What [`Capturer::poll_cursor`](super::Capturer::poll_cursor) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorState {
    /// Pointer position in root-window pixels (where the hotspot is).
    pub x: i32,
    /// Pointer row in root-window pixels.
    pub y: i32,
    /// Serial of the cursor shape currently displayed.
    pub serial: u32,
    /// The new image when the shape changed since the previous poll (always on the first poll);
    /// `None` when the viewer's copy is still right.
    pub shape: Option<CursorShape>,
}
