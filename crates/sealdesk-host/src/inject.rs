//! Input from the viewer, injected with XTest on its own thread (DESIGN.md §5).
//!
//! Only messages the [`crate::gate::Gate`] allowed reach [`InputThread::send`]. The thread
//! owns the [`Injector`], which remembers every key and button it holds; a
//! [`InputThread::release_all`], a [`InputThread::stop`] or dropping the thread releases them,
//! so a session that ends — or a viewer that vanishes mid-keystroke — leaves nothing pressed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use sealdesk_media::input::{Button, Injector, InputError, Scroll};
use sealdesk_media::Monitor;
use sealdesk_proto::control::ControlMessage;

/// Input events queued to the injector thread; beyond this the viewer is flooding and events
/// are dropped (and counted).
const QUEUE: usize = 1024;
/// One wheel notch in [`ControlMessage::Wheel`] units.
const NOTCH: i32 = 120;

/// Why an input event was not injected, or the thread did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
    /// XTest failed (see [`InputError`]).
    #[error(transparent)]
    Input(#[from] InputError),
    /// A pointer event for a monitor the host does not have.
    #[error("pointer event for monitor {0}, which this display does not have")]
    NoSuchMonitor(u8),
    /// A button number the protocol does not define.
    #[error("no such pointer button {0}")]
    NoSuchButton(u8),
    /// The injector thread could not be started.
    #[error("cannot start the input thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Counters of what happened to input.
#[derive(Debug, Default)]
pub struct InputStats {
    /// Events injected.
    pub injected: AtomicU64,
    /// Events that failed (no keycode for a keysym, a monitor that does not exist, …).
    pub failed: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
}

enum Command {
    Event(ControlMessage),
    ReleaseAll,
}

/// The injector thread.
#[derive(Debug)]
pub struct InputThread {
    tx: Option<SyncSender<Command>>,
    stats: Arc<InputStats>,
    thread: Option<JoinHandle<()>>,
}

impl InputThread {
    /// Connects to `display` (`None`: `$DISPLAY`) and starts the thread.
    pub fn start(display: Option<&str>) -> Result<Self, InjectError> {
        let injector = Injector::connect(display)?;
        let monitors = injector.monitors()?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(InputStats::default());
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name("sealdesk-input".into())
            .spawn(move || run(injector, monitors, rx, &s))
            .map_err(InjectError::Thread)?;
        Ok(Self {
            tx: Some(tx),
            stats,
            thread: Some(thread),
        })
    }

    /// Queues one allowed input message (never blocks; a full queue drops it).
    pub fn send(&self, msg: ControlMessage) {
        self.queue(Command::Event(msg));
    }

    /// Releases every key and button held for the viewer.
    pub fn release_all(&self) {
        self.queue(Command::ReleaseAll);
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<InputStats> {
        &self.stats
    }

    fn queue(&self, cmd: Command) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(Command::ReleaseAll)) => {
                // Never lose a release: wait for room.
                let _ = tx.send(Command::ReleaseAll);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Releases everything and ends the thread; returns once the X server has processed the
    /// releases.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Command::ReleaseAll);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(mut injector: Injector, monitors: Vec<Monitor>, rx: Receiver<Command>, stats: &InputStats) {
    let mut wheel = (0i32, 0i32);
    while let Ok(cmd) = rx.recv() {
        let result = match cmd {
            Command::ReleaseAll => injector.release_all().map_err(InjectError::from),
            Command::Event(msg) => apply(&mut injector, &monitors, &mut wheel, &msg),
        };
        match result {
            Ok(()) => {
                stats.injected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "input event not injected");
            }
        }
    }
    // The session is over (the sender is gone): nothing stays pressed.
    if let Err(e) = injector.release_all() {
        tracing::warn!(error = %e, "could not release every key at the end of the session");
    }
}

fn apply(
    injector: &mut Injector,
    monitors: &[Monitor],
    wheel: &mut (i32, i32),
    msg: &ControlMessage,
) -> Result<(), InjectError> {
    match msg {
        ControlMessage::PointerMove { monitor, x, y } => {
            let m = monitors
                .get(usize::from(*monitor))
                .ok_or(InjectError::NoSuchMonitor(*monitor))?;
            Ok(injector.move_pointer(m, i32::from(*x), i32::from(*y))?)
        }
        ControlMessage::PointerButton { button, down } => {
            let b = match button {
                1 => Button::Left,
                2 => Button::Middle,
                3 => Button::Right,
                8 => Button::Back,
                9 => Button::Forward,
                _ => return Err(InjectError::NoSuchButton(*button)),
            };
            Ok(injector.button(b, *down)?)
        }
        ControlMessage::Wheel { dx, dy } => {
            // Accumulate fractions of a notch (smooth-scrolling touchpads send small steps).
            wheel.0 = wheel.0.saturating_add(i32::from(*dx));
            wheel.1 = wheel.1.saturating_add(i32::from(*dy));
            let (nx, ny) = (wheel.0 / NOTCH, wheel.1 / NOTCH);
            wheel.0 -= nx * NOTCH;
            wheel.1 -= ny * NOTCH;
            let mut turn = |n: i32, neg: Scroll, pos: Scroll| -> Result<(), InputError> {
                match n {
                    0 => Ok(()),
                    n if n < 0 => injector.scroll(neg, n.unsigned_abs()),
                    n => injector.scroll(pos, n.unsigned_abs()),
                }
            };
            turn(ny, Scroll::Up, Scroll::Down)?;
            Ok(turn(nx, Scroll::Left, Scroll::Right)?)
        }
        ControlMessage::Key { keysym, down } => Ok(injector.key(*keysym, *down)?),
        ControlMessage::ReleaseAll => Ok(injector.release_all()?),
        _ => Ok(()),
    }
}
