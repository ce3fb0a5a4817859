//! The background thread: owns the X connection, waits in `poll(2)` on it and on a wake-up
//! socket, and runs commands, X events and deadlines one at a time.

use std::collections::VecDeque;
use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use x11rb::connection::Connection as _;
use x11rb::errors::ConnectionError;
use x11rb::protocol::xfixes;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ConnectionExt as _, PropMode, Property, Timestamp, Window,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::NONE;

use super::atoms::Atoms;
use super::fetch::{Fetch, Limits, Purpose};
use super::serve::Sends;
use super::text::{Decoded, Owned};
use super::{
    ClipboardError, ClipboardEvent, Refusal, CHANGE_ANSWER_TIMEOUT, CHANGE_TOTAL_TIMEOUT,
    MAX_EVENTS_PER_ROUND, MAX_PENDING_GETS, MAX_STASHED_EVENTS, SEND_RETRY, SERVER_TIMEOUT,
};
use crate::x11::XError;

/// What the owner and requestor sides share: the connection and its fixed facts.
pub(super) struct Ctx {
    pub(super) conn: RustConnection,
    /// Our private, unmapped window: owner of the selection, requestor of conversions.
    pub(super) window: Window,
    pub(super) atoms: Atoms,
    /// Texts above this many UTF-8 bytes are refused.
    pub(super) max_bytes: usize,
    /// Most bytes per property write; larger texts go by INCR.
    pub(super) chunk: usize,
}

/// A request from the [`super::Clipboard`] handle.
pub(super) enum Command {
    Set {
        text: String,
        reply: SyncSender<Result<(), ClipboardError>>,
    },
    Get {
        timeout: Duration,
        reply: SyncSender<Result<Option<String>, ClipboardError>>,
    },
    Shutdown,
}

/// A `get_text` waiting for the fetch in progress to finish.
struct PendingGet {
    started: Instant,
    deadline: Instant,
    reply: SyncSender<Result<Option<String>, ClipboardError>>,
}

/// The channels between the worker and its handle.
pub(super) struct Links {
    pub(super) commands: Receiver<Command>,
    /// Readable when a command was queued; end of file when the handle is gone.
    pub(super) wake: UnixStream,
    pub(super) changes: SyncSender<ClipboardEvent>,
    /// Why the worker stopped, when it stopped on an error.
    pub(super) stopped: Arc<OnceLock<String>>,
    /// Never sent on: the handle learns the worker ended when this is dropped.
    pub(super) _exited: SyncSender<()>,
}

pub(super) struct Worker {
    ctx: Ctx,
    links: Links,
    /// The newest change that did not fit in the changes channel.
    unsent: Option<ClipboardEvent>,
    /// Events read while waiting for the server time, handled before newer ones.
    stash: VecDeque<Event>,
    owned: Option<Owned>,
    /// The text last set by us or reported as a change: an equal text is not reported.
    last_seen: Option<Arc<str>>,
    sends: Sends,
    fetch: Option<Fetch>,
    /// Another client became owner at this server time; fetch its text when idle.
    change_pending: Option<Timestamp>,
    gets: VecDeque<PendingGet>,
    /// Rotates through [`Atoms::properties`], one per fetch.
    fetches_started: usize,
}

/// Is the wake-up socket still connected?
#[derive(PartialEq, Eq)]
enum Wake {
    Open,
    Closed,
}

impl Worker {
    pub(super) fn new(ctx: Ctx, links: Links) -> Self {
        Self {
            ctx,
            links,
            unsent: None,
            stash: VecDeque::new(),
            owned: None,
            last_seen: None,
            sends: Sends::default(),
            fetch: None,
            change_pending: None,
            gets: VecDeque::new(),
            fetches_started: 0,
        }
    }

    /// The property for the next fetch.
    fn next_property(&mut self) -> Atom {
        let properties = &self.ctx.atoms.properties;
        let property = properties
            .get(self.fetches_started % properties.len())
            .copied()
            .unwrap_or_default();
        self.fetches_started = self.fetches_started.wrapping_add(1);
        property
    }

    /// Run until the handle says stop or the connection fails; dropping `self` then closes
    /// the connection, which makes the server destroy the window and drop our ownership.
    pub(super) fn run(mut self) {
        if let Err(e) = self.run_loop() {
            let _ = self.links.stopped.set(e.to_string());
        }
    }

