//! The blob store: encrypted recording segments kept as opaque blobs (DESIGN.md §7).
//!
//! HTTP on the signaling listener; every request is signed by a registered device key
//! ([`sealdesk_proto::blob_auth`]):
//!
//! | request | answer |
//! |---|---|
//! | `POST /blobs?owner=<base64url key>`, body = the blob | `201 {"id":"<32 hex>"}` |
//! | `GET /blobs` | `200 [{"id","size","created_at","uploader"}]`, the requester's blobs as owner, oldest first |
//! | `GET /blobs/<id>` | `200` the bytes, to the owner only |
//! | `DELETE /blobs/<id>` | `204`, for the owner only |
//!
//! A blob that does not exist and a blob of someone else get the same `404`, so nobody
//! learns which ids exist. Errors are short plain-text messages: `400` malformed request,
//! `401` not authenticated, `404` no such blob, `405` wrong method, `408` upload too slow,
//! `413` blob too large, `503` too many uploads at once, `507` quota full, `500` the
//! store failed (the log says why). The server never reads a blob: they are age files
//! only the owner can open.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures_util::StreamExt as _;
use sealdesk_proto::blob_auth::{self, BlobId, BodyDigest};
use sealdesk_proto::DeviceKey;
use serde::Serialize;
use tokio::io::AsyncReadExt as _;

mod auth;
mod replay;
mod store;

pub use store::BlobStoreError;

use crate::metrics::Metrics;
use crate::AppState;
use auth::ExpectBody;
use store::{BlobStore, CommitError, Quotas, TempBlob};

/// The longest an upload may take to arrive.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// After an upload is found too large, how much more is read (and dropped) so that the
/// client, still sending, receives the 413 rather than a reset connection.
const DRAIN_BYTES: u64 = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// Requests other than uploads take no body; this much is read (and signed) at most.
const MAX_SMALL_BODY: usize = 4096;

/// The blob store and what guards it.
pub(crate) struct BlobService {
    store: Arc<BlobStore>,
    replay: Mutex<replay::ReplayCache>,
    uploads: Arc<tokio::sync::Semaphore>,
}

impl BlobService {
    /// Opens the store in `dir` (`<data_dir>/server`).
    pub(crate) fn open(
        dir: &std::path::Path,
        limits: &crate::Limits,
    ) -> Result<Self, BlobStoreError> {
        Ok(Self {
            store: Arc::new(BlobStore::open(dir)?),
            replay: Mutex::new(replay::ReplayCache::new(replay::DEFAULT_CAPACITY)),
            uploads: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_uploads)),
        })
    }
}

/// The `/blobs` routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/blobs", post(upload).get(list).fallback(wrong_method))
        .route("/blobs/", any(bad_id))
        .route(
            "/blobs/{*id}",
            get(download).delete(delete).fallback(wrong_method),
        )
}

/// A refused request: a status and a message a person can act on.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// The one answer for "does not exist" and "is not yours".
    fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no such blob among yours (it does not exist, or you are not its owner)",
        )
    }

    fn too_large(max: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("blob too large: this server stores blobs of at most {max} bytes; upload smaller segments"),
        )
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("blob store: {e}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the blob store failed; the server's log says why",
        )
    }

    /// The rejection counter this failure counts in.
    fn reason(&self) -> Option<&'static str> {
        Some(match self.status {
            StatusCode::UNAUTHORIZED => "blob_auth_failed",
            StatusCode::PAYLOAD_TOO_LARGE => "blob_too_large",
            StatusCode::INSUFFICIENT_STORAGE => "blob_quota",
            StatusCode::SERVICE_UNAVAILABLE => "blob_busy",
            StatusCode::INTERNAL_SERVER_ERROR => "server_error",
            StatusCode::NOT_FOUND => return None,
            _ => "blob_bad_request",
        })
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Sealdesk"),
            );
        }
        r
    }
}

