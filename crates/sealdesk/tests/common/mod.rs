//! What the integration tests share: child processes with collected output, a signaling
//! server on a free port, and the `sealdesk` command with a private data directory.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "each test binary uses a subset; tests fail by panicking"
)]

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) mod desk;
pub(crate) mod evil;
pub(crate) mod keys;

pub(crate) const EXE: &str = env!("CARGO_BIN_EXE_sealdesk");

/// Whether the processes [`sealdesk_in`] starts write their session keys to
/// [`KEYLOG_FILE`] in their data directory (the binary under test has the insecure,
/// test-only `insecure-keylog` feature; this turns it on). Off unless a test binary
/// sets it: only the relay tests, which decrypt what they capture, do.
pub(crate) static LOG_SESSION_KEYS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
/// The key log's name in a process's data directory.
pub(crate) const KEYLOG_FILE: &str = "insecure-keylog";

/// A child process whose stdout is collected line by line in the background.
pub(crate) struct Proc {
    pub(crate) child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stdin: Option<ChildStdin>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Spawns `cmd`, collecting stdout and stderr (interleaved by line) in the background.
    pub(crate) fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        collect(out, lines.clone());
        collect(err, lines.clone());
        let stdin = child.stdin.take();
        Self {
            child,
            lines,
            stdin,
        }
    }

    /// Spawns `cmd` with a pipe to its standard input, for [`Proc::send`].
    pub(crate) fn spawn_interactive(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped());
        Self::spawn(cmd)
    }

    /// Writes one line to the child's standard input.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("spawned with spawn_interactive");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Every line so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How many lines start with `prefix` so far.
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Waits up to `within` for the `n`-th line (from 1) starting with `prefix`; returns the
    /// rest of it, or `None` if it did not come.
    pub(crate) fn wait_nth(&mut self, prefix: &str, n: usize, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| l.strip_prefix(prefix))
                .nth(n - 1)
                .map(str::to_owned);
            if found.is_some() {
                return found;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a line starting with `prefix` and returns the rest of it.
    pub(crate) fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(rest) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
            {
                return rest.to_owned();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Give the reader thread a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!("exited ({status}) before {prefix:?}: {:?}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix:?} line: {:?}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; returns whether it succeeded.
    pub(crate) fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "still running: {:?}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it printed so far.
    pub(crate) fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

fn collect(stream: impl std::io::Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
}

/// The `sealdesk` command with its own data directory and quiet logs.
pub(crate) fn sealdesk(data: &Path) -> Command {
    sealdesk_in(None, data)
}

/// [`sealdesk`] run in the network namespace `ns` (`ip netns exec`), or in this one.
pub(crate) fn sealdesk_in(ns: Option<&str>, data: &Path) -> Command {
    let mut cmd = match ns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, EXE]);
            cmd
        }
        None => Command::new(EXE),
    };
    cmd.arg("--data-dir")
        .arg(data)
        .env(
            "SEALDESK_LOG",
            std::env::var("SEALDESK_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("SEALDESK_SERVER")
        .env_remove("SEALDESK_INSECURE_KEYLOG")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null());
    if LOG_SESSION_KEYS.load(std::sync::atomic::Ordering::Relaxed) {
        cmd.env("SEALDESK_INSECURE_KEYLOG", data.join(KEYLOG_FILE));
    }
    cmd
}

/// A signaling server on a free loopback port.
pub(crate) struct Server {
    _proc: Proc,
    pub(crate) url: String,
    _data: tempfile::TempDir,
}

impl Server {
    /// The server's data directory (registry, blob store).
    pub(crate) fn data_dir(&self) -> &Path {
        self._data.path()
    }
}

pub(crate) fn server() -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = sealdesk(data.path());
    cmd.args(["server", "--listen", "127.0.0.1:0"]);
    let mut proc = Proc::spawn(cmd);
    let url = proc.wait_line("listening on ");
    Server {
        _proc: proc,
        url,
        _data: data,
    }
}
