//! The blob store over a real loopback socket, with real files and a real SQLite database:
//! through [`BlobClient`], and through hand-written HTTP for requests no honest client sends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::RngCore as _;
use sealdesk_auth::IdentityKey;
use sealdesk_client::blobs::{BlobClient, BlobError, BlobId};
use sealdesk_proto::blob_auth::{self, BlobAuth, BodyDigest, RequestNonce};
use sealdesk_server::Limits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A device key registered with the server (as any device that connected once).
async fn device(server: &TestServer) -> Arc<IdentityKey> {
    let key = Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
    let (ws, _) = sealdesk_client::signal::connect_raw(&server.config(), &key)
        .await
        .unwrap();
    drop(ws);
    key
}

fn client(server: &TestServer, key: &Arc<IdentityKey>) -> BlobClient {
    BlobClient::new(&server.config(), key.clone()).unwrap()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The `Authorization` value for a request, signed by `key` at `ts`.
fn sign(
    server: &TestServer,
    key: &IdentityKey,
    method: &str,
    target: &str,
    body: &[u8],
    ts: u64,
) -> String {
    sign_for(&server.addr.to_string(), key, method, target, body, ts)
}

/// The `Authorization` value for a request to the server at `origin`.
fn sign_for(
    origin: &str,
    key: &IdentityKey,
    method: &str,
    target: &str,
    body: &[u8],
    ts: u64,
) -> String {
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    BlobAuth::sign(
        key.public(),
        ts,
        RequestNonce(nonce),
        blob_auth::Signed {
            origin,
            method,
            path_and_query: target,
            body: &BodyDigest::of(body),
        },
        |m| key.sign(m),
    )
    .to_header()
}

/// What came back to a hand-written request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resp {
    status: u16,
    content_type: Option<String>,
    www_authenticate: Option<String>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a new
/// connection, reading the answer while still writing, until the server closes.
async fn send(addr: std::net::SocketAddr, head: &str, body: Vec<u8>) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!("{head}Host: {addr}\r\nConnection: close\r\n\r\n");
    let writer = tokio::spawn(async move {
        // The server may answer and close before it has read everything (413).
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        let _ = wr.flush().await;
        wr
    });
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut raw))
        .await
        .expect("no answer")
        .expect("reading the answer");
    drop(writer.await);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = BTreeMap::new();
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        let mut out = Vec::new();
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let len =
                usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap(), 16).unwrap();
            if len == 0 {
                break;
            }
            out.extend_from_slice(&rest[end + 2..end + 2 + len]);
            rest.drain(..end + 2 + len + 2);
        }
        rest = out;
    } else if let Some(n) = headers.get("content-length") {
        assert_eq!(rest.len(), n.parse::<usize>().unwrap(), "body length");
    }
    Resp {
        status,
        content_type: headers.get("content-type").cloned(),
        www_authenticate: headers.get("www-authenticate").cloned(),
        body: rest,
    }
}

/// A request with an optional `Authorization` and a `Content-Length` body.
async fn request(
    server: &TestServer,
    method: &str,
    target: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Resp {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let head = format!(
        "{method} {target} HTTP/1.1\r\n{auth}Content-Length: {}\r\n",
        body.len()
    );
    send(server.addr, &head, body.to_vec()).await
}

/// A request signed by `key` now.
async fn signed(
    server: &TestServer,
    key: &IdentityKey,
    method: &str,
    target: &str,
    body: &[u8],
) -> Resp {
    let auth = sign(server, key, method, target, body, unix_now());
    request(server, method, target, Some(&auth), body).await
}

fn blobs_dir(server: &TestServer) -> PathBuf {
    server.dir.path().join("server").join("blobs")
}

/// Every file under `dir` with its contents.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            out.insert(p, bytes);
        }
    }
    out
}

/// Every path under `dir` (files and directories).
fn paths(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if p.is_dir() {
            out.extend(paths(&p));
        }
    }
    out.sort();
    out
}

fn is_status(e: &BlobError, status: u16) -> bool {
    e.status() == Some(status)
}

