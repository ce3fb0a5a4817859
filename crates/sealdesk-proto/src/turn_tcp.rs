//! TURN over TCP framing (RFC 8656 §12.5), sans-IO: a TCP stream carries STUN messages
//! (self-delimiting: 20-byte header with the body length) and ChannelData (4-byte header with
//! the data length), and over TCP ChannelData is padded to a multiple of 4 bytes.
//!
//! The buffer is bounded: a declared length above [`MAX_FRAME`], or bytes that are neither,
//! are a protocol error and the connection is closed — nothing a peer sends can make the
//! other side hold more than one frame. The relay (`sealdesk-server`) and the TURN client
//! (`sealdesk-rtc`) both frame with it. Frames are handed on without padding (the TURN state
//! machine parses exact ChannelData); frames sent to a client get their padding back
//! ([`pad_channel_data`]).

/// The largest frame accepted (a relayed datagram is at most ~1500 bytes; STUN requests are
/// far smaller).
pub const MAX_FRAME: usize = 4096;

/// Why a TCP stream is no TURN stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The next bytes are neither a STUN message nor ChannelData.
    #[error("bytes that are neither STUN nor ChannelData (first byte {0:#04x})")]
    NotTurn(u8),
    /// A frame declares more than [`MAX_FRAME`] bytes.
    #[error("a frame of {0} bytes (at most {MAX_FRAME})")]
    TooLarge(usize),
    /// A STUN message whose length is not a multiple of 4.
    #[error("a STUN message length of {0} (not a multiple of 4)")]
    BadLength(usize),
}

/// Reassembles frames from a TCP stream's bytes.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream. Take every frame ([`Framer::next_frame`]) before
    /// pushing more: the buffer holds at most one frame and one read.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame (ChannelData without its padding), `Ok(None)` if more bytes
    /// are needed, or why the stream is not TURN.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(&first) = self.buf.first() else {
            return Ok(None);
        };
        let (frame, consumed) = if first & 0xc0 == 0 {
            // STUN: 20-byte header, body length at bytes 2..4.
            let Some(len) = self.declared_len() else {
                return Ok(None);
            };
            if len % 4 != 0 {
                return Err(FrameError::BadLength(len));
            }
            let total = 20 + len;
            (total, total)
        } else if (0x40..=0x4f).contains(&first) {
            // ChannelData: 4-byte header, data length at bytes 2..4, padded to 4 over TCP.
            let Some(len) = self.declared_len() else {
                return Ok(None);
            };
            let total = 4 + len;
            (total, total.next_multiple_of(4))
        } else {
            return Err(FrameError::NotTurn(first));
        };
        if consumed > MAX_FRAME {
            return Err(FrameError::TooLarge(consumed));
        }
        if self.buf.len() < consumed {
            return Ok(None);
        }
        let out = self
            .buf
            .get(..frame)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        self.buf.drain(..consumed);
        Ok(Some(out))
    }

    fn declared_len(&self) -> Option<usize> {
        let b = self.buf.get(2..4)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

/// Pads a ChannelData frame to a multiple of 4 bytes, as TCP requires; other frames are
/// left alone.
pub fn pad_channel_data(frame: &mut Vec<u8>) {
    if frame.first().is_some_and(|b| (0x40..=0x4f).contains(b)) {
        let padded = frame.len().next_multiple_of(4);
        frame.resize(padded, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(body: usize) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&u16::try_from(body).unwrap_or(0).to_be_bytes());
        m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend(std::iter::repeat_n(0xaa, body));
        m
    }

    fn channel(data: &[u8]) -> Vec<u8> {
        let mut c = vec![0x40, 0x01];
        c.extend_from_slice(&u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
        c.extend_from_slice(data);
        c
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_channel_padding_is_dropped() {
        let a = stun(8);
        let b = channel(b"hello");
        let mut b_padded = b.clone();
        pad_channel_data(&mut b_padded);
        assert_eq!(b_padded.len(), 12);
        let c = stun(0);
        let stream: Vec<u8> = [a.clone(), b_padded, c.clone()].concat();
        for cut in 0..=stream.len() {
            let mut f = Framer::new();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                f.push(part);
                while let Some(frame) = f.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, vec![a.clone(), b.clone(), c.clone()], "cut at {cut}");
        }
    }

    #[test]
    fn garbage_and_oversized_frames_are_errors_not_buffers() {
        let mut f = Framer::new();
        f.push(b"PUT / HTTP/1.1\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::NotTurn(b'P')));
        // "GET" starts like ChannelData (0x47 is a channel number's first byte), and then
        // declares a length too large to wait for.
        let mut f = Framer::new();
        f.push(b"GET / HTTP/1.1\r\n");
        assert!(matches!(f.next_frame(), Err(FrameError::TooLarge(_))));
        let mut f = Framer::new();
        f.push(&[0x40, 0x00, 0xff, 0xff]);
        assert!(matches!(f.next_frame(), Err(FrameError::TooLarge(_))));
        let mut f = Framer::new();
        f.push(&stun(6)[..20]);
        assert_eq!(f.next_frame(), Err(FrameError::BadLength(6)));
        // A partial header is just not ready yet.
        let mut f = Framer::new();
        f.push(&[0x00, 0x01]);
        assert_eq!(f.next_frame(), Ok(None));
    }

    proptest::proptest! {
        /// Whatever arrives, the framer answers without panicking and never holds more than
        /// one frame plus what was pushed.
        #[test]
        fn any_bytes_are_framed_or_refused(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..8)) {
            let mut f = Framer::new();
            for c in chunks {
                f.push(&c);
                loop {
                    match f.next_frame() {
                        Ok(Some(frame)) => proptest::prop_assert!(frame.len() <= MAX_FRAME),
                        Ok(None) => break,
                        Err(_) => return Ok(()),
                    }
                }
                proptest::prop_assert!(f.buf.len() <= MAX_FRAME + 300);
            }
        }
    }
}
