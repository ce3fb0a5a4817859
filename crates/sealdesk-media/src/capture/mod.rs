//! X11 screen capture: MIT-SHM frames, XDamage dirty rectangles, XFixes cursor.
//!
//! One [`Capturer`] owns one X connection, one shared-memory segment as large as the root window,
//! one damage object on the root window and one XFixes region to read it into. Call
//! [`Capturer::poll_damage`] each tick, [`Capturer::grab`] only when something in the monitor
//! changed, and [`Capturer::poll_cursor`] to follow the pointer.

mod cursor;
mod shm;

use x11rb::connection::Connection;
use x11rb::errors::{ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::damage::{self, ConnectionExt as _};
use x11rb::protocol::shm::ConnectionExt as _;
use x11rb::protocol::xfixes::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ImageFormat, ImageOrder, VisualClass, Window};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

pub use cursor::{CursorShape, CursorState};

use crate::x11::{self, XError};
use crate::{Monitor, Rect};
use shm::ShmSegment;

/// Why capture failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// Talking to the X server failed (see [`XError`]).
    #[error(transparent)]
    X(#[from] XError),
    /// The root window's pixels are not 32-bit little-endian xRGB (depth 24 or 32, TrueColor,
    /// masks 0xff0000/0xff00/0xff); only that layout is supported.
    #[error(
        "unsupported screen pixel format ({0}); sealdesk captures only 24/32-bit TrueColor \
         screens in little-endian xRGB — run the X server at depth 24"
    )]
    UnsupportedPixelFormat(String),
    /// The caller asked for a rectangle that is empty or not inside the root window.
    #[error("capture region {region:?} is empty or not inside the screen {screen:?}")]
    InvalidRegion {
        /// The rectangle asked for.
        region: Rect,
        /// The root window, as last read from the server.
        screen: Rect,
    },
    /// Creating or mapping the shared-memory segment failed (a local failure: memory limits,
    /// `memfd_create` unavailable).
    #[error("cannot set up the shared-memory capture buffer: {0}")]
    SharedMemory(#[source] std::io::Error),
    /// The X server answered with something inconsistent with the request.
    #[error("unexpected reply from the X server: {0}")]
    UnexpectedReply(String),
}

impl From<ConnectionError> for CaptureError {
    fn from(e: ConnectionError) -> Self {
        Self::X(e.into())
    }
}
impl From<ReplyError> for CaptureError {
    fn from(e: ReplyError) -> Self {
        Self::X(e.into())
    }
}
impl From<ReplyOrIdError> for CaptureError {
    fn from(e: ReplyOrIdError) -> Self {
        Self::X(e.into())
    }
}

/// Memory layout of a [`Frame`]'s pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PixelFormat {
    /// 4 bytes per pixel, in memory order blue, green, red, then one undefined byte
    /// (libyuv calls this `ARGB`, little-endian `0xXXRRGGBB` words).
    Bgrx,
}

/// A captured image: `height` rows of `stride` bytes, each row `width` pixels of
/// [`PixelFormat::Bgrx`] followed by padding (none today: `stride == 4 * width`).
///
/// The pixels are **borrowed from the shared-memory segment**, not copied: the frame borrows the
/// [`Capturer`] mutably, so it must be dropped (or copied with `data().to_vec()`) before the next
/// grab, which overwrites the segment. An encoder that converts BGRX→I420 straight from
/// [`Frame::data`] touches every byte once.
pub struct Frame<'a> {
    rect: Rect,
    stride: usize,
    data: &'a [u8],
}

impl std::fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the pixels: logs must not contain screen content.
        f.debug_struct("Frame")
            .field("rect", &self.rect)
            .field("stride", &self.stride)
            .finish_non_exhaustive()
    }
}

impl Frame<'_> {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.rect.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.rect.height
    }

    /// Bytes from the start of one row to the start of the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Pixel layout.
    pub fn format(&self) -> PixelFormat {
        PixelFormat::Bgrx
    }

    /// Where the frame was taken, in root-window pixels.
    pub fn rect(&self) -> Rect {
        self.rect
    }

    /// All rows: exactly `stride * height` bytes.
    pub fn data(&self) -> &[u8] {
        self.data
    }

    /// The pixel at (`x`, `y`) of the frame as `(red, green, blue)`, or `None` outside it.
    pub fn rgb(&self, x: u32, y: u32) -> Option<(u8, u8, u8)> {
        if x >= self.rect.width || y >= self.rect.height {
            return None;
        }
        let offset = usize::try_from(y)
            .ok()?
            .checked_mul(self.stride)?
            .checked_add(usize::try_from(x).ok()?.checked_mul(4)?)?;
        match self.data.get(offset..offset.checked_add(4)?)? {
            &[b, g, r, _] => Some((r, g, b)),
            _ => None,
        }
    }
}

