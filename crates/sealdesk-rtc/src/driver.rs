//! The thin I/O shell around a [`Session`]: one tokio task owns the session and its UDP
//! socket, and talks to the application through bounded channels.
//!
//! Video never blocks the network loop: a frame offered while the command queue is full is
//! refused at once ([`DriverHandle::try_send_video`] returns `false`; the host then forces a
//! keyframe on the next frame), and a received frame that finds the event queue full is
//! dropped and a keyframe is requested, so a slow decoder costs quality, not liveness.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sealdesk_proto::control::ControlMessage;
use sealdesk_proto::turn_tcp::{self, Framer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::relay::RelayServer;
use crate::{Session, SessionError, SessionEvent, VideoCodec};

/// Commands queued to the driver task.
const COMMAND_QUEUE: usize = 64;
/// Events queued to the application.
const EVENT_QUEUE: usize = 256;
/// The largest datagram read.
const MAX_DATAGRAM: usize = 2048;
/// The runtime timer's resolution.
const TIMER_TICK: Duration = Duration::from_millis(1);
/// How many near deadlines are served in a row before the loop looks at the socket again.
const MAX_EARLY: u32 = 32;

/// How long connecting to a relay over TCP may take.
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an allocation over UDP may take before a relay that also takes TCP is tried
/// over TCP (UDP may be blocked).
const UDP_ALLOCATE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where a session's packets go: its UDP socket and, when its relay is reached over TCP
/// (networks that block UDP), the connection to the relay — on which the TURN messages
/// are framed ([`turn_tcp`]) and from which frames come back as if they were datagrams
/// from the relay.
#[derive(Debug)]
pub struct Link {
    udp: UdpSocket,
    /// The socket's address, read once (it is on every received packet's path).
    local: Option<SocketAddr>,
    relay: Option<RelayStream>,
}

#[derive(Debug)]
struct RelayStream {
    server: SocketAddr,
    stream: TcpStream,
    framer: Framer,
    buf: Vec<u8>,
}

/// What [`Link::recv`] got.
enum Incoming {
    /// A datagram of this many bytes in the buffer, from this address.
    Datagram(usize, SocketAddr),
    /// Whole frames from the relay over TCP.
    Frames(SocketAddr, Vec<Vec<u8>>),
    /// Nothing usable (an error, or the relay's TCP connection ended).
    Nothing,
}

impl Link {
    /// A link over `udp` alone.
    pub fn new(udp: UdpSocket) -> Self {
        let local = udp.local_addr().ok();
        Self {
            udp,
            local,
            relay: None,
        }
    }

    /// The UDP socket's address (the session's local address).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.local.map_or_else(|| self.udp.local_addr(), Ok)
    }

    /// Whether the relay is reached over TCP now.
    pub fn relay_over_tcp(&self) -> bool {
        self.relay.is_some()
    }

    /// Connects to the relay at `server` over TCP; packets for it go there from now on (a
    /// previous connection is closed, which ends its allocation).
    async fn connect_relay(&mut self, server: SocketAddr) -> Result<(), String> {
        self.relay = None;
        let stream = tokio::time::timeout(RELAY_CONNECT_TIMEOUT, TcpStream::connect(server))
            .await
            .map_err(|_| format!("no TCP connection to the relay at {server} within 2 s"))?
            .map_err(|e| format!("cannot connect to the relay at {server} over TCP: {e}"))?;
        let _ = stream.set_nodelay(true);
        self.relay = Some(RelayStream {
            server,
            stream,
            framer: Framer::new(),
            buf: vec![0u8; turn_tcp::MAX_FRAME],
        });
        Ok(())
    }

    async fn send(&mut self, t: &crate::Transmit) {
        if let Some(r) = self.relay.as_mut().filter(|r| r.server == t.destination) {
            let mut frame = t.contents.clone();
            turn_tcp::pad_channel_data(&mut frame);
            if let Err(e) = r.stream.write_all(&frame).await {
                tracing::info!(error = %e, "the relay's TCP connection failed");
                self.relay = None;
            }
            return;
        }
        if let Err(e) = self.udp.send_to(&t.contents, t.destination).await {
            tracing::debug!(error = %e, dest = %t.destination, "send failed");
        }
    }

    /// The next datagram (into `buf`) or frames from the relay. Cancel-safe.
    async fn recv(&mut self, buf: &mut [u8]) -> Incoming {
        fn datagram(got: std::io::Result<(usize, SocketAddr)>) -> Incoming {
            got.map_or_else(
                |e| {
                    tracing::debug!(error = %e, "receive failed");
                    Incoming::Nothing
                },
                |(n, from)| Incoming::Datagram(n, from),
            )
        }
        let Self { udp, relay, .. } = self;
        let Some(r) = relay.as_mut() else {
            return datagram(udp.recv_from(buf).await);
        };
        tokio::select! {
            got = udp.recv_from(buf) => datagram(got),
            got = r.stream.read(&mut r.buf) => {
                let n = match got {
                    Ok(0) => {
                        tracing::info!("the relay closed its TCP connection");
                        *relay = None;
                        return Incoming::Nothing;
                    }
                    Ok(n) => n,
                    Err(e) => {
                        tracing::info!(error = %e, "the relay's TCP connection failed");
                        *relay = None;
                        return Incoming::Nothing;
                    }
                };
                r.framer.push(r.buf.get(..n).unwrap_or_default());
                let mut frames = Vec::new();
                loop {
                    match r.framer.next_frame() {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "the relay sent what is not TURN over TCP");
                            let server = r.server;
                            *relay = None;
                            return Incoming::Frames(server, frames);
                        }
                    }
                }
                Incoming::Frames(r.server, frames)
            }
        }
    }

    /// Hands what [`Link::recv`] got to `session`.
    fn deliver(&self, session: &mut Session, buf: &[u8], got: Incoming) -> std::io::Result<()> {
        let local = self.local_addr()?;
        match got {
            Incoming::Datagram(n, from) => {
                if let Some(data) = buf.get(..n) {
                    session.handle_receive(Instant::now(), from, local, data);
                }
            }
            Incoming::Frames(from, frames) => {
                for f in frames {
                    session.handle_receive(Instant::now(), from, local, &f);
                }
            }
            Incoming::Nothing => {}
        }
        Ok(())
    }

    /// After [`Session::renew_relay`]: a relay reached over TCP gets a new connection (a
    /// new allocation needs a new 5-tuple; closing the old connection ends the old one).
    async fn follow_relay(&mut self, session: &Session) {
        if let Some(server) = session.relay_server().filter(|r| r.tcp).map(|r| r.addr) {
            if let Err(e) = self.connect_relay(server).await {
                tracing::info!("{e}");
            }
        }
    }
}

