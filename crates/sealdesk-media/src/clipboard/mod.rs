//! Text clipboard sync with the X11 `CLIPBOARD` selection (ICCCM §2).
//!
//! A [`Clipboard`] owns its own X connection, a private unmapped window and a background thread
//! that serves and watches the selection:
//!
//! * [`Clipboard::set_text`] makes us the `CLIPBOARD` owner with a text (the peer copied
//!   something); any X client that pastes gets it. We answer `TARGETS`, `TIMESTAMP`,
//!   `UTF8_STRING`, `text/plain;charset=utf-8`, `TEXT` and `STRING`, and refuse every other
//!   target (including `MULTIPLE`) with property `None`. `STRING` is ISO 8859-1: it is served
//!   (and listed in `TARGETS`) only when every character is representable, since a lossy
//!   conversion would paste something the user did not copy; `TEXT` is answered as `STRING`
//!   then, else as `UTF8_STRING`. Texts above [`INCR_CHUNK_BYTES`] (or above what one request
//!   may carry, if less) go by the INCR protocol; each transfer is dropped when its requestor
//!   stops reading for [`INCR_SEND_TIMEOUT`], and other requestors are served meanwhile.
//! * [`Clipboard::take_changes`] gives the channel on which the thread reports what *other* X
//!   clients copy (XFixes selection
//!   notification): the thread converts the new owner's selection to `UTF8_STRING` (falling back
//!   to `STRING`), reads it (INCR included) and sends one [`ClipboardEvent`]. Our own
//!   `set_text` is never reported, and neither is a text equal to the last one set or reported
//!   (a clipboard manager re-taking ownership with the same text, say). A text over the limit,
//!   not text, malformed, or not delivered within [`CHANGE_ANSWER_TIMEOUT`] per step becomes a
//!   [`ClipboardEvent::Refused`] that carries no content.
//! * [`Clipboard::get_text`] reads the current text once.
//!
//! The other X clients are not trusted: sizes are checked against `max_bytes` before anything
//! is read, every wait has a deadline, every queue is bounded, and nothing they send can
//! panic the thread. Clipboard texts are user secrets: nothing here logs them, and the `Debug`
//! impls print lengths only.
//!
//! The thread sleeps in `poll(2)` on the X connection and a wake-up socket (no busy loop), and
//! ends when the [`Clipboard`] is dropped; closing its connection makes the X server destroy
//! the window and drop our ownership.
//!
//! # Driving it
//!
//! ```no_run
//! use std::time::Duration;
//! use sealdesk_media::clipboard::{Clipboard, ClipboardEvent};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clipboard = Clipboard::connect(None, 1 << 20)?; // $DISPLAY, texts up to 1 MiB
//! let changes = clipboard.take_changes().ok_or("taken already")?;
//! // On a thread of its own, forward what programs on this display copy:
//! std::thread::spawn(move || {
//!     while let Ok(event) = changes.recv() {
//!         match event {
//!             ClipboardEvent::Text(text) => { /* send `text` over the control channel */ }
//!             ClipboardEvent::Refused(why) => { /* tell the user: `why` has no content */ }
//!             _ => {}
//!         }
//!     }
//! });
//! // The peer copied something:
//! clipboard.set_text("from the viewer".to_owned())?;
//! // Or read what is there once:
//! let _now: Option<String> = clipboard.get_text(Duration::from_secs(2))?;
//! # Ok(())
//! # }
//! ```

mod atoms;
mod fetch;
mod serve;
mod text;
mod worker;

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use x11rb::connection::{Connection as _, RequestConnection as _};
use x11rb::errors::{ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::xfixes::{self, ConnectionExt as _, SelectionEventMask};
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateWindowAux, EventMask, Window, WindowClass,
};

use crate::x11::{self, XError};
use atoms::Atoms;
use worker::{Command, Ctx, Links, Worker};

/// Texts longer than this (in bytes of the property) are served with INCR, in chunks of this
/// size. Every current toolkit reads INCR; a smaller chunk keeps one request from holding up
/// the X server and the requestor for long.
pub const INCR_CHUNK_BYTES: usize = 64 * 1024;