    fn run_loop(&mut self) -> Result<(), XError> {
        loop {
            if !self.commands()? {
                return Ok(());
            }
            tolerate(self.timeouts(Instant::now()))?;
            let drained = self.drain_events()?;
            self.flush_unsent();
            // Only wait when the connection's queue is empty and everything is flushed:
            // `poll` cannot see events x11rb has already read from the socket.
            if drained && self.wait(self.next_timeout(Instant::now()))? == Wake::Closed {
                return Ok(());
            }
        }
    }

    /// Run queued commands; `false` when it is time to stop.
    fn commands(&mut self) -> Result<bool, XError> {
        loop {
            match self.links.commands.try_recv() {
                Ok(Command::Set { text, reply }) => {
                    let result = self.set(text);
                    let _ = reply.try_send(result);
                }
                Ok(Command::Get { timeout, reply }) => {
                    tolerate(self.get(timeout, reply, Instant::now()))?;
                }
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return Ok(false),
                Err(TryRecvError::Empty) => return Ok(true),
            }
        }
    }

    fn set(&mut self, text: String) -> Result<(), ClipboardError> {
        let Some(time) = self.server_time()? else {
            return Err(ClipboardError::ServerTimeout {
                after: SERVER_TIMEOUT,
            });
        };
        let (window, clipboard) = (self.ctx.window, self.ctx.atoms.clipboard);
        self.ctx.conn.set_selection_owner(window, clipboard, time)?;
        if self.owner()? != window {
            return Err(ClipboardError::NotOwner);
        }
        let text: Arc<str> = Arc::from(text);
        self.last_seen = Some(Arc::clone(&text));
        self.owned = Some(Owned::new(text, time));
        // Whatever another client copied before this is superseded.
        self.change_pending = None;
        Ok(())
    }

    fn get(
        &mut self,
        timeout: Duration,
        reply: SyncSender<Result<Option<String>, ClipboardError>>,
        now: Instant,
    ) -> Result<(), XError> {
        let owner = match self.owner() {
            Ok(owner) => owner,
            Err(e) => {
                // A broken connection fails the next request too and stops the thread there.
                let _ = reply.try_send(Err(e.into()));
                return Ok(());
            }
        };
        if owner == NONE {
            let _ = reply.try_send(Ok(None));
        } else if owner == self.ctx.window {
            let text = self.owned.as_ref().map(|o| o.text.to_string());
            let _ = reply.try_send(Ok(text));
        } else if self.gets.len() >= MAX_PENDING_GETS {
            let _ = reply.try_send(Err(ClipboardError::Busy));
        } else {
            self.gets.push_back(PendingGet {
                started: now,
                deadline: now + timeout,
                reply,
            });
            self.start_next(now)?;
        }
        Ok(())
    }

    /// The current owner of the CLIPBOARD.
    fn owner(&self) -> Result<Window, XError> {
        let cookie = self
            .ctx
            .conn
            .get_selection_owner(self.ctx.atoms.clipboard)?;
        Ok(cookie.reply()?.owner)
    }

