//! The `sealdesk` executable as a user and an operator run it: a real server process,
//! real sockets, a real database file, kill -9.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    reason = "tests fail by panicking; children are reaped in Drop"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealdesk_auth::IdentityKey;
use sealdesk_client::signal::connect_raw;
use sealdesk_client::{ClientConfig, SignalClient, SignalEvent};
use sealdesk_proto::{Body, SessionId};

const EXE: &str = env!("CARGO_BIN_EXE_sealdesk");

struct Proc {
    child: Child,
    url: String,
    lines: Vec<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sealdesk server ARGS` and waits for its `listening on` line.
fn start(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(EXE);
    cmd.arg("server")
        .args(args)
        .env("SEALDESK_DATA_DIR", data)
        .env("SEALDESK_LOG", "warn")
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut lines = vec![];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        assert!(Instant::now() < deadline, "server did not start: {lines:?}");
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("server exited: {lines:?} {:?}", child.wait());
        }
        let line = line.trim_end().to_owned();
        if let Some(url) = line.strip_prefix("listening on ") {
            let url = url.to_owned();
            lines.push(line);
            // Keep draining stdout in the background.
            std::thread::spawn(move || for _ in reader.lines() {});
            return Proc { child, url, lines };
        }
        lines.push(line);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_kill_9_during_a_burst() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    // A high per-IP burst: the burst below comes from one address.
    let cfg_path = data.path().join("server.toml");
    std::fs::write(
        &cfg_path,
        "[limits]\nper_ip_burst = 100000\nper_ip_connections_per_sec = 100000\n",
    )
    .unwrap();
    let cfg_arg = cfg_path.to_str().unwrap();
    let mut server = start(
        data.path(),
        &["--listen", &listen, "--config", cfg_arg],
        &[],
    );
    let cfg = ClientConfig::new(server.url.clone());

    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = vec![];
    for _ in 0..400 {
        let cfg = cfg.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let key = IdentityKey::generate(&mut rand::rngs::OsRng);
            if let Ok((ws, n)) = connect_raw(&cfg, &key).await {
                acked.lock().unwrap().push((key, n));
                drop(ws);
            }
        }));
    }
    // Kill the server mid-burst, as soon as some registrations are acknowledged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "no registrations acknowledged");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 50);
    assert!(acked.len() < 400, "the kill came too late to test anything");

    let server = start(
        data.path(),
        &["--listen", &listen, "--config", cfg_arg],
        &[],
    );
    let cfg = ClientConfig::new(server.url.clone());
    for (key, number) in &acked {
        let (_ws, again) = connect_raw(&cfg, key).await.unwrap();
        assert_eq!(again, *number, "an acknowledged registration was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_stays_bounded_when_a_client_never_reads() {
    let data = tempfile::tempdir().unwrap();
    let cfg_path = data.path().join("server.toml");
    std::fs::write(
        &cfg_path,
        "listen = \"127.0.0.1:0\"\n[limits]\nenvelopes_per_sec = 100000\nenvelope_burst = 100000\n",
    )
    .unwrap();
    let server = start(data.path(), &["--config", cfg_path.to_str().unwrap()], &[]);
    let pid = server.child.id();
    let cfg = ClientConfig::new(server.url.clone());
    let mut sender = SignalClient::connect(
        cfg.clone(),
        Arc::new(IdentityKey::generate(&mut rand::rngs::OsRng)),
    )
    .await
    .unwrap();
    let (_never_reads, slow) = connect_raw(&cfg, &IdentityKey::generate(&mut rand::rngs::OsRng))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss(pid);
    // Offer 200 MiB to a client that never reads.
    let chunk = vec![0x42u8; 40 * 1024];
    let mut peak = before;
    let mut errors = 0;
    for i in 0..5_000 {
        if sender
            .send(slow, SessionId([1; 16]), Body::new(chunk.clone()).unwrap())
            .await
            .is_err()
        {
            break;
        }
        while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, sender.next_event()).await {
            if matches!(e, SignalEvent::Error { .. }) {
                errors += 1;
            }
        }
        if i % 64 == 0 {
            peak = peak.max(rss(pid));
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    peak = peak.max(rss(pid));
    assert!(errors > 0, "the slow reader was never cut off");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 48 << 20,
        "server RSS grew by {} MiB while a client refused to read",
        growth >> 20
    );
}

#[test]
fn flags_override_environment_which_overrides_the_config_file() {
    let data = tempfile::tempdir().unwrap();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let cfg_path = data.path().join("server.toml");
    std::fs::write(&cfg_path, format!("listen = \"127.0.0.1:{p1}\"\n")).unwrap();
    let cfg = cfg_path.to_str().unwrap();

    let s = start(data.path(), &["--config", cfg], &[]);
    assert_eq!(s.url, format!("ws://127.0.0.1:{p1}/ws"));
    assert!(
        s.lines
            .iter()
            .any(|l| l.contains("plain WebSocket (no TLS)")),
        "{:?}",
        s.lines
    );
    drop(s);
    let env_listen = format!("127.0.0.1:{p2}");
    let s = start(
        data.path(),
        &["--config", cfg],
        &[("SEALDESK_LISTEN", &env_listen)],
    );
    assert_eq!(s.url, format!("ws://127.0.0.1:{p2}/ws"));
    drop(s);
    let flag_listen = format!("127.0.0.1:{p3}");
    let s = start(
        data.path(),
        &["--config", cfg, "--listen", &flag_listen],
        &[("SEALDESK_LISTEN", &env_listen)],
    );
    assert_eq!(s.url, format!("ws://127.0.0.1:{p3}/ws"));
    // The registry lives in the data directory given by SEALDESK_DATA_DIR.
    assert!(data.path().join("server/registry.sqlite3").exists());
}

#[test]
fn a_bad_config_file_is_refused_with_the_key_named() {
    let data = tempfile::tempdir().unwrap();
    let cfg_path = data.path().join("server.toml");
    std::fs::write(&cfg_path, "[limits]\nmax_conections = 1\n").unwrap();
    let out = Command::new(EXE)
        .args(["server", "--config", cfg_path.to_str().unwrap()])
        .env("SEALDESK_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_conections"), "{err}");
}

#[test]
fn demo_runs_a_real_session_with_no_configuration() {
    demo(&[], "path direct");
}

#[test]
fn demo_relay_only_runs_the_session_through_the_embedded_relay() {
    demo(&["--relay-only"], "path relay");
}

fn demo(extra: &[&str], path: &str) {
    let home = tempfile::tempdir().unwrap();
    let frames = home.path().join("frames");
    let out = Command::new(EXE)
        .args(["demo", "--headless", "--seconds", "4"])
        .args(extra)
        .arg("--frames")
        .arg(&frames)
        .env("HOME", home.path())
        .env_remove("SEALDESK_DATA_DIR")
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "1. virtual display",
        "4. the viewer typed the code; the host proved it knows it",
        "5. the host's user is asked",
        "6. connected in",
        "first frame 1280x720 decoded",
        "its script clicks and types",
        path,
        "demo passed",
    ] {
        assert!(stdout.contains(step), "no {step:?} in:\n{stdout}");
    }
    let decoded: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("viewer: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(decoded > 0, "{stdout}");
    // The host injected what the viewer's script typed and clicked.
    let injected: u64 = stdout
        .lines()
        .find_map(|l| {
            l.split(" input events injected")
                .next()
                .filter(|_| l.contains("injected"))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(injected >= 40, "{stdout}");
    assert!(std::fs::read_dir(&frames).unwrap().count() > 0);
}

#[test]
fn identity_is_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(EXE)
            .arg("identity")
            .env("SEALDESK_DATA_DIR", data.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    assert!(first.contains("created a new identity key"), "{first}");
    let second = run();
    assert!(!second.contains("created"));
    let fpr = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("device fingerprint"))
            .map(str::to_owned)
    };
    assert_eq!(fpr(&first), fpr(&second));
    let key = data.path().join("identity.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = Command::new(EXE)
        .arg("identity")
        .env("SEALDESK_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}
