//! The `control` data channel (DESIGN.md §5): input, clipboard, session control and stats.
//!
//! Version 1. The channel is reliable and ordered and keeps message boundaries (SCTP), so
//! each data-channel message is exactly one control message: a type byte, then fixed-order
//! big-endian fields. Text is UTF-8. Every message is at most [`MAX_CONTROL_MESSAGE`]
//! bytes; [`ControlMessage::decode`] turns any bytes into a message or a [`WireError`]
//! naming the field, never a panic. Unknown types are an error the receiver may ignore
//! ([`WireError::UnexpectedTag`]), so later versions can add messages after `Hello`
//! negotiates.
//!
//! ```text
//! 0x01 Hello          version:u16  capabilities:u32                     both ways, first
//! 0x10 PointerMove    monitor:u8  x:u16  y:u16                          viewer → host (monitor pixels)
//! 0x11 PointerButton  button:u8  down:bool                              1 left 2 middle 3 right 8 back 9 forward
//! 0x12 Wheel          dx:i16  dy:i16                                    1/120 of a notch (120 = one click)
//! 0x13 Key            keysym:u32  down:bool                             X11 keysym; explicit key-up
//! 0x14 ReleaseAll                                                       release every held key and button
//! 0x20 Clipboard      kind:u8  data:bytes32                             1 = UTF-8 text; ≤ 256 KiB
//! 0x30 MonitorLayout  n:u8  active:u8  n × {x:i32 y:i32 width:u16 height:u16 primary:bool}
//!                                                                       host → viewer, ≤ 16; active = streamed
//! 0x31 SelectMonitor  index:u8                                          viewer → host
//! 0x32 RequestKeyframe                                                  viewer → host
//! 0x33 Permissions    bits:u16                                          host → viewer (what is allowed)
//! 0x34 InputRefused   count:u32                                         host → viewer (view-only)
//! 0x35 End            reason:u8  text:str8                              either; the session ends
//! 0x36 Cursor         x:i32  y:i32                                      host → viewer (hotspot, streamed-monitor pixels)
//! 0x37 CursorShape    width:u16 height:u16 hot_x:u16 hot_y:u16 rgba:(4·w·h bytes)
//!                                                                       host → viewer; ≤ 128×128, straight alpha
//! 0x38 Recording      active:bool  owner:str8                           either: the sender records this session
//!                                                                       (to the named owner) or stopped
//! 0x40 Ping           id:u32  sent_micros:u64                           either; answered by Pong
//! 0x41 Pong           id:u32  sent_micros:u64                           echoes the Ping
//! 0x42 Stats          fps_x10:u16  kbps:u32  rtt_ms:u16  loss_permille:u16   viewer → host
//! ```

use crate::wire::{Reader, WireError, Writer};

/// The control protocol version this implementation speaks.
pub const CONTROL_VERSION: u16 = 1;
/// The largest control message (fits a data-channel message in every browser).
pub const MAX_CONTROL_MESSAGE: usize = 256 * 1024;
/// The largest clipboard payload in one message.
pub const MAX_CLIPBOARD_BYTES: usize = MAX_CONTROL_MESSAGE - 16;
/// The most monitors a layout lists.
pub const MAX_MONITORS: usize = 16;
/// The most bytes of an end reason's text.
pub const MAX_END_TEXT: usize = 200;
/// The widest (and tallest) cursor image.
pub const MAX_CURSOR_SIDE: u16 = 128;

/// Capability bits in [`ControlMessage::Hello`].
pub mod caps {
    /// Can send or apply input.
    pub const INPUT: u32 = 1;
    /// Can exchange text clipboard.
    pub const CLIPBOARD_TEXT: u32 = 2;
    /// Understands several monitors.
    pub const MONITORS: u32 = 4;
}

/// A monitor of the host, in the X screen's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Monitor {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The primary monitor.
    pub primary: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The user on this side ended it.
    UserEnded,
    /// The host's user stopped sharing.
    HostStopped,
    /// Permissions changed (e.g. the pairing was revoked).
    Revoked,
    /// A protocol error.
    ProtocolError,
    /// Anything else, including reasons this version does not know.
    Other,
}

impl EndReason {
    const fn byte(self) -> u8 {
        match self {
            EndReason::Other => 0,
            EndReason::UserEnded => 1,
            EndReason::HostStopped => 2,
            EndReason::Revoked => 3,
            EndReason::ProtocolError => 4,
        }
    }

