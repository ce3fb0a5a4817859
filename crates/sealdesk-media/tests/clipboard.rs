//! The clipboard against a real Xvfb. The "other X client" in each test is plain x11rb code
//! written here (ICCCM by hand), never the module under test, so these tests check that we
//! speak the selection protocol, not just that we agree with ourselves.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use common::{wait_for, Xvfb};
use sealdesk_media::clipboard::{
    Clipboard, ClipboardError, ClipboardEvent, Refusal, CHANGE_ANSWER_TIMEOUT, INCR_CHUNK_BYTES,
};
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, CreateWindowAux, EventMask,
    PropMode, Property, SelectionNotifyEvent, Window, WindowClass, SELECTION_NOTIFY_EVENT,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{CURRENT_TIME, NONE};

/// How long to wait for anything that should happen.
const WAIT: Duration = Duration::from_secs(10);

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// A plain requestor and a plain owner, written against the protocol.

#[derive(Clone, Copy)]
struct Atoms {
    clipboard: Atom,
    targets: Atom,
    timestamp: Atom,
    utf8: Atom,
    text_plain: Atom,
    text: Atom,
    incr: Atom,
    multiple: Atom,
    png: Atom,
    prop: Atom,
}

impl Atoms {
    fn intern(conn: &RustConnection) -> anyhow::Result<Self> {
        let atom = |name: &str| -> anyhow::Result<Atom> {
            Ok(conn.intern_atom(false, name.as_bytes())?.reply()?.atom)
        };
        Ok(Self {
            clipboard: atom("CLIPBOARD")?,
            targets: atom("TARGETS")?,
            timestamp: atom("TIMESTAMP")?,
            utf8: atom("UTF8_STRING")?,
            text_plain: atom("text/plain;charset=utf-8")?,
            text: atom("TEXT")?,
            incr: atom("INCR")?,
            multiple: atom("MULTIPLE")?,
            png: atom("image/png")?,
            prop: atom("PLAIN_CLIENT_PROP")?,
        })
    }
}

/// An unmapped InputOnly window that reports its property changes.
fn plain_window(conn: &RustConnection, root: Window) -> anyhow::Result<Window> {
    let win = conn.generate_id()?;
    conn.create_window(
        0,
        win,
        root,
        0,
        0,
        1,
        1,
        0,
        WindowClass::INPUT_ONLY,
        x11rb::COPY_FROM_PARENT,
        &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
    )?
    .check()?;
    Ok(win)
}

/// What a conversion brought back.
#[derive(Debug)]
struct Answer {
    type_: Atom,
    format: u8,
    data: Vec<u8>,
    incr: bool,
}