#[tokio::test]
async fn upload_list_download_round_trip_is_owner_only() {
    let server = TestServer::start(limits()).await;
    let recorder = device(&server).await;
    let owner = device(&server).await;
    let (rc, oc) = (client(&server, &recorder), client(&server, &owner));
    assert_eq!(rc.base_url(), format!("http://{}", server.addr));

    let segment = random_bytes(1024 * 1024 + 17);
    let id = rc.upload(&owner.public(), segment.clone()).await.unwrap();
    let second = rc
        .upload(&owner.public(), b"second".to_vec())
        .await
        .unwrap();
    assert_ne!(id, second);
    assert_eq!(id.to_string().len(), 32);

    let listed = oc.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    let first = listed.iter().find(|b| b.id == id).unwrap();
    assert_eq!(
        (first.size, first.uploader),
        (segment.len() as u64, recorder.public())
    );
    assert!(first.created_at.abs_diff(unix_now()) < 60);
    // Sorted by time, then id.
    let order: Vec<(u64, BlobId)> = listed.iter().map(|b| (b.created_at, b.id)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);

    assert_eq!(oc.download(&id).await.unwrap(), segment);
    assert_eq!(oc.download(&second).await.unwrap(), b"second");
    // The uploader is not the owner: it neither lists nor reads what it uploaded.
    assert!(rc.list().await.unwrap().is_empty());
    let e = rc.download(&id).await.unwrap_err();
    assert!(matches!(e, BlobError::NotFound { .. }), "{e}");

    // On disk: one private file per blob, named by its id, holding the bytes as sent.
    let on_disk = files(&blobs_dir(&server));
    let name = id.to_hex();
    let path = blobs_dir(&server).join(&name[..2]).join(&name);
    assert_eq!(on_disk.get(&path), Some(&segment));
    assert_eq!(on_disk.len(), 2);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(server.handle.metrics().blobs_stored(), 2);

    // A download limit smaller than the blob is enforced by the client.
    let small = client(&server, &owner).with_max_response_bytes(1000);
    let e = small.download(&id).await.unwrap_err();
    assert!(
        matches!(e, BlobError::ResponseTooLarge { limit: 1000 }),
        "{e}"
    );
}

#[tokio::test]
async fn another_owners_blob_and_a_missing_blob_get_the_same_404_and_change_nothing() {
    let server = TestServer::start(limits()).await;
    let owner = device(&server).await;
    let stranger = device(&server).await;
    let id = client(&server, &owner)
        .upload(&owner.public(), b"private segment".to_vec())
        .await
        .unwrap();
    let missing = BlobId([0x5a; 16]);
    let before = files(&blobs_dir(&server));

    for method in ["GET", "DELETE"] {
        let theirs = signed(&server, &stranger, method, &format!("/blobs/{id}"), b"").await;
        let nothing = signed(
            &server,
            &stranger,
            method,
            &format!("/blobs/{missing}"),
            b"",
        )
        .await;
        let own_missing = signed(&server, &owner, method, &format!("/blobs/{missing}"), b"").await;
        assert_eq!(theirs.status, 404, "{}", theirs.text());
        assert_eq!(theirs, nothing, "{method}: existence must not show");
        assert_eq!(theirs, own_missing);
        assert!(theirs.text().contains("no such blob"), "{}", theirs.text());
    }
    assert_eq!(files(&blobs_dir(&server)), before);
    let oc = client(&server, &owner);
    assert_eq!(oc.list().await.unwrap().len(), 1);
    assert_eq!(oc.download(&id).await.unwrap(), b"private segment");
}

#[tokio::test]
async fn ids_that_are_not_32_lowercase_hex_are_refused_and_reach_no_file() {
    let server = TestServer::start(limits()).await;
    let owner = device(&server).await;
    let id = client(&server, &owner)
        .upload(&owner.public(), b"keep me".to_vec())
        .await
        .unwrap();
    // Files outside the blob store a traversal would aim at.
    let outside = server.dir.path().join("server").join("secret");
    std::fs::write(&outside, b"do not touch").unwrap();
    let before = paths(server.dir.path());
    let blob_files = files(&blobs_dir(&server));

    let upper = id.to_hex().to_uppercase();
    let long = format!("{id}0");
    let short = &id.to_hex()[..31];
    let targets = [
        "/blobs/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/blobs/..%2Fsecret".to_owned(),
        "/blobs/../x".to_owned(),
        "/blobs/../secret".to_owned(),
        "/blobs/%2e%2e".to_owned(),
        format!("/blobs/{}/../secret", &id.to_hex()[..2]),
        format!("/blobs/{upper}"),
        format!("/blobs/{long}"),
        format!("/blobs/{short}"),
        format!("/blobs/{id}/"),
        "/blobs/".to_owned(),
    ];
    for target in &targets {
        for method in ["GET", "DELETE"] {
            let r = signed(&server, &owner, method, target, b"").await;
            assert_eq!(r.status, 400, "{method} {target}: {}", r.text());
            assert!(r.text().contains("32 lowercase hex digits"), "{}", r.text());
            assert_eq!(r.content_type.as_deref(), Some("text/plain; charset=utf-8"));
        }
    }
    assert_eq!(paths(server.dir.path()), before);
    assert_eq!(files(&blobs_dir(&server)), blob_files);
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not touch");
}

