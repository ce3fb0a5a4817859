//! The device side of sealdesk's signaling: the data directory, the identity key
//! file, the trust stores ([`trust_store`]), an async signaling client with reconnection,
//! and a client of the server's blob store for encrypted recording segments ([`blobs`]).
//!
//! A `[shell]` crate: it owns files, sockets, the clock and the OS RNG, and drives the
//! sans-IO [`sealdesk_proto::client_conn::ClientConn`]. Hosts and viewers use it.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sealdesk_client::{store, ClientConfig, SignalClient, SignalEvent};
//!
//! let dir = store::resolve_data_dir(None)?;
//! let (identity, _created) = store::load_or_create_identity(&dir)?;
//! let mut client =
//!     SignalClient::connect(ClientConfig::new("ws://127.0.0.1:8443/ws"), Arc::new(identity)).await?;
//! println!("registered as {}", client.routing_number().grouped());
//! while let Some(event) = client.next_event().await {
//!     if let SignalEvent::Envelope { from, body, .. } = event {
//!         println!("{} bytes from {from}", body.len());
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod blobs;
#[cfg(feature = "insecure-controls")]
pub mod insecure;
pub mod recording;
pub mod signal;
pub mod store;
pub mod trust_store;

pub use backoff::Backoff;
pub use signal::{ClientConfig, RelayCredential, SignalClient, SignalError, SignalEvent};

/// The insecure, test-only features compiled into this crate (empty in a release build,
/// which cannot compile them): `sealdesk --version` and `sealdesk audit` report this.
pub const INSECURE_FEATURES: &[&str] = &[
    #[cfg(feature = "insecure-controls")]
    "insecure-controls",
];

/// Whether the deliberate leak `name` is on (the `insecure` module, test builds only). Always
/// `false` in a build without the insecure-controls feature, which includes every release.
pub fn insecure_control(name: &str) -> bool {
    #[cfg(feature = "insecure-controls")]
    return insecure::active(name);
    #[cfg(not(feature = "insecure-controls"))]
    {
        let _ = name;
        false
    }
}
