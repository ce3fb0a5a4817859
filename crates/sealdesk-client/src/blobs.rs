//! A client of the signaling server's blob store, where encrypted recording segments are
//! kept (DESIGN.md §7).
//!
//! The store is HTTP on the signaling server's listener: `ws://host:port/ws` means
//! `http://host:port/blobs`, `wss://` means `https://` (rustls, the system's roots plus
//! [`ClientConfig::extra_ca_pem`]). Every request is signed with the device's identity key
//! ([`sealdesk_proto::blob_auth`]); the device must have registered with the server once
//! (any [`crate::SignalClient::connect`] does that). Blobs are opaque to the server:
//! encrypt before [`BlobClient::upload`], to a key only the owner holds.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sealdesk_client::blobs::BlobClient;
//! use sealdesk_client::{store, ClientConfig};
//!
//! let dir = store::resolve_data_dir(None)?;
//! let (identity, _) = store::load_or_create_identity(&dir)?;
//! let identity = Arc::new(identity);
//! let blobs = BlobClient::new(&ClientConfig::new("ws://127.0.0.1:8443/ws"), identity.clone())?;
//! let id = blobs.upload(&identity.public(), b"an age file".to_vec()).await?;
//! assert_eq!(blobs.download(&id).await?, b"an age file");
//! for blob in blobs.list().await? {
//!     println!("{} {} bytes", blob.id, blob.size);
//! }
//! blobs.delete(&id).await?;
//! # Ok(()) }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::http::{header, Method, Request, StatusCode, Uri};
use rand::RngCore as _;
use rustls::pki_types::ServerName;
use sealdesk_auth::IdentityKey;
use sealdesk_proto::blob_auth::{self, BlobAuth, BodyDigest, RequestNonce, Signed};
use sealdesk_proto::DeviceKey;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::signal::ClientConfig;

pub use sealdesk_proto::blob_auth::{BlobId, InvalidBlobId};

/// The largest response [`BlobClient`] reads unless told otherwise.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 40 * 1024 * 1024;
/// How long one request may take unless told otherwise (an upload of a large blob on a
/// slow link included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of an error response is read; its message is cut to [`MAX_MESSAGE_CHARS`].
const MAX_ERROR_BODY: usize = 4096;
/// The longest server message kept in a [`BlobError`].
pub const MAX_MESSAGE_CHARS: usize = 500;

/// One blob, as the server lists it to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its id.
    pub id: BlobId,
    /// Its size in bytes.
    pub size: u64,
    /// When the server stored it, unix seconds by the server's clock.
    pub created_at: u64,
    /// The device that uploaded it (authenticated by the server, which is not trusted:
    /// what the blob says about its origin must be checked inside it).
    pub uploader: DeviceKey,
}

/// A blob request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The server URL is not a `ws://` or `wss://` URL with a host.
    #[error("invalid server URL {0:?}: expected ws://host:port/ws or wss://host:port/ws")]
    Url(String),
    /// The extra CA file could not be used.
    #[error("cannot load CA certificates from {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// TCP or TLS connection failed.
    #[error("cannot connect to the blob store at {url}: {message}")]
    Connect {
        /// The server, `http(s)://host:port`.
        url: String,
        /// Why.
        message: String,
    },
    /// The request took too long.
    #[error("blob request to {url} took longer than {timeout:?}")]
    Timeout {
        /// The server.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The connection broke during the request.
    #[error("blob request to {url} failed: {message}")]
    Lost {
        /// The server.
        url: String,
        /// Why.
        message: String,
    },
    /// `401`: the request was not authenticated (unregistered device, clock skew, ...).
    #[error("the blob store refused the request (401): {message}")]
    Unauthorized {
        /// The server's message.
        message: String,
    },
    /// `404`: no such blob among the requester's.
    #[error("the blob store refused the request (404): {message}")]
    NotFound {
        /// The server's message.
        message: String,
    },
    /// `413`: the blob is larger than the server stores.
    #[error("the blob store refused the request (413): {message}")]
    TooLarge {
        /// The server's message.
        message: String,
    },
    /// `507`: a storage quota is full.
    #[error("the blob store refused the request (507): {message}")]
    QuotaFull {
        /// The server's message.
        message: String,
    },
    /// Any other refusal.
    #[error("the blob store refused the request ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The response is larger than this client reads.
    #[error("the blob store's response is over the {limit}-byte limit; raise it with BlobClient::with_max_response_bytes")]
    ResponseTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The server answered something this client does not understand.
    #[error("the blob store's response is malformed: {0}")]
    Malformed(String),
}

impl BlobError {
    /// The HTTP status the server answered with, if it answered with a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::NotFound { .. } => Some(404),
            Self::TooLarge { .. } => Some(413),
            Self::QuotaFull { .. } => Some(507),
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's message, if it answered with a refusal.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Self::Unauthorized { message }
            | Self::NotFound { message }
            | Self::TooLarge { message }
            | Self::QuotaFull { message }
            | Self::Refused { message, .. } => Some(message),
            _ => None,
        }
    }

    fn from_status(status: StatusCode, message: String) -> Self {
        match status.as_u16() {
            401 => Self::Unauthorized { message },
            404 => Self::NotFound { message },
            413 => Self::TooLarge { message },
            507 => Self::QuotaFull { message },
            status => Self::Refused { status, message },
        }
    }
}