impl Answer {
    fn atoms(&self) -> Vec<Atom> {
        assert_eq!(self.format, 32, "a list of atoms is format 32");
        self.data
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// A plain requestor.
struct Requestor {
    conn: RustConnection,
    win: Window,
    atoms: Atoms,
}

impl Requestor {
    fn new(xvfb: &Xvfb) -> anyhow::Result<Self> {
        let (conn, root) = xvfb.client()?;
        let win = plain_window(&conn, root)?;
        let atoms = Atoms::intern(&conn)?;
        Ok(Self { conn, win, atoms })
    }

    /// Send `ConvertSelection(CLIPBOARD, target)` and wait for the `SelectionNotify`; `None`
    /// when refused.
    fn ask(&self, target: Atom) -> anyhow::Result<Option<SelectionNotifyEvent>> {
        let a = self.atoms;
        self.conn.delete_property(self.win, a.prop)?;
        self.conn
            .convert_selection(self.win, a.clipboard, target, a.prop, CURRENT_TIME)?;
        self.conn.flush()?;
        let notify = wait_for(&self.conn, |e| match e {
            Event::SelectionNotify(n) if n.requestor == self.win => Some(*n),
            _ => None,
        })?;
        assert_eq!(
            notify.target, target,
            "the notify names the target asked for"
        );
        Ok((notify.property != NONE).then_some(notify))
    }

    /// Convert and read the whole answer, following INCR.
    fn convert(&self, target: Atom) -> anyhow::Result<Option<Answer>> {
        let Some(notify) = self.ask(target)? else {
            return Ok(None);
        };
        assert_eq!(notify.property, self.atoms.prop);
        let reply = self.read(true)?;
        if reply.type_ != self.atoms.incr {
            return Ok(Some(Answer {
                type_: reply.type_,
                format: reply.format,
                data: reply.value,
                incr: false,
            }));
        }
        // Deleting the INCR header (done by the read) asks for the first chunk.
        let mut data = Vec::new();
        let mut type_ = NONE;
        loop {
            wait_for(&self.conn, |e| match e {
                Event::PropertyNotify(p)
                    if p.window == self.win
                        && p.atom == self.atoms.prop
                        && p.state == Property::NEW_VALUE =>
                {
                    Some(())
                }
                _ => None,
            })?;
            let chunk = self.read(true)?;
            if chunk.value.is_empty() {
                break;
            }
            assert_eq!(chunk.format, 8);
            type_ = chunk.type_;
            data.extend_from_slice(&chunk.value);
        }
        Ok(Some(Answer {
            type_,
            format: 8,
            data,
            incr: true,
        }))
    }

    fn read(&self, delete: bool) -> anyhow::Result<x11rb::protocol::xproto::GetPropertyReply> {
        Ok(self
            .conn
            .get_property(
                delete,
                self.win,
                self.atoms.prop,
                AtomEnum::ANY,
                0,
                u32::MAX / 4,
            )?
            .reply()?)
    }

    fn text(&self) -> anyhow::Result<String> {
        let answer = self
            .convert(self.atoms.utf8)?
            .context("UTF8_STRING was refused")?;
        assert_eq!(answer.type_, self.atoms.utf8);
        Ok(String::from_utf8(answer.data)?)
    }

    fn owner(&self) -> anyhow::Result<Window> {
        Ok(self
            .conn
            .get_selection_owner(self.atoms.clipboard)?
            .reply()?
            .owner)
    }
}

/// How a plain owner answers.
#[derive(Clone)]
enum Serve {
    /// `TARGETS` and `UTF8_STRING` with these bytes, by INCR in `chunk`-byte pieces above it.
    Utf8 { data: Vec<u8>, chunk: usize },
    /// Like `Utf8` with INCR, but the INCR header claims a 1-byte text.
    IncrUnderstated { data: Vec<u8>, chunk: usize },
    /// Writes the INCR header for `UTF8_STRING`, then never sends a chunk.
    IncrStall,
    /// Only `STRING`, with these Latin-1 bytes.
    StringOnly(Vec<u8>),
    /// Answers `UTF8_STRING` with a property of type `ATOM`.
    WrongType,
    /// Refuses every target.
    Refuse,
    /// Never answers at all.
    Silent,
}

impl Serve {
    fn text(text: &str) -> Self {
        Self::Utf8 {
            data: text.as_bytes().to_vec(),
            chunk: MIB,
        }
    }
}

/// A plain owner on its own connection and thread; stops when dropped.
struct Owner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Owner {
    /// Take the CLIPBOARD (with CurrentTime, as many simple clients do) and serve it.
    fn start(xvfb: &Xvfb, serve: Serve) -> anyhow::Result<Self> {
        let (conn, root) = xvfb.client()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let win = plain_window(&conn, root)?;
                let atoms = Atoms::intern(&conn)?;
                conn.set_selection_owner(win, atoms.clipboard, CURRENT_TIME)?;
                let owner = conn.get_selection_owner(atoms.clipboard)?.reply()?.owner;
                let _ = ready_tx.send(owner == win);
                serve_loop(&conn, atoms, &serve, &stop)
            })
        };
        let owner = Self {
            stop,
            thread: Some(thread),
        };
        if !ready_rx.recv_timeout(WAIT)? {
            bail!("the plain owner did not get the CLIPBOARD");
        }
        Ok(owner)
    }
}

