//! Realtime VP9/VP8 encoding of screen content with libvpx (Debian `libvpx-dev`, 1.12).
//!
//! One [`Encoder`] owns one libvpx encoder context configured as FACTS.md measured best for a
//! remote desktop on 2 cores: one pass, CBR at a target bitrate the congestion controller moves
//! with [`Encoder::set_bitrate`], no lag (`g_lag_in_frames = 0`: every `encode` returns the
//! frame it was given), screen-content tuning, and **keyframes only when asked**
//! (`kf_mode` disabled: the first frame and frames with `force_keyframe` are keyframes, nothing
//! else — keyframes are the latency spike).
//!
//! | | VP9 | VP8 |
//! |---|---|---|
//! | speed | cpu-used 8 | cpu-used −6 (fixed speed 6) |
//! | threads | 2, row-mt, 2 tile columns | 1 (multithreaded VP8 spikes, FACTS.md) |
//! | tuning | `VP9E_SET_TUNE_CONTENT` = screen, aq-mode 3 (cyclic refresh) | screen-content mode 1, static threshold 1 |
//! | quantizer | 10..=52 (see [`EncoderConfig::min_quantizer`]) | 10..=52 |
//!
//! Error resilience is off by default, as in WebRTC's libvpx wrappers for a single layer:
//! recovery from loss is NACK/RTX and, failing that, a keyframe on PLI; the flag only helps with
//! temporal layers, which we do not use. [`EncoderConfig::error_resilient`] turns it on.
//!
//! Frame dimensions must be even and non-zero ([`EncodeError::InvalidDimensions`]): crop an odd
//! capture rectangle by one pixel rather than pad — e.g.
//! `I420Frame::from_bgrx(frame.data(), frame.stride(), frame.width() & !1, frame.height() & !1)`. A frame of another size than the encoder's
//! recreates the context (and so starts with a keyframe).

use std::os::raw::{c_int, c_ulong};

use vpx_sys as ffi;

use crate::convert::I420Frame;
use crate::vpx::{self, Codec, VpxError};

/// Largest width or height libvpx's VP8 accepts (14-bit fields); applied to both codecs.
const MAX_SIDE: u32 = 16_383;
/// The side of an active-map block (a macroblock).
pub const BLOCK: u32 = 16;

/// Why the encoder failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame size cannot be encoded (a caller bug: crop to even sizes).
    #[error(
        "cannot encode a {width}x{height} frame: width and height must be even and between 2 \
         and 16382 (crop odd capture rectangles by one pixel)"
    )]
    InvalidDimensions {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// A configuration value is out of range.
    #[error("invalid encoder setting: {0}")]
    InvalidConfig(&'static str),
    /// libvpx refused a call (a local failure: out of memory, unsupported setting).
    #[error(transparent)]
    Libvpx(#[from] VpxError),
}

/// Encoder settings. [`Default`] gives the measured realtime settings for the codec; adjust
/// fields on a default value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncoderConfig {
    /// CBR target, kilobits per second (default 4,000). Change it later with
    /// [`Encoder::set_bitrate`].
    pub bitrate_kbps: u32,
    /// Nominal frame rate (default 30): with millisecond `pts`, each frame lasts
    /// `1000 / fps` ms for the rate controller's budget.
    pub fps: u32,
    /// Encoder threads; `None` means 2 for VP9 and 1 for VP8.
    pub threads: Option<u32>,
    /// libvpx `cpu-used` speed; `None` means 8 for VP9 and −6 for VP8.
    ///
    /// For VP8 in realtime mode a **negative** value is a fixed speed and a positive one lets
    /// libvpx pick the speed from measured encode times (nondeterministic). Measured
    /// (benches/codec.rs, 1080p text page, 4 Mbps): fixed speed 6 encodes a one-line scroll in
    /// ~8 ms at ~3.3 Mbps, while speeds 8–16 and automatic 12 skip the motion search that
    /// scrolling needs (12–15 ms, 9–24 Mbps: the rate controller cannot hold the target).
    pub cpu_used: Option<i32>,
    /// Best quality the rate controller may pick (quantizer 0..=63, default 10).
    ///
    /// Measured (benches/codec.rs, 1080p page of text, CBR 4 Mbps): with 2, a CBR encoder
    /// spends its whole budget refining static text while the user types (VP9 ~2.2 Mbps,
    /// VP8 ~3 Mbps steady state); with 10, 179 kbps (VP9) and 640 kbps (VP8), PSNR still ≥ 40
    /// dB; with 20, 35 kbps (VP9).
    pub min_quantizer: u32,
    /// Worst quality the rate controller may pick (quantizer 0..=63, default 52).
    pub max_quantizer: u32,
    /// Set `VPX_ERROR_RESILIENT_DEFAULT` (default off; see the [module docs](self)).
    pub error_resilient: bool,
    /// Cap a keyframe at this percentage of the average frame budget
    /// (`VP8E_SET_MAX_INTRA_BITRATE_PCT`, both codecs); `None` (default) leaves keyframes
    /// uncapped. A cap makes keyframes smaller (less burst after a PLI) but blurrier at first;
    /// the following frames sharpen them.
    pub max_keyframe_pct: Option<u32>,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            bitrate_kbps: 4_000,
            fps: 30,
            threads: None,
            cpu_used: None,
            min_quantizer: 10,
            max_quantizer: 52,
            error_resilient: false,
            max_keyframe_pct: None,
        }
    }
}

