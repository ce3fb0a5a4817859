//! The browser viewer's core (DESIGN.md §8): the same authentication code as the native
//! viewer, compiled to WebAssembly, behind one sans-IO state machine the page drives.
//!
//! The page (`web/app.js`) is a thin shell: it owns the WebSocket to the signaling server,
//! the `RTCPeerConnection`, the clock, the randomness and the screen. Everything that
//! decides — registration, the attended and unattended handshakes, sealed signaling, the
//! checks of both DTLS fingerprints (before the SDP is applied, and again from `getStats()`
//! once connected), the control channel's bytes and the keyboard mapping — is
//! [`WebViewer`], which does no I/O and is tested natively like every other core.
//!
//! [`ffi`] is its WebAssembly interface: JSON in, JSON out.
//!
//! ```
//! use sealdesk_auth::code::Elapsed;
//! use sealdesk_web::api::{Config, Input, Output, ServedBy};
//! use sealdesk_web::WebViewer;
//! let config = Config {
//!     identity_seed: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
//!     random_seed: "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=".into(),
//!     label: "browser".into(),
//!     fingerprint: ["AB"; 32].join(":"),
//!     origin: "127.0.0.1:8443".into(),
//!     served_by: ServedBy::Local,
//!     pins: vec![],
//!     timeout_secs: None,
//! };
//! let mut viewer = WebViewer::new(config, Elapsed::default())?;
//! assert!(matches!(viewer.poll_output(), Some(Output::Identity { .. })));
//! // The page opened its WebSocket; the server's challenge arrives and is answered.
//! viewer.handle_input(Elapsed::default(), Input::ServerOpen);
//! let challenge = r#"{"type":"challenge","versions":[1],"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;
//! viewer.handle_input(Elapsed::default(), Input::Server { text: challenge.into() });
//! let Some(Output::Send { text }) = viewer.poll_output() else { panic!("no registration") };
//! assert!(text.starts_with(r#"{"type":"register""#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod ffi;
pub mod keys;
mod viewer;

pub use viewer::{ConfigError, WebViewer};
