//! The browser viewer (DESIGN.md §8): its files, embedded in this executable, and how they
//! are served — by `sealdesk connect --web` on this machine, or by `sealdesk server
//! --web-viewer` from the signaling server.
//!
//! Every asset is served with a strict Content-Security-Policy (scripts and styles from this
//! origin only, WebAssembly compilation allowed, no inline code, connections only to this
//! origin and the signaling server, Trusted Types required) and carries Subresource
//! Integrity: `index.html` names the SHA-384 of `app.js`, `style.css` and the WebAssembly, and
//! the page refuses any that differ. [`bundle_hash`] identifies the files as shipped, so two
//! people can compare what their builds serve (`sealdesk --version`).

use std::net::SocketAddr;

use anyhow::{bail, Context as _};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha384};

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The page's files, as built: `web/` holds the sources and the WebAssembly that
/// `scripts/build-web` made from `crates/sealdesk-web` (CI checks it is exactly that build).
static ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../../web/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../web/style.css"),
    },
    Asset {
        name: "sealdesk_web.wasm",
        content_type: "application/wasm",
        bytes: include_bytes!("../../../web/sealdesk_web.wasm"),
    },
];

/// Where the default `connect --web` listens (a fixed port: the browser keeps this viewer's
/// identity and certificate per origin, and the origin includes the port).
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8444";

/// SHA-256 over the shipped files, each as `LP(name) ‖ LP(bytes)` in a fixed order: the
/// bundle's identity, printed by `sealdesk --version` and `sealdesk audit`.
pub(crate) fn bundle_hash() -> String {
    let mut h = Sha256::new();
    h.update(b"sealdesk/v1 web-bundle");
    for a in ASSETS {
        for part in [a.name.as_bytes(), a.bytes] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha384-…`, the Subresource Integrity form of a file's hash.
fn integrity(bytes: &[u8]) -> String {
    format!("sha384-{}", B64.encode(Sha384::digest(bytes)))
}

/// Who serves the page, and where its signaling server is.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    /// The signaling server's WebSocket URL; `None`: the page's own origin (`/ws` there).
    pub(crate) server: Option<String>,
    /// Served by the signaling server rather than the viewer's own sealdesk.
    pub(crate) served_by_server: bool,
}

/// The page as served: `index.html` filled in, and the headers every response carries.
#[derive(Debug, Clone)]
struct Served {
    index: String,
    csp: HeaderValue,
}

fn attr_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// The origin (`scheme://host:port`) of a ws:// or wss:// URL, for the CSP.
fn ws_origin(url: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .context("the signaling server URL has no scheme")?;
    if scheme != "ws" && scheme != "wss" {
        bail!("the signaling server URL must be ws:// or wss://, not {scheme}://");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    if !ok {
        bail!("the signaling server URL has no usable host: {url:?}");
    }
    Ok(format!("{scheme}://{host}"))
}

impl Served {
    fn new(page: &Page) -> anyhow::Result<Self> {
        let mut index = String::from_utf8_lossy(asset("index.html").bytes).into_owned();
        for a in ASSETS.iter().filter(|a| a.name != "index.html") {
            index = index.replace(
                &format!("{{{{integrity:{}}}}}", a.name),
                &integrity(a.bytes),
            );
        }
        let server = page.server.clone().unwrap_or_default();
        index = index.replace("{{server}}", &attr_escape(&server));
        index = index.replace(
            "{{served_by}}",
            if page.served_by_server {
                "server"
            } else {
                "local"
            },
        );
        if index.contains("{{") {
            bail!("the embedded index.html has a placeholder nothing fills in");
        }
        let connect = match &page.server {
            Some(url) => format!("'self' {}", ws_origin(url)?),
            None => "'self'".to_owned(),
        };
        let csp = format!(
            "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' data:; media-src 'self' blob:; connect-src {connect}; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
             require-trusted-types-for 'script'; trusted-types 'none'"
        );
        Ok(Self {
            index,
            csp: HeaderValue::from_str(&csp).context("the Content-Security-Policy")?,
        })
    }
}

fn asset(name: &str) -> &'static Asset {
    // Every name looked up here is one of ASSETS (a unit test checks the list).
    ASSETS.iter().find(|a| a.name == name).unwrap_or(&ASSETS[0])
}

/// The routes that serve the page: `/` (and `/index.html`) and its three assets.
pub(crate) fn routes(page: &Page) -> anyhow::Result<Router> {
    let served = std::sync::Arc::new(Served::new(page)?);
    let mut router = Router::new()
        .route("/", get(index))
        .route("/index.html", get(index));
    for a in ASSETS.iter().filter(|a| a.name != "index.html") {
        let name = a.name;
        router = router.route(
            &format!("/{name}"),
            get(move |State(s): State<std::sync::Arc<Served>>| async move {
                respond(&s, asset(name).content_type, asset(name).bytes.to_vec())
            }),
        );
    }
    Ok(router.with_state(served))
}

async fn index(State(s): State<std::sync::Arc<Served>>) -> Response {
    respond(
        &s,
        asset("index.html").content_type,
        s.index.clone().into_bytes(),
    )
}

fn respond(s: &Served, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, s.csp.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static(
            "camera=(), microphone=(), geolocation=(), clipboard-read=(self), clipboard-write=(self)",
        ),
    );
    r
}

/// `sealdesk connect --web`: serves the page on this machine and prints where. Runs until
/// Ctrl-C.
pub(crate) async fn serve_local(listen: SocketAddr, server_url: &str) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "--listen {listen}: the page your own sealdesk serves stays on this machine \
             (a loopback address such as 127.0.0.1); to serve it to others, run \
             `sealdesk server --web-viewer` (and read what that means in SECURITY.md)"
        );
    }
    let page = Page {
        server: Some(server_url.to_owned()),
        served_by_server: false,
    };
    let app = routes(&page)?.layer(axum::middleware::from_fn(loopback_host_only));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("the listening address")?;
    println!("browser viewer: open http://{addr}/ in a browser on this machine");
    println!("  signaling server: {server_url}");
    println!("  bundle sha256:{}", bundle_hash());
    println!("Ctrl-C stops serving it.");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the browser viewer")
}

