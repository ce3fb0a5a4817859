//! The native viewer (DESIGN.md §5, §9): a session's video decoded and shown in a window
//! ([`window`]), or written as PNG files when there is no display, with input sent back.

pub mod window;