/// One compressed frame: the codec payload for one RTP frame (str0m's `Writer::write` takes
/// exactly this and packetizes it).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The VP9 (possibly a superframe) or VP8 bitstream of one frame.
    pub data: Vec<u8>,
    /// Whether this is a keyframe (decodable without earlier frames).
    pub keyframe: bool,
    /// The `pts` passed to [`Encoder::encode`], in milliseconds.
    pub pts: i64,
}

impl std::fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: they are screen content.
        f.debug_struct("EncodedFrame")
            .field("len", &self.data.len())
            .field("keyframe", &self.keyframe)
            .field("pts", &self.pts)
            .finish()
    }
}

/// A libvpx encoder context for one codec and one frame size. See the [module docs](self).
pub struct Encoder {
    /// Boxed: libvpx keeps pointers to the context's configuration, and the context must not
    /// move while initialised.
    ctx: Box<ffi::vpx_codec_ctx_t>,
    /// Boxed: `ctx.config.enc` points here for the encoder's lifetime.
    cfg: Box<ffi::vpx_codec_enc_cfg_t>,
    codec: Codec,
    width: u32,
    height: u32,
    config: EncoderConfig,
}

// SAFETY: a libvpx codec context may be used from any thread as long as calls are not
// concurrent; `Encoder` owns its context and all of its methods take `&mut self` (the raw
// pointers inside are what make the type `!Send` by default).
#[allow(unsafe_code, reason = "libvpx contexts are not tied to a thread")]
unsafe impl Send for Encoder {}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("codec", &self.codec)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Create an encoder for `width` × `height` frames (even, non-zero).
    pub fn new(
        codec: Codec,
        width: u32,
        height: u32,
        config: EncoderConfig,
    ) -> Result<Self, EncodeError> {
        if width < 2 || height < 2 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(EncodeError::InvalidDimensions { width, height });
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(EncodeError::InvalidDimensions { width, height });
        }
        if config.bitrate_kbps == 0 {
            return Err(EncodeError::InvalidConfig("bitrate_kbps must be > 0"));
        }
        if config.fps == 0 || config.fps > 1000 {
            return Err(EncodeError::InvalidConfig("fps must be 1..=1000"));
        }
        if config.min_quantizer > config.max_quantizer || config.max_quantizer > 63 {
            return Err(EncodeError::InvalidConfig(
                "quantizers must satisfy min <= max <= 63",
            ));
        }
        let threads = config.threads.unwrap_or(match codec {
            Codec::Vp9 => 2,
            Codec::Vp8 => 1,
        });
        if threads == 0 || threads > 64 {
            return Err(EncodeError::InvalidConfig("threads must be 1..=64"));
        }
        let iface = iface(codec);

        #[allow(unsafe_code, reason = "zero-initialising a plain C struct")]
        // SAFETY: vpx_codec_ctx_t is integers, raw pointers, a union of pointers and a C enum
        // whose 0 is VPX_CODEC_OK.
        let ctx: Box<ffi::vpx_codec_ctx_t> = unsafe { Box::new(std::mem::zeroed()) };
        // Not `zeroed()`: the configuration holds `vpx_bit_depth`, which has no 0 variant.
        let mut cfg = Box::new(std::mem::MaybeUninit::<ffi::vpx_codec_enc_cfg_t>::uninit());
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: `iface` is libvpx's static interface; `cfg` is writable memory for one
        // vpx_codec_enc_cfg_t, which the call overwrites whole on success.
        let err = unsafe { ffi::vpx_codec_enc_config_default(iface, cfg.as_mut_ptr(), 0) };
        if err != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(vpx::init_error("vpx_codec_enc_config_default", err).into());
        }
        #[allow(unsafe_code, reason = "libvpx initialised the configuration")]
        // SAFETY: vpx_codec_enc_config_default returned OK, so it copied a complete default
        // configuration (`*cfg = map->cfg`) into `cfg`.
        let mut cfg: Box<ffi::vpx_codec_enc_cfg_t> = unsafe { cfg.assume_init() };

        cfg.g_w = width;
        cfg.g_h = height;
        cfg.g_threads = threads;
        cfg.g_timebase = ffi::vpx_rational { num: 1, den: 1000 };
        cfg.g_pass = ffi::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = if config.error_resilient {
            ffi::VPX_ERROR_RESILIENT_DEFAULT
        } else {
            0
        };
        cfg.rc_end_usage = ffi::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = config.bitrate_kbps;
        cfg.rc_min_quantizer = config.min_quantizer;
        cfg.rc_max_quantizer = config.max_quantizer;
        // WebRTC's realtime rate-control buffer (ms) and tolerances.
        cfg.rc_undershoot_pct = 50;
        cfg.rc_overshoot_pct = 50;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        // Never drop frames: every encode returns exactly one frame.
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_resize_allowed = 0;
        // Keyframes only when forced (and the first frame).
        cfg.kf_mode = ffi::vpx_kf_mode::VPX_KF_DISABLED;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = 99_999;

        let mut encoder = Self {
            ctx,
            cfg,
            codec,
            width,
            height,
            config,
        };
        let cfg_ptr: *const ffi::vpx_codec_enc_cfg_t = &*encoder.cfg;
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: `ctx` is a zeroed, heap-pinned context; `cfg_ptr` points to the boxed
        // configuration, which lives (unmoved) as long as the context; the ABI version is the
        // one the bindings were generated for (checked by libvpx).
        let err = unsafe {
            ffi::vpx_codec_enc_init_ver(
                &mut *encoder.ctx,
                iface,
                cfg_ptr,
                0,
                ffi::VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        if err != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            // Not initialised: mark it so (null iface) and `Drop` will not destroy it.
            encoder.ctx.iface = std::ptr::null_mut();
            return Err(vpx::init_error("vpx_codec_enc_init_ver", err).into());
        }

        let cpu_used = encoder.config.cpu_used.unwrap_or(match codec {
            Codec::Vp9 => 8,
            Codec::Vp8 => -6,
        });
        use ffi::vp8e_enc_control_id as C;
        encoder.control(C::VP8E_SET_CPUUSED, cpu_used)?;
        if let Some(pct) = encoder.config.max_keyframe_pct {
            let pct = c_int::try_from(pct)
                .map_err(|_| EncodeError::InvalidConfig("max_keyframe_pct is too large"))?;
            encoder.control(C::VP8E_SET_MAX_INTRA_BITRATE_PCT, pct)?;
        }
        match codec {
            Codec::Vp9 => {
                encoder.control(C::VP9E_SET_ROW_MT, 1)?;
                encoder.control(C::VP9E_SET_TILE_COLUMNS, if threads > 1 { 1 } else { 0 })?;
                encoder.control(C::VP9E_SET_AQ_MODE, 3)?;
                encoder.control(
                    C::VP9E_SET_TUNE_CONTENT,
                    ffi::vp9e_tune_content::VP9E_CONTENT_SCREEN as c_int,
                )?;
                encoder.control(C::VP9E_SET_NOISE_SENSITIVITY, 0)?;
                // Say what the converter makes (BT.601, limited range): a decoder told
                // nothing may assume another matrix (Chromium did, shifting every colour).
                encoder.control(
                    C::VP9E_SET_COLOR_SPACE,
                    ffi::vpx_color_space::VPX_CS_BT_601 as c_int,
                )?;
                encoder.control(
                    C::VP9E_SET_COLOR_RANGE,
                    ffi::vpx_color_range::VPX_CR_STUDIO_RANGE as c_int,
                )?;
            }
            Codec::Vp8 => {
                encoder.control(C::VP8E_SET_SCREEN_CONTENT_MODE, 1)?;
                encoder.control(C::VP8E_SET_STATIC_THRESHOLD, 1)?;
                encoder.control(C::VP8E_SET_NOISE_SENSITIVITY, 0)?;
            }
        }
        Ok(encoder)
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Current frame size.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Change libvpx's speed (`cpu-used`, see [`EncoderConfig::cpu_used`]) from the next
    /// frame on, e.g. faster while the whole screen scrolls.
    pub fn set_cpu_used(&mut self, cpu_used: i32) -> Result<(), EncodeError> {
        self.control(ffi::vp8e_enc_control_id::VP8E_SET_CPUUSED, cpu_used)?;
        self.config.cpu_used = Some(cpu_used);
        Ok(())
    }

    /// Change the quantizer range (0..=63, min ≤ max) from the next frame on, without a
    /// keyframe — e.g. a coarser keyframe that arrives fast, sharpened by the frames after it.
    pub fn set_quantizer_range(&mut self, min: u32, max: u32) -> Result<(), EncodeError> {
        if min > max || max > 63 {
            return Err(EncodeError::InvalidConfig(
                "quantizers must satisfy min <= max <= 63",
            ));
        }
        let old = (self.cfg.rc_min_quantizer, self.cfg.rc_max_quantizer);
        (self.cfg.rc_min_quantizer, self.cfg.rc_max_quantizer) = (min, max);
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: initialised context; the configuration is the boxed one the context already
        // points to, valid and unmoved.
        let err = unsafe { ffi::vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
        if let Err(e) = vpx::check(&mut self.ctx, "vpx_codec_enc_config_set", err) {
            (self.cfg.rc_min_quantizer, self.cfg.rc_max_quantizer) = old;
            return Err(e.into());
        }
        (self.config.min_quantizer, self.config.max_quantizer) = (min, max);
        Ok(())
    }

    /// The active map's grid: (columns, rows) of 16×16 blocks covering the frame.
    pub fn block_grid(&self) -> (u32, u32) {
        (self.width.div_ceil(BLOCK), self.height.div_ceil(BLOCK))
    }

    /// Tell the encoder which 16×16 blocks changed (`map`, row by row over
    /// [`Encoder::block_grid`], non-zero = changed): from the next frame on it codes only those
    /// and repeats the rest from the previous frame at almost no cost in bits or time — what
    /// XDamage already knows, libvpx need not search for. `None` codes every block. Keyframes
    /// always code everything.
    ///
    /// A map of the wrong size is [`EncodeError::InvalidConfig`].
    pub fn set_active_map(&mut self, map: Option<&[u8]>) -> Result<(), EncodeError> {
        let (cols, rows) = self.block_grid();
        let mut owned;
        let active_map = match map {
            Some(m) => {
                if m.len() != (cols * rows) as usize {
                    return Err(EncodeError::InvalidConfig(
                        "the active map must have one byte per 16x16 block",
                    ));
                }
                owned = m.iter().map(|b| u8::from(*b != 0)).collect::<Vec<u8>>();
                owned.as_mut_ptr()
            }
            None => std::ptr::null_mut(),
        };
        let mut arg = ffi::vpx_active_map_t {
            active_map,
            rows,
            cols,
        };
        let id = ffi::vp8e_enc_control_id::VP8E_SET_ACTIVEMAP as c_int;
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: initialised context; VP8E_SET_ACTIVEMAP takes a `vpx_active_map_t *`, here a
        // valid struct whose `active_map` is null (disable) or points to `rows * cols` bytes
        // that outlive the call; both VP8 and VP9 copy the map before returning.
        let err = unsafe {
            ffi::vpx_codec_control_(&mut *self.ctx, id, &mut arg as *mut ffi::vpx_active_map_t)
        };
        vpx::check(&mut self.ctx, "vpx_codec_control(VP8E_SET_ACTIVEMAP)", err)?;
        Ok(())
    }

    /// Current CBR target in kbps.
    pub fn bitrate(&self) -> u32 {
        self.cfg.rc_target_bitrate
    }

    /// Change the CBR target (kilobits per second, > 0), e.g. on each congestion-controller
    /// estimate; applies from the next frame, without a keyframe.
    pub fn set_bitrate(&mut self, kbps: u32) -> Result<(), EncodeError> {
        if kbps == 0 {
            return Err(EncodeError::InvalidConfig("bitrate_kbps must be > 0"));
        }
        let old = self.cfg.rc_target_bitrate;
        self.cfg.rc_target_bitrate = kbps;
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: initialised context; the configuration is the boxed one the context already
        // points to, valid and unmoved.
        let err = unsafe { ffi::vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
        if let Err(e) = vpx::check(&mut self.ctx, "vpx_codec_enc_config_set", err) {
            self.cfg.rc_target_bitrate = old;
            return Err(e.into());
        }
        self.config.bitrate_kbps = kbps;
        Ok(())
    }

    /// Encode one frame shown at `pts` (milliseconds, increasing); `force_keyframe` on a
    /// keyframe request (PLI/FIR, a new viewer).
    ///
    /// Returns the compressed frames — exactly one with these settings (no lag, no frame
    /// dropping), but treat it as a list. A frame of a different size than the encoder's
    /// recreates the encoder at the new size first (the result is a keyframe).
    pub fn encode(
        &mut self,
        frame: &I420Frame,
        pts: i64,
        force_keyframe: bool,
    ) -> Result<Vec<EncodedFrame>, EncodeError> {
        if (frame.width(), frame.height()) != (self.width, self.height) {
            *self = Self::new(
                self.codec,
                frame.width(),
                frame.height(),
                self.config.clone(),
            )?;
        }
        let (y, u, v) = (frame.y(), frame.u(), frame.v());
        let chroma_stride = frame.chroma_width() as c_int;

        #[allow(unsafe_code, reason = "zero-initialising a plain C struct")]
        // SAFETY: vpx_image_t is integers, raw pointers and C enums whose 0 is a valid variant
        // (VPX_IMG_FMT_NONE, VPX_CS_UNKNOWN, VPX_CR_STUDIO_RANGE).
        let mut img: ffi::vpx_image_t = unsafe { std::mem::zeroed() };
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: vpx_img_wrap only fills `img` (it does not allocate with a non-null data
        // pointer) and does not access the data; the pointer is cast to `*mut` because the C
        // API is not const-correct — the encoder only reads input images (it copies them into
        // its lookahead buffer during vpx_codec_encode).
        let wrapped = unsafe {
            ffi::vpx_img_wrap(
                &mut img,
                ffi::vpx_img_fmt::VPX_IMG_FMT_I420,
                self.width,
                self.height,
                1,
                y.as_ptr().cast_mut(),
            )
        };
        if wrapped.is_null() {
            return Err(EncodeError::InvalidDimensions {
                width: self.width,
                height: self.height,
            });
        }
        // Point the planes at our buffer explicitly rather than rely on vpx_img_wrap's layout.
        img.planes[0] = y.as_ptr().cast_mut();
        img.planes[1] = u.as_ptr().cast_mut();
        img.planes[2] = v.as_ptr().cast_mut();
        img.stride[0] = self.width as c_int;
        img.stride[1] = chroma_stride;
        img.stride[2] = chroma_stride;

        let flags: ffi::vpx_enc_frame_flags_t = if force_keyframe {
            ffi::VPX_EFLAG_FORCE_KF.into()
        } else {
            0
        };
        let duration = c_ulong::from((1000 / self.config.fps).max(1));
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: initialised context; `img` describes `frame`'s planes (sizes checked by
        // I420Frame: Y width*height, U/V (width/2)*(height/2) for the even sizes the encoder
        // accepts, and frame size == encoder size), which outlive the call; libvpx copies the
        // image before returning (no lag).
        let err = unsafe {
            ffi::vpx_codec_encode(
                &mut *self.ctx,
                &img,
                pts,
                duration,
                flags,
                ffi::VPX_DL_REALTIME.into(),
            )
        };
        vpx::check(&mut self.ctx, "vpx_codec_encode", err)?;

        let mut out = Vec::new();
        let mut iter: ffi::vpx_codec_iter_t = std::ptr::null();
        loop {
            #[allow(unsafe_code, reason = "libvpx FFI")]
            // SAFETY: initialised context; `iter` starts null and is only advanced by libvpx.
            let pkt = unsafe { ffi::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            #[allow(unsafe_code, reason = "reading a libvpx output packet")]
            // SAFETY: a non-null packet is valid until the next call on the context; for
            // VPX_CODEC_CX_FRAME_PKT the `frame` member of the union is the active one and
            // `buf` holds `sz` readable bytes (or is null when empty); the bytes are copied out
            // before the next libvpx call.
            unsafe {
                let pkt = &*pkt;
                if pkt.kind == ffi::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let f = &pkt.data.frame;
                    let data = if f.buf.is_null() || f.sz == 0 {
                        Vec::new()
                    } else {
                        std::slice::from_raw_parts(f.buf.cast::<u8>(), f.sz as usize).to_vec()
                    };
                    out.push(EncodedFrame {
                        data,
                        keyframe: f.flags & ffi::VPX_FRAME_IS_KEY != 0,
                        pts: f.pts,
                    });
                }
            }
        }
        Ok(out)
    }

    fn control(&mut self, id: ffi::vp8e_enc_control_id, value: c_int) -> Result<(), VpxError> {
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: initialised context; every control used here takes an `int` or
        // `unsigned int` by value, which is what the variadic argument passes.
        let err = unsafe { ffi::vpx_codec_control_(&mut *self.ctx, id as c_int, value) };
        vpx::check(&mut self.ctx, "vpx_codec_control", err)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.ctx.iface.is_null() {
            return; // never initialised
        }
        #[allow(unsafe_code, reason = "libvpx FFI")]
        // SAFETY: the context was initialised by vpx_codec_enc_init_ver and is destroyed once.
        let _ = unsafe { ffi::vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// libvpx's encoder interface for `codec`.
fn iface(codec: Codec) -> *mut ffi::vpx_codec_iface_t {
    #[allow(unsafe_code, reason = "libvpx FFI")]
    // SAFETY: these return pointers to libvpx's static interface descriptions.
    unsafe {
        match codec {
            Codec::Vp9 => ffi::vpx_codec_vp9_cx(),
            Codec::Vp8 => ffi::vpx_codec_vp8_cx(),
        }
    }
}