/// How long another client's INCR transfer may stall (not delete our last chunk) before we
/// drop it.
pub const INCR_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new owner may take to answer our conversion, and each INCR chunk after it,
/// when the change is read for [`Clipboard::take_changes`].
pub const CHANGE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a change may take to read in full (a slow owner cannot hold the thread longer).
const CHANGE_TOTAL_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest timeout [`Clipboard::get_text`] honours; longer ones are shortened to this.
pub const MAX_GET_TIMEOUT: Duration = Duration::from_secs(60);

/// How many [`ClipboardEvent`]s wait in the channel; when it is full the thread keeps only
/// the newest change beyond it and delivers it when there is room (older ones are dropped:
/// only the latest clipboard matters).
pub const CHANGES_CAPACITY: usize = 8;

/// How long the server may take to tell us its time (an empty property append round trip).
const SERVER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a call waits for the thread beyond its own deadlines.
const WORKER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long drop waits for the thread to end before leaving it to finish on its own.
const DROP_TIMEOUT: Duration = Duration::from_secs(2);

/// Most INCR transfers served at once; a new one replaces the most stalled.
const MAX_INCR_SENDS: usize = 16;

/// Most `get_text` calls queued behind a fetch in progress.
const MAX_PENDING_GETS: usize = 4;

/// Most events kept while waiting for the server time.
const MAX_STASHED_EVENTS: usize = 4096;

/// Events handled before the thread looks at commands and deadlines again.
const MAX_EVENTS_PER_ROUND: usize = 256;

/// How often the thread retries to deliver a change while the channel is full.
const SEND_RETRY: Duration = Duration::from_millis(50);

/// Why a text offered by another client was not taken. Carries no content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The text (in UTF-8), or the size its owner announced, is above `max_bytes`.
    #[error("the clipboard text is larger than the {limit}-byte limit")]
    TooLarge {
        /// The `max_bytes` given to [`Clipboard::connect`].
        limit: usize,
    },
    /// The owner has no text: it refused both `UTF8_STRING` and `STRING`, or answered with a
    /// type that is not text (an image, say).
    #[error("the clipboard holds something that is not text")]
    NotText,
    /// The owner's answer breaks the protocol or is not valid text.
    #[error("the clipboard owner sent a malformed answer: {what}")]
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
    /// The owner did not answer (or stopped in the middle of an INCR transfer).
    #[error(
        "the clipboard owner did not answer within {after:?}; the program that copied may be \
         hung"
    )]
    NoAnswer {
        /// How long we waited.
        after: Duration,
    },
}

/// A change of the `CLIPBOARD` made by another X client.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClipboardEvent {
    /// The new text (at most `max_bytes` bytes).
    Text(String),
    /// Another client copied something we did not take; it has no content.
    Refused(Refusal),
}

impl std::fmt::Debug for ClipboardEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never the text: clipboard contents are user secrets.
            Self::Text(text) => f.debug_struct("Text").field("bytes", &text.len()).finish(),
            Self::Refused(why) => f.debug_tuple("Refused").field(why).finish(),
        }
    }
}

/// Why a clipboard operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipboardError {
    /// Talking to the X server failed (see [`XError`]).
    #[error(transparent)]
    X(#[from] XError),
    /// [`Clipboard::set_text`] was given a text above the limit; the clipboard is unchanged.
    #[error(
        "the text to copy is {size} bytes, more than the {limit}-byte clipboard limit; it was \
         not copied"
    )]
    TooLarge {
        /// The text's length in bytes.
        size: usize,
        /// The `max_bytes` given to [`Clipboard::connect`].
        limit: usize,
    },
    /// [`Clipboard::get_text`] found a text but did not take it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The server did not make us the owner (another client took the selection at the same
    /// moment); the clipboard now holds that client's copy.
    #[error("another X client took the CLIPBOARD at the same moment; the text was not copied")]
    NotOwner,
    /// The X server, or the clipboard thread waiting for it, did not answer in time (another
    /// client may have grabbed the server). The request may still be carried out later.
    #[error(
        "the X server did not answer the clipboard within {after:?} (another client may have \
         grabbed the server); try again"
    )]
    ServerTimeout {
        /// How long we waited.
        after: Duration,
    },
    /// Too many [`Clipboard::get_text`] calls are waiting already.
    #[error("too many clipboard reads are waiting for a slow owner; try again later")]
    Busy,
    /// The clipboard thread has stopped (its X connection broke).
    #[error("the clipboard thread has stopped ({reason}); connect again")]
    Stopped {
        /// Why it stopped.
        reason: String,
    },
    /// The thread or its wake-up socket could not be created (a local failure).
    #[error("cannot start the clipboard thread: {0}")]
    Start(#[source] std::io::Error),
}

