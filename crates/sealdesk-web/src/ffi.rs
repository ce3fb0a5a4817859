//! The WebAssembly interface: a [`Shell`] holds one [`WebViewer`] and two buffers, and a
//! handful of exported functions move JSON through them. No generated glue: the page's side
//! (`web/app.js`, `class Core`) is forty lines that can be read.
//!
//! ```text
//! sd_shell_new() -> shell                 sd_shell_free(shell)
//! sd_input_buffer(shell, len) -> ptr      the page writes len bytes of JSON there
//! sd_create(shell, now_ms) -> n           the buffer holds a Config; 0 = made, else an
//!                                         error of n bytes is in the output buffer
//! sd_input(shell, now_ms) -> n            the buffer holds an Input; 0 = taken, else an
//!                                         error of n bytes is in the output buffer
//! sd_poll(shell) -> n                     the next Output, n bytes in the output buffer;
//!                                         0 = nothing more
//! sd_output(shell) -> ptr                 where the output buffer is
//! ```
//!
//! The input buffer is wiped after every call that reads it (it carries the identity seed,
//! codes and clipboard text). Everything that can be checked is checked in [`Shell`], which is
//! plain safe Rust tested natively; the `extern "C"` functions only turn the page's handle back
//! into a reference.

use sealdesk_auth::code::Elapsed;
use zeroize::Zeroize as _;

use crate::api::{Config, Input};
use crate::WebViewer;

/// The largest message the page may pass in (clipboard text is the largest: 256 KiB, base64
/// would not apply — it is JSON text — so allow for escaping).
pub const MAX_INPUT: usize = 2 * 1024 * 1024;

/// One viewer and its buffers.
#[derive(Debug, Default)]
pub struct Shell {
    viewer: Option<WebViewer>,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Shell {
    /// An empty shell.
    pub fn new() -> Self {
        Self::default()
    }

    /// A zeroed input buffer of `len` bytes (at most [`MAX_INPUT`]), for the page to fill.
    pub fn input_buffer(&mut self, len: usize) -> &mut [u8] {
        self.input.zeroize();
        self.input.resize(len.min(MAX_INPUT), 0);
        &mut self.input
    }

    /// Makes the viewer from the [`Config`] in the input buffer. `Err` puts the reason in the
    /// output buffer and returns its length.
    pub fn create(&mut self, now_ms: f64) -> Result<(), usize> {
        let parsed = serde_json::from_slice::<Config>(&self.input);
        self.input.zeroize();
        let result = parsed
            .map_err(|e| format!("the page's configuration is invalid: {e}"))
            .and_then(|c| {
                WebViewer::new(c, Elapsed::from_millis_f64(now_ms)).map_err(|e| e.to_string())
            });
        match result {
            Ok(v) => {
                self.viewer = Some(v);
                Ok(())
            }
            Err(e) => Err(self.set_output(e.into_bytes())),
        }
    }

    /// Feeds the [`Input`] in the input buffer to the viewer. `Err` puts the reason in the
    /// output buffer and returns its length.
    pub fn input(&mut self, now_ms: f64) -> Result<(), usize> {
        let parsed = serde_json::from_slice::<Input>(&self.input);
        self.input.zeroize();
        let Some(viewer) = self.viewer.as_mut() else {
            return Err(self.set_output(b"no viewer yet: call sd_create first".to_vec()));
        };
        match parsed {
            Ok(input) => {
                viewer.handle_input(Elapsed::from_millis_f64(now_ms), input);
                Ok(())
            }
            Err(e) => {
                Err(self.set_output(format!("the page sent an invalid message: {e}").into_bytes()))
            }
        }
    }

    /// Puts the next output, as JSON, in the output buffer and returns its length (0: none).
    pub fn poll(&mut self) -> usize {
        let next = self.viewer.as_mut().and_then(WebViewer::poll_output);
        match next.map(|o| serde_json::to_vec(&o)) {
            Some(Ok(bytes)) => self.set_output(bytes),
            // Outputs are plain data: serialising one cannot fail; say so if it ever does.
            Some(Err(e)) => self.set_output(
                format!(r#"{{"type":"warning","text":"an output could not be encoded: {e}"}}"#)
                    .into_bytes(),
            ),
            None => self.set_output(Vec::new()),
        }
    }

    /// The output buffer.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    fn set_output(&mut self, bytes: Vec<u8>) -> usize {
        self.output.zeroize();
        self.output = bytes;
        self.output.len()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.input.zeroize();
        self.output.zeroize();
    }
}

#[cfg(target_arch = "wasm32")]
pub mod exports {
    //! The exported functions. Each takes the pointer `sd_shell_new` returned; the page
    //! holds exactly one and never uses it after `sd_shell_free`.
    #![allow(unsafe_code, reason = "the WebAssembly boundary passes raw pointers")]

    use super::Shell;

    /// Turns the page's handle back into the shell.
    ///
    /// # Safety
    /// `shell` must come from [`sd_shell_new`], not yet freed, and not be in use by another
    /// call (the page is single-threaded and calls one function at a time).
    unsafe fn shell<'a>(shell: *mut Shell) -> Option<&'a mut Shell> {
        // SAFETY: per this function's contract, the pointer is a live Box<Shell> that nothing
        // else borrows during this call; null yields None.
        unsafe { shell.as_mut() }
    }

