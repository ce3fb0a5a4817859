//! What the page and the state machine say to each other: one JSON object per message,
//! its `type` naming it. The page is the shell: it owns the WebSocket, the
//! `RTCPeerConnection`, the clock and the screen; it feeds what happened in as an [`Input`]
//! and does what each [`Output`] says. Byte strings are standard base64.
//!
//! Everything here comes from the page, which is trusted code; what the page relays from the
//! signaling server and the host is still untrusted, and is parsed into `Result`s further in.

use serde::{Deserialize, Serialize};

/// How the page is configured when the machine is made (see [`crate::WebViewer::new`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The device identity key's 32-byte seed, kept by the page in IndexedDB (base64).
    pub identity_seed: String,
    /// 32 fresh bytes from `crypto.getRandomValues` (base64): the seed of every random
    /// value the machine draws.
    pub random_seed: String,
    /// How this viewer introduces itself to hosts.
    pub label: String,
    /// The SHA-256 fingerprint of the page's persistent DTLS certificate, in SDP form
    /// (`AB:CD:…`): it goes into the handshake transcript.
    pub fingerprint: String,
    /// The signaling server's `host[:port]`, as in the WebSocket URL (registration
    /// signatures cover it).
    pub origin: String,
    /// Who served the page: `"local"` (the viewer's own sealdesk) or `"server"` (the
    /// signaling server). The host is told, inside the encrypted identity.
    pub served_by: ServedBy,
    /// Hosts this browser paired with (kept by the page).
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// Seconds the host has to answer each message (default 30; tests shorten it).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// Who served the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedBy {
    /// The viewer's own `sealdesk connect --web`, on its machine.
    Local,
    /// The signaling server (`sealdesk server --web-viewer`).
    Server,
}

/// A host this browser paired with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Its routing number.
    pub routing: u32,
    /// Its identity key (base64).
    pub key: String,
    /// What it called itself.
    pub label: String,
}

/// Something that happened, for the machine.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Input {
    /// A new WebSocket to the signaling server opened: start registering.
    ServerOpen,
    /// A text frame from the signaling server.
    Server {
        /// The frame.
        text: String,
    },
    /// The WebSocket closed.
    ServerClosed {
        /// Its close code.
        code: u16,
        /// Its reason.
        reason: String,
    },
    /// The user asks to connect with a one-time code.
    Dial {
        /// What the user typed.
        code: String,
        /// Everything through the relay (`iceTransportPolicy: 'relay'`).
        #[serde(default)]
        relay_only: bool,
    },
    /// The user asks to connect to a paired host (unattended).
    DialPaired {
        /// Its routing number.
        routing: u32,
        /// Everything through the relay.
        #[serde(default)]
        relay_only: bool,
    },
    /// The user asks to pair with the host showing this code (`sealdesk pair host`).
    Pair {
        /// What the user typed.
        code: String,
    },
    /// The page made the offer [`Output::CreateOffer`] asked for (ICE gathering complete).
    Offer {
        /// The SDP.
        sdp: String,
    },
    /// The page could not make the offer or apply the answer.
    RtcFailed {
        /// The browser's words.
        message: String,
    },
    /// The connection's DTLS certificates as `getStats()` reports them, once connected.
    Dtls {
        /// The local certificate's fingerprint (SDP form), or empty if none was reported.
        local: String,
        /// The remote certificate's fingerprint (SDP form), or empty.
        remote: String,
        /// The hash function `getStats()` named for the remote one.
        algorithm: String,
    },
    /// A message arrived on the `control` data channel (base64).
    Control {
        /// The bytes.
        data: String,
    },
    /// The pointer is at this pixel of the streamed monitor.
    Pointer {
        /// Column.
        x: f64,
        /// Row.
        y: f64,
    },
    /// A pointer button changed (`MouseEvent.button`: 0 left, 1 middle, 2 right, 3 back,
    /// 4 forward).
    Button {
        /// The DOM button number.
        button: u8,
        /// Pressed or released.
        down: bool,
    },
    /// The wheel turned (`WheelEvent`, already in pixels).
    Wheel {
        /// Horizontal pixels.
        dx: f64,
        /// Vertical pixels.
        dy: f64,
    },
    /// A key changed (`KeyboardEvent.code`, and `.key` for keys without a code).
    Key {
        /// The physical key.
        code: String,
        /// What it types (used only when `code` names no key of a US keyboard).
        #[serde(default)]
        key: Option<String>,
        /// Pressed or released.
        down: bool,
    },
    /// Release every key and button (the page lost focus or is going away).
    ReleaseAll,
    /// The user's clipboard text, to give to the host.
    Clipboard {
        /// The text.
        text: String,
    },
    /// Show another monitor of the host.
    SelectMonitor {
        /// Its index in the layout.
        index: u8,
    },
    /// The video decoder needs a keyframe.
    RequestKeyframe,
    /// The user ends the session (or the attempt).
    End,
    /// Time passed (the page calls this every 250 ms), with what `getStats()` measured.
    Tick {
        /// Frames decoded per second.
        #[serde(default)]
        fps: f64,
        /// Video kilobits per second received.
        #[serde(default)]
        kbps: f64,
        /// Whether the selected candidate pair is relayed, once known.
        #[serde(default)]
        relayed: Option<bool>,
    },
}

