//! The atoms the clipboard speaks, interned once per connection.

use x11rb::protocol::xproto::{Atom, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use crate::x11::XError;

/// Interned atoms (`STRING`, `ATOM`, `INTEGER` are predefined: see `AtomEnum`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Atoms {
    pub(super) clipboard: Atom,
    pub(super) targets: Atom,
    pub(super) timestamp: Atom,
    pub(super) utf8_string: Atom,
    pub(super) text_plain_utf8: Atom,
    pub(super) text: Atom,
    pub(super) incr: Atom,
    /// Where owners put what we asked for, on our window; fetches take turns.
    pub(super) properties: [Atom; 4],
    /// A property we append nothing to, to learn the server time from its `PropertyNotify`.
    pub(super) time_probe: Atom,
}

impl Atoms {
    /// Intern all of them with one round trip.
    pub(super) fn intern(conn: &RustConnection) -> Result<Self, XError> {
        let names: [&[u8]; 12] = [
            b"CLIPBOARD",
            b"TARGETS",
            b"TIMESTAMP",
            b"UTF8_STRING",
            b"text/plain;charset=utf-8",
            b"TEXT",
            b"INCR",
            b"SEALDESK_SELECTION_0",
            b"SEALDESK_SELECTION_1",
            b"SEALDESK_SELECTION_2",
            b"SEALDESK_SELECTION_3",
            b"SEALDESK_TIME_PROBE",
        ];
        let mut cookies = Vec::with_capacity(names.len());
        for name in names {
            cookies.push(conn.intern_atom(false, name)?);
        }
        let mut atoms = [0; 12];
        for (slot, cookie) in atoms.iter_mut().zip(cookies) {
            *slot = cookie.reply()?.atom;
        }
        let [clipboard, targets, timestamp, utf8_string, text_plain_utf8, text, incr, p0, p1, p2, p3, time_probe] =
            atoms;
        Ok(Self {
            clipboard,
            targets,
            timestamp,
            utf8_string,
            text_plain_utf8,
            text,
            incr,
            properties: [p0, p1, p2, p3],
            time_probe,
        })
    }

    /// Distinct made-up atoms above the predefined ones, for unit tests without a server.
    #[cfg(test)]
    pub(super) fn for_tests() -> Self {
        Self {
            clipboard: 100,
            targets: 101,
            timestamp: 102,
            utf8_string: 103,
            text_plain_utf8: 104,
            text: 105,
            incr: 106,
            properties: [107, 108, 109, 110],
            time_probe: 111,
        }
    }
}