/// Where the blob store is.
#[derive(Debug, Clone)]
struct Target {
    secure: bool,
    /// The host without brackets, for DNS and TLS.
    host: String,
    port: u16,
    /// `host[:port]` as in the URL, for the `Host` header.
    authority: String,
}

impl Target {
    fn parse(ws_url: &str) -> Result<Self, BlobError> {
        let bad = || BlobError::Url(ws_url.to_owned());
        let uri: Uri = ws_url.parse().map_err(|_| bad())?;
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        if authority.as_str().contains('@') {
            return Err(bad());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            secure,
            host,
            port: authority
                .port_u16()
                .unwrap_or(if secure { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
        })
    }

    fn base_url(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Aborts a spawned task when dropped (the connection driver of one request).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A signed-request client of one server's blob store. Cheap to clone.
#[derive(Clone)]
pub struct BlobClient {
    target: Target,
    /// The server's name as signed (the `Host` sent, normalised as for registration).
    origin: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    identity: Arc<IdentityKey>,
    local_ip: Option<IpAddr>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_response_bytes: usize,
}

impl std::fmt::Debug for BlobClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobClient")
            .field("url", &self.target.base_url())
            .finish_non_exhaustive()
    }
}

impl BlobClient {
    /// A client of the server `config.url` names (`ws://` → `http://`, `wss://` →
    /// `https://`, same host and port), signing with `identity`. Uses the config's extra
    /// CA file, local address and connect timeout.
    pub fn new(config: &ClientConfig, identity: Arc<IdentityKey>) -> Result<Self, BlobError> {
        let target = Target::parse(&config.url)?;
        let tls = if target.secure {
            Some(tls_config(config)?)
        } else {
            None
        };
        let origin = sealdesk_proto::signaling::normalize_origin(&target.authority)
            .ok_or_else(|| BlobError::Url(config.url.clone()))?;
        Ok(Self {
            target,
            origin,
            tls,
            identity,
            local_ip: config.local_ip,
            connect_timeout: config.connect_timeout,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Refuses responses (downloads, listings) larger than `limit` bytes while reading them.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// How long one request may take in all.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The server, `http(s)://host:port`.
    pub fn base_url(&self) -> String {
        self.target.base_url()
    }

    /// Stores `bytes` (already encrypted to `owner`) as a blob only `owner` can list,
    /// download and delete.
    pub async fn upload(&self, owner: &DeviceKey, bytes: Vec<u8>) -> Result<BlobId, BlobError> {
        let target = format!("/blobs?owner={}", blob_auth::encode_key(owner));
        let body = self
            .request(Method::POST, &target, bytes, StatusCode::CREATED)
            .await?;
        #[derive(serde::Deserialize)]
        struct Created {
            id: String,
        }
        let created: Created = serde_json::from_slice(&body)
            .map_err(|e| BlobError::Malformed(format!("upload answer: {e}")))?;
        BlobId::parse(&created.id).map_err(|e| BlobError::Malformed(format!("upload answer: {e}")))
    }

    /// The blobs this device owns, oldest first.
    pub async fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let body = self
            .request(Method::GET, "/blobs", Vec::new(), StatusCode::OK)
            .await?;
        #[derive(serde::Deserialize)]
        struct Listed {
            id: String,
            size: u64,
            created_at: u64,
            uploader: String,
        }
        let listed: Vec<Listed> = serde_json::from_slice(&body)
            .map_err(|e| BlobError::Malformed(format!("listing: {e}")))?;
        listed
            .into_iter()
            .map(|l| {
                Ok(BlobInfo {
                    id: BlobId::parse(&l.id)
                        .map_err(|e| BlobError::Malformed(format!("listing: {e}")))?,
                    size: l.size,
                    created_at: l.created_at,
                    uploader: blob_auth::decode_key(&l.uploader)
                        .map_err(|e| BlobError::Malformed(format!("listing: uploader {e}")))?,
                })
            })
            .collect()
    }

    /// The bytes of a blob this device owns.
    pub async fn download(&self, id: &BlobId) -> Result<Vec<u8>, BlobError> {
        self.request(
            Method::GET,
            &format!("/blobs/{id}"),
            Vec::new(),
            StatusCode::OK,
        )
        .await
    }

    /// Deletes a blob this device owns.
    pub async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        self.request(
            Method::DELETE,
            &format!("/blobs/{id}"),
            Vec::new(),
            StatusCode::NO_CONTENT,
        )
        .await
        .map(drop)
    }

    /// Signs and sends one request on a new connection; returns the body of a `want`
    /// answer, or the server's refusal.
    async fn request(
        &self,
        method: Method,
        target: &str,
        body: Vec<u8>,
        want: StatusCode,
    ) -> Result<Vec<u8>, BlobError> {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let auth = BlobAuth::sign(
            self.identity.public(),
            now,
            RequestNonce(nonce),
            Signed {
                origin: &self.origin,
                method: method.as_str(),
                path_and_query: target,
                body: &BodyDigest::of(&body),
            },
            |m| self.identity.sign(m),
        );
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, &self.target.authority)
            .header(header::AUTHORIZATION, auth.to_header())
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| BlobError::Url(self.base_url()))?;
        tokio::time::timeout(self.request_timeout, self.exchange(request, want))
            .await
            .map_err(|_| BlobError::Timeout {
                url: self.base_url(),
                timeout: self.request_timeout,
            })?
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        want: StatusCode,
    ) -> Result<Vec<u8>, BlobError> {
        let lost = |e: hyper::Error| BlobError::Lost {
            url: self.base_url(),
            message: e.to_string(),
        };
        let io = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(lost)?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let response = sender.send_request(request).await.map_err(lost)?;
        let status = response.status();
        if status != want {
            let (text, _) = read_limited(response.into_body(), MAX_ERROR_BODY)
                .await
                .map_err(lost)?;
            return Err(BlobError::from_status(status, sanitize(&text)));
        }
        let limit = self.max_response_bytes;
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(BlobError::ResponseTooLarge { limit });
        }
        match read_limited(response.into_body(), limit)
            .await
            .map_err(lost)?
        {
            (body, false) => Ok(body),
            (_, true) => Err(BlobError::ResponseTooLarge { limit }),
        }
    }

    /// Opens TCP, and TLS for `https`.
    async fn connect(&self) -> Result<Box<dyn Io>, BlobError> {
        let fail = |message: String| BlobError::Connect {
            url: self.base_url(),
            message,
        };
        let t = &self.target;
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::lookup_host((t.host.as_str(), t.port)),
        )
        .await
        .map_err(|_| fail("name lookup timed out".into()))?
        .map_err(|e| fail(e.to_string()))?
        .collect();
        let mut last = String::from("no addresses");
        let mut stream = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, connect_tcp(addr, self.local_ip)).await
            {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: timed out"),
            }
        }
        let stream = stream.ok_or_else(|| fail(last))?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let name = ServerName::try_from(t.host.clone())
            .map_err(|_| fail(format!("{:?} is not a valid TLS server name", t.host)))?;
        let tls = tokio::time::timeout(
            self.connect_timeout,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream),
        )
        .await
        .map_err(|_| fail("TLS handshake timed out".into()))?
        .map_err(|e| fail(format!("TLS: {e}")))?;
        Ok(Box::new(tls))
    }
}

