//! What the libvpx encoder and decoder share: the codec choice, error strings, result checks.

use std::ffi::CStr;
use std::os::raw::c_char;

use vpx_sys as ffi;

/// A video codec implemented by libvpx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// VP9 profile 0 (8-bit 4:2:0): sealdesk's default — best bitrate on screen content at
    /// equal CPU (FACTS.md).
    Vp9,
    /// VP8: for peers that cannot decode VP9.
    Vp8,
}

impl Codec {
    /// The codec's name as in SDP (`"VP9"`, `"VP8"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Vp9 => "VP9",
            Self::Vp8 => "VP8",
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A libvpx call that returned something other than `VPX_CODEC_OK`, with libvpx's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("libvpx {call} failed ({code}): {message}")]
pub struct VpxError {
    /// The C function that failed, e.g. `"vpx_codec_encode"`.
    pub call: &'static str,
    /// libvpx's error code name, e.g. `"VPX_CODEC_CORRUPT_FRAME"`.
    pub code: &'static str,
    /// `vpx_codec_error()` and, when libvpx has one, `vpx_codec_error_detail()`.
    pub message: String,
}

impl VpxError {
    /// Whether libvpx blamed its input (a corrupt, truncated or unsupported bitstream, or an
    /// invalid parameter) rather than itself (memory, internal error).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self.code,
            "VPX_CODEC_CORRUPT_FRAME" | "VPX_CODEC_UNSUP_BITSTREAM" | "VPX_CODEC_INVALID_PARAM"
        )
    }
}

/// Name of a `vpx_codec_err_t`.
pub(crate) fn code_name(err: ffi::vpx_codec_err_t) -> &'static str {
    use ffi::vpx_codec_err_t as E;
    match err {
        E::VPX_CODEC_OK => "VPX_CODEC_OK",
        E::VPX_CODEC_ERROR => "VPX_CODEC_ERROR",
        E::VPX_CODEC_MEM_ERROR => "VPX_CODEC_MEM_ERROR",
        E::VPX_CODEC_ABI_MISMATCH => "VPX_CODEC_ABI_MISMATCH",
        E::VPX_CODEC_INCAPABLE => "VPX_CODEC_INCAPABLE",
        E::VPX_CODEC_UNSUP_BITSTREAM => "VPX_CODEC_UNSUP_BITSTREAM",
        E::VPX_CODEC_UNSUP_FEATURE => "VPX_CODEC_UNSUP_FEATURE",
        E::VPX_CODEC_CORRUPT_FRAME => "VPX_CODEC_CORRUPT_FRAME",
        E::VPX_CODEC_INVALID_PARAM => "VPX_CODEC_INVALID_PARAM",
        E::VPX_CODEC_LIST_END => "VPX_CODEC_LIST_END",
    }
}

/// Copy a C string owned by libvpx; `None` for a null pointer.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string that stays valid during the call.
#[allow(unsafe_code, reason = "reads a C string returned by libvpx")]
unsafe fn c_string(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    Some(
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// `Ok` for `VPX_CODEC_OK`; otherwise the error with the context's message and detail.
///
/// Only for an initialised context (after a successful `*_init_ver`): libvpx's detail string
/// lives in the context's private data.
pub(crate) fn check(
    ctx: &mut ffi::vpx_codec_ctx_t,
    call: &'static str,
    err: ffi::vpx_codec_err_t,
) -> Result<(), VpxError> {
    if err == ffi::vpx_codec_err_t::VPX_CODEC_OK {
        return Ok(());
    }
    #[allow(unsafe_code, reason = "libvpx error accessors")]
    // SAFETY: `ctx` is an initialised context (caller's contract) borrowed exclusively;
    // vpx_codec_error returns a static string, vpx_codec_error_detail null or a string owned by
    // the context, both copied before the context can be used again.
    let (message, detail) = unsafe {
        (
            c_string(ffi::vpx_codec_error(ctx)),
            c_string(ffi::vpx_codec_error_detail(ctx)),
        )
    };
    let mut message = message.unwrap_or_else(|| code_name(err).to_owned());
    if let Some(detail) = detail {
        message.push_str(": ");
        message.push_str(&detail);
    }
    Err(VpxError {
        call,
        code: code_name(err),
        message,
    })
}

/// The error of a failed `*_init_ver` call. Only the static message: after a failed init
/// libvpx's detail pointer may point into freed memory, so it is not read.
pub(crate) fn init_error(call: &'static str, err: ffi::vpx_codec_err_t) -> VpxError {
    #[allow(unsafe_code, reason = "libvpx error string")]
    // SAFETY: vpx_codec_err_to_string takes any code and returns a static string.
    let message = unsafe { c_string(ffi::vpx_codec_err_to_string(err)) };
    VpxError {
        call,
        code: code_name(err),
        message: message.unwrap_or_else(|| code_name(err).to_owned()),
    }
}