impl Drop for Owner {
    #[allow(
        clippy::panic,
        reason = "test helper: a plain owner that failed must fail the test"
    )]
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if std::thread::panicking() {
                return;
            }
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("the plain owner failed: {e:#}"),
                Err(_) => panic!("the plain owner panicked"),
            }
        }
    }
}

/// An INCR transfer the plain owner is sending.
struct Transfer {
    requestor: Window,
    property: Atom,
    data: Vec<u8>,
    offset: usize,
    chunk: usize,
}

fn serve_loop(
    conn: &RustConnection,
    a: Atoms,
    serve: &Serve,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut transfers: Vec<Transfer> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Some(event) = conn.poll_for_event()? {
            match event {
                Event::SelectionRequest(ev) => {
                    if matches!(serve, Serve::Silent) {
                        continue;
                    }
                    let property = if ev.property == NONE {
                        ev.target
                    } else {
                        ev.property
                    };
                    let mut start_incr = |data: &[u8], chunk: usize, hint: u32| {
                        conn.change_window_attributes(
                            ev.requestor,
                            &ChangeWindowAttributesAux::new()
                                .event_mask(EventMask::PROPERTY_CHANGE),
                        )?;
                        conn.change_property32(
                            PropMode::REPLACE,
                            ev.requestor,
                            property,
                            a.incr,
                            &[hint],
                        )?;
                        transfers.push(Transfer {
                            requestor: ev.requestor,
                            property,
                            data: data.to_vec(),
                            offset: 0,
                            chunk,
                        });
                        anyhow::Ok(())
                    };
                    let served = match serve {
                        Serve::Utf8 { .. } | Serve::IncrUnderstated { .. }
                            if ev.target == a.targets =>
                        {
                            conn.change_property32(
                                PropMode::REPLACE,
                                ev.requestor,
                                property,
                                AtomEnum::ATOM,
                                &[a.targets, a.utf8],
                            )?;
                            true
                        }
                        Serve::Utf8 { data, chunk } if ev.target == a.utf8 => {
                            if data.len() > *chunk {
                                start_incr(data, *chunk, u32::try_from(data.len())?)?;
                            } else {
                                conn.change_property8(
                                    PropMode::REPLACE,
                                    ev.requestor,
                                    property,
                                    a.utf8,
                                    data,
                                )?;
                            }
                            true
                        }
                        Serve::IncrUnderstated { data, chunk } if ev.target == a.utf8 => {
                            start_incr(data, *chunk, 1)?;
                            true
                        }
                        Serve::IncrStall if ev.target == a.utf8 => {
                            // Header only: the transfer is never registered, so no chunk.
                            conn.change_property32(
                                PropMode::REPLACE,
                                ev.requestor,
                                property,
                                a.incr,
                                &[100],
                            )?;
                            true
                        }
                        Serve::StringOnly(data) if ev.target == u32::from(AtomEnum::STRING) => {
                            conn.change_property8(
                                PropMode::REPLACE,
                                ev.requestor,
                                property,
                                AtomEnum::STRING,
                                data,
                            )?;
                            true
                        }
                        Serve::WrongType if ev.target == a.utf8 => {
                            conn.change_property32(
                                PropMode::REPLACE,
                                ev.requestor,
                                property,
                                AtomEnum::ATOM,
                                &[a.targets],
                            )?;
                            true
                        }
                        _ => false,
                    };
                    let notify = SelectionNotifyEvent {
                        response_type: SELECTION_NOTIFY_EVENT,
                        sequence: 0,
                        time: ev.time,
                        requestor: ev.requestor,
                        selection: ev.selection,
                        target: ev.target,
                        property: if served { property } else { NONE },
                    };
                    conn.send_event(false, ev.requestor, EventMask::NO_EVENT, notify)?;
                }
                Event::PropertyNotify(ev) if ev.state == Property::DELETE => {
                    let Some(i) = transfers
                        .iter()
                        .position(|t| t.requestor == ev.window && t.property == ev.atom)
                    else {
                        continue;
                    };
                    let t = &mut transfers[i];
                    let end = (t.offset + t.chunk).min(t.data.len());
                    conn.change_property8(
                        PropMode::REPLACE,
                        t.requestor,
                        t.property,
                        a.utf8,
                        &t.data[t.offset..end],
                    )?;
                    if end == t.offset {
                        transfers.remove(i);
                    } else {
                        t.offset = end;
                    }
                }
                _ => {}
            }
        }
        conn.flush()?;
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers for the module under test.

/// Our clipboard on the test display, and its changes.
fn connect(xvfb: &Xvfb, max_bytes: usize) -> anyhow::Result<(Clipboard, Changes)> {
    let clipboard = Clipboard::connect(Some(&xvfb.display), max_bytes)?;
    let changes = clipboard.take_changes().context("changes taken")?;
    assert!(clipboard.take_changes().is_none(), "only one receiver");
    Ok((clipboard, changes))
}

type Changes = mpsc::Receiver<ClipboardEvent>;

fn next_event(changes: &Changes) -> anyhow::Result<ClipboardEvent> {
    changes
        .recv_timeout(WAIT)
        .context("no clipboard change reported within 10 s")
}

fn next_text(changes: &Changes) -> anyhow::Result<String> {
    match next_event(changes)? {
        ClipboardEvent::Text(text) => Ok(text),
        other => bail!("expected a text, got {other:?}"),
    }
}

fn next_refusal(changes: &Changes) -> anyhow::Result<Refusal> {
    match next_event(changes)? {
        ClipboardEvent::Refused(why) => Ok(why),
        other => bail!("expected a refusal, got {other:?}"),
    }
}

/// About `bytes` of varied multi-byte text.
fn big_text(bytes: usize, tag: &str) -> String {
    let mut text = String::new();
    let mut line = 0;
    while text.len() < bytes {
        text.push_str(&format!("{tag} line {line}: héllo, 世界 … ✓\n"));
        line += 1;
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn set_text_is_served_to_a_plain_client() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, _changes) = connect(&xvfb, MIB)?;
    let plain = Requestor::new(&xvfb)?;
    let a = plain.atoms;
    let text = "héllo, 世界 …";
    clipboard.set_text(text.to_owned())?;
    assert_ne!(plain.owner()?, NONE);

    let answer = plain.convert(a.utf8)?.context("UTF8_STRING refused")?;
    assert_eq!((answer.type_, answer.format), (a.utf8, 8));
    assert_eq!(answer.data, text.as_bytes());
    assert!(!answer.incr);

    let targets = plain.convert(a.targets)?.context("TARGETS refused")?;
    assert_eq!(targets.type_, u32::from(AtomEnum::ATOM));
    let targets = targets.atoms();
    for wanted in [a.targets, a.timestamp, a.utf8, a.text_plain, a.text] {
        assert!(targets.contains(&wanted), "TARGETS lists {wanted}");
    }
    // Not representable in Latin-1: STRING is neither listed nor served.
    assert!(!targets.contains(&AtomEnum::STRING.into()));
    assert!(plain.convert(AtomEnum::STRING.into())?.is_none());

    let plain_utf8 = plain.convert(a.text_plain)?.context("text/plain refused")?;
    assert_eq!(
        (plain_utf8.type_, plain_utf8.data.as_slice()),
        (a.text_plain, text.as_bytes())
    );
    let as_text = plain.convert(a.text)?.context("TEXT refused")?;
    assert_eq!(
        (as_text.type_, as_text.data.as_slice()),
        (a.utf8, text.as_bytes())
    );
    let time = plain.convert(a.timestamp)?.context("TIMESTAMP refused")?;
    assert_eq!(
        (time.type_, time.format, time.data.len()),
        (u32::from(AtomEnum::INTEGER), 32, 4)
    );
    // Other targets are refused with property None.
    assert!(plain.convert(a.png)?.is_none());
    assert!(plain.convert(a.multiple)?.is_none());

    // An obsolete requestor passing property None gets the answer in the target's property.
    plain
        .conn
        .convert_selection(plain.win, a.clipboard, a.utf8, NONE, CURRENT_TIME)?;
    plain.conn.flush()?;
    let notify = wait_for(&plain.conn, |e| match e {
        Event::SelectionNotify(n) if n.requestor == plain.win => Some(*n),
        _ => None,
    })?;
    assert_eq!(notify.property, a.utf8);
    let value = plain
        .conn
        .get_property(true, plain.win, a.utf8, AtomEnum::ANY, 0, 1024)?
        .reply()?;
    assert_eq!(value.value, text.as_bytes());

    // Our own text comes back from get_text too.
    assert_eq!(clipboard.get_text(WAIT)?.as_deref(), Some(text));

    // A Latin-1 text is served as STRING as well.
    clipboard.set_text("café".to_owned())?;
    let string = plain
        .convert(AtomEnum::STRING.into())?
        .context("STRING refused")?;
    assert_eq!(
        (string.type_, string.data.as_slice()),
        (u32::from(AtomEnum::STRING), &b"caf\xe9"[..])
    );
    let targets = plain
        .convert(a.targets)?
        .context("TARGETS refused")?
        .atoms();
    assert!(targets.contains(&AtomEnum::STRING.into()));
    assert_eq!(plain.text()?, "café");
    Ok(())
}

#[test]
fn another_clients_copy_is_reported_once() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, changes) = connect(&xvfb, MIB)?;
    // Nobody owns the clipboard yet.
    assert_eq!(clipboard.get_text(WAIT)?, None);

    let text = "copied by another program: ünïcödé ✓";
    let _first = Owner::start(&xvfb, Serve::text(text))?;
    assert_eq!(next_text(&changes)?, text);
    assert_eq!(clipboard.get_text(WAIT)?.as_deref(), Some(text));

    // The same text announced again by a new owner is not reported again; the next different
    // one is the very next event (so nothing came in between).
    let _again = Owner::start(&xvfb, Serve::text(text))?;
    let _third = Owner::start(&xvfb, Serve::text("third"))?;
    assert_eq!(next_text(&changes)?, "third");
    assert!(changes.try_recv().is_err());
    Ok(())
}

