//! The host agent (DESIGN.md §5): capture → encode → session, consent, and permissions.
//!
//! Permissions are enforced here, where events are injected, not in any UI: [`gate`]
//! decides for every control message from the viewer whether it may act on this machine.

pub mod gate;
