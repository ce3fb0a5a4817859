//! Authenticating a blob request, in two steps named for what each still needs.
//!
//! [`ExpectBody::from_headers`] checks what the headers alone can tell (the header parses,
//! the timestamp is fresh, the key is a registered device) before any body is read;
//! [`ExpectBody::finish`] takes the body's digest, verifies the signature and records the
//! nonce, and yields the authenticated device key.

use std::sync::Mutex;

use axum::http::{header, HeaderMap, Method, Uri};
use sealdesk_proto::blob_auth::{BlobAuth, BlobAuthError, BodyDigest, Signed};
use sealdesk_proto::DeviceKey;

use super::replay::{Refused, ReplayCache};
use super::Failure;
use crate::registry::Registry;

/// Why a request is not authenticated; each says what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthFailure {
    #[error("missing Authorization header: sign blob requests with a device key (Authorization: Sealdesk <key>.<ts>.<nonce>.<sig>)")]
    Missing,
    #[error("malformed Authorization header: not visible ASCII text")]
    NotText,
    #[error(transparent)]
    Auth(#[from] BlobAuthError),
    #[error("unknown device: connect to this server once first")]
    UnknownDevice,
    #[error("missing or invalid Host header (the signature covers the server's name)")]
    NoOrigin,
    #[error(
        "replayed request: this nonce was already used; sign every request with a fresh nonce"
    )]
    Replayed,
    #[error("request timestamp is older than the server's replay memory reaches (the server is busy): sign the request again with the current time")]
    TooOld,
}

impl From<AuthFailure> for Failure {
    fn from(e: AuthFailure) -> Self {
        Failure::unauthorized(e.to_string())
    }
}

/// A request whose headers are acceptable; the signature is not checked yet.
#[derive(Debug)]
pub(crate) struct ExpectBody {
    auth: BlobAuth,
    /// The server the signature must name (as for registration).
    origin: String,
}

impl ExpectBody {
    /// Checks the `Authorization` header against the clock (`now`, unix seconds) and the
    /// registry.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        registry: &Registry,
        public_origin: Option<&str>,
        now: u64,
    ) -> Result<Self, AuthFailure> {
        let origin =
            crate::ws::addressed_origin(public_origin, headers).ok_or(AuthFailure::NoOrigin)?;
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthFailure::Missing)?
            .to_str()
            .map_err(|_| AuthFailure::NotText)?;
        let auth = BlobAuth::parse_header(value)?;
        auth.check_fresh(now)?;
        if !registry.contains_key(&auth.key) {
            return Err(AuthFailure::UnknownDevice);
        }
        Ok(Self { auth, origin })
    }

    /// Verifies the signature over the request as received and records its nonce.
    pub(crate) fn finish(
        self,
        method: &Method,
        uri: &Uri,
        body: &BodyDigest,
        replay: &Mutex<ReplayCache>,
        now: u64,
    ) -> Result<DeviceKey, AuthFailure> {
        let target = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
        self.auth.verify(Signed {
            origin: &self.origin,
            method: method.as_str(),
            path_and_query: target,
            body,
        })?;
        // Only a verified request enters the cache, so nobody can fill it in someone's name.
        let mut cache = replay.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .check_and_insert(now, self.auth.key, self.auth.nonce, self.auth.timestamp)
            .map_err(|r| match r {
                Refused::Replayed => AuthFailure::Replayed,
                Refused::TooOld => AuthFailure::TooOld,
            })?;
        Ok(self.auth.key)
    }
}