fn respond(metrics: &Metrics, result: Result<Response, Failure>) -> Response {
    result.unwrap_or_else(|f| {
        if let Some(reason) = f.reason() {
            metrics.reject(reason);
        }
        f.into_response()
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Failure::internal)?
}

/// The blob id in `/blobs/<id>`, from the path exactly as sent.
fn id_of(uri: &axum::http::Uri) -> Result<BlobId, Failure> {
    let raw = uri.path().strip_prefix("/blobs/").unwrap_or("");
    BlobId::parse(raw).map_err(|e| {
        Failure::bad_request(format!(
            "invalid blob id in the path ({} characters): {e}",
            raw.len()
        ))
    })
}

/// The `owner` of `POST /blobs?owner=<key>`.
fn owner_of(query: Option<&str>) -> Result<DeviceKey, Failure> {
    let mut owner = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("owner", v)) if owner.is_none() => owner = Some(v),
            Some(("owner", _)) => {
                return Err(Failure::bad_request("query parameter owner is given twice"))
            }
            _ => {
                return Err(Failure::bad_request(
                    "unknown query parameter: the only one is owner=<the owner's device key>",
                ))
            }
        }
    }
    let owner = owner.ok_or_else(|| {
        Failure::bad_request(
            "missing query parameter owner=<the owner's device key, base64url without padding>",
        )
    })?;
    blob_auth::decode_key(owner).map_err(|e| Failure::bad_request(format!("owner: {e}")))
}

/// Reads the (empty) body of a request that is not an upload, for its digest.
async fn small_body(body: Body) -> Result<BodyDigest, Failure> {
    let bytes = axum::body::to_bytes(body, MAX_SMALL_BODY)
        .await
        .map_err(|_| {
            Failure::bad_request(format!(
                "request body unreadable or over {MAX_SMALL_BODY} bytes: only uploads take a body"
            ))
        })?;
    Ok(BodyDigest::of(&bytes))
}

/// Authenticates a request that is not an upload.
async fn authenticate(state: &AppState, req: Request) -> Result<DeviceKey, Failure> {
    let (parts, body) = req.into_parts();
    let pending = ExpectBody::from_headers(
        &parts.headers,
        &state.registry,
        state.config.public_origin.as_deref(),
        unix_now(),
    )?;
    let digest = small_body(body).await?;
    Ok(pending.finish(
        &parts.method,
        &parts.uri,
        &digest,
        &state.blobs.replay,
        unix_now(),
    )?)
}

/// Streams the body into a temporary file, refusing it once it exceeds `max`.
async fn receive(body: Body, store: &BlobStore, max: u64) -> Result<TempBlob, Failure> {
    let mut tmp = store.begin_upload().await.map_err(Failure::internal)?;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece
            .map_err(|e| Failure::bad_request(format!("the upload could not be read: {e}")))?;
        if tmp.size().saturating_add(piece.len() as u64) > max {
            let drain = async {
                let mut drained = 0u64;
                while let Some(Ok(p)) = stream.next().await {
                    drained = drained.saturating_add(p.len() as u64);
                    if drained > DRAIN_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            return Err(Failure::too_large(max));
        }
        tmp.write(&piece).await.map_err(Failure::internal)?;
    }
    Ok(tmp)
}

async fn upload(State(state): State<Arc<AppState>>, req: Request) -> Response {
    respond(&state.metrics, upload_inner(&state, req).await)
}

async fn upload_inner(state: &Arc<AppState>, req: Request) -> Result<Response, Failure> {
    let limits = state.config.limits;
    let (parts, body) = req.into_parts();
    let owner = owner_of(parts.uri.query())?;
    let pending = ExpectBody::from_headers(
        &parts.headers,
        &state.registry,
        state.config.public_origin.as_deref(),
        unix_now(),
    )?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_blob_bytes) {
        return Err(Failure::too_large(limits.max_blob_bytes));
    }
    let _permit = state
        .blobs
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many uploads in progress on this server; retry in a few seconds",
            )
        })?;
    let store = state.blobs.store.clone();
    let mut tmp =
        tokio::time::timeout(UPLOAD_TIMEOUT, receive(body, &store, limits.max_blob_bytes))
            .await
            .map_err(|_| {
                Failure::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                "the upload took longer than {} s; upload smaller blobs or retry on a faster link",
                UPLOAD_TIMEOUT.as_secs()
            ),
                )
            })??;
    let digest = tmp.finish().await.map_err(Failure::internal)?;
    let uploader = pending.finish(
        &parts.method,
        &parts.uri,
        &digest,
        &state.blobs.replay,
        unix_now(),
    )?;
    let size = tmp.size();
    if size == 0 {
        return Err(Failure::bad_request(
            "empty body: there is nothing to store",
        ));
    }
    let quotas = Quotas {
        owner_bytes: limits.max_owner_bytes,
        owner_blobs: limits.max_owner_blobs,
        uploader_bytes: limits.max_uploader_bytes,
    };
    let id = blocking(move || {
        store
            .commit(tmp, &owner, &uploader, quotas, unix_now())
            .map_err(|e| match e {
                CommitError::Store(e) => Failure::internal(e),
                quota => Failure::new(StatusCode::INSUFFICIENT_STORAGE, quota.to_string()),
            })
    })
    .await?;
    Metrics::inc(&state.metrics.blobs_stored_total);
    state
        .metrics
        .blob_bytes_stored_total
        .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"id\":\"{id}\"}}"),
    )
        .into_response())
}

