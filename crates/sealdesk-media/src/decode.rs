//! VP9/VP8 decoding with libvpx, for the viewer (and for tests of the host's encoder).
//!
//! Packets come from the peer, so they are untrusted: [`Decoder::decode`] hands libvpx exactly
//! the packet's bytes (never an empty or oversized buffer), refuses keyframes that announce more
//! than [`Decoder::max_pixels`] before libvpx allocates for them (best effort: a VP9 inter or
//! intra-only frame can also change the size, which is only caught after decoding), accepts
//! only 8-bit 4:2:0 output, and copies the picture out of libvpx's buffers with bounds taken from the image
//! descriptor. Corrupt, truncated or random packets are [`DecodeError::Malformed`]; after one,
//! the next keyframe resynchronises the decoder (send a PLI).

use std::os::raw::{c_int, c_uint};

use vpx_sys as ffi;

use crate::convert::I420Frame;
use crate::vpx::{self, Codec, VpxError};

/// Default [`Decoder::max_pixels`]: 3840 × 2160.
pub const DEFAULT_MAX_PIXELS: u64 = 3840 * 2160;

/// Why a packet could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An empty packet (libvpx would take it as "flush").
    #[error("empty video packet")]
    Empty,
    /// A packet longer than libvpx's 32-bit length.
    #[error("video packet of {0} bytes is too large")]
    TooLarge(usize),
    /// libvpx rejected the bytes: corrupt, truncated, not this codec, or an unsupported
    /// bitstream. Request a keyframe.
    #[error("malformed {codec} packet: {source}")]
    Malformed {
        /// The decoder's codec.
        codec: Codec,
        /// libvpx's complaint.
        source: VpxError,
    },
    /// The stream decodes but is not what sealdesk sends: not 8-bit 4:2:0, or larger than
    /// [`Decoder::max_pixels`].
    #[error("unsupported {codec} stream: {what}")]
    Unsupported {
        /// The decoder's codec.
        codec: Codec,
        /// What was wrong.
        what: String,
    },
    /// libvpx failed on its own (out of memory, could not initialise).
    #[error(transparent)]
    Libvpx(VpxError),
}

/// A libvpx decoder context. See the [module docs](self).
pub struct Decoder {
    /// Boxed: the context must not move while initialised.
    ctx: Box<ffi::vpx_codec_ctx_t>,
    codec: Codec,
    max_pixels: u64,
}