enum Command {
    Control(ControlMessage),
    ControlBytes(Vec<u8>),
    Video {
        codec: VideoCodec,
        time_90khz: u64,
        frame: Vec<u8>,
    },
    RequestKeyframe,
    /// Viewer: renew the relay (with a fresh credential, if given), then make an ICE
    /// restart offer.
    RestartOffer(
        Option<RelayServer>,
        oneshot::Sender<Result<String, SessionError>>,
    ),
    /// Host: renew the relay, then answer the viewer's restart offer.
    AnswerRestart(
        String,
        Option<RelayServer>,
        oneshot::Sender<Result<String, SessionError>>,
    ),
    /// Viewer: apply the host's answer to the restart.
    ApplyAnswer(String, oneshot::Sender<Result<(), SessionError>>),
    Close,
}

/// A renegotiation waiting for the new TURN allocation (or its deadline).
enum Renegotiation {
    Offer(oneshot::Sender<Result<String, SessionError>>),
    Answer(String, oneshot::Sender<Result<String, SessionError>>),
}

impl Renegotiation {
    fn complete(self, session: &mut Session) {
        match self {
            Renegotiation::Offer(reply) => {
                let _ = reply.send(session.restart_offer());
            }
            Renegotiation::Answer(offer, reply) => {
                let _ = reply.send(session.accept_offer(&offer));
            }
        }
    }
}