    /// The server's current time, from the `PropertyNotify` of an empty append to our
    /// window; `None` if the server does not answer within [`SERVER_TIMEOUT`]. Other events
    /// read meanwhile are stashed and handled afterwards.
    fn server_time(&mut self) -> Result<Option<Timestamp>, XError> {
        let (window, probe) = (self.ctx.window, self.ctx.atoms.time_probe);
        let conn = &self.ctx.conn;
        conn.change_property8(PropMode::APPEND, window, probe, AtomEnum::STRING, &[])?;
        conn.flush()?;
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            while let Some(event) = conn.poll_for_event()? {
                if let Event::PropertyNotify(p) = &event {
                    if p.window == window && p.atom == probe {
                        return Ok(Some(p.time));
                    }
                }
                // Past the bound another client is flooding us; what it sent is dropped.
                if self.stash.len() < MAX_STASHED_EVENTS {
                    self.stash.push_back(event);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut fds = [PollFd::new(conn.stream(), PollFlags::IN)];
            poll_fds(&mut fds, deadline - now)?;
        }
    }

    /// Start the next fetch if none is running: waiting `get_text` calls first.
    fn start_next(&mut self, now: Instant) -> Result<(), XError> {
        while self.fetch.is_none() {
            if let Some(get) = self.gets.pop_front() {
                if now >= get.deadline {
                    let after = now.saturating_duration_since(get.started);
                    let _ = get.reply.try_send(Err(Refusal::NoAnswer { after }.into()));
                    continue;
                }
                let Some(time) = self.server_time()? else {
                    let _ = get.reply.try_send(Err(ClipboardError::ServerTimeout {
                        after: SERVER_TIMEOUT,
                    }));
                    continue;
                };
                let limits = Limits {
                    step: get.deadline.saturating_duration_since(now),
                    total: get.deadline,
                    started: get.started,
                };
                let purpose = Purpose::Get(get.reply);
                let property = self.next_property();
                let fetch = Fetch::start(&self.ctx, purpose, property, time, limits, now)?;
                self.fetch = Some(fetch);
            } else if let Some(time) = self.change_pending.take() {
                let limits = Limits {
                    step: CHANGE_ANSWER_TIMEOUT,
                    total: now + CHANGE_TOTAL_TIMEOUT,
                    started: now,
                };
                let property = self.next_property();
                let fetch = Fetch::start(&self.ctx, Purpose::Change, property, time, limits, now)?;
                self.fetch = Some(fetch);
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Handle events until the connection has none queued (`true`), or a bounded number of
    /// them (`false`: more may be queued).
    fn drain_events(&mut self) -> Result<bool, XError> {
        for _ in 0..MAX_EVENTS_PER_ROUND {
            self.ctx.conn.flush()?;
            let event = match self.stash.pop_front() {
                Some(event) => event,
                None => match self.ctx.conn.poll_for_event()? {
                    Some(event) => event,
                    None => return Ok(true),
                },
            };
            tolerate(self.event(event, Instant::now()))?;
        }
        self.ctx.conn.flush()?;
        Ok(false)
    }

    fn event(&mut self, event: Event, now: Instant) -> Result<(), XError> {
        match event {
            Event::SelectionRequest(ev) => {
                self.sends
                    .on_request(&self.ctx, self.owned.as_ref(), &ev, now)?;
            }
            Event::SelectionClear(ev) => self.cleared(ev.selection)?,
            Event::SelectionNotify(ev) => {
                let done = match &mut self.fetch {
                    Some(fetch) => fetch.on_selection_notify(&self.ctx, &ev, now)?,
                    None => None,
                };
                self.fetch_done(done, now)?;
            }
            Event::PropertyNotify(ev) => {
                if ev.state == Property::DELETE {
                    self.sends.on_delete(&self.ctx, &ev, now)?;
                }
                let done = match &mut self.fetch {
                    Some(fetch) => fetch.on_property_notify(&self.ctx, &ev, now)?,
                    None => None,
                };
                self.fetch_done(done, now)?;
            }
            Event::XfixesSelectionNotify(ev) => self.owner_changed(&ev, now)?,
            // X errors here answer unchecked requests to other clients' windows (they went
            // away mid-transfer); the transfer concerned times out.
            _ => {}
        }
        Ok(())
    }

    /// Another client took a selection from us.
    fn cleared(&mut self, selection: Atom) -> Result<(), XError> {
        // A clear can be older than a set_text that followed it: ask the server.
        if selection == self.ctx.atoms.clipboard && self.owner()? != self.ctx.window {
            self.owned = None;
        }
        Ok(())
    }

    fn owner_changed(
        &mut self,
        ev: &xfixes::SelectionNotifyEvent,
        now: Instant,
    ) -> Result<(), XError> {
        if ev.selection != self.ctx.atoms.clipboard {
            return Ok(());
        }
        if ev.owner == self.ctx.window || ev.owner == NONE {
            // Our own set_text (no echo), or nobody owns it: older changes are superseded.
            self.change_pending = None;
            return Ok(());
        }
        self.change_pending = Some(ev.timestamp);
        self.start_next(now)
    }

    fn fetch_done(&mut self, done: Option<Decoded>, now: Instant) -> Result<(), XError> {
        let Some(decoded) = done else {
            return Ok(());
        };
        if let Some(fetch) = self.fetch.take() {
            self.deliver(fetch.purpose, decoded);
        }
        self.start_next(now)
    }

    fn deliver(&mut self, purpose: Purpose, decoded: Decoded) {
        match purpose {
            Purpose::Change => {
                let event = match decoded {
                    Decoded::Text(text) => {
                        if self.last_seen.as_deref() == Some(text.as_str()) {
                            return;
                        }
                        self.last_seen = Some(Arc::from(text.as_str()));
                        ClipboardEvent::Text(text)
                    }
                    Decoded::NotText => ClipboardEvent::Refused(Refusal::NotText),
                    Decoded::Refused(refusal) => ClipboardEvent::Refused(refusal),
                };
                self.emit(event);
            }
            Purpose::Get(reply) => {
                let result = match decoded {
                    Decoded::Text(text) => Ok(Some(text)),
                    Decoded::NotText => Ok(None),
                    Decoded::Refused(refusal) => Err(refusal.into()),
                };
                let _ = reply.try_send(result);
            }
        }
    }

    /// Queue a change; when the channel is full keep only the newest for later.
    fn emit(&mut self, event: ClipboardEvent) {
        if self.unsent.is_some() {
            self.unsent = Some(event);
            return;
        }
        match self.links.changes.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(event)) => self.unsent = Some(event),
        }
    }

    fn flush_unsent(&mut self) {
        if let Some(event) = self.unsent.take() {
            self.emit(event);
        }
    }

    fn timeouts(&mut self, now: Instant) -> Result<(), XError> {
        self.sends.expire(&self.ctx, now)?;
        if self.fetch.as_ref().is_some_and(|f| now >= f.deadline()) {
            if let Some(fetch) = self.fetch.take() {
                let (purpose, refusal) = fetch.abandon(&self.ctx, now)?;
                self.deliver(purpose, Decoded::Refused(refusal));
            }
        }
        while let Some(i) = self.gets.iter().position(|g| now >= g.deadline) {
            if let Some(get) = self.gets.remove(i) {
                let after = now.saturating_duration_since(get.started);
                let _ = get.reply.try_send(Err(Refusal::NoAnswer { after }.into()));
            }
        }
        self.start_next(now)
    }

    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let deadlines = [
            self.sends.next_deadline(),
            self.fetch.as_ref().map(Fetch::deadline),
            self.gets.iter().map(|g| g.deadline).min(),
        ];
        let timeout = deadlines
            .into_iter()
            .flatten()
            .min()
            .map(|d| d.saturating_duration_since(now));
        if self.unsent.is_some() {
            Some(timeout.map_or(SEND_RETRY, |t| t.min(SEND_RETRY)))
        } else {
            timeout
        }
    }

    /// Sleep until the X connection or the wake-up socket is readable, or `timeout`.
    fn wait(&self, timeout: Option<Duration>) -> Result<Wake, XError> {
        let mut fds = [
            PollFd::new(self.ctx.conn.stream(), PollFlags::IN),
            PollFd::new(&self.links.wake, PollFlags::IN),
        ];
        match timeout {
            Some(timeout) => poll_fds(&mut fds, timeout)?,
            None => poll_retrying(&mut fds, None)?,
        }
        let mut buf = [0; 64];
        loop {
            match (&self.links.wake).read(&mut buf) {
                Ok(0) => return Ok(Wake::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // WouldBlock: drained.
                Err(_) => return Ok(Wake::Open),
            }
        }
    }
}

/// An X error reply to one request does not stop the worker; a broken connection does.
fn tolerate(result: Result<(), XError>) -> Result<(), XError> {
    match result {
        Err(XError::Request(_)) => Ok(()),
        other => other,
    }
}

/// `poll(2)` for at most `timeout` (capped at a minute: callers loop).
fn poll_fds(fds: &mut [PollFd<'_>], timeout: Duration) -> Result<(), XError> {
    let timeout = timeout.min(Duration::from_secs(60));
    let timespec = Timespec::try_from(timeout).unwrap_or(Timespec {
        tv_sec: 60,
        tv_nsec: 0,
    });
    poll_retrying(fds, Some(&timespec))
}

fn poll_retrying(fds: &mut [PollFd<'_>], timeout: Option<&Timespec>) -> Result<(), XError> {
    match poll(fds, timeout) {
        // EINTR: the caller's loop looks again.
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(XError::Connection(ConnectionError::IoError(e.into()))),
    }
}
