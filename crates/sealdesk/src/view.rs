//! The viewer's front end, shared by `sealdesk connect` and `sealdesk demo`: a window (with
//! the local clipboard synced), or headless — PNG files and scripted input.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use sealdesk_proto::control::{ControlMessage, EndReason, MAX_CLIPBOARD_BYTES};
use sealdesk_viewer::dial::Transport;
use sealdesk_viewer::headless::FrameWriter;
use sealdesk_viewer::run::{self, ViewerLimits, ViewerNote, ViewerSummary};
use sealdesk_viewer::script::{self, Command};
use sealdesk_viewer::window::{self, ToWindow, WindowConfig, WindowHandle};
use tokio::io::{AsyncBufReadExt as _, AsyncRead};
use tokio::sync::{mpsc, watch};

/// Where headless input comes from.
#[derive(Debug, Clone)]
pub(crate) enum Script {
    /// None.
    Nothing,
    /// Standard input.
    Stdin,
    /// A file.
    File(PathBuf),
    /// Fixed text (the demo's).
    Text(&'static str),
}

/// How to show a session.
#[derive(Debug, Clone)]
pub(crate) struct ViewOptions {
    /// A window (`false`: headless).
    pub(crate) window: bool,
    /// The window title.
    pub(crate) title: String,
    /// Headless: save decoded frames here.
    pub(crate) frames: Option<PathBuf>,
    /// Headless: the least time between two saved frames.
    pub(crate) frame_interval: Duration,
    /// Headless: scripted input.
    pub(crate) script: Script,
    /// End after this long.
    pub(crate) seconds: Option<u64>,
    /// Headless: print `stamp N T` for each new frame stamp decoded ([`crate::stamp`]).
    pub(crate) stamps: bool,
}

fn end_message() -> ControlMessage {
    ControlMessage::End {
        reason: EndReason::UserEnded,
        text: String::new(),
    }
}

/// Runs the session in a window or headless; `notes` hears every note too.
pub(crate) async fn view(
    transport: Transport,
    options: &ViewOptions,
    notes: impl FnMut(&ViewerNote) + Send + 'static,
) -> anyhow::Result<ViewerSummary> {
    let (input_tx, input_rx) = mpsc::channel::<ControlMessage>(256);
    if let Some(s) = options.seconds {
        let tx = input_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(s)).await;
            let _ = tx.send(end_message()).await;
        });
    }
    if options.window {
        windowed(transport, options, input_tx, input_rx, notes).await
    } else {
        headless(transport, options, input_tx, input_rx, notes).await
    }
}

async fn windowed(
    transport: Transport,
    options: &ViewOptions,
    input_tx: mpsc::Sender<ControlMessage>,
    input_rx: mpsc::Receiver<ControlMessage>,
    mut notes: impl FnMut(&ViewerNote) + Send + 'static,
) -> anyhow::Result<ViewerSummary> {
    let tx = input_tx.clone();
    // The host's monitors (count, shown), for the window's monitor shortcut.
    let monitors = Arc::new(Mutex::new((1usize, 0u8)));
    let shown = monitors.clone();
    let handle = window::open(
        WindowConfig {
            title: options.title.clone(),
        },
        move |ev| match ev {
            window::FromWindow::SwitchMonitor { forward } => {
                let (count, active) = shown.lock().map_or((1, 0), |m| *m);
                if count > 1 {
                    let n = u8::try_from(count).unwrap_or(u8::MAX);
                    let index = if forward {
                        (active + 1) % n
                    } else {
                        (active + n - 1) % n
                    };
                    let _ = tx.blocking_send(ControlMessage::SelectMonitor { index });
                }
            }
            // Pointer motion is superseded by the next one; everything else must arrive.
            window::FromWindow::Control(m @ ControlMessage::PointerMove { .. }) => {
                let _ = tx.try_send(m);
            }
            window::FromWindow::Control(m) => {
                let _ = tx.blocking_send(m);
            }
            window::FromWindow::Closed => {
                let _ = tx.blocking_send(end_message());
            }
            _ => {}
        },
    )
    .map_err(|e| anyhow!("{e} (use --headless on a machine without a display)"))?;
    let handle: Arc<WindowHandle> = Arc::new(handle);
    let clipboard = crate::clip::Clip::connect(None, input_tx.clone());
    let sink = {
        let h = handle.clone();
        move |picture| {
            let _ = h.send(ToWindow::Frame(picture));
        }
    };
    let on_note = {
        let h = handle.clone();
        move |note: ViewerNote| {
            notes(&note);
            let msg = match note {
                ViewerNote::Stats(s) => {
                    let (count, active) = monitors.lock().map_or((1, 0), |m| *m);
                    Some(ToWindow::Stats(if count > 1 {
                        format!(
                            "{s} · monitor {}/{count} (ctrl+alt+shift+arrows)",
                            active + 1
                        )
                    } else {
                        s.to_string()
                    }))
                }
                ViewerNote::CursorShape(img) => Some(ToWindow::Cursor(Some(img))),
                ViewerNote::Monitors {
                    monitors: list,
                    active,
                } => {
                    if let Ok(mut m) = monitors.lock() {
                        *m = (list.len().max(1), active);
                    }
                    Some(ToWindow::Monitor { index: active })
                }
                ViewerNote::Clipboard(text) => {
                    if let Some(c) = &clipboard {
                        c.set(text);
                    }
                    None
                }
                _ => None,
            };
            if let Some(m) = msg {
                let _ = h.send(m);
            }
        }
    };
    let summary = run::run(transport, sink, input_rx, ViewerLimits::default(), on_note).await;
    let _ = handle.send(ToWindow::Close);
    if let Ok(h) = Arc::try_unwrap(handle) {
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || h.join()).await {
            tracing::debug!(error = %e, "the window ended with an error");
        }
    }
    Ok(summary)
}

