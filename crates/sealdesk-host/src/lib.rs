//! The host agent (DESIGN.md §5): capture → encode → session, consent, and permissions.
//!
//! - [`agent`]: registered with a signaling server, shows codes, answers handshakes, asks
//!   the user and runs one session at a time.
//! - [`session`]: one running session — transport, capture, input, clipboard.
//! - [`pipeline`]: capture → convert → encode on its own thread.
//! - [`inject`]: XTest input on its own thread, released when the session ends.
//! - [`clipboard`]: the X CLIPBOARD selection, both ways.
//! - [`gate`]: permissions are enforced here, where events are injected, not in any UI — it
//!   decides for every control message from the viewer whether it may act on this machine.

pub mod agent;
pub mod clipboard;
pub mod gate;
pub mod inject;
pub mod pipeline;
pub mod session;