    const fn from_byte(b: u8) -> Self {
        match b {
            1 => EndReason::UserEnded,
            2 => EndReason::HostStopped,
            3 => EndReason::Revoked,
            4 => EndReason::ProtocolError,
            _ => EndReason::Other,
        }
    }
}

/// One control-channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlMessage {
    /// First message each way: the version spoken and capability bits ([`caps`]).
    Hello {
        /// [`CONTROL_VERSION`].
        version: u16,
        /// [`caps`] bits.
        capabilities: u32,
    },
    /// Absolute pointer position in the pixels of monitor `monitor`.
    PointerMove {
        /// Index into the host's [`ControlMessage::MonitorLayout`].
        monitor: u8,
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// A pointer button changed state.
    PointerButton {
        /// 1 left, 2 middle, 3 right, 8 back, 9 forward.
        button: u8,
        /// Pressed (true) or released.
        down: bool,
    },
    /// Scrolling, in 1/120 of a notch.
    Wheel {
        /// Horizontal (positive: right).
        dx: i16,
        /// Vertical (positive: down).
        dy: i16,
    },
    /// A key changed state.
    Key {
        /// The X11 keysym.
        keysym: u32,
        /// Pressed (true) or released.
        down: bool,
    },
    /// Release every key and button this viewer holds (focus lost, session paused).
    ReleaseAll,
    /// Clipboard text.
    Clipboard {
        /// The UTF-8 text.
        text: String,
    },
    /// The host's monitors, and which one is streamed.
    MonitorLayout {
        /// At most [`MAX_MONITORS`].
        monitors: Vec<Monitor>,
        /// Index of the monitor the video shows (pointer coordinates refer to it).
        active: u8,
    },
    /// The viewer wants monitor `index`.
    SelectMonitor {
        /// Index into the layout.
        index: u8,
    },
    /// The viewer's decoder needs a keyframe.
    RequestKeyframe,
    /// What the viewer may do (the host enforces it where events are injected).
    Permissions {
        /// `sealdesk_auth::trust::Permissions` bits.
        bits: u16,
    },
    /// The host refused input events (view-only session); a running count.
    InputRefused {
        /// Events refused so far.
        count: u32,
    },
    /// The session ends.
    End {
        /// Why.
        reason: EndReason,
        /// Words for people, at most [`MAX_END_TEXT`] bytes.
        text: String,
    },
    /// Where the host's pointer is (its hotspot), in pixels of the streamed monitor; may
    /// lie outside it when the pointer is on another monitor.
    Cursor {
        /// Column.
        x: i32,
        /// Row.
        y: i32,
    },
    /// The host's cursor image changed.
    CursorShape {
        /// Width, at most [`MAX_CURSOR_SIDE`].
        width: u16,
        /// Height, at most [`MAX_CURSOR_SIDE`].
        height: u16,
        /// Hotspot column (inside the image).
        hot_x: u16,
        /// Hotspot row.
        hot_y: u16,
        /// `4 · width · height` bytes: R, G, B, A per pixel, straight (not premultiplied) alpha.
        rgba: Vec<u8>,
    },
    /// The sender records this session (`active`), or stopped recording. The receiver must
    /// tell its user (DESIGN.md §7).
    Recording {
        /// Recording now.
        active: bool,
        /// Whom the recording is for (the owner's label and fingerprint), at most
        /// [`MAX_END_TEXT`] bytes.
        owner: String,
    },
    /// Round-trip probe.
    Ping {
        /// Matches the Pong.
        id: u32,
        /// The sender's clock, in microseconds (only the sender interprets it).
        sent_micros: u64,
    },
    /// Answer to a Ping, echoing it.
    Pong {
        /// The Ping's id.
        id: u32,
        /// The Ping's time.
        sent_micros: u64,
    },
    /// What the viewer measures.
    Stats {
        /// Frames per second × 10.
        fps_x10: u16,
        /// Received video kilobits per second.
        kbps: u32,
        /// Round trip in milliseconds.
        rtt_ms: u16,
        /// Packet loss per thousand.
        loss_permille: u16,
    },
}

