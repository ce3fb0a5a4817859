//! A bounded reader and a writer for the binary handshake messages.
//!
//! Every read checks the remaining length first and returns [`DecodeError`]; nothing here
//! indexes or does arithmetic on a peer-controlled value without a check (STYLE.md §7).

use std::fmt;

/// Bytes that could not be parsed as the message they claimed to be (malformed input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended before `field` was complete.
    #[error("message ends inside field `{0}`")]
    Truncated(&'static str),
    /// Bytes are left after the last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    /// The first byte is not the tag of the expected message.
    #[error("unexpected message type 0x{got:02x} (expected {expected})")]
    UnexpectedTag {
        /// The tag that arrived.
        got: u8,
        /// What the receiver expected, in words.
        expected: &'static str,
    },
    /// A length or count is above its limit.
    #[error("field `{field}` is {len} long; the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field has a value that is not allowed (e.g. a label that is not UTF-8).
    #[error("field `{0}` has an invalid value")]
    Invalid(&'static str),
}

/// Reads fields from a borrowed slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A `u16` length followed by that many bytes, at most `max`.
    pub(crate) fn bytes16(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.take(len, field)
    }

    /// A `u8` count followed by that many `u16`s, at most `max`.
    pub(crate) fn list16(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<u16>, DecodeError> {
        let n = usize::from(self.u8(field)?);
        if n > max {
            return Err(DecodeError::TooLong { field, len: n, max });
        }
        (0..n).map(|_| self.u16(field)).collect()
    }

    /// A `u8` length followed by a UTF-8 label without control characters.
    pub(crate) fn label(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8(field)?);
        if len > crate::MAX_LABEL_BYTES {
            return Err(DecodeError::TooLong {
                field,
                len,
                max: crate::MAX_LABEL_BYTES,
            });
        }
        let raw = self.take(len, field)?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::Invalid(field))?;
        if s.chars().any(char::is_control) {
            return Err(DecodeError::Invalid(field));
        }
        Ok(s.to_owned())
    }

    pub(crate) fn tag(&mut self, want: u8, expected: &'static str) -> Result<(), DecodeError> {
        let got = self.u8("type")?;
        if got != want {
            return Err(DecodeError::UnexpectedTag { got, expected });
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Appends fields to a buffer. Lengths are checked by the typed values that call it.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// Writes a `u16` length and the bytes; callers guarantee `v.len() <= u16::MAX`.
    pub(crate) fn bytes16(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.raw(&v[..usize::from(len)])
    }
    /// Writes a `u8` count and the values; callers guarantee at most 255 values.
    pub(crate) fn list16(&mut self, v: &[u16]) -> &mut Self {
        let n = u8::try_from(v.len()).unwrap_or(u8::MAX);
        self.u8(n);
        for x in v.iter().take(usize::from(n)) {
            self.u16(*x);
        }
        self
    }
    /// Writes a `u8` length and the label; labels are checked to be at most 64 bytes.
    pub(crate) fn label(&mut self, v: &str) -> &mut Self {
        let n = u8::try_from(v.len()).unwrap_or(u8::MAX);
        self.u8(n);
        self.raw(&v.as_bytes()[..usize::from(n)])
    }
}

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
