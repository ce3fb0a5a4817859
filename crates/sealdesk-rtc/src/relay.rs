//! A TURN allocation for a [`crate::Session`] (DESIGN.md §6): str0m has no TURN client, so the
//! session carries one ([`turn_client_proto`], sans-IO) and routes through it.
//!
//! - When the allocation is made, its relayed address becomes a local ICE candidate
//!   (`Candidate::relayed`). Gather before the SDP is written ([`crate::driver::gather`]), so the
//!   candidate is in it.
//! - Whatever str0m sends *from* the relayed address is wrapped for the TURN server (a Send
//!   indication); the first packet to a peer IP asks for a permission, and ICE's retries carry
//!   on once it is granted.
//! - Whatever the TURN server delivers from a peer is handed to str0m as if it had arrived at
//!   the relayed address.
//!
//! - Where UDP is blocked, the same TURN messages travel over a TCP connection to the relay
//!   (RFC 8656 §3.1; [`RelayServer::tcp`]). The messages are the same and so is this client:
//!   the driver frames them onto the stream ([`sealdesk_proto::turn_tcp`]) and hands frames
//!   read from it back as if they were datagrams from the relay. The relayed address stays
//!   UDP, so the peer's side does not change.
//!
//! The relay sees DTLS records and SRTP packets only: the keys never leave the endpoints.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use turn_client_proto::api::{TurnClientApi as _, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::udp::TurnClientUdp;
use turn_types::stun::TransportType;
use turn_types::{AddressFamily, TurnCredentials};
use zeroize::Zeroizing;

/// A relay to allocate on, and the credential for it.
#[derive(Clone)]
pub struct RelayServer {
    /// Its address (from the `turn:` URL).
    pub addr: SocketAddr,
    /// Reached over TCP (a `?transport=tcp` URL) rather than UDP.
    pub tcp: bool,
    /// The relay's TCP address (from a `?transport=tcp` URL), to fall back to where UDP is
    /// blocked.
    pub tcp_fallback: Option<SocketAddr>,
    /// The TURN username.
    pub username: String,
    /// The TURN password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for RelayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayServer")
            .field("addr", &self.addr)
            .field("tcp", &self.tcp)
            .field("tcp_fallback", &self.tcp_fallback)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RelayServer {
    /// The same relay and credential over TCP, if the relay offers TCP.
    pub fn over_tcp(&self) -> Option<RelayServer> {
        if self.tcp {
            return Some(self.clone());
        }
        Some(RelayServer {
            addr: self.tcp_fallback?,
            tcp: true,
            ..self.clone()
        })
    }
}

/// The host, port and whether it is TCP, of a `turn:host:port[?transport=udp|tcp]` URL.
/// (Names are resolved by the caller.)
pub fn parse_turn_url(url: &str) -> Option<(String, u16, bool)> {
    let rest = url.strip_prefix("turn:")?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    let tcp = match query {
        "" | "transport=udp" => false,
        "transport=tcp" => true,
        _ => return None,
    };
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, p) = v6.split_once("]:")?;
            (h, p)
        }
        None => hostport.rsplit_once(':')?,
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_owned(), port, tcp))
}

/// Packets held for peers whose permission is pending.
const MAX_WAITING: usize = 32;
/// Peers a channel is bound for, at most (ICE uses one or two).
const MAX_CHANNELS: usize = 8;

/// How the allocation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Asking the relay.
    Allocating,
    /// Allocated at this relayed address.
    Allocated(SocketAddr),
    /// The relay refused or did not answer (credentials, quota, unreachable).
    Failed,
}