const T_HELLO: u8 = 0x01;
const T_MOVE: u8 = 0x10;
const T_BUTTON: u8 = 0x11;
const T_WHEEL: u8 = 0x12;
const T_KEY: u8 = 0x13;
const T_RELEASE_ALL: u8 = 0x14;
const T_CLIPBOARD: u8 = 0x20;
const T_LAYOUT: u8 = 0x30;
const T_SELECT: u8 = 0x31;
const T_KEYFRAME: u8 = 0x32;
const T_PERMISSIONS: u8 = 0x33;
const T_REFUSED: u8 = 0x34;
const T_END: u8 = 0x35;
const T_CURSOR: u8 = 0x36;
const T_CURSOR_SHAPE: u8 = 0x37;
const T_RECORDING: u8 = 0x38;
const T_PING: u8 = 0x40;
const T_PONG: u8 = 0x41;
const T_STATS: u8 = 0x42;
const CLIPBOARD_TEXT: u8 = 1;

/// A message that cannot be encoded within the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Clipboard text over [`MAX_CLIPBOARD_BYTES`].
    #[error("clipboard text of {0} bytes is over the {MAX_CLIPBOARD_BYTES}-byte limit")]
    ClipboardTooLarge(usize),
    /// More than [`MAX_MONITORS`] monitors, or an active index outside the list.
    #[error("{0} monitors is over the limit of {MAX_MONITORS}, or the active one is not listed")]
    TooManyMonitors(usize),
    /// A cursor image over [`MAX_CURSOR_SIDE`], with its hotspot outside, or whose pixel
    /// bytes do not match its size.
    #[error("cursor image {width}x{height} is over {MAX_CURSOR_SIDE} pixels a side, has its hotspot outside, or has the wrong number of bytes")]
    BadCursor {
        /// Its width.
        width: u16,
        /// Its height.
        height: u16,
    },
}