/// The application's side of a running session.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    cmds: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Control(_) => "Control",
            Command::ControlBytes(_) => "ControlBytes",
            Command::Video { .. } => "Video",
            Command::RequestKeyframe => "RequestKeyframe",
            Command::RestartOffer(..) => "RestartOffer",
            Command::AnswerRestart(..) => "AnswerRestart",
            Command::ApplyAnswer(..) => "ApplyAnswer",
            Command::Close => "Close",
        })
    }
}

impl DriverHandle {
    /// Queues a control message (waits while the queue is full).
    pub async fn send_control(&self, msg: ControlMessage) -> Result<(), SessionError> {
        self.cmds
            .send(Command::Control(msg))
            .await
            .map_err(|_| SessionError::State("the session has ended"))
    }

    /// Queues raw bytes for the control channel, as a misbehaving peer would send them (for
    /// tests of the receiver; see [`Session::send_control_bytes`]).
    pub async fn send_control_bytes(&self, bytes: Vec<u8>) -> Result<(), SessionError> {
        self.cmds
            .send(Command::ControlBytes(bytes))
            .await
            .map_err(|_| SessionError::State("the session has ended"))
    }

    /// Queues a control message without waiting; `false` if the queue is full or the session
    /// has ended (for messages a newer one replaces, like cursor positions).
    pub fn try_send_control(&self, msg: ControlMessage) -> bool {
        self.cmds.try_send(Command::Control(msg)).is_ok()
    }

    /// Whether the driver task has ended.
    pub fn is_closed(&self) -> bool {
        self.cmds.is_closed()
    }

    /// Offers an encoded frame; `false` if the queue is full (the frame is dropped: force a
    /// keyframe next) or the session has ended.
    pub fn try_send_video(&self, codec: VideoCodec, time_90khz: u64, frame: Vec<u8>) -> bool {
        self.cmds
            .try_send(Command::Video {
                codec,
                time_90khz,
                frame,
            })
            .is_ok()
    }

    /// Asks the host for a keyframe.
    pub async fn request_keyframe(&self) -> Result<(), SessionError> {
        self.cmds
            .send(Command::RequestKeyframe)
            .await
            .map_err(|_| SessionError::State("the session has ended"))
    }

    /// Viewer: an ICE restart offer, made once the relay (if any) has been allocated anew
    /// (at most [`GATHER_TIMEOUT`]) — with `fresh`, a new credential, when given. Seal it and
    /// send it to the host.
    pub async fn restart_offer(&self, fresh: Option<RelayServer>) -> Result<String, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::RestartOffer(fresh, tx))
            .await
            .map_err(|_| SessionError::State("the session has ended"))?;
        rx.await
            .map_err(|_| SessionError::State("the session has ended"))?
    }

    /// Host: the answer to the viewer's ICE restart offer (already opened and checked by
    /// the sealed channel), made once the relay (if any) has been allocated anew.
    pub async fn answer_restart(
        &self,
        offer: String,
        fresh: Option<RelayServer>,
    ) -> Result<String, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::AnswerRestart(offer, fresh, tx))
            .await
            .map_err(|_| SessionError::State("the session has ended"))?;
        rx.await
            .map_err(|_| SessionError::State("the session has ended"))?
    }

    /// Viewer: applies the host's answer to the restart (opened and checked).
    pub async fn apply_answer(&self, answer: String) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Command::ApplyAnswer(answer, tx))
            .await
            .map_err(|_| SessionError::State("the session has ended"))?;
        rx.await
            .map_err(|_| SessionError::State("the session has ended"))?
    }

    /// Ends the session.
    pub async fn close(&self) {
        let _ = self.cmds.send(Command::Close).await;
    }
}

/// Ends a session that never got a driver (its handshake failed): closes it and sends what
/// closing produces — the release of its relay allocation, which the relay would otherwise
/// hold, and count against the credential's quota, until it expires.
pub async fn abandon(mut session: Session, mut link: Link) {
    session.close();
    while let Some(t) = session.poll_transmit() {
        link.send(&t).await;
    }
}

