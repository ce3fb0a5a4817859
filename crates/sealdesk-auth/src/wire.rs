//! The binary reader and writer the handshake messages use (shared with the control
//! channel: [`sealdesk_proto::wire`]), and small helpers of this crate.

use std::fmt;

pub use sealdesk_proto::wire::WireError as DecodeError;
pub(crate) use sealdesk_proto::wire::{Reader, Writer};

/// Hex of a byte string, for `Debug` of public values.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