/// Screen capture on one X connection. See the [module docs](self).
pub struct Capturer {
    conn: RustConnection,
    root: Window,
    /// The root window as last read; refreshed by [`Capturer::monitors`] and when a grab does
    /// not fit.
    screen: Rect,
    randr_monitors: bool,
    segment: Option<ShmSegment>,
    damage: damage::Damage,
    damage_parts: xfixes::Region,
    /// An XFixes `CursorNotify` arrived since the shape was last fetched.
    cursor_changed: bool,
    cursor_serial: Option<u32>,
}

impl std::fmt::Debug for Capturer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capturer")
            .field("root", &self.root)
            .field("screen", &self.screen)
            .field("randr_monitors", &self.randr_monitors)
            .finish_non_exhaustive()
    }
}

impl Capturer {
    /// Connect to `display` (e.g. `":0"`; `None` means `$DISPLAY`) and set up capture of its
    /// default screen.
    ///
    /// Needs MIT-SHM 1.2, DAMAGE 1.1 and XFIXES 2.0; RandR 1.5 is used for monitors when
    /// present. The first [`Capturer::poll_damage`] reports the whole screen (the server marks a
    /// new damage object's window wholly damaged), which doubles as the cue for a full first
    /// frame.
    pub fn connect(display: Option<&str>) -> Result<Self, CaptureError> {
        let (conn, screen_num) = x11::connect(display)?;
        let root = x11::root_of(&conn, screen_num)?;
        check_pixel_format(&conn, screen_num)?;

        require(&conn, "MIT-SHM", (1, 2))?;
        let v = conn.shm_query_version()?.reply()?;
        let shm_version = (u32::from(v.major_version), u32::from(v.minor_version));
        x11::require_version("MIT-SHM", shm_version, (1, 2))?;
        require(&conn, "DAMAGE", (1, 1))?;
        let v = conn.damage_query_version(1, 1)?.reply()?;
        x11::require_version("DAMAGE", (v.major_version, v.minor_version), (1, 1))?;
        require(&conn, "XFIXES", (2, 0))?;
        let v = conn.xfixes_query_version(5, 0)?.reply()?;
        x11::require_version("XFIXES", (v.major_version, v.minor_version), (2, 0))?;
        let randr_monitors = x11::has_randr_monitors(&conn)?;

        let damage_parts = conn.generate_id()?;
        conn.xfixes_create_region(damage_parts, &[])?.check()?;
        let damage = conn.generate_id()?;
        // NON_EMPTY: one DamageNotify per empty→non-empty transition, not one per drawing
        // request; the rectangles are fetched by `poll_damage` anyway.
        conn.damage_create(damage, root, damage::ReportLevel::NON_EMPTY)?
            .check()?;
        conn.xfixes_select_cursor_input(root, xfixes::CursorNotifyMask::DISPLAY_CURSOR)?
            .check()?;

        let screen = x11::root_rect(&conn, root)?;
        let size = frame_bytes(&screen).ok_or(CaptureError::InvalidRegion {
            region: screen,
            screen,
        })?;
        let segment = ShmSegment::new(&conn, size)?;
        Ok(Self {
            conn,
            root,
            screen,
            randr_monitors,
            segment: Some(segment),
            damage,
            damage_parts,
            cursor_changed: true,
            cursor_serial: None,
        })
    }

