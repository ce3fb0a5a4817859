//! The viewer's local clipboard in a window session: what is copied here goes to the host,
//! what the host copies is pasted here.

use sealdesk_host::clipboard::SyncedClipboard;
use sealdesk_proto::control::ControlMessage;
use tokio::sync::mpsc;

/// The local X clipboard, synced with the host's.
pub(crate) struct Clip {
    clipboard: std::sync::Arc<SyncedClipboard>,
}

impl Clip {
    /// Connects to `display` (`None`: `$DISPLAY`); what is copied locally goes to `input` as
    /// clipboard messages. `None` (with a warning) when the clipboard is unavailable.
    pub(crate) fn connect(
        display: Option<&str>,
        input: mpsc::Sender<ControlMessage>,
    ) -> Option<Self> {
        let mut clipboard = match SyncedClipboard::connect(display) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no clipboard sync in this session");
                return None;
            }
        };
        if let Some(mut changes) = clipboard.take_changes() {
            tokio::spawn(async move {
                while let Some(text) = changes.recv().await {
                    if input
                        .send(ControlMessage::Clipboard { text })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        Some(Self {
            clipboard: std::sync::Arc::new(clipboard),
        })
    }

    /// Pastes text copied on the host into the local clipboard.
    pub(crate) fn set(&self, text: String) {
        let clipboard = self.clipboard.clone();
        tokio::spawn(async move {
            if let Err(e) = clipboard.set(text).await {
                tracing::warn!(error = %e, "could not set the local clipboard");
            }
        });
    }
}
