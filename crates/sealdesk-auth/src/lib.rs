//! sealdesk's end-to-end authentication core.
//!
//! This is a `[core]` crate (DESIGN.md §9): no I/O, no clock, no global RNG (a
//! `rng: &mut impl CryptoRngCore` is passed in), no `unsafe`; it builds for
//! `wasm32-unknown-unknown` so the browser viewer runs the same code.
//!
//! It holds device identities today ([`identity`]); the handshakes, sealed
//! signaling and safety numbers of DESIGN.md §4 arrive with the authentication-core issue.
//!
//! ```
//! use rand::SeedableRng;
//! use sealdesk_auth::identity::IdentityKey;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7); // shells pass OsRng
//! let key = IdentityKey::generate(&mut rng);
//! let file = key.to_file_bytes();                      // store with mode 0600
//! let again = IdentityKey::from_file_bytes(&file)?;
//! assert_eq!(key.public(), again.public());
//! assert!(key.public().verify_strict(b"hello", &key.sign(b"hello")));
//! # Ok::<(), sealdesk_auth::identity::KeyFileError>(())
//! ```

pub mod identity;

pub use identity::{DeviceFingerprint, IdentityKey, KeyFileError};