    /// The monitors (RandR 1.5 `GetMonitors`, active ones, clipped to the screen), or the whole
    /// root window as one monitor named `"root"` when RandR reports none. Also re-reads the
    /// screen size; call it again when the screen layout changes.
    pub fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        self.screen = x11::root_rect(&self.conn, self.root)?;
        Ok(x11::list_monitors(
            &self.conn,
            self.root,
            self.randr_monitors,
        )?)
    }

    /// The whole root window, as last read from the server.
    pub fn screen(&self) -> Rect {
        self.screen
    }

    /// Grab `region` (root-window pixels, e.g. a [`Monitor::rect`]) with one `ShmGetImage`.
    ///
    /// The frame borrows the shared segment until it is dropped — see [`Frame`]. The segment
    /// grows if the screen did; a region outside the screen is
    /// [`CaptureError::InvalidRegion`].
    pub fn grab(&mut self, region: Rect) -> Result<Frame<'_>, CaptureError> {
        if region.is_empty() || !self.screen.contains(&region) {
            // The screen may have been resized since we last looked.
            self.screen = x11::root_rect(&self.conn, self.root)?;
            if region.is_empty() || !self.screen.contains(&region) {
                return Err(CaptureError::InvalidRegion {
                    region,
                    screen: self.screen,
                });
            }
        }
        let invalid = || CaptureError::InvalidRegion {
            region,
            screen: self.screen,
        };
        let x = i16::try_from(region.x).map_err(|_| invalid())?;
        let y = i16::try_from(region.y).map_err(|_| invalid())?;
        let width = u16::try_from(region.width).map_err(|_| invalid())?;
        let height = u16::try_from(region.height).map_err(|_| invalid())?;
        let len = frame_bytes(&region).ok_or_else(invalid)?;
        let stride = usize::from(width) * 4;

        if self.segment.as_ref().is_none_or(|s| s.len() < len) {
            if let Some(old) = self.segment.take() {
                old.detach(&self.conn)?;
            }
            let size = frame_bytes(&self.screen).unwrap_or(len).max(len);
            self.segment = Some(ShmSegment::new(&self.conn, size)?);
        }
        let segment = self
            .segment
            .as_ref()
            .ok_or_else(|| CaptureError::UnexpectedReply("no capture segment".to_owned()))?;

        let reply = self
            .conn
            .shm_get_image(
                self.root,
                x,
                y,
                width,
                height,
                u32::MAX,
                ImageFormat::Z_PIXMAP.into(),
                segment.seg(),
                0,
            )?
            .reply()?;
        if usize::try_from(reply.size).ok() != Some(len) {
            return Err(CaptureError::UnexpectedReply(format!(
                "ShmGetImage of {width}x{height} returned {} bytes, expected {len}",
                reply.size
            )));
        }
        let data = segment
            .bytes(len)
            .ok_or_else(|| CaptureError::UnexpectedReply("segment too small".to_owned()))?;
        Ok(Frame {
            rect: region,
            stride,
            data,
        })
    }

    /// The parts of the screen drawn to since the previous call (root-window pixels, clipped to
    /// the screen; possibly overlapping monitors — intersect with [`Monitor::rect`]).
    ///
    /// An empty list means nothing changed: skip grabbing and encoding. Costs one round trip
    /// (`DamageSubtract` into a region, then `XFixesFetchRegion`), so call it once per frame
    /// tick, before [`Capturer::grab`]. Damage accumulates between calls; nothing is lost if
    /// a tick is late.
    pub fn poll_damage(&mut self) -> Result<Vec<Rect>, CaptureError> {
        // Moves the accumulated damage into `damage_parts` and empties the damage object.
        self.conn
            .damage_subtract(self.damage, x11rb::NONE, self.damage_parts)?;
        let reply = self.conn.xfixes_fetch_region(self.damage_parts)?.reply()?;
        // Errors of the unchecked subtract, if any, arrived before the reply.
        self.drain_events()?;
        let screen = self.screen;
        Ok(reply
            .rectangles
            .iter()
            .filter_map(|r| {
                Rect::new(
                    i32::from(r.x),
                    i32::from(r.y),
                    u32::from(r.width),
                    u32::from(r.height),
                )
                .intersection(&screen)
            })
            .collect())
    }

    /// Where the pointer is, and the cursor image if it changed since the previous call (the
    /// first call always includes it).
    ///
    /// Call it once per frame tick (or at whatever rate pointer updates go to the viewer).
    /// One round trip (`QueryPointer`) when the shape is unchanged; a second one
    /// (`XFixesGetCursorImage`) when an XFixes `CursorNotify` said it changed. Pointer motion
    /// does not damage the screen and frames do not contain the cursor: the viewer draws it.
    pub fn poll_cursor(&mut self) -> Result<CursorState, CaptureError> {
        let pointer = self.query_pointer()?;
        // Any CursorNotify generated before the QueryPointer was answered is queued by now.
        self.drain_events()?;
        if self.cursor_changed || self.cursor_serial.is_none() {
            let shape = self.cursor_shape()?;
            return Ok(CursorState {
                x: pointer.0,
                y: pointer.1,
                serial: shape.serial,
                shape: Some(shape),
            });
        }
        Ok(CursorState {
            x: pointer.0,
            y: pointer.1,
            serial: self.cursor_serial.unwrap_or_default(),
            shape: None,
        })
    }

    /// Fetch the current cursor image unconditionally (e.g. for a viewer that just joined).
    pub fn cursor_shape(&mut self) -> Result<CursorShape, CaptureError> {
        let reply = self.conn.xfixes_get_cursor_image()?.reply()?;
        let shape = CursorShape::from_reply(reply)?;
        self.cursor_changed = false;
        self.cursor_serial = Some(shape.serial);
        Ok(shape)
    }

    fn query_pointer(&self) -> Result<(i32, i32), CaptureError> {
        use x11rb::protocol::xproto::ConnectionExt as _;
        let p = self.conn.query_pointer(self.root)?.reply()?;
        Ok((i32::from(p.root_x), i32::from(p.root_y)))
    }

    /// Empty the event queue: note cursor changes, surface X errors of unchecked requests.
    /// DamageNotify needs no handling, `poll_damage` reads the region every time.
    fn drain_events(&mut self) -> Result<(), CaptureError> {
        let mut first_error = None;
        while let Some(event) = self.conn.poll_for_event()? {
            match event {
                Event::XfixesCursorNotify(_) => self.cursor_changed = true,
                Event::Error(e) => {
                    first_error.get_or_insert(e);
                }
                _ => {}
            }
        }
        match first_error {
            Some(e) => Err(XError::Request(e).into()),
            None => Ok(()),
        }
    }
}

