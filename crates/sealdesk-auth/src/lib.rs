//! sealdesk's end-to-end authentication core (DESIGN.md §3, §4).
//!
//! This is a `[core]` crate (DESIGN.md §9): no I/O, no clock, no global RNG (`now` and a
//! `rng: &mut impl CryptoRngCore` are passed in), no `unsafe`; it builds for
//! `wasm32-unknown-unknown` so the browser viewer runs the same code.
//!
//! - [`identity`]: device identity keys and fingerprints.
//! - [`code`]: one-time codes `R · S` and their limits.
//! - [`attended`]: SPAKE2 with key confirmation; [`unattended`]: SIGMA-I between paired devices.
//! - [`sealed`]: sealed signaling after either handshake, with the SDP fingerprint checks of [`sdp`].
//! - [`trust`]: the host's pairing registry and the viewer's pinned hosts.
//! - [`safety`]: 60-digit safety numbers.
//!
//! Each handshake is a chain of typed states: a transition consumes the state and returns the
//! next one and the bytes to send, or a [`HandshakeError`] in words a person can act on. The
//! caller moves bytes through the signaling server; nothing here touches a socket or a clock.
//!
//! ```
//! use rand::SeedableRng;
//! use sealdesk_auth::{attended, code::{OneTimeCode, ViewerAttempts}, negotiate::Offer};
//! use sealdesk_auth::{sdp::DtlsFingerprint, trust::Permissions, IdentityKey};
//! use sealdesk_auth::sealed::SealedKind;
//! # #[allow(clippy::disallowed_methods)]
//! let now = std::time::Instant::now(); // shells read the clock; the core never does
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7); // shells pass OsRng
//! let (host_key, viewer_key) = (IdentityKey::generate(&mut rng), IdentityKey::generate(&mut rng));
//! let (fp_h, fp_v) = (DtlsFingerprint([1; 32]), DtlsFingerprint([2; 32]));
//! let routing = sealdesk_proto::RoutingNumber::new(123_456_789)?;
//!
//! // The host shows a code; the person at the viewer types it.
//! let mut host = attended::host::AttendedHost::new(OneTimeCode::draw(routing, &mut rng), &Offer::default(), now);
//! let typed = OneTimeCode::parse(&host.code().display())?;
//! let mut tries = ViewerAttempts::new();
//!
//! let (viewer, a1) = attended::viewer::start(&typed, &Offer::default(), fp_v, &mut tries, now, &mut rng)?;
//! let (host_run, a2) = host.handle_a1(now, &a1, &host_key, "office pc", fp_h, &mut rng)?;
//! let (waiting, a3) = viewer.handle_a2(&a2, &viewer_key, "alice laptop", &mut tries, now)?;
//! let pending = host.handle_a3(now, host_run, &a3)?;
//! assert_eq!(pending.peer().key, viewer_key.public()); // show label + fingerprint, ask the user
//! let (host_session, mut host_sealed, accept) = pending.approve(Permissions::DEFAULT_PAIRED);
//! let Ok((viewer_session, mut viewer_sealed)) = waiting.handle(&accept)? else { panic!("no accept") };
//!
//! // Both sides hold the same keys and the same pair of DTLS fingerprints.
//! assert_eq!(host_session.th_final, viewer_session.th_final);
//! assert_eq!((viewer_session.fp_local, viewer_session.fp_peer), (fp_v, fp_h));
//! assert_eq!(viewer_session.permissions, Permissions::DEFAULT_PAIRED);
//! let cand = viewer_sealed.seal(SealedKind::Candidate, b"candidate:1 1 udp 1 127.0.0.1 5000 typ host")?;
//! assert_eq!(host_sealed.open(&cand)?.kind, SealedKind::Candidate);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod attended;
pub mod code;
pub mod crypto;
pub mod error;
pub mod identity;
pub mod messages;
pub mod negotiate;
pub mod safety;
pub mod sdp;
pub mod sealed;
pub mod session;
pub mod trust;
pub mod unattended;
pub mod wire;

pub use error::HandshakeError;
pub use identity::{DeviceFingerprint, IdentityKey, KeyFileError};
pub use trust::MAX_LABEL_BYTES;
