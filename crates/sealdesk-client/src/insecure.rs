//! **Insecure, test-only**: deliberate leaks, the negative controls of `sealdesk audit`.
//! Each one is a bug of the kind that would break a claim in SECURITY.md; the audit must
//! notice it and fail the right question, or the audit itself is broken.
//!
//! Compiled only with the `insecure-controls` feature, which a release build refuses to
//! compile (`compile_error!` without `debug_assertions`), and active only when
//! `SEALDESK_INSECURE_CONTROL` names the control (several: comma-separated).
//! [`crate::INSECURE_FEATURES`] says whether it is compiled in.
//!
//! - `leak-offer` — the viewer also sends its SDP offer unsealed through the signaling
//!   server (as a careless "debug copy" would): the audit's question 2 must fail.
//! - `plaintext-recording` — the recorder also writes clipboard text it records to a plain
//!   file beside the segments, which the uploader stores on the server: question 4 must fail.

#[cfg(not(debug_assertions))]
compile_error!(
    "the insecure-controls feature leaks session content on purpose; it exists for tests and \
     cannot be compiled into a release build"
);

/// The variable naming the active controls.
pub const ENV: &str = "SEALDESK_INSECURE_CONTROL";

/// Whether the control `name` is on.
pub fn active(name: &str) -> bool {
    std::env::var(ENV).is_ok_and(|v| v.split(',').any(|c| c.trim() == name))
}