#[test]
fn our_own_set_text_is_not_reported() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, changes) = connect(&xvfb, MIB)?;
    let plain = Requestor::new(&xvfb)?;
    for round in 0..2 {
        let ours = format!("ours {round}");
        clipboard.set_text(ours.clone())?;
        // A plain client sees it: the ownership change has happened.
        assert_eq!(plain.text()?, ours);
        let theirs = format!("theirs {round}");
        let _owner = Owner::start(&xvfb, Serve::text(&theirs))?;
        // An echo of `ours` would have come first.
        assert_eq!(next_text(&changes)?, theirs);
    }
    Ok(())
}

#[test]
fn large_texts_go_by_incr_both_ways() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, changes) = connect(&xvfb, MIB)?;
    let plain = Requestor::new(&xvfb)?;

    let ours = big_text(200 * 1024, "ours");
    assert!(ours.len() > INCR_CHUNK_BYTES);
    clipboard.set_text(ours.clone())?;
    let answer = plain.convert(plain.atoms.utf8)?.context("refused")?;
    assert!(answer.incr, "a text above INCR_CHUNK_BYTES goes by INCR");
    assert_eq!(answer.type_, plain.atoms.utf8);
    assert!(
        answer.data == ours.as_bytes(),
        "the INCR text arrived intact"
    );

    let theirs = big_text(200 * 1024, "theirs");
    let _owner = Owner::start(
        &xvfb,
        Serve::Utf8 {
            data: theirs.as_bytes().to_vec(),
            chunk: 16 * 1024,
        },
    )?;
    let got = next_text(&changes)?;
    assert!(
        got == theirs,
        "the INCR text from another client arrived intact"
    );
    let got = clipboard.get_text(WAIT)?.context("no text")?;
    assert!(got == theirs, "get_text reads it intact too");
    Ok(())
}