/// Reads a body up to `limit` bytes; the flag says whether there was more (not read).
async fn read_limited(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = limit.saturating_sub(out.len());
        if data.len() > room {
            out.extend_from_slice(&data[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&data);
    }
    Ok((out, false))
}

/// A server message made safe to show: printable characters only, one line, bounded.
fn sanitize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if out.is_empty() {
        out.push_str("(no message)");
    }
    out
}

use crate::signal::connect_tcp;

/// The rustls configuration for `https`: the system's roots and the config's extra CAs,
/// as the signaling client trusts for `wss`.
fn tls_config(config: &ClientConfig) -> Result<Arc<rustls::ClientConfig>, BlobError> {
    let roots = crate::signal::trusted_roots(config)
        .map_err(|(path, message)| BlobError::Ca { path, message })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BlobError::Connect {
            url: config.url.clone(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_map_to_http_origins() {
        let t = |u: &str| Target::parse(u).map(|t| (t.base_url(), t.host, t.port));
        assert_eq!(
            t("ws://127.0.0.1:8443/ws").unwrap(),
            ("http://127.0.0.1:8443".into(), "127.0.0.1".into(), 8443)
        );
        assert_eq!(
            t("wss://sealdesk.example.com/ws").unwrap(),
            (
                "https://sealdesk.example.com".into(),
                "sealdesk.example.com".into(),
                443
            )
        );
        assert_eq!(
            t("ws://[::1]:9000/ws").unwrap(),
            ("http://[::1]:9000".into(), "::1".into(), 9000)
        );
        for bad in ["http://x/ws", "ws:///ws", "x", "ws://user@host/ws", ""] {
            assert!(
                matches!(Target::parse(bad), Err(BlobError::Url(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_messages_are_made_safe_to_show() {
        assert_eq!(sanitize(b"no such blob\n"), "no such blob");
        assert_eq!(sanitize(b"a\x1b[31mb\r\nc"), "a [31mb  c");
        assert_eq!(sanitize(b""), "(no message)");
        assert_eq!(sanitize(&[b'x'; 5000]).len(), MAX_MESSAGE_CHARS);
        assert_eq!(sanitize(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn refusals_keep_status_and_message() {
        let e = BlobError::from_status(StatusCode::INSUFFICIENT_STORAGE, "full".into());
        assert!(matches!(e, BlobError::QuotaFull { .. }));
        assert_eq!((e.status(), e.server_message()), (Some(507), Some("full")));
        let e = BlobError::from_status(StatusCode::BAD_REQUEST, "bad".into());
        assert_eq!(e.status(), Some(400));
        assert!(e.to_string().contains("(400): bad"), "{e}");
    }
}