// SAFETY: a libvpx codec context may be used from any thread as long as calls are not
// concurrent; `Decoder` owns its context and its methods take `&mut self`.
#[allow(unsafe_code, reason = "libvpx contexts are not tied to a thread")]
unsafe impl Send for Decoder {}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("codec", &self.codec)
            .field("max_pixels", &self.max_pixels)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for `codec` (two threads for VP9, one for VP8) accepting frames up to
    /// [`DEFAULT_MAX_PIXELS`].
    pub fn new(codec: Codec) -> Result<Self, DecodeError> {
        #[allow(unsafe_code, reason = "zero-initialising a plain C struct")]
        // SAFETY: vpx_codec_ctx_t is integers, raw pointers, a union of pointers and a C enum
        // whose 0 is VPX_CODEC_OK.
        let ctx: Box<ffi::vpx_codec_ctx_t> = unsafe { Box::new(std::mem::zeroed()) };
        let mut decoder = Self {
            ctx,
            codec,
            max_pixels: DEFAULT_MAX_PIXELS,
        };
        let cfg = ffi::vpx_codec_dec_cfg_t {
            // VP9 decodes tile columns in parallel (the encoder makes two); VP8 gains nothing.
            threads: match codec {
                Codec::Vp9 => 2,
                Codec::Vp8 => 1,
            },
            w: 0,
            h: 0,
        };
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: zeroed, heap-pinned context; `cfg` is only read during the call (libvpx
        // copies the decoder configuration into its private data); static interface; the ABI
        // version the bindings were generated for.
        let err = unsafe {
            ffi::vpx_codec_dec_init_ver(
                &mut *decoder.ctx,
                iface(codec),
                &cfg,
                0,
                ffi::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if err != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            decoder.ctx.iface = std::ptr::null_mut(); // not initialised: nothing to destroy
            return Err(DecodeError::Libvpx(vpx::init_error(
                "vpx_codec_dec_init_ver",
                err,
            )));
        }
        Ok(decoder)
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The largest frame (width × height) a keyframe may announce.
    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// Change [`Decoder::max_pixels`].
    pub fn set_max_pixels(&mut self, max_pixels: u64) {
        self.max_pixels = max_pixels;
    }

    /// Decode one compressed frame (the payload of one RTP frame, as depacketized).
    ///
    /// `Ok(None)` when the packet produced no picture to show (e.g. a VP9 hidden frame);
    /// otherwise a copy of the newest picture, owned by the caller.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Option<I420Frame>, DecodeError> {
        if packet.is_empty() {
            return Err(DecodeError::Empty);
        }
        let len =
            c_uint::try_from(packet.len()).map_err(|_| DecodeError::TooLarge(packet.len()))?;
        self.check_announced_size(packet, len)?;

        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: initialised context; `packet` is `len` readable bytes for the duration of
        // the call (libvpx does not keep the pointer: no input fragments, no frame threading).
        let err = unsafe {
            ffi::vpx_codec_decode(
                &mut *self.ctx,
                packet.as_ptr(),
                len,
                std::ptr::null_mut(),
                0,
            )
        };
        vpx::check(&mut self.ctx, "vpx_codec_decode", err).map_err(|source| {
            if source.is_bad_input() || source.code == "VPX_CODEC_ERROR" {
                DecodeError::Malformed {
                    codec: self.codec,
                    source,
                }
            } else {
                DecodeError::Libvpx(source)
            }
        })?;

        let mut picture = None;
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        loop {
            #[allow(unsafe_code, reason = "libvpx FFI")]
            // SAFETY: initialised context; `iter` starts null and is only advanced by libvpx.
            let img = unsafe { ffi::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            picture = Some(self.copy_image(img)?);
        }
        Ok(picture)
    }

    /// Refuse a keyframe announcing more than `max_pixels` before libvpx allocates for it.
    /// Peek errors are ignored: `vpx_codec_decode` judges the packet.
    fn check_announced_size(&self, packet: &[u8], len: c_uint) -> Result<(), DecodeError> {
        let mut info = ffi::vpx_codec_stream_info_t {
            sz: std::mem::size_of::<ffi::vpx_codec_stream_info_t>() as c_uint,
            w: 0,
            h: 0,
            is_kf: 0,
        };
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: static interface; `packet` is `len` readable bytes; `info` is a valid
        // stream-info struct with `sz` set as libvpx requires.
        let err = unsafe {
            ffi::vpx_codec_peek_stream_info(iface(self.codec), packet.as_ptr(), len, &mut info)
        };
        let pixels = u64::from(info.w) * u64::from(info.h);
        if err == ffi::vpx_codec_err_t::VPX_CODEC_OK && info.is_kf != 0 && pixels > self.max_pixels
        {
            return Err(DecodeError::Unsupported {
                codec: self.codec,
                what: format!(
                    "keyframe of {}x{} exceeds the {} pixel limit",
                    info.w, info.h, self.max_pixels
                ),
            });
        }
        Ok(())
    }

    /// Copy a decoded 8-bit I420 picture out of libvpx's buffer.
    fn copy_image(&self, img: *const ffi::vpx_image_t) -> Result<I420Frame, DecodeError> {
        let unsupported = |what: String| DecodeError::Unsupported {
            codec: self.codec,
            what,
        };
        #[allow(unsafe_code, reason = "reading a libvpx image descriptor")]
        // SAFETY: `img` is non-null and valid until the next call on the context. Fields are
        // read through the raw pointer, without a reference to the whole struct; `fmt` is read
        // as the raw `u32` it is in C, so an unexpected value cannot be an invalid Rust enum.
        let (fmt, width, height, planes, strides) = unsafe {
            (
                std::ptr::addr_of!((*img).fmt).cast::<u32>().read(),
                (*img).d_w,
                (*img).d_h,
                (*img).planes,
                (*img).stride,
            )
        };
        if fmt != ffi::vpx_img_fmt::VPX_IMG_FMT_I420 as u32 {
            return Err(unsupported(format!(
                "picture format {fmt:#x}; only 8-bit 4:2:0 (VPX_IMG_FMT_I420) is supported"
            )));
        }
        let mut frame =
            I420Frame::new(width, height).map_err(|e| unsupported(format!("picture size: {e}")))?;
        let (cw, ch) = (frame.chroma_width(), frame.chroma_height());
        let (y, u, v) = frame.planes_mut();
        for (plane, (dst, (w, h))) in [(y, (width, height)), (u, (cw, ch)), (v, (cw, ch))]
            .into_iter()
            .enumerate()
        {
            let (src, stride) = (planes[plane], strides[plane]);
            let stride = usize::try_from(stride)
                .ok()
                .filter(|&s| s >= w as usize)
                .ok_or_else(|| unsupported(format!("plane {plane} stride {stride}")))?;
            if src.is_null() {
                return Err(unsupported(format!("plane {plane} missing")));
            }
            for (row, dst_row) in dst
                .chunks_exact_mut(w as usize)
                .take(h as usize)
                .enumerate()
            {
                #[allow(unsafe_code, reason = "reading a libvpx picture plane")]
                // SAFETY: for an I420 image of d_w × d_h, libvpx's plane `plane` has at least
                // `h` rows of `stride` bytes, each with `w` valid bytes (w ≤ stride, checked);
                // the buffer stays valid until the next call on the context.
                let src_row =
                    unsafe { std::slice::from_raw_parts(src.add(row * stride), w as usize) };
                dst_row.copy_from_slice(src_row);
            }
        }
        Ok(frame)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        if self.ctx.iface.is_null() {
            return;
        }
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: the context was initialised by vpx_codec_dec_init_ver and is destroyed once.
        let _ = unsafe { ffi::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// libvpx's decoder interface for `codec`.
fn iface(codec: Codec) -> *mut ffi::vpx_codec_iface_t {
    #[allow(unsafe_code, reason = "libvpx FFI")]
    // SAFETY: these return pointers to libvpx's static interface descriptions.
    unsafe {
        match codec {
            Codec::Vp9 => ffi::vpx_codec_vp9_dx(),
            Codec::Vp8 => ffi::vpx_codec_vp8_dx(),
        }
    }
}
