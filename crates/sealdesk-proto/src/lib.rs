//! Wire types of sealdesk and the sans-IO signaling protocol.
//!
//! This is a `[core]` crate (DESIGN.md §9): it does no I/O, reads no clock and no
//! global random number generator (time and randomness are arguments), contains no
//! `unsafe`, and builds for `wasm32-unknown-unknown`.
//!
//! # Signaling protocol, version 1
//!
//! A device opens a WebSocket to the server at path `/ws` (`wss://` with TLS, `ws://`
//! on loopback or behind a TLS terminator). Every message is one **JSON text frame** of
//! at most [`limits::MAX_MESSAGE_BYTES`] (64 KiB), an object whose `type` field names it.
//! Binary values are standard base64 with padding; session ids are 32 hex characters;
//! routing numbers are JSON integers of 9 digits. Unknown fields are refused.
//!
//! ```text
//! server -> device  {"type":"challenge","versions":[1],"nonce":"<32 bytes>"}
//! device -> server  {"type":"register","version":1,"device_key":"<32 bytes>","signature":"<64 bytes>"}
//!                   signature = Ed25519(IK, "sealdesk/v1 signaling-register" ‖ LP(origin) ‖ LP(nonce) ‖ LP(device_key))
//!                   origin = the Host of the WebSocket request, lower-case (e.g. "sealdesk.example.com")
//! server -> device  {"type":"registered","routing_number":123456789}      (after it is durable)
//!
//! device -> server  {"type":"send","id":7,"to":987654321,"session":"<hex>","body":"<sealed bytes>"}
//! server -> peer    {"type":"envelope","from":123456789,"session":"<hex>","body":"<same bytes>"}
//! server -> device  {"type":"error","id":7,"code":"peer_offline","message":"..."}   (only on failure)
//!
//! device -> server  {"type":"watch","numbers":[987654321]}
//! server -> device  {"type":"presence","online":[987654321],"offline":[]}  (now, then on change)
//! ```
//!
//! The challenge nonce is fresh per connection, so a registration signature cannot be
//! replayed on another connection; the origin binds it to the server the device meant, so a
//! malicious server cannot relay another server's challenge to register the device there. The server assigns each device key a stable routing
//! number; the `from` of a forwarded envelope is the sender's authenticated number. The
//! server never parses or stores envelope bodies: they are sealed by the endpoints
//! (DESIGN.md §4), and the server is not trusted with them.
//!
//! Non-fatal failures are `error` messages with an [`signaling::ErrorCode`]. Anything
//! the server cannot accept ends the connection with a WebSocket close frame whose
//! code and reason say what was wrong ([`signaling::CloseReason`]): 4000 malformed,
//! 4001 unsupported version, 4002 bad signature, 4003 out of order, 4004 slow reader,
//! 4005 registration timeout, 4006 replaced by a newer connection of the same device,
//! 4007 idle; 1003 binary frame, 1009 too large, 1011 server failure. Devices send a
//! WebSocket ping at least every 30 s; the server closes connections silent for 120 s.
//!
//! A new version would change `versions` in the challenge; a device picks the best
//! version both sides speak and says which in `register`.
//!
//! # Blob store
//!
//! The server also keeps encrypted recording segments as opaque blobs, over HTTP on the
//! same listener. Requests are signed by the device key; [`blob_auth`] defines the
//! `Authorization: Sealdesk <key>.<ts>.<nonce>.<sig>` header and the bytes it signs:
//!
//! ```text
//! POST   /blobs?owner=<base64url key>   body = the blob  -> 201 {"id":"<32 hex>"}
//! GET    /blobs                                          -> 200 [{"id","size","created_at","uploader"}]
//! GET    /blobs/<32 hex>                                 -> 200 the bytes (owner only, else 404)
//! DELETE /blobs/<32 hex>                                 -> 204 (owner only, else 404)
//! ```
//!
//! # Driving the state machines
//!
//! [`server_conn::ServerConn`] and [`client_conn::ClientConn`] hold one connection's
//! state. Feed them what arrived, then drain `poll_output()`:
//!
//! ```
//! use std::time::Instant;
//! use ed25519_dalek::Signer;
//! use sealdesk_proto::client_conn::{ClientConn, ClientEvent, ClientOutput};
//! use sealdesk_proto::server_conn::{ConnLimits, ServerConn, ServerOutput};
//! use sealdesk_proto::{DeviceKey, Nonce, RoutingNumber, SignatureBytes};
//!
//! # #[allow(clippy::disallowed_methods, reason = "example")]
//! let now = Instant::now(); // a shell reads the clock; the state machines never do
//! let sk = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
//! let key = DeviceKey::try_from_bytes(sk.verifying_key().to_bytes())?;
//! let mut server = ServerConn::new(now, Nonce([2; 32]), "sealdesk.test".into(), ConnLimits::default());
//! let mut client = ClientConn::new(key, "sealdesk.test".into());
//! let mut registered = None;
//! while registered.is_none() {
//!     while let Some(out) = server.poll_output() {
//!         match out {
//!             ServerOutput::Send(msg) => client
//!                 .handle_text(&msg.encode(), |b| SignatureBytes(sk.sign(b).to_bytes()))?,
//!             // A real server stores the key durably and picks a random number.
//!             ServerOutput::Register(_) => {
//!                 server.handle_registered(now, RoutingNumber::new(123_456_789)?)
//!             }
//!             other => panic!("unexpected {other:?}"),
//!         }
//!     }
//!     while let Some(out) = client.poll_output() {
//!         match out {
//!             ClientOutput::Send(msg) => server.handle_text(now, &msg.encode()),
//!             ClientOutput::Event(ClientEvent::Registered(n)) => registered = Some(n),
//!             ClientOutput::Event(_) => {}
//!         }
//!     }
//! }
//! assert_eq!(registered.map(|n| n.get()), Some(123_456_789));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod blob_auth;
pub mod client_conn;
pub mod control;
pub mod limits;
pub mod rate;
pub mod server_conn;
pub mod signaling;
pub mod turn_tcp;
pub mod types;
pub mod wire;

pub use signaling::{ClientMessage, CloseReason, DecodeError, ErrorCode, ServerMessage};
pub use types::{Body, DeviceKey, InvalidValue, Nonce, RoutingNumber, SessionId, SignatureBytes};