#[test]
fn a_requestor_that_stalls_or_vanishes_does_not_block_others() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, _changes) = connect(&xvfb, MIB)?;
    let text = big_text(300 * 1024, "shared");
    clipboard.set_text(text.clone())?;

    // Each reads the INCR header and never deletes it: the transfers stall. More of them than
    // the clipboard serves at once (16): the most stalled make room for new readers.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let requestor = Requestor::new(&xvfb)?;
        requestor.ask(requestor.atoms.utf8)?.context("refused")?;
        assert_eq!(requestor.read(false)?.type_, requestor.atoms.incr);
        stalled.push(requestor);
    }

    // Deletes the header (asking for the first chunk), then disconnects.
    let vanished = Requestor::new(&xvfb)?;
    vanished.ask(vanished.atoms.utf8)?.context("refused")?;
    assert_eq!(vanished.read(true)?.type_, vanished.atoms.incr);
    drop(vanished);

    for _ in 0..2 {
        let reader = Requestor::new(&xvfb)?;
        let answer = reader.convert(reader.atoms.utf8)?.context("refused")?;
        assert!(answer.incr && answer.data == text.as_bytes());
        assert!(reader.convert(reader.atoms.targets)?.is_some());
    }
    // The stalled clients were never answered past their header.
    for requestor in &stalled {
        assert_eq!(requestor.read(false)?.type_, requestor.atoms.incr);
    }
    Ok(())
}