/// A TURN server for the `RTCPeerConnection` (its `RTCIceServer` form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// `turn:` URLs.
    pub urls: Vec<String>,
    /// The time-limited username.
    pub username: String,
    /// Its password.
    pub credential: String,
}

/// Why an attempt or a session ended, for the page to choose its words and looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// What the user typed is not a code.
    BadCode,
    /// The code was wrong, or someone tampered (key confirmation failed).
    WrongCode,
    /// No attempts are left with this code: it is burned.
    CodeBurned,
    /// Something was changed on the way: a fingerprint, a downgrade, an identity proof.
    Tampering,
    /// The host (or its user) refused.
    Refused,
    /// Nobody answered in time.
    Timeout,
    /// The host is not connected to this server.
    Offline,
    /// The signaling server failed or misbehaved.
    Signaling,
    /// The browser's WebRTC failed.
    Rtc,
    /// Anything else.
    Other,
}

/// A monitor of the host (its place in the X screen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MonitorInfo {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// The primary one.
    pub primary: bool,
}

/// What the page must do or show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    /// Send this text frame to the signaling server.
    Send {
        /// The frame.
        text: String,
    },
    /// Close the WebSocket (the server broke the protocol) and open a new one.
    Reconnect {
        /// Why, for people.
        text: String,
    },
    /// This device (its identity fingerprint, for the user to compare).
    Identity {
        /// `sealdesk identity`'s form of the fingerprint.
        fingerprint: String,
    },
    /// Registered with the signaling server: connecting is possible now.
    Registered {
        /// This browser's routing number, grouped.
        routing: String,
    },
    /// Progress to show.
    Progress {
        /// Words for people.
        text: String,
    },
    /// The host proved the code (or its pinned key): who it is.
    HostProved {
        /// What it calls itself (untrusted text).
        label: String,
        /// Its device fingerprint.
        fingerprint: String,
        /// The safety number of this browser and the host (60 digits, grouped).
        safety_number: String,
    },
    /// Make the `RTCPeerConnection` (with the persistent certificate), a receive-only video
    /// transceiver and the `control` data channel, wait for ICE gathering, and give the
    /// offer back ([`Input::Offer`]). Asked for when the handshake starts, so the candidates
    /// are gathered while it runs; the offer is sent only once the host has accepted.
    CreateOffer {
        /// The relay(s) the server issued a credential for.
        ice_servers: Vec<IceServer>,
        /// `iceTransportPolicy: 'relay'`.
        relay_only: bool,
    },
    /// Apply this answer (its fingerprint is the authenticated host's: checked).
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// Both DTLS certificates are the authenticated ones: show the video, take input.
    Verified {
        /// What the host allows (`sealdesk_auth::trust::Permissions` bits).
        permissions: u16,
        /// The same, in words.
        allowed: String,
    },
    /// Send these bytes on the `control` data channel (base64).
    Control {
        /// The bytes.
        data: String,
    },
    /// The host's clipboard text: put it on this machine's clipboard (where allowed).
    Clipboard {
        /// The text.
        text: String,
    },
    /// The host's monitors and the one the video shows.
    Monitors {
        /// The layout.
        monitors: Vec<MonitorInfo>,
        /// The streamed one.
        active: u8,
    },
    /// What the host allows now.
    Permissions {
        /// Bits.
        permissions: u16,
        /// In words.
        allowed: String,
    },
    /// The host refused input (view only), a running count.
    InputRefused {
        /// How many events so far.
        count: u32,
    },
    /// The host's pointer position (hotspot, streamed monitor pixels).
    Cursor {
        /// Column.
        x: i32,
        /// Row.
        y: i32,
    },
    /// The host's pointer image (straight-alpha RGBA, base64).
    CursorShape {
        /// Width.
        width: u16,
        /// Height.
        height: u16,
        /// Hotspot column.
        hot_x: u16,
        /// Hotspot row.
        hot_y: u16,
        /// The pixels.
        rgba: String,
    },
    /// The host records this session (or stopped).
    Recording {
        /// Recording now.
        active: bool,
        /// For whom (untrusted text).
        owner: String,
    },
    /// What to show in the stats line.
    Stats {
        /// Frames per second.
        fps: f64,
        /// Kilobits per second.
        kbps: f64,
        /// The control channel's round trip, once measured.
        rtt_ms: Option<f64>,
        /// `"direct"` or `"relay"`, once known.
        path: Option<String>,
    },
    /// Something suspicious that did not end anything (a forged signaling message dropped).
    Warning {
        /// Words for people.
        text: String,
    },
    /// The attempt or the session failed: show this, close the `RTCPeerConnection`, release
    /// everything. A new attempt may follow.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// Words for people.
        text: String,
        /// Attempts left with this code, when one was tried.
        attempts_left: Option<u8>,
    },
    /// The session ended without a failure: close the `RTCPeerConnection`.
    Ended {
        /// Why.
        text: String,
    },
    /// Paired: store this host (the page keeps the list).
    Paired {
        /// The host.
        pin: Pin,
        /// What it allows, in words.
        allowed: String,
    },
}