impl From<ConnectionError> for ClipboardError {
    fn from(e: ConnectionError) -> Self {
        Self::X(e.into())
    }
}
impl From<ReplyError> for ClipboardError {
    fn from(e: ReplyError) -> Self {
        Self::X(e.into())
    }
}
impl From<ReplyOrIdError> for ClipboardError {
    fn from(e: ReplyOrIdError) -> Self {
        Self::X(e.into())
    }
}

/// The `CLIPBOARD` of one X display, served and watched by a background thread. See the
/// [module docs](self).
///
/// `Send` and `Sync`: share it in an `Arc`; [`Clipboard::take_changes`] gives the receiver
/// of changes to the thread that forwards them.
pub struct Clipboard {
    commands: Sender<Command>,
    wake: UnixStream,
    /// Until taken. In a `Mutex` only so that `Clipboard` is `Sync` (a `Receiver` is not).
    changes: Mutex<Option<Receiver<ClipboardEvent>>>,
    stopped: Arc<OnceLock<String>>,
    /// Disconnected once the thread has ended.
    exited: Mutex<Receiver<()>>,
    thread: Option<JoinHandle<()>>,
    window: Window,
    max_bytes: usize,
}

impl std::fmt::Debug for Clipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clipboard")
            .field("window", &self.window)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Clipboard {
    /// Connect to `display` (`None` means `$DISPLAY`) and start the clipboard thread. Texts
    /// larger than `max_bytes` UTF-8 bytes (capped at `u32::MAX`) are refused both ways.
    ///
    /// Needs XFIXES 1.0 (selection notification). What another client copied before this
    /// call is not reported; read it with [`Clipboard::get_text`].
    pub fn connect(display: Option<&str>, max_bytes: usize) -> Result<Self, ClipboardError> {
        let max_bytes = max_bytes.min(usize::try_from(u32::MAX).unwrap_or(usize::MAX));
        let (conn, screen) = x11::connect(display)?;
        let root = x11::root_of(&conn, screen)?;
        if !x11::has_extension(&conn, xfixes::X11_EXTENSION_NAME)? {
            return Err(XError::MissingExtension {
                name: "XFIXES",
                major: 1,
                minor: 0,
            }
            .into());
        }
        let v = conn.xfixes_query_version(5, 0)?.reply()?;
        x11::require_version("XFIXES", (v.major_version, v.minor_version), (1, 0))?;
        let atoms = Atoms::intern(&conn)?;

        let window = conn.generate_id()?;
        conn.create_window(
            0, // InputOnly windows have depth 0
            window,
            root,
            -10,
            -10,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            x11rb::COPY_FROM_PARENT,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )?
        .check()?;
        conn.xfixes_select_selection_input(
            window,
            atoms.clipboard,
            SelectionEventMask::SET_SELECTION_OWNER,
        )?
        .check()?;
        // A ChangeProperty request has a 24-byte header; keep some slack.
        let chunk = INCR_CHUNK_BYTES.min(conn.maximum_request_bytes().saturating_sub(64));

        let (wake, worker_wake) = UnixStream::pair().map_err(ClipboardError::Start)?;
        for end in [&wake, &worker_wake] {
            end.set_nonblocking(true).map_err(ClipboardError::Start)?;
        }
        let (commands, commands_rx) = mpsc::channel();
        let (changes_tx, changes) = mpsc::sync_channel(CHANGES_CAPACITY);
        let (exited_tx, exited) = mpsc::sync_channel(0);
        let stopped = Arc::new(OnceLock::new());
        let ctx = Ctx {
            conn,
            window,
            atoms,
            max_bytes,
            chunk,
        };
        let links = Links {
            commands: commands_rx,
            wake: worker_wake,
            changes: changes_tx,
            stopped: Arc::clone(&stopped),
            _exited: exited_tx,
        };
        let worker = Worker::new(ctx, links);
        let thread = std::thread::Builder::new()
            .name("sealdesk-clipboard".to_owned())
            .spawn(move || worker.run())
            .map_err(ClipboardError::Start)?;
        Ok(Self {
            commands,
            wake,
            changes: Mutex::new(Some(changes)),
            stopped,
            exited: Mutex::new(exited),
            thread: Some(thread),
            window,
            max_bytes,
        })
    }

    /// Become the `CLIPBOARD` owner with `text` and serve it to any X client that asks, until
    /// another client copies something (or this [`Clipboard`] is dropped).
    ///
    /// Returns once the X server has made us the owner. A text above `max_bytes` is
    /// [`ClipboardError::TooLarge`] and changes nothing. Not reported as a change.
    pub fn set_text(&self, text: String) -> Result<(), ClipboardError> {
        if text.len() > self.max_bytes {
            return Err(ClipboardError::TooLarge {
                size: text.len(),
                limit: self.max_bytes,
            });
        }
        let (reply, result) = mpsc::sync_channel(1);
        self.send(Command::Set { text, reply })?;
        self.wait(&result, SERVER_TIMEOUT + WORKER_TIMEOUT)
    }

    /// What other X clients copy, in order: one [`ClipboardEvent`] per change, on a plain
    /// `std::sync::mpsc` receiver. The first call returns it (move it to the thread that
    /// forwards changes), later calls `None`.
    ///
    /// The channel holds at most [`CHANGES_CAPACITY`] events (see there for what happens when
    /// nobody reads it); it disconnects when the clipboard thread stops.
    pub fn take_changes(&self) -> Option<Receiver<ClipboardEvent>> {
        match self.changes.lock() {
            Ok(mut changes) => changes.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// Read the current `CLIPBOARD` text once, waiting at most `timeout` (at most
    /// [`MAX_GET_TIMEOUT`]) for its owner.
    ///
    /// `Ok(None)` when nobody owns the clipboard or it holds no text. Our own text comes back
    /// without a round trip through the owner. An owner that does not answer in time is
    /// [`Refusal::NoAnswer`]; a text over the limit [`Refusal::TooLarge`] (both as
    /// [`ClipboardError::Refused`]). Waits for a change being read for [`Clipboard::take_changes`]
    /// to finish first.
    pub fn get_text(&self, timeout: Duration) -> Result<Option<String>, ClipboardError> {
        let timeout = timeout.min(MAX_GET_TIMEOUT);
        let (reply, result) = mpsc::sync_channel(1);
        self.send(Command::Get { timeout, reply })?;
        // The thread answers by `timeout` (queued behind a change or not), plus a server
        // round trip for the timestamp.
        self.wait(&result, timeout + SERVER_TIMEOUT + WORKER_TIMEOUT)
    }

    fn send(&self, command: Command) -> Result<(), ClipboardError> {
        self.commands.send(command).map_err(|_| self.stopped())?;
        self.wake_up();
        Ok(())
    }

    fn wake_up(&self) {
        // WouldBlock: a wake-up is pending already, which is all we need.
        let _ = (&self.wake).write(&[1]);
    }

    fn wait<T>(
        &self,
        result: &Receiver<Result<T, ClipboardError>>,
        timeout: Duration,
    ) -> Result<T, ClipboardError> {
        match result.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ClipboardError::ServerTimeout { after: timeout }),
            Err(RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> ClipboardError {
        // The thread records why before it ends; give it a moment to get there.
        if let Ok(exited) = self.exited.lock() {
            let _ = exited.recv_timeout(Duration::from_millis(200));
        }
        ClipboardError::Stopped {
            reason: self
                .stopped
                .get()
                .cloned()
                .unwrap_or_else(|| "it ended without an error".to_owned()),
        }
    }
}

impl Drop for Clipboard {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        self.wake_up();
        // Disconnected: the thread has ended. On timeout (the X server is stuck) it is left to
        // end on its own rather than hang the caller.
        let exited = match self.exited.get_mut() {
            Ok(exited) => exited.recv_timeout(DROP_TIMEOUT),
            Err(poisoned) => poisoned.into_inner().recv_timeout(DROP_TIMEOUT),
        };
        if let Err(RecvTimeoutError::Disconnected) = exited {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