pub(crate) struct TurnLink {
    client: TurnClientUdp,
    /// Our socket's address (the TURN client's local address).
    local: SocketAddr,
    server: SocketAddr,
    base: Instant,
    state: RelayState,
    /// Peer IPs a permission was asked for.
    asked: HashSet<IpAddr>,
    /// Peers a channel was asked for: their packets then travel as ChannelData (4 bytes of
    /// framing instead of a 36-byte Send indication).
    channels: HashSet<SocketAddr>,
    /// Packets to peers whose permission is still being asked for (sent once it is granted,
    /// instead of waiting for ICE to retransmit its checks).
    waiting: Vec<(SocketAddr, Vec<u8>)>,
    /// The XOR-MAPPED-ADDRESS of the latest Allocate success response seen (not yet
    /// authenticated: it counts only once the client accepts the allocation).
    mapped: Option<SocketAddr>,
    /// Over TCP, whose mapped address says nothing about our UDP socket's.
    tcp: bool,
}

/// Something the session must do because of the TURN link.
pub(crate) enum LinkOutput {
    /// Send this datagram (to the TURN server).
    Transmit(SocketAddr, Vec<u8>),
    /// The allocation is ready at this relayed address: add it as a candidate.
    Allocated(SocketAddr),
    /// Our address as the relay saw it (server-reflexive): a candidate behind a NAT.
    Reflexive(SocketAddr),
}

impl TurnLink {
    pub(crate) fn new(now: Instant, local: SocketAddr, relay: &RelayServer) -> Self {
        let mut cfg = TurnConfig::new(TurnCredentials::new(&relay.username, &relay.password));
        cfg.set_address_family(if relay.addr.is_ipv4() {
            AddressFamily::IPV4
        } else {
            AddressFamily::IPV6
        });
        // sealdesk's relays refuse anonymous (USERHASH) requests; coturn never offers them.
        cfg.set_anonymous_username(turn_client_proto::stun::auth::Feature::Disabled);
        if relay.tcp {
            // A reliable transport: one transmission per request (RFC 8489 §6.2.2), waiting
            // as long as the UDP schedule below does in all (250 + 500 + 1000 + 2000 + 2000 ms).
            cfg.set_request_retransmits(
                Duration::from_millis(250),
                Duration::from_secs(2),
                1,
                Duration::from_millis(5750),
            );
        } else {
            cfg.set_request_retransmits(
                Duration::from_millis(250),
                Duration::from_secs(2),
                5,
                Duration::from_secs(2),
            );
        }
        Self {
            client: TurnClientUdp::allocate(local, relay.addr, cfg),
            local,
            server: relay.addr,
            base: now,
            state: RelayState::Allocating,
            asked: HashSet::new(),
            channels: HashSet::new(),
            waiting: Vec::new(),
            mapped: None,
            tcp: relay.tcp,
        }
    }