/// Error unless the server lists extension `name` (its version is checked separately).
fn require(
    conn: &RustConnection,
    name: &'static str,
    (major, minor): (u32, u32),
) -> Result<(), CaptureError> {
    if x11::has_extension(conn, name)? {
        Ok(())
    } else {
        Err(XError::MissingExtension { name, major, minor }.into())
    }
}

/// Bytes of a BGRX image of `rect`, or `None` if that overflows `usize`.
fn frame_bytes(rect: &Rect) -> Option<usize> {
    usize::try_from(rect.width)
        .ok()?
        .checked_mul(usize::try_from(rect.height).ok()?)?
        .checked_mul(4)
}

/// Accept only screens whose ZPixmap images are 32 bpp little-endian xRGB.
fn check_pixel_format(conn: &RustConnection, screen_num: usize) -> Result<(), CaptureError> {
    let setup = conn.setup();
    let unsupported = |what: String| Err(CaptureError::UnsupportedPixelFormat(what));
    let Some(screen) = setup.roots.get(screen_num) else {
        return unsupported(format!("no screen {screen_num}"));
    };
    let depth = screen.root_depth;
    if depth != 24 && depth != 32 {
        return unsupported(format!("root depth {depth}"));
    }
    let bpp = setup
        .pixmap_formats
        .iter()
        .find(|f| f.depth == depth)
        .map(|f| f.bits_per_pixel);
    if bpp != Some(32) {
        return unsupported(format!("depth {depth} stored in {bpp:?} bits per pixel"));
    }
    if setup.image_byte_order != ImageOrder::LSB_FIRST {
        return unsupported("big-endian image byte order".to_owned());
    }
    let visual = screen
        .allowed_depths
        .iter()
        .flat_map(|d| d.visuals.iter())
        .find(|v| v.visual_id == screen.root_visual);
    match visual {
        Some(v)
            if v.class == VisualClass::TRUE_COLOR
                && (v.red_mask, v.green_mask, v.blue_mask) == (0xff_0000, 0xff00, 0xff) =>
        {
            Ok(())
        }
        Some(v) => unsupported(format!(
            "root visual {:?} with masks {:#x}/{:#x}/{:#x}",
            v.class, v.red_mask, v.green_mask, v.blue_mask
        )),
        None => unsupported("root visual not listed".to_owned()),
    }
}