    /// A new shell; free it with [`sd_shell_free`].
    #[unsafe(no_mangle)]
    pub extern "C" fn sd_shell_new() -> *mut Shell {
        Box::into_raw(Box::new(Shell::new()))
    }

    /// Frees a shell (and wipes its buffers).
    ///
    /// # Safety
    /// As for [`shell`]; the pointer is not used again.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn sd_shell_free(shell: *mut Shell) {
        if !shell.is_null() {
            // SAFETY: the pointer came from Box::into_raw in sd_shell_new and is freed once.
            drop(unsafe { Box::from_raw(shell) });
        }
    }

    /// The input buffer, `len` bytes long (at most [`super::MAX_INPUT`]).
    ///
    /// # Safety
    /// As for [`shell`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn sd_input_buffer(s: *mut Shell, len: usize) -> *mut u8 {
        // SAFETY: per this function's contract.
        match unsafe { shell(s) } {
            Some(s) => s.input_buffer(len).as_mut_ptr(),
            None => std::ptr::null_mut(),
        }
    }

    /// Makes the viewer: 0, or the length of an error in the output buffer.
    ///
    /// # Safety
    /// As for [`shell`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn sd_create(s: *mut Shell, now_ms: f64) -> usize {
        // SAFETY: per this function's contract.
        match unsafe { shell(s) } {
            Some(s) => s.create(now_ms).err().unwrap_or(0),
            None => 0,
        }
    }

    /// Feeds an input: 0, or the length of an error in the output buffer.
    ///
    /// # Safety
    /// As for [`shell`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn sd_input(s: *mut Shell, now_ms: f64) -> usize {
        // SAFETY: per this function's contract.
        match unsafe { shell(s) } {
            Some(s) => s.input(now_ms).err().unwrap_or(0),
            None => 0,
        }
    }

    /// The next output's length in the output buffer (0: none).
    ///
    /// # Safety
    /// As for [`shell`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn sd_poll(s: *mut Shell) -> usize {
        // SAFETY: per this function's contract.
        unsafe { shell(s) }.map_or(0, Shell::poll)
    }

    /// Where the output buffer is.
    ///
    /// # Safety
    /// As for [`shell`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn sd_output(s: *mut Shell) -> *const u8 {
        // SAFETY: per this function's contract.
        unsafe { shell(s) }.map_or(std::ptr::null(), |s| s.output().as_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_json() -> String {
        let fp = ["AB"; 32].join(":");
        serde_json::json!({
            "identity_seed": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "random_seed": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
            "label": "a browser",
            "fingerprint": fp,
            "origin": "127.0.0.1:8443",
            "served_by": "local",
        })
        .to_string()
    }

    fn put(shell: &mut Shell, text: &str) {
        shell
            .input_buffer(text.len())
            .copy_from_slice(text.as_bytes());
    }

    #[test]
    fn json_in_json_out_and_buffers_wiped() {
        let mut shell = Shell::new();
        put(&mut shell, r#"{"type":"server_open"}"#);
        assert!(shell.input(0.0).is_err(), "no viewer yet");
        let config = config_json();
        put(&mut shell, &config);
        assert_eq!(shell.create(0.0), Ok(()));
        assert!(shell.input.iter().all(|b| *b == 0), "the seed is wiped");
        let n = shell.poll();
        let first: serde_json::Value = serde_json::from_slice(&shell.output()[..n]).unwrap();
        assert_eq!(first["type"], "identity");
        assert_eq!(shell.poll(), 0);

        put(&mut shell, r#"{"type":"server_open"}"#);
        assert_eq!(shell.input(1.0), Ok(()));
        put(&mut shell, r#"{"type":"nonsense"}"#);
        let n = shell.input(2.0).unwrap_err();
        let err = String::from_utf8(shell.output()[..n].to_vec()).unwrap();
        assert!(err.contains("invalid message"), "{err}");
        put(&mut shell, "not json at all \u{0}");
        assert!(shell.input(3.0).is_err());
    }

    #[test]
    fn bad_configurations_are_refused_with_reasons() {
        let good: serde_json::Value = serde_json::from_str(&config_json()).unwrap();
        for (field, value, words) in [
            ("identity_seed", "AAAA", "32 bytes"),
            ("random_seed", "!!", "base64"),
            ("fingerprint", "AB:CD", "fingerprint"),
            ("origin", "evil/path", "origin"),
        ] {
            let mut c = good.clone();
            c[field] = serde_json::Value::String(value.into());
            let mut shell = Shell::new();
            put(&mut shell, &c.to_string());
            let n = shell.create(0.0).unwrap_err();
            let err = String::from_utf8(shell.output()[..n].to_vec()).unwrap();
            assert!(err.contains(words), "{field}: {err}");
        }
        let mut shell = Shell::new();
        shell.input_buffer(usize::MAX);
        assert_eq!(shell.input.len(), MAX_INPUT);
    }
}
