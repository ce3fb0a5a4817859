//! A bounded reader and a writer for sealdesk's binary formats: the handshake messages of
//! `sealdesk-auth` and the control channel ([`crate::control`]).
//!
//! Every read checks the remaining length first and returns [`WireError`]; nothing here
//! indexes or does arithmetic on a peer-controlled value without a check (STYLE.md §7).
//! Integers are big-endian.

/// Bytes that could not be parsed as the message they claimed to be (malformed input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
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
    /// A field has a value that is not allowed (e.g. text that is not UTF-8).
    #[error("field `{0}` has an invalid value")]
    Invalid(&'static str),
}

/// Reads fields from a borrowed slice.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// How many bytes are left (for an optional trailing field).
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(field));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// A byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `i16`.
    pub fn i16(&mut self, field: &'static str) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `i32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A boolean byte: exactly 0 or 1.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid(field)),
        }
    }

    /// A `u16` length followed by that many bytes, at most `max`.
    pub fn bytes16(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(WireError::TooLong { field, len, max });
        }
        self.take(len, field)
    }

    /// A `u32` length followed by that many bytes, at most `max`.
    pub fn bytes32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if len > max {
            return Err(WireError::TooLong { field, len, max });
        }
        self.take(len, field)
    }

    /// A `u8` count followed by that many `u16`s, at most `max`.
    pub fn list16(&mut self, field: &'static str, max: usize) -> Result<Vec<u16>, WireError> {
        let n = usize::from(self.u8(field)?);
        if n > max {
            return Err(WireError::TooLong { field, len: n, max });
        }
        (0..n).map(|_| self.u16(field)).collect()
    }

    /// A `u8` length followed by UTF-8 text without control characters, at most `max` bytes.
    pub fn short_str(&mut self, field: &'static str, max: usize) -> Result<String, WireError> {
        let len = usize::from(self.u8(field)?);
        if len > max {
            return Err(WireError::TooLong { field, len, max });
        }
        let raw = self.take(len, field)?;
        let s = std::str::from_utf8(raw).map_err(|_| WireError::Invalid(field))?;
        if s.chars().any(char::is_control) {
            return Err(WireError::Invalid(field));
        }
        Ok(s.to_owned())
    }

    /// The tag byte, which must be `want`.
    pub fn tag(&mut self, want: u8, expected: &'static str) -> Result<(), WireError> {
        let got = self.u8("type")?;
        if got != want {
            return Err(WireError::UnexpectedTag { got, expected });
        }
        Ok(())
    }

    /// Ends the message: no bytes may be left.
    pub fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Appends fields to a buffer. Lengths are checked by the typed values that call it.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// A big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }
    /// A big-endian `i16`.
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }
    /// A big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }
    /// A big-endian `i32`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }
    /// A big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }
    /// A boolean as 0 or 1.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    /// Bytes as they are.
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A `u16` length and the bytes (cut at `u16::MAX`; callers check limits first).
    pub fn bytes16(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.raw(&v[..usize::from(len)])
    }
    /// A `u32` length and the bytes (cut at `u32::MAX`; callers check limits first).
    pub fn bytes32(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.raw(&v[..usize::try_from(len).unwrap_or(v.len()).min(v.len())])
    }
    /// A `u8` count and the values (cut at 255; callers check limits first).
    pub fn list16(&mut self, v: &[u16]) -> &mut Self {
        let n = u8::try_from(v.len()).unwrap_or(u8::MAX);
        self.u8(n);
        for x in v.iter().take(usize::from(n)) {
            self.u16(*x);
        }
        self
    }
    /// A `u8` length and the text (cut at 255 bytes; callers check limits first).
    pub fn short_str(&mut self, v: &str) -> &mut Self {
        let n = u8::try_from(v.len()).unwrap_or(u8::MAX);
        self.u8(n);
        self.raw(&v.as_bytes()[..usize::from(n)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_and_refuses_the_rest() {
        let mut w = Writer::default();
        w.u8(7)
            .u16(300)
            .i16(-2)
            .u32(70_000)
            .i32(-5)
            .u64(1 << 40)
            .bool(true);
        w.bytes16(b"abc")
            .bytes32(b"defg")
            .list16(&[1, 2])
            .short_str("héllo");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8("a"), Ok(7));
        assert_eq!(r.u16("b"), Ok(300));
        assert_eq!(r.i16("c"), Ok(-2));
        assert_eq!(r.u32("d"), Ok(70_000));
        assert_eq!(r.i32("e"), Ok(-5));
        assert_eq!(r.u64("f"), Ok(1 << 40));
        assert_eq!(r.bool("g"), Ok(true));
        assert_eq!(r.bytes16("h", 3), Ok(&b"abc"[..]));
        assert_eq!(r.bytes32("i", 4), Ok(&b"defg"[..]));
        assert_eq!(r.list16("j", 2), Ok(vec![1, 2]));
        assert_eq!(r.short_str("k", 10).as_deref(), Ok("héllo"));
        assert_eq!(r.finish(), Ok(()));

        assert_eq!(
            Reader::new(&[0, 5, 1]).bytes16("x", 10),
            Err(WireError::Truncated("x"))
        );
        assert!(matches!(
            Reader::new(&[0, 0, 0, 9]).bytes32("x", 4),
            Err(WireError::TooLong { .. })
        ));
        assert_eq!(Reader::new(&[2]).bool("x"), Err(WireError::Invalid("x")));
        assert_eq!(
            Reader::new(&[1, 7]).short_str("x", 4),
            Err(WireError::Invalid("x"))
        );
        assert_eq!(
            Reader::new(&[1, 2]).finish(),
            Err(WireError::TrailingBytes(2))
        );
    }
}
