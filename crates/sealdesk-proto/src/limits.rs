//! Protocol-wide limits. Servers may configure tighter ones; never looser ones
//! than a client can rely on.

/// The signaling protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Every version this crate can speak, best first.
pub const SUPPORTED_VERSIONS: &[u16] = &[PROTOCOL_VERSION];

/// The largest WebSocket message either side sends or accepts (64 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The largest envelope body (decoded). Chosen so that the forwarded envelope,
/// base64-encoded with its header, still fits in [`MAX_MESSAGE_BYTES`].
pub const MAX_BODY_BYTES: usize = 45 * 1024;

/// The most routing numbers one connection may watch for presence.
pub const MAX_WATCH: usize = 256;

/// The longest human-readable error text a server sends.
pub const MAX_ERROR_TEXT: usize = 200;

/// The longest WebSocket close reason (RFC 6455: a control frame carries at most 125
/// bytes, two of which are the code).
pub const MAX_CLOSE_REASON: usize = 123;
