//! The X `CLIPBOARD` selection of a display, bridged to async code: text copied by programs
//! on that display arrives on a channel, and text from the peer is set with
//! [`SyncedClipboard::set`]. The host uses it for its display; the native viewer for its own.
//!
//! Built on [`sealdesk_media::clipboard::Clipboard`], which owns the X connection and treats
//! other X clients as untrusted; texts are bounded by the control channel's
//! [`MAX_CLIPBOARD_BYTES`].

use std::sync::Arc;

use sealdesk_media::clipboard::{Clipboard, ClipboardError, ClipboardEvent};
use sealdesk_proto::control::MAX_CLIPBOARD_BYTES;
use tokio::sync::mpsc;

/// Texts copied locally and not yet forwarded.
const QUEUE: usize = 4;

/// One display's clipboard, for one session.
pub struct SyncedClipboard {
    clipboard: Arc<Clipboard>,
    changes: Option<mpsc::Receiver<String>>,
}

impl std::fmt::Debug for SyncedClipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncedClipboard").finish_non_exhaustive()
    }
}

impl SyncedClipboard {
    /// Connects to `display` (`None`: `$DISPLAY`) and starts forwarding local copies.
    pub fn connect(display: Option<&str>) -> Result<Self, ClipboardError> {
        let clipboard = Arc::new(Clipboard::connect(display, MAX_CLIPBOARD_BYTES)?);
        let (tx, rx) = mpsc::channel(QUEUE);
        if let Some(events) = clipboard.take_changes() {
            std::thread::Builder::new()
                .name("sealdesk-clipboard".into())
                .spawn(move || {
                    // Ends when the clipboard is dropped (its thread closes the channel) or
                    // nobody listens any more.
                    while let Ok(event) = events.recv() {
                        match event {
                            ClipboardEvent::Text(text) => match tx.blocking_send(text) {
                                Ok(()) => {}
                                Err(_) => return,
                            },
                            ClipboardEvent::Refused(why) => {
                                tracing::info!(reason = %why, "a copied text was not forwarded");
                            }
                            _ => {}
                        }
                    }
                })
                .map_err(ClipboardError::Start)?;
        }
        Ok(Self {
            clipboard,
            changes: Some(rx),
        })
    }

    /// Makes `text` this display's clipboard (programs here paste it).
    pub async fn set(&self, text: String) -> Result<(), ClipboardError> {
        let clipboard = self.clipboard.clone();
        match tokio::task::spawn_blocking(move || clipboard.set_text(text)).await {
            Ok(r) => r,
            Err(_) => Err(ClipboardError::Stopped {
                reason: "the clipboard task failed".into(),
            }),
        }
    }

    /// The texts programs on this display copy (once; later calls get `None`).
    pub fn take_changes(&mut self) -> Option<mpsc::Receiver<String>> {
        self.changes.take()
    }
}
