//! A private Xvfb X server, for `sealdesk demo`, benchmarks and tests (DESIGN.md §10.5: real
//! components). It picks a free display itself (`-displayfd`), listens on no TCP port and is
//! killed when the [`Xvfb`] is dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long Xvfb may take to announce its display.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why Xvfb could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XvfbError {
    /// The `Xvfb` program is not installed (or not on `$PATH`).
    #[error("cannot run Xvfb ({0}); install it with: sudo apt-get install -y xvfb")]
    NotInstalled(#[source] std::io::Error),
    /// It started but did not say which display it serves.
    #[error("Xvfb did not report a display number within {0:?}")]
    NoDisplay(Duration),
    /// It printed something other than a display number (or exited).
    #[error("Xvfb exited or printed {0:?} instead of a display number")]
    BadDisplay(String),
}

/// A running Xvfb at depth 24 with a black root window, killed on drop.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// Starts `Xvfb` with one `width`×`height` screen at depth 24, black root (`-br`), no TCP,
    /// no reset when the last client leaves.
    pub fn start(width: u32, height: u32) -> Result<Self, XvfbError> {
        Self::start_with(width, height, &[])
    }

    /// [`Xvfb::start`] with extra server arguments (e.g. `["-extension", "RANDR"]`).
    pub fn start_with(width: u32, height: u32, extra: &[&str]) -> Result<Self, XvfbError> {
        let mut child = Command::new("Xvfb")
            .args(extra)
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                &format!("{width}x{height}x24"),
                "-nolisten",
                "tcp",
                "-noreset",
                "-br",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(XvfbError::NotInstalled)?;
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let mut xvfb = Self {
            child,
            display: String::new(),
        };
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| XvfbError::NoDisplay(START_TIMEOUT))?;
        let number: u32 = line
            .trim()
            .parse()
            .map_err(|_| XvfbError::BadDisplay(line.clone()))?;
        xvfb.display = format!(":{number}");
        Ok(xvfb)
    }

    /// The display name, `":N"`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