#[tokio::test]
async fn oversized_uploads_are_refused_while_streaming_and_store_nothing() {
    let max = 64 * 1024;
    let server = TestServer::start(Limits {
        max_blob_bytes: max,
        ..limits()
    })
    .await;
    let dev = device(&server).await;
    let c = client(&server, &dev);
    let kept = random_bytes(max as usize);
    let id = c.upload(&dev.public(), kept.clone()).await.unwrap();
    let before = files(&blobs_dir(&server));
    let target = format!("/blobs?owner={}", blob_auth::encode_key(&dev.public()));
    let big = random_bytes(max as usize + 1);

    // Declared too large: refused before the body is read.
    let r = signed(&server, &dev, "POST", &target, &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.text().contains(&format!("at most {max} bytes")),
        "{}",
        r.text()
    );

    // Chunked, so only counting while it streams can find out.
    let auth = sign(&server, &dev, "POST", &target, &big, unix_now());
    let head = format!(
        "POST {target} HTTP/1.1\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n"
    );
    let mut body = Vec::new();
    for piece in big.chunks(10_000) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let r = send(server.addr, &head, body).await;
    assert_eq!(r.status, 413, "{}", r.text());

    let e = c.upload(&dev.public(), big).await.unwrap_err();
    assert!(matches!(e, BlobError::TooLarge { .. }), "{e}");

    assert_eq!(
        files(&blobs_dir(&server)),
        before,
        "nothing stored, nothing left in tmp"
    );
    assert_eq!(c.list().await.unwrap().len(), 1);
    assert_eq!(c.download(&id).await.unwrap(), kept);
}

#[tokio::test]
async fn full_quotas_give_507_and_store_nothing() {
    // Each blob counts at least 4 KiB.
    let server = TestServer::start(Limits {
        max_owner_bytes: 8192,
        max_uploader_bytes: 12288,
        ..limits()
    })
    .await;
    let uploader = device(&server).await;
    let (o1, o2) = (device(&server).await, device(&server).await);
    let c = client(&server, &uploader);
    c.upload(&o1.public(), b"1".to_vec()).await.unwrap();
    c.upload(&o1.public(), b"2".to_vec()).await.unwrap();
    let before = files(&blobs_dir(&server));
    let e = c.upload(&o1.public(), b"3".to_vec()).await.unwrap_err();
    assert!(matches!(e, BlobError::QuotaFull { .. }), "{e}");
    assert!(
        e.server_message()
            .unwrap()
            .contains("owner's storage quota"),
        "{e}"
    );
    assert_eq!(files(&blobs_dir(&server)), before);

    c.upload(&o2.public(), b"4".to_vec()).await.unwrap();
    let e = c.upload(&o2.public(), b"5".to_vec()).await.unwrap_err();
    assert!(is_status(&e, 507), "{e}");
    assert!(
        e.server_message()
            .unwrap()
            .contains("device's upload quota"),
        "{e}"
    );
    // Another uploader may still fill o2's quota.
    let other = device(&server).await;
    client(&server, &other)
        .upload(&o2.public(), b"6".to_vec())
        .await
        .unwrap();
    assert_eq!(client(&server, &o1).list().await.unwrap().len(), 2);
    assert_eq!(client(&server, &o2).list().await.unwrap().len(), 2);

    let server = TestServer::start(Limits {
        max_owner_blobs: 1,
        ..limits()
    })
    .await;
    let dev = device(&server).await;
    let c = client(&server, &dev);
    c.upload(&dev.public(), b"one".to_vec()).await.unwrap();
    let e = c.upload(&dev.public(), b"two".to_vec()).await.unwrap_err();
    assert!(
        is_status(&e, 507) && e.to_string().contains("already has 1 blobs"),
        "{e}"
    );
}