    fn t(&self, now: Instant) -> turn_types::Instant {
        let nanos = now.saturating_duration_since(self.base).as_nanos();
        turn_types::Instant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    fn to_std(&self, t: turn_types::Instant) -> Instant {
        self.base + Duration::from_nanos(u64::try_from(t.as_nanos().max(0)).unwrap_or(0))
    }

    pub(crate) fn state(&self) -> RelayState {
        self.state
    }

    pub(crate) fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            RelayState::Allocated(a) => Some(a),
            _ => None,
        }
    }

    /// Releases the allocation (a refresh with lifetime 0), best effort: a relay that lost
    /// it answers with an error nobody waits for.
    pub(crate) fn release(&mut self, now: Instant, out: &mut Vec<LinkOutput>) {
        let t = self.t(now);
        if self.client.delete(t).is_ok() {
            while let Some(tx) = self.client.poll_transmit(t) {
                out.push(LinkOutput::Transmit(tx.to, tx.data.as_ref().to_vec()));
            }
        }
    }

    /// Whether a datagram that arrived at `destination` from `source` is the TURN server's.
    pub(crate) fn is_from_server(&self, source: SocketAddr, destination: SocketAddr) -> bool {
        source == self.server && destination == self.local
    }

    /// Runs timers; returns outputs and when to be called again.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Vec<LinkOutput>) -> Option<Instant> {
        let t = self.t(now);
        let wake = match self.client.poll(t) {
            TurnPollRet::WaitUntil(w) => Some(self.to_std(w)),
            TurnPollRet::Closed => {
                if self.state == RelayState::Allocating {
                    self.state = RelayState::Failed;
                }
                None
            }
            _ => Some(now + Duration::from_millis(50)),
        };
        while let Some(tx) = self.client.poll_transmit(t) {
            out.push(LinkOutput::Transmit(tx.to, tx.data.as_ref().to_vec()));
        }
        while let Some(e) = self.client.poll_event() {
            match e {
                TurnEvent::AllocationCreated(TransportType::Udp, relayed) => {
                    self.state = RelayState::Allocated(relayed);
                    // The client verified the response's integrity before this event; the
                    // mapped address came in that same response.
                    if let Some(mapped) = self.mapped.take() {
                        out.push(LinkOutput::Reflexive(mapped));
                    }
                    out.push(LinkOutput::Allocated(relayed));
                }
                TurnEvent::AllocationCreateFailed(_) => self.state = RelayState::Failed,
                TurnEvent::PermissionCreated(_, ip) => {
                    let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                        .into_iter()
                        .partition(|(peer, _)| peer.ip() == ip);
                    self.waiting = rest;
                    for (peer, data) in ready {
                        if let Ok(Some(b)) = self.client.send_to(TransportType::Udp, peer, &data, t)
                        {
                            let b = b.build();
                            out.push(LinkOutput::Transmit(b.to, b.data));
                        }
                    }
                }
                TurnEvent::PermissionCreateFailed(_, ip) => {
                    tracing::debug!(peer = %ip, "the relay refused a permission");
                    self.waiting.retain(|(peer, _)| peer.ip() != ip);
                }
                _ => {}
            }
        }
        wake
    }

    /// A datagram from the TURN server: the peers' packets it carried. Poll again after.
    pub(crate) fn receive(&mut self, now: Instant, data: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let t = self.t(now);
        let tx = turn_client_proto::stun::agent::Transmit::new(
            data,
            TransportType::Udp,
            self.server,
            self.local,
        );
        if self.state == RelayState::Allocating && !self.tcp {
            if let Some(mapped) = allocate_mapped_address(data) {
                self.mapped = Some(mapped);
            }
        }
        let mut got = Vec::new();
        if let TurnRecvRet::PeerData(d) = self.client.recv(tx, t) {
            got.push((d.peer, d.data().to_vec()));
        }
        while let Some(d) = self.client.poll_recv(t) {
            got.push((d.peer, d.data().to_vec()));
        }
        got
    }

    /// Asks at once for permissions to the IPs of the peer's candidates (poll after it), so
    /// ICE's first checks through the relay are not dropped for want of one.
    pub(crate) fn permit(&mut self, now: Instant, ips: impl IntoIterator<Item = IpAddr>) {
        let t = self.t(now);
        for ip in ips {
            if self.asked.insert(ip) {
                if let Err(e) = self.client.create_permission(TransportType::Udp, ip, t) {
                    tracing::debug!(error = ?e, peer = %ip, "cannot ask for a permission");
                    self.asked.remove(&ip);
                }
            }
        }
    }

    /// Wraps a packet str0m sends from the relayed address to `peer` (poll after it).
    pub(crate) fn send(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        data: &[u8],
        out: &mut Vec<LinkOutput>,
    ) {
        let t = self.t(now);
        match self.client.send_to(TransportType::Udp, peer, data, t) {
            Ok(Some(b)) => {
                let b = b.build();
                out.push(LinkOutput::Transmit(b.to, b.data));
                // A peer we send to with a permission: bind a channel (refreshed by the
                // client, like the permission).
                if self.channels.len() < MAX_CHANNELS && self.channels.insert(peer) {
                    match self.client.bind_channel(TransportType::Udp, peer, t) {
                        Ok(()) | Err(turn_client_proto::api::BindChannelError::AlreadyExists) => {}
                        Err(e) => {
                            tracing::debug!(error = ?e, %peer, "cannot bind a channel");
                            self.channels.remove(&peer);
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(_) => {
                // No permission yet: ask once, and hold a few packets until it is granted.
                if self.waiting.len() < MAX_WAITING {
                    self.waiting.push((peer, data.to_vec()));
                }
                if self.asked.insert(peer.ip()) {
                    if let Err(e) = self
                        .client
                        .create_permission(TransportType::Udp, peer.ip(), t)
                    {
                        tracing::debug!(error = ?e, peer = %peer, "cannot ask for a permission");
                    }
                }
            }
        }
    }
}

/// The XOR-MAPPED-ADDRESS of an Allocate success response (RFC 8656 §7.3: our address as
/// the relay saw it), if `data` is one.
fn allocate_mapped_address(data: &[u8]) -> Option<SocketAddr> {
    use turn_types::stun::attribute::XorMappedAddress;
    use turn_types::stun::message::{Message, MessageClass};
    let msg = Message::from_bytes(data).ok()?;
    if msg.method() != turn_types::message::ALLOCATE || !msg.has_class(MessageClass::Success) {
        return None;
    }
    let mapped = msg.attribute::<XorMappedAddress>().ok()?;
    Some(mapped.addr(msg.transaction_id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_addresses_of_an_sdp() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host\r\n\
                   a=candidate:2 1 udp 16777215 203.0.113.5 40000 typ relay raddr 0.0.0.0 rport 0\r\n\
                   a=candidate:3 1 udp 1 10.0.0.2 5001 typ host\r\na=candidate:broken\r\n";
        assert_eq!(
            candidate_ips(sdp),
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "203.0.113.5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn turn_urls() {
        assert_eq!(
            parse_turn_url("turn:127.0.0.1:3478?transport=udp"),
            Some(("127.0.0.1".into(), 3478, false))
        );
        assert_eq!(
            parse_turn_url("turn:127.0.0.1:3478?transport=tcp"),
            Some(("127.0.0.1".into(), 3478, true))
        );
        assert_eq!(
            parse_turn_url("turn:[::1]:5000"),
            Some(("::1".into(), 5000, false))
        );
        assert_eq!(
            parse_turn_url("turn:relay.example.com:3478"),
            Some(("relay.example.com".into(), 3478, false))
        );
        for bad in [
            "stun:1.2.3.4:3478",
            "turn:1.2.3.4",
            "turn:1.2.3.4:0",
            "turn::3478",
            "turn:1.2.3.4:3478?transport=sctp",
            "turns:1.2.3.4:5349",
            "turn:[::1:5000",
        ] {
            assert_eq!(parse_turn_url(bad), None, "{bad}");
        }
    }
}

/// The relay `urls` name, with this credential: the first UDP URL whose address resolves,
/// with the first such TCP URL as its fallback (or that alone, over TCP, if no UDP URL
/// resolves).
pub async fn resolve(urls: &[String], username: &str, password: &str) -> Option<RelayServer> {
    let (mut udp, mut tcp) = (None, None);
    for url in urls {
        let Some((host, port, is_tcp)) = parse_turn_url(url) else {
            continue;
        };
        let slot = if is_tcp { &mut tcp } else { &mut udp };
        if slot.is_some() {
            continue;
        }
        let found = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        *slot = found;
    }
    let (addr, is_tcp) = match (udp, tcp) {
        (Some(a), _) => (a, false),
        (None, Some(a)) => (a, true),
        (None, None) => return None,
    };
    Some(RelayServer {
        addr,
        tcp: is_tcp,
        tcp_fallback: tcp,
        username: username.to_owned(),
        password: Zeroizing::new(password.to_owned()),
    })
}

/// Whether a session uses a TURN relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayUse {
    /// Never: host candidates only.
    Off,
    /// Also offer a relayed candidate, used when there is no direct path (the default).
    #[default]
    Fallback,
    /// Only the relayed candidate: the peer never learns this device's address, and all
    /// traffic goes through the relay (`--relay-only`).
    Only,
}

/// The IP addresses of the `a=candidate` lines of an SDP.
pub(crate) fn candidate_ips(sdp: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| c.split_whitespace().nth(4))
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}
