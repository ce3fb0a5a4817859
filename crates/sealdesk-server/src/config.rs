//! Server configuration: defaults, a TOML file, then environment and flags on top
//! (the last two are applied by the CLI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sealdesk_proto::limits::MAX_MESSAGE_BYTES;
use sealdesk_proto::server_conn::ConnLimits;
use serde::Deserialize;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, from the TOML parser (names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

/// Everything `sealdesk server` needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Where the registry database lives (`<data_dir>/server/registry.sqlite3`), and the
    /// blob store (`<data_dir>/server/blobs.sqlite`, files under `<data_dir>/server/blobs/`).
    /// The CLI fills this from `--data-dir`, `SEALDESK_DATA_DIR` or the XDG data directory.
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key`, the server speaks `wss://`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve `/metrics` (Prometheus text format).
    pub metrics: bool,
    /// The name devices use to reach this server (`host[:port]` as in their URL).
    /// Registration signatures cover the origin the device addressed, so a malicious
    /// server cannot relay a device's registration to another. By default it is each
    /// request's `Host` header; set it when a proxy in front rewrites `Host`.
    pub public_origin: Option<String>,
    /// Resource limits.
    pub limits: Limits,
    /// The embedded TURN relay.
    pub relay: RelaySettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: None,
            tls_cert: None,
            tls_key: None,
            metrics: true,
            public_origin: None,
            limits: Limits::default(),
            relay: RelaySettings::default(),
        }
    }
}

/// The TURN relay the server runs, and the credentials it issues (DESIGN.md §6).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// Run the embedded relay (`--no-relay` turns it off). Credentials are issued as long as
    /// there is a relay: this one, or those in `urls` (e.g. coturn) sharing `secret`.
    pub enabled: bool,
    /// Where the embedded relay listens (UDP). Default: the signaling address's IP, port
    /// 3478 (port 0 when the signaling port is 0).
    pub listen: Option<SocketAddr>,
    /// The address relayed sockets bind to (default: the listen address's).
    pub relay_ip: Option<std::net::IpAddr>,
    /// The relays devices are told about, `turn:host:port?transport=udp`. Default: the
    /// embedded one.
    pub urls: Vec<String>,
    /// The secret shared with the relays (coturn's `static-auth-secret`), at least 16
    /// bytes. Default: 32 random bytes made on first start and kept in
    /// `<data dir>/server/relay.secret` (mode 0600), so credentials survive a restart.
    pub secret: Option<String>,
    /// How long an issued credential lives (at most 3600).
    pub ttl_secs: u64,
    /// Allocations one credential may hold.
    pub quota_per_user: usize,
    /// Allocations the embedded relay holds at most.
    pub max_allocations: usize,
    /// Bytes per second one allocation may relay each way.
    pub bytes_per_sec: u64,
    /// Peers the embedded relay lets through although they are not public: for tests in
    /// private network namespaces only. Never set this in production.
    pub allow_peers_for_tests: Vec<std::net::IpAddr>,
    /// The embedded relay also takes TURN over TCP on its port, for networks that block UDP
    /// (the relayed leg stays UDP).
    pub tcp: bool,
}

impl std::fmt::Debug for RelaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySettings")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            relay_ip: None,
            urls: Vec::new(),
            secret: None,
            ttl_secs: 3600,
            quota_per_user: 4,
            max_allocations: 1000,
            bytes_per_sec: 5_000_000,
            allow_peers_for_tests: Vec::new(),
            tcp: true,
        }
    }
}

impl RelaySettings {
    /// Where the embedded relay listens, given the signaling address.
    pub fn listen_addr(&self, signaling: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = if signaling.port() == 0 { 0 } else { 3478 };
            SocketAddr::new(signaling.ip(), port)
        })
    }
}

/// Resource limits. Every one is explicit: the WebSocket library's defaults are
/// unsafe for a public server (unbounded write buffer, 64 MiB messages).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message accepted (and frame), at most 64 KiB.
    pub max_message_bytes: usize,
    /// Bytes that may wait to be written to one connection; past this the
    /// connection is closed as a slow reader.
    pub outbound_queue_bytes: usize,
    /// Seconds a connection may stay unregistered.
    pub registration_timeout_secs: u64,
    /// Seconds a registered connection may stay silent.
    pub idle_timeout_secs: u64,
    /// Open WebSocket connections at most.
    pub max_connections: usize,
    /// New connections per second from one IP address, on average.
    pub per_ip_connections_per_sec: u32,
    /// New connections from one IP address in a burst.
    pub per_ip_burst: u32,
    /// Envelopes per second one connection may send, on average.
    pub envelopes_per_sec: u32,
    /// Envelopes one connection may send in a burst.
    pub envelope_burst: u32,
    /// Largest blob (one encrypted recording segment) accepted, in bytes; a bigger
    /// upload is refused with 413 while it streams in.
    pub max_blob_bytes: u64,
    /// Bytes stored for one owner at most (each blob counts at least 4 KiB).
    pub max_owner_bytes: u64,
    /// Bytes one uploading device may have stored, for all owners together (each blob
    /// counts at least 4 KiB).
    pub max_uploader_bytes: u64,
    /// Blobs stored for one owner at most (bounds the size of a listing).
    pub max_owner_blobs: u64,
    /// Uploads received at once at most; more are refused with 503.
    pub max_concurrent_uploads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: MAX_MESSAGE_BYTES,
            outbound_queue_bytes: 256 * 1024,
            registration_timeout_secs: 10,
            idle_timeout_secs: 120,
            max_connections: 100_000,
            per_ip_connections_per_sec: 20,
            per_ip_burst: 100,
            envelopes_per_sec: 200,
            envelope_burst: 400,
            max_blob_bytes: 16 * 1024 * 1024,
            max_owner_bytes: 2 * 1024 * 1024 * 1024,
            max_uploader_bytes: 2 * 1024 * 1024 * 1024,
            max_owner_blobs: 10_000,
            max_concurrent_uploads: 32,
        }
    }
}