#[test]
fn an_owner_that_never_answers_times_out_and_the_clipboard_keeps_working() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, changes) = connect(&xvfb, MIB)?;
    let plain = Requestor::new(&xvfb)?;

    let silent = Owner::start(&xvfb, Serve::Silent)?;
    match next_refusal(&changes)? {
        Refusal::NoAnswer { after } => assert!(after >= CHANGE_ANSWER_TIMEOUT, "{after:?}"),
        other => bail!("expected NoAnswer, got {other:?}"),
    }
    let started = Instant::now();
    match clipboard.get_text(Duration::from_millis(300)) {
        Err(ClipboardError::Refused(Refusal::NoAnswer { .. })) => {}
        other => bail!("expected a NoAnswer error, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "get_text is bounded"
    );
    drop(silent);

    // An owner that starts INCR and then never sends a chunk.
    let _stall = Owner::start(&xvfb, Serve::IncrStall)?;
    assert!(matches!(next_refusal(&changes)?, Refusal::NoAnswer { .. }));

    // Still working both ways.
    let _owner = Owner::start(&xvfb, Serve::text("after the silent ones"))?;
    assert_eq!(next_text(&changes)?, "after the silent ones");
    clipboard.set_text("still serving".to_owned())?;
    assert_eq!(plain.text()?, "still serving");
    Ok(())
}