#[tokio::test]
async fn unauthenticated_requests_get_401_each_with_its_own_message() {
    let server = TestServer::start(limits()).await;
    let dev = device(&server).await;
    let now = unix_now();
    let mut messages = Vec::new();
    let mut check = |r: Resp, want: &str| {
        assert_eq!(r.status, 401, "{want}: {}", r.text());
        assert_eq!(r.www_authenticate.as_deref(), Some("Sealdesk"));
        assert!(r.text().contains(want), "want {want:?} in {:?}", r.text());
        messages.push(r.text());
    };

    check(
        request(&server, "GET", "/blobs", None, b"").await,
        "missing Authorization",
    );
    check(
        request(
            &server,
            "GET",
            "/blobs",
            Some("Sealdesk not.a.valid.header"),
            b"",
        )
        .await,
        "malformed Authorization header",
    );
    check(
        request(&server, "GET", "/blobs", Some("Bearer abc"), b"").await,
        "expected the scheme",
    );
    // Signed for another path.
    let wrong = sign(&server, &dev, "GET", "/blobs?x", b"", now);
    check(
        request(&server, "GET", "/blobs", Some(&wrong), b"").await,
        "signature does not verify",
    );
    let stale = sign(&server, &dev, "GET", "/blobs", b"", now - 1000);
    check(
        request(&server, "GET", "/blobs", Some(&stale), b"").await,
        "behind the server's clock",
    );
    let stranger = IdentityKey::generate(&mut rand::rngs::OsRng);
    let unknown = sign(&server, &stranger, "GET", "/blobs", b"", now);
    check(
        request(&server, "GET", "/blobs", Some(&unknown), b"").await,
        "unknown device: connect to this server once first",
    );
    let once = sign(&server, &dev, "GET", "/blobs", b"", now);
    let first = request(&server, "GET", "/blobs", Some(&once), b"").await;
    assert_eq!((first.status, first.text()), (200, "[]".to_owned()));
    check(
        request(&server, "GET", "/blobs", Some(&once), b"").await,
        "replayed request",
    );

    let mut distinct = messages.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), messages.len(), "{messages:#?}");
    assert!(server.handle.metrics().rejections("blob_auth_failed") >= 7);
}

/// A malicious server that replays a device's request here (it addressed that server, not
/// this one) is refused: the signature names the server the device meant.
#[tokio::test]
async fn a_request_signed_for_another_server_is_refused() {
    let server = TestServer::start(limits()).await;
    let dev = device(&server).await;
    let auth = sign_for("evil.example:443", &dev, "GET", "/blobs", b"", unix_now());
    let r = request(&server, "GET", "/blobs", Some(&auth), b"").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("signature does not verify"),
        "{}",
        r.text()
    );
    // The same request signed for this server's name goes through.
    let auth = sign(&server, &dev, "GET", "/blobs", b"", unix_now());
    let r = request(&server, "GET", "/blobs", Some(&auth), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn the_signature_binds_the_body() {
    let server = TestServer::start(limits()).await;
    let dev = device(&server).await;
    let target = format!("/blobs?owner={}", blob_auth::encode_key(&dev.public()));
    let body = b"the real segment".to_vec();
    let auth = sign(&server, &dev, "POST", &target, &body, unix_now());

    let swapped = b"a forged segment".to_vec();
    assert_eq!(swapped.len(), body.len());
    let r = request(&server, "POST", &target, Some(&auth), &swapped).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("signature does not verify"),
        "{}",
        r.text()
    );
    assert!(files(&blobs_dir(&server)).is_empty());

    // The refused attempt did not use up the nonce; the genuine request goes through once.
    let r = request(&server, "POST", &target, Some(&auth), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = BlobId::parse(id["id"].as_str().unwrap()).unwrap();
    let r = request(&server, "POST", &target, Some(&auth), &body).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("replayed"), "{}", r.text());
    let c = client(&server, &dev);
    assert_eq!(c.list().await.unwrap().len(), 1);
    assert_eq!(c.download(&id).await.unwrap(), body);
}