impl Limits {
    /// The per-connection limits of the protocol state machine.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            registration_timeout: Duration::from_secs(self.registration_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            envelopes_per_sec: self.envelopes_per_sec,
            envelope_burst: self.envelope_burst,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks every value is in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |s: String| Err(ConfigError::Invalid(s));
        if !(1024..=MAX_MESSAGE_BYTES).contains(&l.max_message_bytes) {
            return bad(format!(
                "limits.max_message_bytes = {} must be between 1024 and {MAX_MESSAGE_BYTES}",
                l.max_message_bytes
            ));
        }
        if l.outbound_queue_bytes < MAX_MESSAGE_BYTES {
            return bad(format!(
                "limits.outbound_queue_bytes = {} must be at least one message ({MAX_MESSAGE_BYTES})",
                l.outbound_queue_bytes
            ));
        }
        if l.outbound_queue_bytes > 64 * 1024 * 1024 {
            return bad("limits.outbound_queue_bytes must be at most 64 MiB".into());
        }
        if l.registration_timeout_secs == 0 || l.registration_timeout_secs > 300 {
            return bad("limits.registration_timeout_secs must be between 1 and 300".into());
        }
        if l.idle_timeout_secs < 35 {
            return bad(
                "limits.idle_timeout_secs must be at least 35 (clients ping every 30 s)".into(),
            );
        }
        if l.max_connections == 0 {
            return bad("limits.max_connections must be at least 1".into());
        }
        if !(1..=1024 * 1024 * 1024).contains(&l.max_blob_bytes) {
            return bad("limits.max_blob_bytes must be between 1 and 1073741824 (1 GiB)".into());
        }
        if l.max_owner_bytes == 0 || l.max_uploader_bytes == 0 || l.max_owner_blobs == 0 {
            return bad(
                "limits.max_owner_bytes, max_uploader_bytes and max_owner_blobs must be at least 1"
                    .into(),
            );
        }
        if l.max_concurrent_uploads == 0 {
            return bad("limits.max_concurrent_uploads must be at least 1".into());
        }
        if let Some(o) = &self.public_origin {
            if sealdesk_proto::signaling::normalize_origin(o).is_none() {
                return bad(format!(
                    "public_origin {o:?} is not a host[:port] (e.g. \"sealdesk.example.com\" or \"sealdesk.example.com:8443\")"
                ));
            }
        }
        let r = &self.relay;
        if r.ttl_secs == 0 || r.ttl_secs > 3600 {
            return bad("relay.ttl_secs must be between 1 and 3600".into());
        }
        if r.secret.as_ref().is_some_and(|s| s.len() < 16) {
            return bad("relay.secret must be at least 16 characters".into());
        }
        if r.urls.len() > sealdesk_proto::signaling::MAX_RELAY_URLS
            || r.urls.iter().any(|u| {
                !(u.starts_with("turn:") || u.starts_with("turns:"))
                    || u.len() > sealdesk_proto::signaling::MAX_RELAY_FIELD
            })
        {
            return bad("relay.urls must be at most 8 turn: or turns: URLs".into());
        }
        if !r.urls.is_empty() && r.secret.is_none() {
            return bad("relay.urls needs relay.secret, the secret those relays share".into());
        }
        if r.quota_per_user == 0 || r.max_allocations == 0 || r.bytes_per_sec < 10_000 {
            return bad("relay quotas must be positive (bytes_per_sec at least 10000)".into());
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                bad("tls_cert and tls_key must be given together".into())
            }
            _ => Ok(()),
        }
    }

    /// Whether the server will speak TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_origin_must_be_a_host_and_port() {
        let mut c = ServerConfig {
            public_origin: Some("sealdesk.example.com:8443".into()),
            ..ServerConfig::default()
        };
        assert!(c.validate().is_ok());
        c.public_origin = Some("https://sealdesk.example.com/".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("is not a host[:port]"), "{err}");
    }

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "listen = \"0.0.0.0:9000\"\n[limits]\nmax_connections = 5\n",
        )
        .unwrap();
        let c = ServerConfig::from_file(&p).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!(c.limits.per_ip_burst, Limits::default().per_ip_burst);
        c.validate().unwrap();

        std::fs::write(&p, "[limits]\nmax_conections = 5\n").unwrap();
        let e = ServerConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("max_conections"), "{e}");

        std::fs::write(&p, "[limits]\nmax_message_bytes = 10000000\n").unwrap();
        let e = ServerConfig::from_file(&p)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_message_bytes"), "{e}");
    }
}