/// Whether a request's `Host` names this machine (`127.0.0.1`, `[::1]` or `localhost`, any
/// port). The page on loopback answers nothing else, so a web site that points its own name
/// at 127.0.0.1 (DNS rebinding) cannot have its pages served as if they were ours.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn loopback_host_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if is_loopback_host(host) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this sealdesk serves its browser viewer to this machine only: open it at 127.0.0.1\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_and_every_asset_has_integrity() {
        let page = Page {
            server: Some("ws://127.0.0.1:8443/ws".into()),
            served_by_server: false,
        };
        let s = Served::new(&page).unwrap();
        for a in ASSETS.iter().filter(|a| a.name != "index.html") {
            assert!(s.index.contains(&integrity(a.bytes)), "{}", a.name);
        }
        assert!(s.index.contains(r#"content="ws://127.0.0.1:8443/ws""#));
        assert!(s.index.contains(r#"content="local""#));
        let csp = s.csp.to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' ws://127.0.0.1:8443;"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"));
        for a in ASSETS {
            assert!(std::ptr::eq(asset(a.name), a));
        }
    }

    #[test]
    fn server_urls_are_checked_and_escaped() {
        assert_eq!(
            ws_origin("wss://h.example:443/ws").unwrap(),
            "wss://h.example:443"
        );
        assert!(ws_origin("http://h/ws").is_err());
        assert!(ws_origin("ws://h\"onload=x/ws").is_err());
        assert!(ws_origin("ws:///ws").is_err());
        assert_eq!(attr_escape("a\"<b>&'"), "a&quot;&lt;b&gt;&amp;&#39;");
        let page = Page {
            server: None,
            served_by_server: true,
        };
        let s = Served::new(&page).unwrap();
        assert!(s.index.contains(r#"content="server""#));
        assert!(s.csp.to_str().unwrap().contains("connect-src 'self';"));
    }

    #[test]
    fn only_loopback_names_are_served_locally() {
        for ok in [
            "127.0.0.1:8444",
            "localhost:8444",
            "LOCALHOST",
            "[::1]:8444",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8444",
            "",
            "10.0.0.1:8444",
            "[::2]:1",
            "127.0.0.1.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn the_bundle_hash_names_the_shipped_files() {
        let h = bundle_hash();
        assert_eq!(h.len(), 64);
        assert_eq!(h, bundle_hash());
    }
}
