//! Where the audit stands: on every device's signaling connection (seeing each message
//! exactly as the server sends and receives it, after TLS) and in front of every relay
//! (seeing each datagram). On the signaling path it can also play the malicious server:
//! swap fingerprints, replay an offer, strip the suite list.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::{Arc, Mutex, PoisonError};

use sealdesk_auth::messages::{self, Message, TAG_A1, TAG_A2, TAG_SEALED};
use sealdesk_auth::negotiate::Suite;
use sealdesk_auth::sdp::DtlsFingerprint;
use sealdesk_client::signal::SignalTap;
use sealdesk_proto::signaling::ServerMessage;
use sealdesk_proto::{Body, SessionId};
use tokio::net::UdpSocket;

/// The most bytes the audit keeps of what it observes (it runs for seconds).
const MAX_KEPT: usize = 256 << 20;

/// The fingerprint an attacker would put in the middle.
pub(crate) const ATTACKER_FP: DtlsFingerprint = DtlsFingerprint([0xee; 32]);

/// What the malicious server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attack {
    /// Nothing: forward faithfully (but remember the first offer a host receives).
    None,
    /// Put the attacker's fingerprint in place of the viewer's in A1.
    SwapViewerFingerprint,
    /// Put the attacker's fingerprint in place of the host's in A2.
    SwapHostFingerprint,
    /// Strip the viewer's best suite from A1's offer (a downgrade).
    Downgrade,
    /// Replace the first sealed message a host receives with the offer remembered earlier.
    ReplayOffer,
}

impl Attack {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::SwapViewerFingerprint => "fingerprint swap (viewer's, in A1)",
            Attack::SwapHostFingerprint => "fingerprint swap (host's, in A2)",
            Attack::Downgrade => "downgrade (best suite stripped from A1)",
            Attack::ReplayOffer => "replay of an earlier session's offer",
        }
    }
}

/// Who sent a signaling message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// From a device to the server.
    ToServer,
    /// From the server to a device.
    FromServer,
}

/// Everything observed on the signaling connections, and the attack in force.
#[derive(Default)]
pub(crate) struct Signaling {
    inner: Mutex<SignalingState>,
}

#[derive(Default)]
struct SignalingState {
    messages: Vec<(Dir, String)>,
    kept: usize,
    attack: Option<Attack>,
    /// Per session: whether the receiving device already got its first sealed message.
    offers: HashMap<(SessionId, usize), bool>,
    remembered_offer: Option<Vec<u8>>,
    tampered: usize,
}

impl Signaling {
    fn state(&self) -> std::sync::MutexGuard<'_, SignalingState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the attack for what follows.
    pub(crate) fn set_attack(&self, attack: Attack) {
        self.state().attack = Some(attack);
    }

    /// How many messages were rewritten so far.
    pub(crate) fn tampered(&self) -> usize {
        self.state().tampered
    }

    /// Whether an offer is remembered (for the replay).
    pub(crate) fn has_offer(&self) -> bool {
        self.state().remembered_offer.is_some()
    }

    /// The messages observed since `from`.
    pub(crate) fn since(&self, from: usize) -> Vec<(Dir, String)> {
        self.state().messages.get(from..).unwrap_or(&[]).to_vec()
    }

    fn keep(&self, dir: Dir, text: &str) {
        let mut st = self.state();
        if st.kept + text.len() <= MAX_KEPT {
            st.kept += text.len();
            st.messages.push((dir, text.to_owned()));
        }
    }

    /// Rewrites one envelope on its way to device `device`, if the attack says so.
    fn rewrite(&self, device: usize, text: &str) -> Option<String> {
        let ServerMessage::Envelope {
            from,
            session,
            body,
        } = ServerMessage::decode(text).ok()?
        else {
            return None;
        };
        let bytes = body.as_bytes();
        let mut st = self.state();
        let attack = st.attack?;
        let key = (session, device);
        let new = match (attack, bytes.first().copied()) {
            (Attack::SwapViewerFingerprint, Some(TAG_A1)) => match messages::decode(bytes) {
                Ok(Message::A1(mut a1)) => {
                    a1.fp_v = ATTACKER_FP;
                    a1.encode()
                }
                _ => return None,
            },
            (Attack::Downgrade, Some(TAG_A1)) => match messages::decode(bytes) {
                Ok(Message::A1(mut a1)) => {
                    let best = a1.offer.suites.first().copied()?;
                    a1.offer.suites.retain(|s| *s != best);
                    if a1.offer.suites.is_empty() {
                        a1.offer.suites.push(Suite::Aes256Gcm.id());
                    }
                    a1.encode()
                }
                _ => return None,
            },
            (Attack::SwapHostFingerprint, Some(TAG_A2)) => match messages::decode(bytes) {
                Ok(Message::A2(mut a2)) => {
                    a2.fp_h = ATTACKER_FP;
                    a2.encode()
                }
                _ => return None,
            },
            (_, Some(TAG_A1)) => {
                // This device is the host of `session`: its first sealed message is the offer.
                st.offers.insert(key, false);
                return None;
            }
            (Attack::None, Some(TAG_SEALED)) if st.offers.get(&key) == Some(&false) => {
                st.offers.insert(key, true);
                st.remembered_offer = Some(bytes.to_vec());
                return None;
            }
            (Attack::ReplayOffer, Some(TAG_SEALED)) if st.offers.get(&key) == Some(&false) => {
                st.offers.insert(key, true);
                st.remembered_offer.clone()?
            }
            _ => return None,
        };
        st.tampered += 1;
        Some(
            ServerMessage::Envelope {
                from,
                session,
                body: Body::new(new).ok()?,
            }
            .encode(),
        )
    }
}

