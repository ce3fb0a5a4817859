//! What capture and input share: connecting, extension checks, X errors, monitor listing.

use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ConnectionExt as _, Window};
use x11rb::rust_connection::RustConnection;
use x11rb::x11_utils::X11Error;

use crate::{Monitor, Rect};

/// A failure talking to the X server (shared by [`crate::capture`] and [`crate::input`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XError {
    /// The display could not be opened.
    #[error(
        "cannot connect to X display {display}: {source} \
         (is the X server running, and $DISPLAY or the display name right?)"
    )]
    Connect {
        /// The display name asked for (`$DISPLAY` when none was given).
        display: String,
        /// Why the connection failed.
        #[source]
        source: ConnectError,
    },
    /// The server lacks an extension (or has too old a version of it) that sealdesk needs.
    #[error(
        "the X server has no {name} extension version {major}.{minor} or later, \
         which sealdesk needs; use an X server that provides it (Xorg and Xvfb do)"
    )]
    MissingExtension {
        /// Extension name as the server knows it, e.g. `"MIT-SHM"`.
        name: &'static str,
        /// Minimum major version.
        major: u32,
        /// Minimum minor version.
        minor: u32,
    },
    /// The connection broke (server gone, I/O error, malformed reply).
    #[error("the connection to the X server failed: {0}")]
    Connection(#[from] ConnectionError),
    /// The server answered a request with an X error.
    #[error("the X server rejected a request: {0:?}")]
    Request(X11Error),
    /// This connection used up its resource-id range.
    #[error("the X connection ran out of resource ids; reconnect")]
    IdsExhausted,
}

impl From<ReplyError> for XError {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::ConnectionError(e) => Self::Connection(e),
            ReplyError::X11Error(e) => Self::Request(e),
        }
    }
}

impl From<ReplyOrIdError> for XError {
    fn from(e: ReplyOrIdError) -> Self {
        match e {
            ReplyOrIdError::IdsExhausted => Self::IdsExhausted,
            ReplyOrIdError::ConnectionError(e) => Self::Connection(e),
            ReplyOrIdError::X11Error(e) => Self::Request(e),
        }
    }
}

/// Open `display` (or `$DISPLAY`) with the pure-Rust connection; returns it and the screen number.
pub(crate) fn connect(display: Option<&str>) -> Result<(RustConnection, usize), XError> {
    RustConnection::connect(display).map_err(|source| XError::Connect {
        display: display
            .map(str::to_owned)
            .or_else(|| std::env::var("DISPLAY").ok())
            .unwrap_or_else(|| "(unset $DISPLAY)".to_owned()),
        source,
    })
}

/// The root window of screen `screen`.
pub(crate) fn root_of(conn: &RustConnection, screen: usize) -> Result<Window, XError> {
    conn.setup()
        .roots
        .get(screen)
        .map(|s| s.root)
        .ok_or(XError::Connect {
            display: format!("screen {screen}"),
            source: ConnectError::InvalidScreen,
        })
}

/// Is extension `name` present on the server (without asking for its version)?
pub(crate) fn has_extension(conn: &RustConnection, name: &'static str) -> Result<bool, XError> {
    Ok(conn.extension_information(name)?.is_some())
}

/// Error unless `(got_major, got_minor) >= (major, minor)`.
pub(crate) fn require_version(
    name: &'static str,
    (got_major, got_minor): (u32, u32),
    (major, minor): (u32, u32),
) -> Result<(), XError> {
    if (got_major, got_minor) >= (major, minor) {
        Ok(())
    } else {
        Err(XError::MissingExtension { name, major, minor })
    }
}

/// Size of the root window.
pub(crate) fn root_rect(conn: &RustConnection, root: Window) -> Result<Rect, XError> {
    let g = conn.get_geometry(root)?.reply()?;
    Ok(Rect::new(0, 0, u32::from(g.width), u32::from(g.height)))
}

/// Does the server speak RandR 1.5 (`RRGetMonitors`)? Negotiates the version as a side effect,
/// which RandR requires before 1.5 requests.
pub(crate) fn has_randr_monitors(conn: &RustConnection) -> Result<bool, XError> {
    if !has_extension(conn, randr::X11_EXTENSION_NAME)? {
        return Ok(false);
    }
    let v = conn.randr_query_version(1, 5)?.reply()?;
    Ok((v.major_version, v.minor_version) >= (1, 5))
}

/// The monitors of the screen, clipped to the root window; falls back to one `"root"` monitor.
pub(crate) fn list_monitors(
    conn: &RustConnection,
    root: Window,
    randr_monitors: bool,
) -> Result<Vec<Monitor>, XError> {
    let screen = root_rect(conn, root)?;
    let mut out = Vec::new();
    if randr_monitors {
        let reply = conn.randr_get_monitors(root, true)?.reply()?;
        for m in reply.monitors {
            let rect = Rect::new(
                i32::from(m.x),
                i32::from(m.y),
                u32::from(m.width),
                u32::from(m.height),
            );
            let Some(rect) = rect.intersection(&screen) else {
                continue;
            };
            let name = conn.get_atom_name(m.name)?.reply()?;
            out.push(Monitor {
                name: String::from_utf8_lossy(&name.name).into_owned(),
                primary: m.primary,
                rect,
            });
        }
    }
    if out.is_empty() {
        out.push(Monitor {
            name: "root".to_owned(),
            primary: true,
            rect: screen,
        });
    }
    Ok(out)
}