impl ControlMessage {
    /// Whether this message is input (refused in a view-only session).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            ControlMessage::PointerMove { .. }
                | ControlMessage::PointerButton { .. }
                | ControlMessage::Wheel { .. }
                | ControlMessage::Key { .. }
        )
    }

    /// Encodes, checking the limits. End texts longer than [`MAX_END_TEXT`] are cut at a
    /// character boundary.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::default();
        match self {
            ControlMessage::Hello {
                version,
                capabilities,
            } => {
                w.u8(T_HELLO).u16(*version).u32(*capabilities);
            }
            ControlMessage::PointerMove { monitor, x, y } => {
                w.u8(T_MOVE).u8(*monitor).u16(*x).u16(*y);
            }
            ControlMessage::PointerButton { button, down } => {
                w.u8(T_BUTTON).u8(*button).bool(*down);
            }
            ControlMessage::Wheel { dx, dy } => {
                w.u8(T_WHEEL).i16(*dx).i16(*dy);
            }
            ControlMessage::Key { keysym, down } => {
                w.u8(T_KEY).u32(*keysym).bool(*down);
            }
            ControlMessage::ReleaseAll => {
                w.u8(T_RELEASE_ALL);
            }
            ControlMessage::Clipboard { text } => {
                if text.len() > MAX_CLIPBOARD_BYTES {
                    return Err(EncodeError::ClipboardTooLarge(text.len()));
                }
                w.u8(T_CLIPBOARD)
                    .u8(CLIPBOARD_TEXT)
                    .bytes32(text.as_bytes());
            }
            ControlMessage::MonitorLayout { monitors, active } => {
                if monitors.len() > MAX_MONITORS || usize::from(*active) >= monitors.len().max(1) {
                    return Err(EncodeError::TooManyMonitors(monitors.len()));
                }
                w.u8(T_LAYOUT)
                    .u8(u8::try_from(monitors.len()).unwrap_or(0))
                    .u8(*active);
                for m in monitors {
                    w.i32(m.x)
                        .i32(m.y)
                        .u16(m.width)
                        .u16(m.height)
                        .bool(m.primary);
                }
            }
            ControlMessage::SelectMonitor { index } => {
                w.u8(T_SELECT).u8(*index);
            }
            ControlMessage::RequestKeyframe => {
                w.u8(T_KEYFRAME);
            }
            ControlMessage::Permissions { bits } => {
                w.u8(T_PERMISSIONS).u16(*bits);
            }
            ControlMessage::InputRefused { count } => {
                w.u8(T_REFUSED).u32(*count);
            }
            ControlMessage::End { reason, text } => {
                let mut cut = text.len().min(MAX_END_TEXT);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let clean: String = text[..cut].chars().filter(|c| !c.is_control()).collect();
                w.u8(T_END).u8(reason.byte()).short_str(&clean);
            }
            ControlMessage::Recording { active, owner } => {
                let mut cut = owner.len().min(MAX_END_TEXT);
                while !owner.is_char_boundary(cut) {
                    cut -= 1;
                }
                let clean: String = owner[..cut].chars().filter(|c| !c.is_control()).collect();
                w.u8(T_RECORDING).bool(*active).short_str(&clean);
            }
            ControlMessage::Cursor { x, y } => {
                w.u8(T_CURSOR).i32(*x).i32(*y);
            }
            ControlMessage::CursorShape {
                width,
                height,
                hot_x,
                hot_y,
                rgba,
            } => {
                if !cursor_ok(*width, *height, *hot_x, *hot_y, rgba.len()) {
                    return Err(EncodeError::BadCursor {
                        width: *width,
                        height: *height,
                    });
                }
                w.u8(T_CURSOR_SHAPE)
                    .u16(*width)
                    .u16(*height)
                    .u16(*hot_x)
                    .u16(*hot_y)
                    .raw(rgba);
            }
            ControlMessage::Ping { id, sent_micros } => {
                w.u8(T_PING).u32(*id).u64(*sent_micros);
            }
            ControlMessage::Pong { id, sent_micros } => {
                w.u8(T_PONG).u32(*id).u64(*sent_micros);
            }
            ControlMessage::Stats {
                fps_x10,
                kbps,
                rtt_ms,
                loss_permille,
            } => {
                w.u8(T_STATS)
                    .u16(*fps_x10)
                    .u32(*kbps)
                    .u16(*rtt_ms)
                    .u16(*loss_permille);
            }
        }
        Ok(w.buf)
    }

    /// Decodes one message. Any input gives a message or an error naming the field.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_CONTROL_MESSAGE {
            return Err(WireError::TooLong {
                field: "control message",
                len: bytes.len(),
                max: MAX_CONTROL_MESSAGE,
            });
        }
        let mut r = Reader::new(bytes);
        let msg = match r.u8("type")? {
            T_HELLO => ControlMessage::Hello {
                version: r.u16("version")?,
                capabilities: r.u32("capabilities")?,
            },
            T_MOVE => ControlMessage::PointerMove {
                monitor: r.u8("monitor")?,
                x: r.u16("x")?,
                y: r.u16("y")?,
            },
            T_BUTTON => {
                let button = r.u8("button")?;
                if !matches!(button, 1..=3 | 8 | 9) {
                    return Err(WireError::Invalid("button"));
                }
                ControlMessage::PointerButton {
                    button,
                    down: r.bool("down")?,
                }
            }
            T_WHEEL => ControlMessage::Wheel {
                dx: r.i16("dx")?,
                dy: r.i16("dy")?,
            },
            T_KEY => ControlMessage::Key {
                keysym: r.u32("keysym")?,
                down: r.bool("down")?,
            },
            T_RELEASE_ALL => ControlMessage::ReleaseAll,
            T_CLIPBOARD => {
                if r.u8("clipboard kind")? != CLIPBOARD_TEXT {
                    return Err(WireError::Invalid("clipboard kind"));
                }
                let raw = r.bytes32("clipboard", MAX_CLIPBOARD_BYTES)?;
                let text = std::str::from_utf8(raw).map_err(|_| WireError::Invalid("clipboard"))?;
                ControlMessage::Clipboard {
                    text: text.to_owned(),
                }
            }
            T_LAYOUT => {
                let n = usize::from(r.u8("monitors")?);
                if n > MAX_MONITORS {
                    return Err(WireError::TooLong {
                        field: "monitors",
                        len: n,
                        max: MAX_MONITORS,
                    });
                }
                let active = r.u8("active monitor")?;
                if usize::from(active) >= n.max(1) {
                    return Err(WireError::Invalid("active monitor"));
                }
                let mut monitors = Vec::with_capacity(n);
                for _ in 0..n {
                    monitors.push(Monitor {
                        x: r.i32("monitor x")?,
                        y: r.i32("monitor y")?,
                        width: r.u16("monitor width")?,
                        height: r.u16("monitor height")?,
                        primary: r.bool("monitor primary")?,
                    });
                }
                ControlMessage::MonitorLayout { monitors, active }
            }
            T_SELECT => ControlMessage::SelectMonitor {
                index: r.u8("index")?,
            },
            T_KEYFRAME => ControlMessage::RequestKeyframe,
            T_PERMISSIONS => ControlMessage::Permissions {
                bits: r.u16("permissions")?,
            },
            T_REFUSED => ControlMessage::InputRefused {
                count: r.u32("count")?,
            },
            T_END => ControlMessage::End {
                reason: EndReason::from_byte(r.u8("reason")?),
                text: r.short_str("text", MAX_END_TEXT)?,
            },
            T_RECORDING => ControlMessage::Recording {
                active: r.bool("recording active")?,
                owner: r.short_str("recording owner", MAX_END_TEXT)?,
            },
            T_CURSOR => ControlMessage::Cursor {
                x: r.i32("cursor x")?,
                y: r.i32("cursor y")?,
            },
            T_CURSOR_SHAPE => {
                let (width, height) = (r.u16("cursor width")?, r.u16("cursor height")?);
                let (hot_x, hot_y) = (r.u16("cursor hot_x")?, r.u16("cursor hot_y")?);
                let len = usize::from(width) * usize::from(height) * 4;
                if !cursor_ok(width, height, hot_x, hot_y, len) {
                    return Err(WireError::Invalid("cursor size or hotspot"));
                }
                ControlMessage::CursorShape {
                    width,
                    height,
                    hot_x,
                    hot_y,
                    rgba: r.take(len, "cursor pixels")?.to_vec(),
                }
            }
            T_PING => ControlMessage::Ping {
                id: r.u32("id")?,
                sent_micros: r.u64("sent")?,
            },
            T_PONG => ControlMessage::Pong {
                id: r.u32("id")?,
                sent_micros: r.u64("sent")?,
            },
            T_STATS => ControlMessage::Stats {
                fps_x10: r.u16("fps")?,
                kbps: r.u32("kbps")?,
                rtt_ms: r.u16("rtt")?,
                loss_permille: r.u16("loss")?,
            },
            got => {
                return Err(WireError::UnexpectedTag {
                    got,
                    expected: "a control message",
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// A cursor image is at most [`MAX_CURSOR_SIDE`] a side, not empty, has its hotspot inside,
/// and `len` bytes of pixels.
fn cursor_ok(width: u16, height: u16, hot_x: u16, hot_y: u16, len: usize) -> bool {
    (1..=MAX_CURSOR_SIDE).contains(&width)
        && (1..=MAX_CURSOR_SIDE).contains(&height)
        && hot_x < width
        && hot_y < height
        && len == usize::from(width) * usize::from(height) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<ControlMessage> {
        vec![
            ControlMessage::Hello {
                version: CONTROL_VERSION,
                capabilities: caps::INPUT | caps::CLIPBOARD_TEXT,
            },
            ControlMessage::PointerMove {
                monitor: 1,
                x: 1919,
                y: 1079,
            },
            ControlMessage::PointerButton {
                button: 3,
                down: true,
            },
            ControlMessage::Wheel { dx: -120, dy: 240 },
            ControlMessage::Key {
                keysym: 0xffe1,
                down: false,
            },
            ControlMessage::ReleaseAll,
            ControlMessage::Clipboard {
                text: "héllo, 世界\n".into(),
            },
            ControlMessage::MonitorLayout {
                monitors: vec![
                    Monitor {
                        x: 0,
                        y: 0,
                        width: 1920,
                        height: 1080,
                        primary: true,
                    },
                    Monitor {
                        x: -1280,
                        y: 100,
                        width: 1280,
                        height: 1024,
                        primary: false,
                    },
                ],
                active: 1,
            },
            ControlMessage::SelectMonitor { index: 1 },
            ControlMessage::RequestKeyframe,
            ControlMessage::Permissions { bits: 15 },
            ControlMessage::InputRefused { count: 3 },
            ControlMessage::End {
                reason: EndReason::HostStopped,
                text: "the host stopped sharing".into(),
            },
            ControlMessage::Cursor { x: -3, y: 1079 },
            ControlMessage::Recording {
                active: true,
                owner: "alice (1a2b 3c4d)".into(),
            },
            ControlMessage::CursorShape {
                width: 2,
                height: 3,
                hot_x: 1,
                hot_y: 2,
                rgba: (0..24).collect(),
            },
            ControlMessage::Ping {
                id: 9,
                sent_micros: 123_456_789,
            },
            ControlMessage::Pong {
                id: 9,
                sent_micros: 123_456_789,
            },
            ControlMessage::Stats {
                fps_x10: 600,
                kbps: 180,
                rtt_ms: 2,
                loss_permille: 0,
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_is_compact() {
        for m in all() {
            let b = m.encode().unwrap();
            assert_eq!(ControlMessage::decode(&b), Ok(m.clone()), "{m:?}");
            if m.is_input() {
                assert!(
                    b.len() <= 6,
                    "input events are small: {m:?} is {} bytes",
                    b.len()
                );
            }
        }
        assert_eq!(
            ControlMessage::Key {
                keysym: 0x61,
                down: true
            }
            .encode()
            .unwrap(),
            [0x13, 0, 0, 0, 0x61, 1]
        );
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        for m in all() {
            let b = m.encode().unwrap();
            for cut in 0..b.len() {
                assert!(
                    ControlMessage::decode(&b[..cut]).is_err(),
                    "{m:?} cut at {cut}"
                );
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(
                ControlMessage::decode(&longer),
                Err(WireError::TrailingBytes(1))
            );
        }
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            ControlMessage::decode(&[0x11, 4, 1]),
            Err(WireError::Invalid("button"))
        );
        assert_eq!(
            ControlMessage::decode(&[0x13, 0, 0, 0, 0x61, 2]),
            Err(WireError::Invalid("down"))
        );
        assert_eq!(
            ControlMessage::decode(&[0x20, 1, 0, 0, 0, 1, 0xff]),
            Err(WireError::Invalid("clipboard"))
        );
        assert_eq!(
            ControlMessage::decode(&[0x20, 2, 0, 0, 0, 0]),
            Err(WireError::Invalid("clipboard kind"))
        );
        assert!(matches!(
            ControlMessage::decode(&[0x20, 1, 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::TooLong { .. })
        ));
        assert!(matches!(
            ControlMessage::decode(&[0x30, 17]),
            Err(WireError::TooLong { .. })
        ));
        assert_eq!(
            ControlMessage::decode(&[0x30, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1]),
            Err(WireError::Invalid("active monitor"))
        );
        // Cursor images: bounded, hotspot inside, and exactly their pixels.
        assert_eq!(
            ControlMessage::decode(&[0x37, 1, 1, 0, 1, 0, 0, 0, 0]),
            Err(WireError::Invalid("cursor size or hotspot"))
        );
        assert_eq!(
            ControlMessage::decode(&[0x37, 0, 1, 0, 1, 0, 1, 0, 0, 1, 2, 3, 4]),
            Err(WireError::Invalid("cursor size or hotspot"))
        );
        assert!(ControlMessage::decode(&[0x37, 0, 1, 0, 1, 0, 0, 0, 0, 1, 2, 3]).is_err());
        assert_eq!(
            ControlMessage::CursorShape {
                width: 1,
                height: 1,
                hot_x: 0,
                hot_y: 0,
                rgba: vec![0; 3],
            }
            .encode(),
            Err(EncodeError::BadCursor {
                width: 1,
                height: 1
            })
        );
        let biggest = ControlMessage::CursorShape {
            width: MAX_CURSOR_SIDE,
            height: MAX_CURSOR_SIDE,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![0; 4 * usize::from(MAX_CURSOR_SIDE) * usize::from(MAX_CURSOR_SIDE)],
        }
        .encode()
        .unwrap();
        assert!(biggest.len() <= MAX_CONTROL_MESSAGE);
        assert_eq!(
            ControlMessage::decode(&[0x7e]),
            Err(WireError::UnexpectedTag {
                got: 0x7e,
                expected: "a control message"
            })
        );
        assert!(ControlMessage::decode(&vec![0x20; MAX_CONTROL_MESSAGE + 1]).is_err());
        assert_eq!(
            ControlMessage::Clipboard {
                text: "x".repeat(MAX_CLIPBOARD_BYTES + 1)
            }
            .encode(),
            Err(EncodeError::ClipboardTooLarge(MAX_CLIPBOARD_BYTES + 1))
        );
        // A clipboard at the limit fits a control message.
        let big = ControlMessage::Clipboard {
            text: "x".repeat(MAX_CLIPBOARD_BYTES),
        }
        .encode()
        .unwrap();
        assert!(big.len() <= MAX_CONTROL_MESSAGE);
        assert!(ControlMessage::decode(&big).is_ok());
    }

    #[test]
    fn end_texts_are_cut_and_cleaned() {
        let m = ControlMessage::End {
            reason: EndReason::Other,
            text: format!("a\u{7}{}", "é".repeat(150)),
        };
        let ControlMessage::End { text, .. } =
            ControlMessage::decode(&m.encode().unwrap()).unwrap()
        else {
            panic!()
        };
        assert!(text.len() <= MAX_END_TEXT && text.starts_with("aé") && !text.contains('\u{7}'));
    }
}
