//! Colour conversion between captured BGRX frames and the I420 planes libvpx works on.
//!
//! [`I420Frame`] owns one contiguous buffer holding the Y plane (`width` × `height`) then the U
//! and V planes (`ceil(width / 2)` × `ceil(height / 2)` each), without row padding. Conversions use
//! the [`yuv`] crate's SIMD kernels (SSE/AVX on x86-64; FACTS.md: 1.1 ms for BGRA→I420 at 1080p),
//! with the BT.601 matrix in limited ("TV") range: what VP8 and VP9 decoders — Chromium's
//! included — assume when the bitstream does not say otherwise.
//!
//! The host converts straight from the shared-memory capture ([`I420Frame::fill_from_bgrx`],
//! reusing one buffer per resolution); the viewer converts decoded frames back with
//! [`I420Frame::to_rgba`] (for PNG) or [`I420Frame::to_bgra`] (for display).

use yuv::{
    BufferStoreMut, YuvConversionMode, YuvPlanarImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use crate::capture::Frame;

/// The colour matrix and range used in both directions.
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;
const RANGE: YuvRange = YuvRange::Limited;

/// Why a conversion was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// The image has no pixels, or is so large its byte count overflows (a caller bug).
    #[error("invalid image size {width}x{height}: width and height must be 1..=65535")]
    InvalidSize {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// The packed (BGRX/BGRA/RGBA) buffer does not hold `height` rows of `stride` bytes with
    /// `4 * width` bytes of pixels each.
    #[error(
        "packed buffer of {len} bytes with stride {stride} cannot hold a {width}x{height} \
         4-byte-per-pixel image (stride must be >= 4 * width, len >= stride * (height - 1) + 4 * width)"
    )]
    BufferTooSmall {
        /// Bytes in the buffer.
        len: usize,
        /// Bytes per row given.
        stride: usize,
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
    },
    /// The SIMD converter rejected its arguments (should not happen after the checks above).
    #[error("colour conversion failed: {0}")]
    Converter(String),
}

/// Largest side accepted, in pixels (X11 and libvpx both stop at 16-bit sizes).
const MAX_SIDE: u32 = 65_535;

/// An 8-bit 4:2:0 planar image (Y, then U, then V), tightly packed. See the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    /// Y (`width * height`), U and V (`chroma_width * chroma_height` each).
    data: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the pixels: logs must not contain screen content.
        f.debug_struct("I420Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl I420Frame {
    /// A black (Y = 16, U = V = 128) frame of `width` × `height` pixels; odd sizes are allowed
    /// (chroma planes round up).
    pub fn new(width: u32, height: u32) -> Result<Self, ConvertError> {
        let (luma, chroma) = plane_sizes(width, height)?;
        let mut data = vec![128; luma + 2 * chroma];
        if let Some(y) = data.get_mut(..luma) {
            y.fill(16);
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Convert a captured frame (BGRX with stride) into a new I420 frame.
    pub fn from_capture(frame: &Frame<'_>) -> Result<Self, ConvertError> {
        Self::from_bgrx(frame.data(), frame.stride(), frame.width(), frame.height())
    }

    /// Convert `height` rows of `stride` bytes of BGRX (or BGRA: the fourth byte is ignored)
    /// into a new I420 frame.
    pub fn from_bgrx(
        bgrx: &[u8],
        stride: usize,
        width: u32,
        height: u32,
    ) -> Result<Self, ConvertError> {
        let mut frame = Self::new(width, height)?;
        frame.fill_from_bgrx(bgrx, stride)?;
        Ok(frame)
    }

    /// Overwrite this frame with `bgrx`, an image of the same size as this frame (`height` rows
    /// of `stride` bytes). Reuse one `I420Frame` per resolution to avoid an allocation per frame.
    pub fn fill_from_bgrx(&mut self, bgrx: &[u8], stride: usize) -> Result<(), ConvertError> {
        let stride32 = self.check_packed(bgrx.len(), stride)?;
        let (width, height) = (self.width, self.height);
        let (y, u, v) = self.planes_mut();
        let chroma_width = width.div_ceil(2);
        let mut planar = YuvPlanarImageMut {
            y_plane: BufferStoreMut::Borrowed(y),
            y_stride: width,
            u_plane: BufferStoreMut::Borrowed(u),
            u_stride: chroma_width,
            v_plane: BufferStoreMut::Borrowed(v),
            v_stride: chroma_width,
            width,
            height,
        };
        yuv::bgra_to_yuv420(
            &mut planar,
            bgrx,
            stride32,
            RANGE,
            MATRIX,
            YuvConversionMode::Balanced,
        )
        .map_err(|e| ConvertError::Converter(e.to_string()))
    }

    /// Write the frame as BGRA (alpha 255) into `dst`, `height` rows of `stride` bytes.
    pub fn to_bgra(&self, dst: &mut [u8], stride: usize) -> Result<(), ConvertError> {
        let stride32 = self.check_packed(dst.len(), stride)?;
        yuv::yuv420_to_bgra(&self.planar(), dst, stride32, RANGE, MATRIX)
            .map_err(|e| ConvertError::Converter(e.to_string()))
    }

    /// Write the frame as RGBA (alpha 255) into `dst`, `height` rows of `stride` bytes — the
    /// layout PNG encoders and browsers' `ImageData` take.
    pub fn to_rgba(&self, dst: &mut [u8], stride: usize) -> Result<(), ConvertError> {
        let stride32 = self.check_packed(dst.len(), stride)?;
        yuv::yuv420_to_rgba(&self.planar(), dst, stride32, RANGE, MATRIX)
            .map_err(|e| ConvertError::Converter(e.to_string()))
    }

    /// The frame as a new tightly packed RGBA buffer (`4 * width * height` bytes).
    pub fn to_rgba_vec(&self) -> Result<Vec<u8>, ConvertError> {
        let stride = self.width as usize * 4;
        let mut out = vec![0; stride * self.height as usize];
        self.to_rgba(&mut out, stride)?;
        Ok(out)
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Width (and stride) of the U and V planes: `ceil(width / 2)`.
    pub fn chroma_width(&self) -> u32 {
        self.width.div_ceil(2)
    }

    /// Height of the U and V planes: `ceil(height / 2)`.
    pub fn chroma_height(&self) -> u32 {
        self.height.div_ceil(2)
    }

    /// The Y plane: `height` rows of `width` bytes.
    pub fn y(&self) -> &[u8] {
        self.planes().0
    }

    /// The U (Cb) plane: [`Self::chroma_height`] rows of [`Self::chroma_width`] bytes.
    pub fn u(&self) -> &[u8] {
        self.planes().1
    }

    /// The V (Cr) plane, laid out like [`Self::u`].
    pub fn v(&self) -> &[u8] {
        self.planes().2
    }

    /// Mutable Y, U and V planes.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = self.width as usize * self.height as usize;
        let chroma = self.chroma_width() as usize * self.chroma_height() as usize;
        let len = self.data.len();
        let (y, rest) = self.data.split_at_mut(luma.min(len));
        let (u, v) = rest.split_at_mut(chroma.min(rest.len()));
        (y, u, v)
    }

    fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let luma = self.width as usize * self.height as usize;
        let chroma = self.chroma_width() as usize * self.chroma_height() as usize;
        let (y, rest) = self.data.split_at(luma.min(self.data.len()));
        let (u, v) = rest.split_at(chroma.min(rest.len()));
        (y, u, v)
    }

    fn planar(&self) -> YuvPlanarImage<'_, u8> {
        let (y, u, v) = self.planes();
        YuvPlanarImage {
            y_plane: y,
            y_stride: self.width,
            u_plane: u,
            u_stride: self.chroma_width(),
            v_plane: v,
            v_stride: self.chroma_width(),
            width: self.width,
            height: self.height,
        }
    }

    /// Check a packed 4-byte-per-pixel buffer of `len` bytes against this frame's size; the
    /// stride as the converter wants it.
    fn check_packed(&self, len: usize, stride: usize) -> Result<u32, ConvertError> {
        let too_small = || ConvertError::BufferTooSmall {
            len,
            stride,
            width: self.width,
            height: self.height,
        };
        let row = self.width as usize * 4;
        let needed = stride
            .checked_mul(self.height as usize - 1)
            .and_then(|n| n.checked_add(row))
            .ok_or_else(too_small)?;
        if stride < row || len < needed {
            return Err(too_small());
        }
        u32::try_from(stride).map_err(|_| too_small())
    }
}