#[test]
fn texts_over_the_limit_are_refused_both_ways() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let limit = 1000;
    let (clipboard, changes) = connect(&xvfb, limit)?;
    let plain = Requestor::new(&xvfb)?;

    match clipboard.set_text("x".repeat(limit + 1)) {
        Err(ClipboardError::TooLarge { size, limit: l }) => {
            assert_eq!((size, l), (limit + 1, limit))
        }
        other => bail!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(plain.owner()?, NONE, "a refused text changes nothing");
    clipboard.set_text("x".repeat(limit))?;
    assert_eq!(plain.text()?, "x".repeat(limit));

    let too_large = Refusal::TooLarge { limit };
    {
        let _owner = Owner::start(&xvfb, Serve::text(&"y".repeat(limit + 1)))?;
        assert_eq!(next_refusal(&changes)?, too_large);
        match clipboard.get_text(WAIT) {
            Err(ClipboardError::Refused(r)) => assert_eq!(r, too_large),
            other => bail!("expected a TooLarge refusal, got {other:?}"),
        }
    }
    // Announced too large in the INCR header.
    let _incr = Owner::start(
        &xvfb,
        Serve::Utf8 {
            data: vec![b'z'; 5000],
            chunk: 512,
        },
    )?;
    assert_eq!(next_refusal(&changes)?, too_large);
    // Understated in the header, too large in the chunks.
    let _liar = Owner::start(
        &xvfb,
        Serve::IncrUnderstated {
            data: vec![b'w'; 5000],
            chunk: 512,
        },
    )?;
    assert_eq!(next_refusal(&changes)?, too_large);
    // Exactly at the limit, by INCR, is fine.
    let _fits = Owner::start(
        &xvfb,
        Serve::Utf8 {
            data: vec![b'v'; limit],
            chunk: 300,
        },
    )?;
    assert_eq!(next_text(&changes)?, "v".repeat(limit));
    Ok(())
}

#[test]
fn string_fallback_and_what_is_not_text() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, changes) = connect(&xvfb, MIB)?;

    // An owner that only speaks STRING: read as Latin-1.
    {
        let _owner = Owner::start(&xvfb, Serve::StringOnly(b"na\xefve".to_vec()))?;
        assert_eq!(next_text(&changes)?, "naïve");
    }
    {
        let _owner = Owner::start(&xvfb, Serve::WrongType)?;
        assert_eq!(next_refusal(&changes)?, Refusal::NotText);
    }
    {
        let _owner = Owner::start(&xvfb, Serve::Refuse)?;
        assert_eq!(next_refusal(&changes)?, Refusal::NotText);
        assert_eq!(clipboard.get_text(WAIT)?, None, "no text: None");
    }
    {
        let _owner = Owner::start(
            &xvfb,
            Serve::Utf8 {
                data: vec![b'o', b'k', 0xff, 0xfe],
                chunk: MIB,
            },
        )?;
        assert!(matches!(next_refusal(&changes)?, Refusal::Malformed { .. }));
    }
    let _owner = Owner::start(&xvfb, Serve::text("fine again"))?;
    assert_eq!(next_text(&changes)?, "fine again");
    Ok(())
}

#[test]
fn refusals_and_events_do_not_print_the_text() -> anyhow::Result<()> {
    let secret = "hunter2-secret";
    let event = ClipboardEvent::Text(secret.to_owned());
    assert!(!format!("{event:?}").contains(secret));
    let xvfb = Xvfb::start(320, 240)?;
    let (clipboard, _changes) = connect(&xvfb, 4)?;
    let err = clipboard
        .set_text(secret.to_owned())
        .err()
        .context("over the limit")?;
    assert!(!format!("{err:?} {err}").contains(secret));
    assert!(!format!("{clipboard:?}").contains(secret));
    Ok(())
}

#[test]
fn drop_ends_the_thread_and_releases_the_selection() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    let plain = Requestor::new(&xvfb)?;
    let (clipboard, changes) = connect(&xvfb, MIB)?;
    clipboard.set_text("gone soon".to_owned())?;
    assert_ne!(plain.owner()?, NONE);

    let started = Instant::now();
    drop(clipboard);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "drop returns promptly"
    );
    // The thread has ended: it held the only sender of the changes channel.
    assert_eq!(
        changes.recv_timeout(WAIT),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    // The thread closed its connection, so the server released the selection.
    let deadline = Instant::now() + WAIT;
    while plain.owner()? != NONE {
        if Instant::now() > deadline {
            bail!("the CLIPBOARD is still owned 10 s after drop");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