/// One entry of `GET /blobs`.
#[derive(Serialize)]
struct Listed {
    id: String,
    size: u64,
    created_at: u64,
    uploader: String,
}

async fn list(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let result = async {
        let owner = authenticate(&state, req).await?;
        let store = state.blobs.store.clone();
        let rows = blocking(move || store.list(&owner).map_err(Failure::internal)).await?;
        let listed: Vec<Listed> = rows
            .into_iter()
            .map(|r| Listed {
                id: r.id.to_hex(),
                size: r.size,
                created_at: r.created_at,
                uploader: blob_auth::encode_key(&r.uploader),
            })
            .collect();
        let json = serde_json::to_vec(&listed).map_err(Failure::internal)?;
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response())
    }
    .await;
    respond(&state.metrics, result)
}

async fn download(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let result = async {
        let id = id_of(req.uri())?;
        let owner = authenticate(&state, req).await?;
        let store = state.blobs.store.clone();
        let (file, len) =
            blocking(move || store.open_owned(&id, &owner).map_err(Failure::internal))
                .await?
                .ok_or_else(Failure::not_found)?;
        let reader = tokio::fs::File::from_std(file).take(len);
        let stream = futures_util::stream::try_unfold(reader, |mut r| async move {
            let mut buf = vec![0u8; 64 * 1024];
            let n = r.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), r)))
        });
        Ok((
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
                (header::CONTENT_LENGTH, HeaderValue::from(len)),
            ],
            Body::from_stream(stream),
        )
            .into_response())
    }
    .await;
    respond(&state.metrics, result)
}

async fn delete(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let result = async {
        let id = id_of(req.uri())?;
        let owner = authenticate(&state, req).await?;
        let store = state.blobs.store.clone();
        if !blocking(move || store.delete_owned(&id, &owner).map_err(Failure::internal)).await? {
            return Err(Failure::not_found());
        }
        Metrics::inc(&state.metrics.blobs_deleted_total);
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    respond(&state.metrics, result)
}

async fn bad_id(State(state): State<Arc<AppState>>, req: Request) -> Response {
    respond(
        &state.metrics,
        id_of(req.uri()).map(|_| Response::default()),
    )
}

async fn wrong_method(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let allow = if req.uri().path() == "/blobs" {
        "GET, POST"
    } else {
        "GET, DELETE"
    };
    let mut r = Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this method is not used here; this path takes {allow}"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    state.metrics.reject("blob_bad_request");
    r
}