/// Starts the task that drives `session` over `link`. Events arrive on the returned
/// receiver; the task ends when the session closes or every handle is dropped.
pub fn spawn(
    session: Session,
    link: Link,
) -> (DriverHandle, mpsc::Receiver<SessionEvent>, JoinHandle<()>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let task = tokio::spawn(run(session, link, cmd_rx, ev_tx));
    (DriverHandle { cmds: cmd_tx }, ev_rx, task)
}

async fn run(
    mut session: Session,
    mut link: Link,
    mut cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<SessionEvent>,
) {
    if let Err(e) = link.local_addr() {
        let _ = events
            .send(SessionEvent::Closed(Some(SessionError::Rtc(e.to_string()))))
            .await;
        return;
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut early = 0u32;
    // A renegotiation waits for its new allocation until this deadline.
    let mut renegotiation: Option<(Renegotiation, Instant)> = None;
    loop {
        if let Some((_, due)) = &renegotiation {
            let allocating = session.relay_state() == Some(crate::relay::RelayState::Allocating);
            if !allocating || Instant::now() >= *due {
                if let Some((r, _)) = renegotiation.take() {
                    r.complete(&mut session);
                }
            }
        }
        // Flush what the last step produced.
        while let Some(t) = session.poll_transmit() {
            link.send(&t).await;
        }
        while let Some(e) = session.poll_event() {
            let closed = matches!(e, SessionEvent::Closed(_));
            match e {
                SessionEvent::Video { .. } => {
                    if events.try_send(e).is_err() && !events.is_closed() {
                        tracing::debug!("viewer behind: dropped a frame, asking for a keyframe");
                        let _ = session.request_keyframe();
                    }
                }
                other => {
                    if events.send(other).await.is_err() {
                        session.close();
                        return;
                    }
                }
            }
            if closed {
                return;
            }
        }
        // The pacer asks to be woken every packet or so, often sooner than the runtime's 1 ms
        // timer can: waiting for the timer would cap sending at ~1000 packets a second (a 1080p
        // keyframe would take ~0.3 s on loopback). A deadline less than a timer tick away is
        // served at once — at most a tick early — a bounded number of times in a row, so
        // receiving is never starved.
        let due = session.poll_timeout();
        if due <= Instant::now() + TIMER_TICK && early < MAX_EARLY {
            early += 1;
            session.handle_timeout(due.max(Instant::now()));
            continue;
        }
        early = 0;
        let due = match &renegotiation {
            Some((_, by)) => due.min(*by),
            None => due,
        };
        let deadline = tokio::time::Instant::from_std(due);
        tokio::select! {
            got = link.recv(&mut buf) => {
                if let Err(e) = link.deliver(&mut session, &buf, got) {
                    tracing::debug!(error = %e, "cannot read the socket's address");
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(Command::Control(m)) => {
                    if let Err(e) = session.send_control(&m) {
                        tracing::debug!(error = %e, "control message not sent");
                    }
                }
                Some(Command::ControlBytes(b)) => {
                    if let Err(e) = session.send_control_bytes(&b) {
                        tracing::debug!(error = %e, "control bytes not sent");
                    }
                }
                Some(Command::Video { codec, time_90khz, frame }) => {
                    if let Err(e) = session.send_video(Instant::now(), codec, time_90khz, &frame) {
                        tracing::debug!(error = %e, "frame not sent");
                    }
                }
                Some(Command::RequestKeyframe) => {
                    let _ = session.request_keyframe();
                }
                Some(Command::RestartOffer(fresh, reply)) => {
                    let r = Renegotiation::Offer(reply);
                    if session.renew_relay(Instant::now(), fresh) {
                        link.follow_relay(&session).await;
                        renegotiation = Some((r, Instant::now() + GATHER_TIMEOUT));
                    } else {
                        r.complete(&mut session);
                    }
                }
                Some(Command::AnswerRestart(offer, fresh, reply)) => {
                    let r = Renegotiation::Answer(offer, reply);
                    if session.renew_relay(Instant::now(), fresh) {
                        link.follow_relay(&session).await;
                        renegotiation = Some((r, Instant::now() + GATHER_TIMEOUT));
                    } else {
                        r.complete(&mut session);
                    }
                }
                Some(Command::ApplyAnswer(answer, reply)) => {
                    let _ = reply.send(session.accept_answer(&answer));
                }
                Some(Command::Close) | None => session.close(),
            },
            () = tokio::time::sleep_until(deadline) => session.handle_timeout(Instant::now()),
        }
    }
}

/// Drives `session` over `link` until its TURN allocation is made or has failed, or until
/// `deadline` — before the SDP is written, so the relayed candidate is in it. Returns the
/// allocation's state (`None`: the session has no relay).
pub async fn gather(
    session: &mut Session,
    link: &mut Link,
    deadline: Instant,
) -> Option<crate::relay::RelayState> {
    use crate::relay::RelayState;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        while let Some(t) = session.poll_transmit() {
            link.send(&t).await;
        }
        let state = session.relay_state()?;
        if state != RelayState::Allocating || Instant::now() >= deadline {
            return Some(state);
        }
        let wake = tokio::time::Instant::from_std(session.poll_timeout().min(deadline));
        tokio::select! {
            got = link.recv(&mut buf) => {
                link.deliver(session, &buf, got).ok()?;
            }
            () = tokio::time::sleep_until(wake) => session.handle_timeout(Instant::now()),
        }
    }
}

/// How long gathering a relayed candidate may take.
pub const GATHER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Adds a relayed candidate to `session` from the relay a credential names — `(urls,
/// username, password)` — and waits for it ([`gather`]). Over UDP first, then (after
/// 1.5 s without an allocation) over TCP if the relay takes it; with `tcp_first` — UDP was
/// blocked last time — the other way round. With [`RelayUse::Only`] anything
/// that prevents it is an error (in words); with [`RelayUse::Fallback`] the session goes on
/// without. Returns the relayed address.
///
/// [`RelayUse::Only`]: crate::relay::RelayUse::Only
/// [`RelayUse::Fallback`]: crate::relay::RelayUse::Fallback
pub async fn relay_candidate(
    session: &mut Session,
    link: &mut Link,
    relay_use: crate::relay::RelayUse,
    credential: Option<(&[String], &str, &str)>,
    tcp_first: bool,
) -> Result<Option<SocketAddr>, String> {
    use crate::relay::{RelayState, RelayUse};
    let only = relay_use == RelayUse::Only;
    let (urls, username, password) = match (relay_use, credential) {
        (RelayUse::Off, _) | (RelayUse::Fallback, None) => return Ok(None),
        (_, Some(c)) => c,
        (RelayUse::Only, None) => {
            return Err(
                "the signaling server issued no relay credential (does it run a relay?)".into(),
            )
        }
    };
    let Some(server) = crate::relay::resolve(urls, username, password).await else {
        return if only {
            Err(format!("none of the relays {urls:?} could be resolved"))
        } else {
            Ok(None)
        };
    };
    // UDP first; where it gets no allocation soon and the relay takes TCP, over TCP.
    let mut attempts = vec![server.clone()];
    attempts.extend(server.over_tcp().filter(|_| !server.tcp));
    if tcp_first {
        attempts.reverse();
    }
    let mut failure = String::new();
    for (i, relay) in attempts.iter().enumerate() {
        let last = i + 1 == attempts.len();
        session.add_relay(Instant::now(), relay);
        if relay.tcp {
            if let Err(e) = link.connect_relay(relay.addr).await {
                failure = e;
                continue;
            }
        }
        let wait = if last {
            GATHER_TIMEOUT
        } else {
            UDP_ALLOCATE_TIMEOUT
        };
        let state = gather(session, link, Instant::now() + wait).await;
        if let Some(RelayState::Allocated(a)) = state {
            if relay.tcp && i > 0 {
                tracing::info!(relay = %relay.addr, "no allocation over UDP: relaying over TCP");
            }
            return Ok(Some(a));
        }
        failure = format!(
            "the relay at {} gave no allocation over {} ({state:?}): refused credentials, a \
             full quota, or no path to it",
            relay.addr,
            if relay.tcp { "TCP" } else { "UDP" }
        );
    }
    if only {
        return Err(failure);
    }
    tracing::info!("going on without a relayed candidate: {failure}");
    Ok(None)
}