/// One device's signaling connection, as the audit sees it.
pub(crate) struct DeviceTap {
    /// Which device (distinguishes host and viewer for the per-session offer tracking).
    pub(crate) device: usize,
    pub(crate) signaling: Arc<Signaling>,
    pub(crate) relays: Arc<RelayTaps>,
}

impl SignalTap for DeviceTap {
    fn sent(&self, text: &str) {
        self.signaling.keep(Dir::ToServer, text);
    }

    fn received(&self, text: &str) -> Option<String> {
        self.signaling.keep(Dir::FromServer, text);
        if let Ok(ServerMessage::Relay {
            urls,
            username,
            password,
            expires_at,
        }) = ServerMessage::decode(text)
        {
            // Send the device through the audit's observation point in front of each relay.
            let urls = self.relays.observe(&urls);
            return Some(
                ServerMessage::Relay {
                    urls,
                    username,
                    password,
                    expires_at,
                }
                .encode(),
            );
        }
        self.signaling.rewrite(self.device, text)
    }
}

/// One datagram a relay handled.
#[derive(Debug, Clone)]
pub(crate) struct Datagram {
    /// From a device to the relay (else from the relay to a device).
    pub(crate) to_relay: bool,
    /// The bytes.
    pub(crate) bytes: Vec<u8>,
}

/// The audit's UDP forwarders in front of the relays, and what passed through them.
#[derive(Default)]
pub(crate) struct RelayTaps {
    inner: Mutex<RelayState>,
}

#[derive(Default)]
struct RelayState {
    /// Relay address → the forwarder's.
    taps: HashMap<SocketAddr, SocketAddr>,
    datagrams: Vec<Datagram>,
    kept: usize,
    /// Relay URLs devices were told about that the audit could not stand in front of.
    unobserved: Vec<String>,
}

impl RelayTaps {
    fn state(&self) -> std::sync::MutexGuard<'_, RelayState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The datagrams observed since `from` (and the count now).
    pub(crate) fn since(&self, from: usize) -> Vec<Datagram> {
        self.state().datagrams.get(from..).unwrap_or(&[]).to_vec()
    }

    /// How many datagrams so far.
    pub(crate) fn len(&self) -> usize {
        self.state().datagrams.len()
    }

    /// The relays observed (real addresses).
    pub(crate) fn relays(&self) -> Vec<SocketAddr> {
        self.state().taps.keys().copied().collect()
    }

    /// Relay URLs dropped because they could not be observed (TCP, TLS, unresolvable).
    pub(crate) fn unobserved(&self) -> Vec<String> {
        self.state().unobserved.clone()
    }

    fn keep(&self, to_relay: bool, bytes: &[u8]) {
        let mut st = self.state();
        if st.kept + bytes.len() <= MAX_KEPT {
            st.kept += bytes.len();
            st.datagrams.push(Datagram {
                to_relay,
                bytes: bytes.to_vec(),
            });
        }
    }

    /// The URLs to give a device instead of `urls`: UDP relays through a forwarder each;
    /// the others are left out (the audit could not see their traffic).
    fn observe(self: &Arc<Self>, urls: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for url in urls {
            match self.tap_for(url) {
                Some(tap) => out.push(format!("turn:{tap}?transport=udp")),
                None => {
                    let mut st = self.state();
                    if !st.unobserved.contains(url) {
                        st.unobserved.push(url.clone());
                    }
                }
            }
        }
        out
    }

    fn tap_for(self: &Arc<Self>, url: &str) -> Option<SocketAddr> {
        let rest = url.strip_prefix("turn:")?;
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !(query.is_empty() || query == "transport=udp") {
            return None;
        }
        let relay = hostport.to_socket_addrs().ok()?.next()?;
        if let Some(tap) = self.state().taps.get(&relay) {
            return Some(*tap);
        }
        let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).ok()?;
        socket.set_nonblocking(true).ok()?;
        let local = socket.local_addr().ok()?;
        let socket = UdpSocket::from_std(socket).ok()?;
        let me = self.clone();
        tokio::spawn(async move { me.forward(Arc::new(socket), relay).await });
        self.state().taps.insert(relay, local);
        Some(local)
    }

    /// Forwards datagrams from devices to `relay` (one upstream socket per device, so the
    /// relay still tells them apart) and back, keeping a copy of each.
    async fn forward(self: Arc<Self>, listen: Arc<UdpSocket>, relay: SocketAddr) {
        let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = listen.recv_from(&mut buf).await else {
                return;
            };
            let Some(d) = buf.get(..n) else { continue };
            self.keep(true, d);
            let up = match upstream.get(&from) {
                Some(up) => up.clone(),
                None => {
                    let bind = if relay.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let Ok(up) = UdpSocket::bind(bind).await else {
                        continue;
                    };
                    if up.connect(relay).await.is_err() {
                        continue;
                    }
                    let up = Arc::new(up);
                    let (me, back, listen) = (self.clone(), up.clone(), listen.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = back.recv(&mut buf).await {
                            let Some(d) = buf.get(..n) else { continue };
                            me.keep(false, d);
                            let _ = listen.send_to(d, from).await;
                        }
                    });
                    upstream.insert(from, up.clone());
                    up
                }
            };
            let _ = up.send(d).await;
        }
    }
}
