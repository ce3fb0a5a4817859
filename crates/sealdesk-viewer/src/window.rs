//! The viewer window.
