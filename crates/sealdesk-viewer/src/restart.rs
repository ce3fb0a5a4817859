//! The viewer's signaling while a session runs: it carries ICE restart offers to the host
//! and brings back the host's answers, both sealed (DESIGN.md §4) — a restart changes the
//! ICE credentials and candidates, never the certificates, and the sealed channel checks
//! the fingerprint in every SDP again. Envelopes that fail to open are dropped (anyone on
//! the path may inject them); a sealed bye from the host ends the exchange.

use std::time::{Duration, Instant};

use sealdesk_auth::messages::TAG_SEALED;
use sealdesk_auth::sealed::{SealError, SealedKind, SealedSignaling};
use sealdesk_client::{SignalClient, SignalEvent};
use sealdesk_rtc::relay::RelayServer;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::dial::Peer;

/// How long the host may take to answer a restart offer (it allocates on its relay first).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the signaling server may take to issue a fresh relay credential.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(2);

/// The signaling side of a running session.
#[derive(Debug)]
pub struct Signaling {
    /// The connection to the signaling server.
    pub client: SignalClient,
    /// The session's sealed channel.
    pub sealed: SealedSignaling,
    /// The host.
    pub host: Peer,
}

enum Request {
    /// Seal an offer, wait for the answer.
    Exchange(String, oneshot::Sender<Result<String, String>>),
    /// Fetch a fresh relay credential.
    Relay(oneshot::Sender<Option<(RelayServer, u64)>>),
}

/// Asks the host to restart ICE ([`Restarter::ask`]); cheap to clone.
#[derive(Debug, Clone)]
pub struct Restarter {
    tx: mpsc::Sender<Request>,
}

impl Restarter {
    /// Starts the task that owns `signaling` for the session; it hands it back once every
    /// [`Restarter`] is dropped (to send the bye).
    pub fn spawn(signaling: Signaling) -> (Self, JoinHandle<Signaling>) {
        let (tx, rx) = mpsc::channel(1);
        (Self { tx }, tokio::spawn(serve(signaling, rx)))
    }

    /// A fresh relay credential from the signaling server, as a relay to allocate on, and
    /// when it expires (Unix seconds); `None` if there is none (no relay, or no answer).
    pub async fn fresh_relay(&self) -> Option<(RelayServer, u64)> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Relay(reply)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Seals `offer` to the host and waits for its answer (opened and checked), or says why
    /// there is none.
    pub async fn ask(&self, offer: String) -> Result<String, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Exchange(offer, reply))
            .await
            .map_err(|_| "the signaling task has ended".to_owned())?;
        rx.await
            .map_err(|_| "the signaling task has ended".to_owned())?
    }
}

async fn serve(mut s: Signaling, mut requests: mpsc::Receiver<Request>) -> Signaling {
    let mut connected = true;
    loop {
        tokio::select! {
            req = requests.recv() => match req {
                None => return s,
                Some(Request::Exchange(offer, reply)) => {
                    let answer = exchange(&mut s, &offer).await;
                    let _ = reply.send(answer);
                }
                Some(Request::Relay(reply)) => {
                    let fresh = match crate::dial::fetch_relay(&mut s.client, RELAY_TIMEOUT).await {
                        Some(c) => sealdesk_rtc::relay::resolve(&c.urls, &c.username, &c.password)
                            .await
                            .map(|r| (r, c.expires_at)),
                        None => None,
                    };
                    let _ = reply.send(fresh);
                }
            },
            // Between restarts, what arrives is read and dropped (nothing else is expected).
            ev = s.client.next_event(), if connected => match ev {
                None => connected = false,
                Some(SignalEvent::Disconnected { reason, retry_in: None }) => {
                    tracing::info!(%reason, "lost the signaling server: no ICE restart is possible");
                    connected = false;
                }
                Some(other) => tracing::debug!(event = ?other, "signaling during the session"),
            },
        }
    }
}

async fn exchange(s: &mut Signaling, offer: &str) -> Result<String, String> {
    let sealed = s
        .sealed
        .seal(SealedKind::Offer, offer.as_bytes())
        .map_err(|e| format!("cannot seal the restart offer: {e}"))?;
    s.host
        .send(&s.client, sealed)
        .await
        .map_err(|e| e.to_string())?;
    let by = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let bytes = s
            .host
            .next(&mut s.client, &[TAG_SEALED], by)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "the host did not answer the ICE restart within {} s",
                    ANSWER_TIMEOUT.as_secs()
                )
            })?;
        match s.sealed.open(&bytes) {
            Ok(m) if m.kind == SealedKind::Answer => {
                return String::from_utf8(m.body)
                    .map_err(|_| "the host's restart answer is not UTF-8".to_owned())
            }
            Ok(m) if m.kind == SealedKind::Bye => {
                return Err(format!(
                    "the host ended the session: {}",
                    String::from_utf8_lossy(&m.body)
                ))
            }
            Ok(m) => tracing::debug!(kind = ?m.kind, "waiting for the restart answer; ignored"),
            Err(e @ (SealError::Forged | SealError::Replay { .. } | SealError::Malformed(_))) => {
                tracing::warn!(error = %e, "dropped a signaling message that failed authentication");
            }
            Err(e) => return Err(format!("the host's restart answer was refused: {e}")),
        }
    }
}
