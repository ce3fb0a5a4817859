//! Shared helpers: a real server on a loopback port with a real SQLite file.
#![allow(dead_code, reason = "each test file uses a different subset")]
#![allow(unreachable_pub, reason = "test helpers")]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sealdesk_auth::IdentityKey;
use sealdesk_client::{ClientConfig, SignalClient, SignalEvent};
use sealdesk_server::{Limits, Server, ServerConfig, ServerHandle};
use tokio_tungstenite::tungstenite::Message;

pub type Raw =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct TestServer {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub handle: ServerHandle,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, "127.0.0.1:0".parse().unwrap(), limits).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        addr: std::net::SocketAddr,
        limits: Limits,
    ) -> Self {
        let config = ServerConfig {
            listen: addr,
            data_dir: Some(dir.path().to_owned()),
            limits,
            ..ServerConfig::default()
        };
        Self::start_with(dir, config).await
    }

    pub async fn start_with(dir: tempfile::TempDir, config: ServerConfig) -> Self {
        let server = Server::bind(config).await.unwrap();
        let url = server.url();
        let addr = server.local_addr();
        let handle = server.handle();
        let task = tokio::spawn(async move {
            server.run(std::future::pending()).await.unwrap();
        });
        Self {
            url,
            addr,
            handle,
            dir,
            task,
        }
    }

    /// The `Host` a client sends to this server (`127.0.0.1:port`).
    pub fn origin(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the server and waits for it; returns the data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.handle.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.dir
    }

    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(self.url.clone())
    }

    pub async fn client(&self) -> (SignalClient, Arc<IdentityKey>) {
        let key = Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng));
        let c = SignalClient::connect(self.config(), key.clone())
            .await
            .unwrap();
        (c, key)
    }

    /// A raw WebSocket, not registered; the challenge is waiting to be read.
    pub async fn raw(&self) -> Raw {
        let (ws, _) = tokio_tungstenite::connect_async(self.url.as_str())
            .await
            .unwrap();
        ws
    }
}

/// Reads frames until a text frame arrives.
pub async fn next_text(ws: &mut Raw) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.as_str().to_owned(),
            Ok(Some(Ok(Message::Close(f)))) => panic!("closed: {f:?}"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no text frame: {other:?}"),
        }
    }
}

/// Reads frames until the server closes; returns the close code and reason.
pub async fn close_of(ws: &mut Raw) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return (f.code.into(), f.reason.as_str().to_owned())
            }
            Ok(Some(Ok(Message::Close(None)))) => return (1005, String::new()),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

pub async fn send_text(ws: &mut Raw, text: impl Into<String>) {
    ws.send(Message::text(text.into())).await.unwrap();
}

/// Waits up to 5 s for an event `pick` accepts, skipping others.
pub async fn wait_for<T>(
    c: &mut SignalClient,
    mut pick: impl FnMut(&SignalEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = c.next_event().await.expect("client stopped");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// Asserts no event arrives within `d`.
pub async fn assert_quiet(c: &mut SignalClient, d: Duration) {
    if let Ok(e) = tokio::time::timeout(d, c.next_event()).await {
        panic!("unexpected event {e:?}");
    }
}

pub fn limits() -> Limits {
    Limits::default()
}