#[tokio::test]
async fn malformed_uploads_are_refused_with_a_message() {
    let server = TestServer::start(limits()).await;
    let dev = device(&server).await;
    let key = blob_auth::encode_key(&dev.public());
    let cases = [
        ("/blobs".to_owned(), "missing query parameter owner"),
        (format!("/blobs?owner={key}&x=1"), "unknown query parameter"),
        (format!("/blobs?owner={key}&owner={key}"), "given twice"),
        (
            format!("/blobs?owner={}", &key[1..]),
            "owner: key is not base64url",
        ),
        (
            format!("/blobs?owner={}", "A".repeat(43)),
            "not a valid Ed25519",
        ),
    ];
    for (target, want) in cases {
        let r = signed(&server, &dev, "POST", &target, b"x").await;
        assert_eq!(r.status, 400, "{target}");
        assert!(r.text().contains(want), "{target}: {}", r.text());
    }
    let r = signed(&server, &dev, "POST", &format!("/blobs?owner={key}"), b"").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("empty body"), "{}", r.text());
    let r = signed(&server, &dev, "PUT", "/blobs", b"").await;
    assert_eq!(r.status, 405);
    assert!(r.text().contains("GET, POST"), "{}", r.text());
    assert!(files(&blobs_dir(&server)).is_empty());
}

#[tokio::test]
async fn blobs_survive_a_restart() {
    let server = TestServer::start(limits()).await;
    let owner = device(&server).await;
    let segment = random_bytes(300_000);
    let id = client(&server, &owner)
        .upload(&owner.public(), segment.clone())
        .await
        .unwrap();
    let listed = client(&server, &owner).list().await.unwrap();
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, "127.0.0.1:0".parse().unwrap(), limits()).await;
    let c = client(&server, &owner);
    assert_eq!(c.list().await.unwrap(), listed);
    assert_eq!(c.download(&id).await.unwrap(), segment);
    // The registry survived too: the same key may still upload.
    c.upload(&owner.public(), b"after".to_vec()).await.unwrap();
}

#[tokio::test]
async fn only_the_owner_can_delete() {
    let server = TestServer::start(limits()).await;
    let owner = device(&server).await;
    let uploader = device(&server).await;
    let (oc, uc) = (client(&server, &owner), client(&server, &uploader));
    let id = uc
        .upload(&owner.public(), b"segment".to_vec())
        .await
        .unwrap();
    let keep = uc.upload(&owner.public(), b"other".to_vec()).await.unwrap();

    let e = uc.delete(&id).await.unwrap_err();
    assert!(matches!(e, BlobError::NotFound { .. }), "{e}");
    assert_eq!(oc.download(&id).await.unwrap(), b"segment");

    oc.delete(&id).await.unwrap();
    assert!(oc.download(&id).await.unwrap_err().status() == Some(404));
    assert!(is_status(&oc.delete(&id).await.unwrap_err(), 404));
    let listed: Vec<BlobId> = oc.list().await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(listed, vec![keep]);
    let names: Vec<String> = files(&blobs_dir(&server))
        .keys()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![keep.to_hex()]);
}

#[tokio::test]
async fn https_when_the_server_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = sealdesk_server::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().join("data")),
        tls_cert: Some(cert_path.clone()),
        tls_key: Some(key_path),
        ..Default::default()
    };
    let server = sealdesk_server::Server::bind(config).await.unwrap();
    let url = format!("wss://localhost:{}/ws", server.local_addr().port());
    tokio::spawn(server.run(std::future::pending()));

    let key = Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
    let mut cfg = sealdesk_client::ClientConfig::new(url.clone());
    cfg.extra_ca_pem = Some(cert_path);
    drop(
        sealdesk_client::signal::connect_raw(&cfg, &key)
            .await
            .unwrap(),
    );

    // Without trusting the self-signed certificate, nothing is sent.
    let untrusting =
        BlobClient::new(&sealdesk_client::ClientConfig::new(url), key.clone()).unwrap();
    let e = untrusting.list().await.unwrap_err();
    assert!(matches!(e, BlobError::Connect { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    let c = BlobClient::new(&cfg, key.clone()).unwrap();
    assert!(c.base_url().starts_with("https://localhost:"));
    let segment = random_bytes(200_000);
    let id = c.upload(&key.public(), segment.clone()).await.unwrap();
    assert_eq!(c.download(&id).await.unwrap(), segment);
    assert_eq!(c.list().await.unwrap().len(), 1);
}