async fn headless(
    transport: Transport,
    options: &ViewOptions,
    input_tx: mpsc::Sender<ControlMessage>,
    input_rx: mpsc::Receiver<ControlMessage>,
    mut notes: impl FnMut(&ViewerNote) + Send + 'static,
) -> anyhow::Result<ViewerSummary> {
    let writer = match &options.frames {
        Some(dir) => Some(Arc::new(
            FrameWriter::start(dir, options.frame_interval, |w| {
                // Machine-readable: tests read these lines.
                println!(
                    "frame {} {}x{} {}",
                    w.index,
                    w.width,
                    w.height,
                    w.path.display()
                );
            })
            .with_context(|| format!("cannot write frames to {}", dir.display()))?,
        )),
        None => None,
    };
    let (frames_tx, frames_rx) = watch::channel(0u64);
    let sink = {
        let writer = writer.clone();
        let mut n = 0u64;
        let stamps = options.stamps;
        let mut last_stamp = None;
        move |picture: window::Picture| {
            n += 1;
            if stamps {
                let stamp = crate::stamp::read(&picture.bgra, picture.width);
                if let Some(n) = stamp.filter(|_| stamp != last_stamp) {
                    last_stamp = stamp;
                    println!("{}", crate::stamp::line(n, crate::stamp::clock_ns()));
                }
            }
            if let Some(w) = &writer {
                w.offer(n, picture);
            }
            let _ = frames_tx.send(n);
        }
    };
    let monitor = Arc::new(Mutex::new(0u8));
    let reader: Option<Box<dyn AsyncRead + Unpin + Send>> = match &options.script {
        Script::Nothing => None,
        Script::Stdin => Some(Box::new(tokio::io::stdin())),
        Script::Text(t) => Some(Box::new(t.as_bytes())),
        Script::File(p) => {
            Some(Box::new(tokio::fs::File::open(p).await.with_context(
                || format!("cannot read the script {}", p.display()),
            )?))
        }
    };
    // Scripts a program feeds are acknowledged line by line; the demo's own is not.
    let echo = !matches!(options.script, Script::Text(_));
    let script_task = reader.map(|r| {
        tokio::spawn(run_script(
            r,
            input_tx.clone(),
            frames_rx,
            monitor.clone(),
            echo,
        ))
    });
    let clipboard_file = options.frames.as_ref().map(|d| d.join("clipboard.txt"));
    let on_note = move |note: ViewerNote| {
        notes(&note);
        match note {
            ViewerNote::Clipboard(text) => {
                println!("clipboard from the host: {} bytes", text.len());
                if let Some(path) = &clipboard_file {
                    if let Err(e) = write_private(path, text.as_bytes()) {
                        eprintln!("cannot write {}: {e}", path.display());
                    }
                }
            }
            ViewerNote::Monitors { active, .. } => {
                if let Ok(mut m) = monitor.lock() {
                    *m = active;
                }
            }
            _ => {}
        }
    };
    let summary = run::run(transport, sink, input_rx, ViewerLimits::default(), on_note).await;
    if let Some(t) = script_task {
        t.abort();
    }
    if let Some(w) = writer {
        if let Ok(w) = Arc::try_unwrap(w) {
            let _ = tokio::task::spawn_blocking(move || w.finish()).await;
        }
    }
    Ok(summary)
}

/// Writes clipboard text (a user's secret) with mode 0600, via a temporary file.
/// Writes a private file (0600) durably, replacing what was there.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    sealdesk_client::store::write_durably(path.parent().unwrap_or(Path::new(".")), name, bytes)
}

/// Runs scripted input. With `echo`, each line is acknowledged on stdout once its messages
/// are queued (`script: LINE`), so a driving program knows when it took effect; a bad line
/// is reported and skipped.
async fn run_script(
    reader: Box<dyn AsyncRead + Unpin + Send>,
    input: mpsc::Sender<ControlMessage>,
    mut frames: watch::Receiver<u64>,
    monitor: Arc<Mutex<u8>>,
    echo: bool,
) {
    let mut lines = tokio::io::BufReader::new(reader).lines();
    let mut number = 0u32;
    let mut seen = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        number += 1;
        if line.len() > MAX_CLIPBOARD_BYTES + 64 {
            eprintln!("script line {number}: too long; skipped");
            continue;
        }
        let shown = monitor.lock().map_or(0, |m| *m);
        match script::parse_line(&line, shown) {
            Ok(None) => continue,
            Ok(Some(Command::Wait(d))) => tokio::time::sleep(d).await,
            Ok(Some(Command::WaitFrame)) => match frames.wait_for(|n| *n > seen).await {
                Ok(n) => seen = *n,
                Err(_) => return,
            },
            Ok(Some(Command::Send(msgs))) => {
                for m in msgs {
                    let end = matches!(m, ControlMessage::End { .. });
                    if input.send(m).await.is_err() || end {
                        if echo {
                            println!("script: {}", line.trim());
                        }
                        return;
                    }
                }
            }
            Err(e) => {
                eprintln!("script line {number}: {e}");
                continue;
            }
        }
        if echo {
            println!("script: {}", line.trim());
        }
    }
}