/// Bytes of the Y plane and of each chroma plane, after checking the size.
fn plane_sizes(width: u32, height: u32) -> Result<(usize, usize), ConvertError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ConvertError::InvalidSize { width, height });
    }
    // At most 65535² < 2^32 pixels: no overflow on 64-bit targets.
    let luma = width as usize * height as usize;
    let chroma = width.div_ceil(2) as usize * height.div_ceil(2) as usize;
    Ok((luma, chroma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_flat_colours_is_close() {
        let (w, h) = (64u32, 34u32);
        let mut bgrx = vec![0u8; (w * h * 4) as usize];
        for (i, px) in bgrx.chunks_exact_mut(4).enumerate() {
            let colour: [u8; 4] = if (i % w as usize) < 32 {
                [0x56, 0x34, 0x12, 0]
            } else {
                [0, 0, 0xff, 0]
            };
            px.copy_from_slice(&colour);
        }
        let i420 = I420Frame::from_bgrx(&bgrx, w as usize * 4, w, h).unwrap();
        let mut back = vec![0u8; bgrx.len()];
        i420.to_bgra(&mut back, w as usize * 4).unwrap();
        for (a, b) in bgrx.chunks_exact(4).zip(back.chunks_exact(4)) {
            for c in 0..3 {
                assert!(a[c].abs_diff(b[c]) <= 3, "{a:?} vs {b:?}");
            }
            assert_eq!(b[3], 255);
        }
    }

    #[test]
    fn odd_sizes_convert_and_bad_buffers_are_refused() {
        let i420 = I420Frame::from_bgrx(&[0; 3 * 3 * 4], 12, 3, 3).unwrap();
        assert_eq!((i420.chroma_width(), i420.chroma_height()), (2, 2));
        assert_eq!(i420.u().len(), 4);
        assert!(matches!(
            I420Frame::from_bgrx(&[0; 10], 12, 3, 3),
            Err(ConvertError::BufferTooSmall { .. })
        ));
        assert!(matches!(
            I420Frame::from_bgrx(&[0; 64], 8, 3, 3),
            Err(ConvertError::BufferTooSmall { .. })
        ));
        assert!(matches!(
            I420Frame::new(0, 4),
            Err(ConvertError::InvalidSize { .. })
        ));
    }
}
