//! Sessions that can only happen through the relay: the host and the viewer live in two
//! network namespaces with no route between them; the signaling server and its TURN relay
//! live in a third that both reach but that does not forward. The session must connect
//! through the relay, show the host's screen and carry input and clipboard — and what the
//! relay's machine sees on the wire (captured with tcpdump in its namespace) must contain
//! none of what the session carried, nor its keys. Positive controls: a marked datagram the
//! scan must find in every form, and the session keys both ends log (an insecure test-only
//! feature of the binary under test) must open the capture to the typed keys, the clipboard
//! texts and a picture of the screen's canary.
//!
//! Needs root (network namespaces) and iproute2 + tcpdump, which `scripts/test` installs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    reason = "tests fail by panicking; children are reaped in Drop"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use common::desk::{connect_in, psnr, screen_rgb, settled_frame, Desk, H, W, WAIT};
use common::keys::{vp9_frames, KeyLog};
use common::{sealdesk_in, Proc};
use sealdesk_media::clipboard::Clipboard;
use sealdesk_media::decode::Decoder;
use sealdesk_media::xvfb::Xvfb;
use sealdesk_media::Codec;
use sealdesk_proto::control::ControlMessage;

const RELAY_IP: &str = "10.77.0.1";
const HOST_IP: &str = "10.77.1.2";
const VIEWER_IP: &str = "10.77.2.2";

/// Three network namespaces: `host` (10.77.1.2) and `viewer` (10.77.2.2), each with a veth
/// to `relay`, which holds 10.77.0.1 and does not forward. Host and viewer have a route to
/// 10.77.0.1 only. Deleted on drop.
struct Lab {
    host: String,
    viewer: String,
    relay: String,
    /// The NAT routers' namespaces ([`Lab::behind_nats`]).
    nats: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` ({e}): this test needs iproute2 (scripts/test installs it)")
    });
    assert!(
        out.status.success(),
        "ip {} failed: {} (network namespaces need root; run scripts/test as root or with sudo)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Lab {
    fn new() -> Self {
        // Every session here logs its keys, for the capture scans' positive control.
        common::LOG_SESSION_KEYS.store(true, Ordering::Relaxed);
        static N: AtomicU32 = AtomicU32::new(0);
        let p = format!(
            "sd{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Self {
            host: format!("{p}h"),
            viewer: format!("{p}v"),
            relay: format!("{p}r"),
            nats: Vec::new(),
        };
        for ns in [&lab.host, &lab.viewer, &lab.relay] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns, side, addr, gw) in [
            (&lab.host, "h", HOST_IP, "10.77.1.1"),
            (&lab.viewer, "v", VIEWER_IP, "10.77.2.1"),
        ] {
            let (outer, inner) = (format!("{p}{side}r"), format!("{p}r{side}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &outer, "netns", ns]);
            ip(&["link", "set", &inner, "netns", &lab.relay]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &outer,
            ]);
            ip(&["-n", ns, "link", "set", &outer, "up"]);
            ip(&[
                "-n",
                &lab.relay,
                "addr",
                "add",
                &format!("{gw}/24"),
                "dev",
                &inner,
            ]);
            ip(&["-n", &lab.relay, "link", "set", &inner, "up"]);
            ip(&[
                "-n",
                ns,
                "route",
                "add",
                &format!("{RELAY_IP}/32"),
                "via",
                gw,
            ]);
        }
        ip(&[
            "-n",
            &lab.relay,
            "addr",
            "add",
            &format!("{RELAY_IP}/32"),
            "dev",
            "lo",
        ]);
        let sysctl = Command::new("ip")
            .args(["netns", "exec", &lab.relay, "sysctl", "-qw"])
            .args(["net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"])
            .status()
            .unwrap();
        assert!(sysctl.success());
        lab
    }

    /// Host and viewer each behind their own NAT router (nftables masquerade), on private
    /// networks 192.168.1.0/24 and 192.168.2.0/24 that nothing outside routes to. The relay's
    /// namespace is "the internet" here: it forwards between the NATs' public sides
    /// (10.88.1.2 and 10.88.2.2) and holds the server on 10.77.0.1.
    fn behind_nats() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = format!(
            "sn{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lab = Self {
            host: format!("{p}h"),
            viewer: format!("{p}v"),
            relay: format!("{p}r"),
            nats: vec![format!("{p}nh"), format!("{p}nv")],
        };
        for ns in [&lab.host, &lab.viewer, &lab.relay]
            .into_iter()
            .chain(&lab.nats)
        {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let veth = |a_ns: &str, a: &str, a_ip: &str, b_ns: &str, b: &str, b_ip: &str| {
            ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
            for (ns, dev, addr) in [(a_ns, a, a_ip), (b_ns, b, b_ip)] {
                ip(&["link", "set", dev, "netns", ns]);
                ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
                ip(&["-n", ns, "link", "set", dev, "up"]);
            }
        };
        for (i, (inside, nat)) in [(&lab.host, &lab.nats[0]), (&lab.viewer, &lab.nats[1])]
            .into_iter()
            .enumerate()
        {
            let n = i + 1;
            let (lan, wan) = (format!("{p}l{n}"), format!("{p}w{n}"));
            veth(
                inside,
                &format!("{p}i{n}"),
                &format!("192.168.{n}.2/24"),
                nat,
                &lan,
                &format!("192.168.{n}.1/24"),
            );
            veth(
                nat,
                &wan,
                &format!("10.88.{n}.2/24"),
                &lab.relay,
                &format!("{p}u{n}"),
                &format!("10.88.{n}.1/24"),
            );
            ip(&[
                "-n",
                inside,
                "route",
                "add",
                "default",
                "via",
                &format!("192.168.{n}.1"),
            ]);
            ip(&[
                "-n",
                nat,
                "route",
                "add",
                "default",
                "via",
                &format!("10.88.{n}.1"),
            ]);
            sysctl(nat, "net.ipv4.ip_forward=1");
            let nft = |args: &[&str]| nft(nat, args);
            nft(&["add", "table", "ip", "nat"]);
            nft(&["add chain ip nat post { type nat hook postrouting priority 100 ; }"]);
            nft(&[
                "add",
                "rule",
                "ip",
                "nat",
                "post",
                "oifname",
                &wan,
                "masquerade",
            ]);
            // Like every home router: nothing from outside may open a connection to the
            // router itself. (Without it, an unsolicited ICE check from the far side gets a
            // conntrack entry that collides with this side's own mapping, which masquerade
            // then moves to another port: hole punching fails.)
            nft(&["add", "table", "ip", "fw"]);
            nft(&["add chain ip fw in { type filter hook input priority 0 ; }"]);
            nft(&[
                "add", "rule", "ip", "fw", "in", "iifname", &wan, "ct", "state", "new", "drop",
            ]);
        }
        ip(&[
            "-n",
            &lab.relay,
            "addr",
            "add",
            &format!("{RELAY_IP}/32"),
            "dev",
            "lo",
        ]);
        sysctl(&lab.relay, "net.ipv4.ip_forward=1");
        lab
    }

    /// Whether `ns` has a route to `addr` (`ip route get` fails with "Network is
    /// unreachable" when it has none).
    fn routes(&self, ns: &str, addr: &str) -> bool {
        Command::new("ip")
            .args(["-n", ns, "route", "get", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Sends `payload` as one UDP datagram from `ns` to `to` (bash's /dev/udp).
    fn send_udp(&self, ns: &str, to: &str, payload: &[u8]) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), payload).unwrap();
        let status = Command::new("ip")
            .args(["netns", "exec", ns, "bash", "-c"])
            .arg(format!(
                "cat {} > /dev/udp/{}",
                file.path().display(),
                to.replace(':', "/")
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// Runs `nft` with `args` in namespace `ns`; returns what it printed.
fn nft(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run nft ({e}): this test needs nftables (scripts/test installs it)")
        });
    assert!(
        out.status.success(),
        "nft {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sysctl(ns: &str, setting: &str) {
    let st = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", setting])
        .status()
        .unwrap();
    assert!(st.success(), "sysctl {setting} in {ns}");
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.host, &self.viewer, &self.relay]
            .into_iter()
            .chain(&self.nats)
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// tcpdump on every interface of a namespace, writing each packet as it comes.
struct Capture {
    proc: Proc,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    fn start(ns: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.pcap");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns", "exec", ns, "tcpdump", "-i", "any", "-n", "-U", "-s", "65535",
        ])
        // Without immediate mode libpcap hands packets over in blocks, and the packets of
        // the last block before SIGTERM (the typing and the clipboard, here) never reach
        // the file: the decrypting positive control found that out.
        .arg("--immediate-mode")
        // In immediate mode the kernel ring holds buffer / snapshot length packets: with
        // the default 2 MiB and 256 KiB snapshots, a burst of typing overflowed it. 64 KiB
        // snapshots hold the largest packet (loopback TCP) and 128 MiB holds ~2000 of them.
        .args(["-B", "131072"])
        .args(["-Z", "root", "-w"])
        .arg(&file);
        let mut proc = Proc::spawn(cmd);
        proc.wait_line("tcpdump: listening on any");
        Self {
            proc,
            file,
            _dir: dir,
        }
    }

    /// Stops the capture and returns every byte it wrote.
    fn finish(mut self) -> Vec<u8> {
        // Let what is in flight land first.
        std::thread::sleep(Duration::from_millis(300));
        // SIGTERM lets tcpdump flush and close the file.
        let pid = self.proc.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.proc.wait_exit();
        // A scan of a capture with holes proves nothing about what fell in them.
        let report = self.proc.output();
        assert!(
            report.contains("\n0 packets dropped by kernel"),
            "the capture is incomplete: {report}"
        );
        std::fs::read(&self.file).unwrap()
    }
}

/// The forms a secret could take in captured bytes: as is, UTF-16 either way round, hex
/// either case, and base64 at each of the three alignments.
fn forms(secret: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = byte_forms(secret.as_bytes());
    let utf16 = secret.encode_utf16();
    out.push((
        "utf-16le".into(),
        utf16.clone().flat_map(u16::to_le_bytes).collect(),
    ));
    out.push((
        "utf-16be".into(),
        utf16.flat_map(u16::to_be_bytes).collect(),
    ));
    out
}

/// The forms bytes could take: raw, hex either case, base64 at each alignment.
fn byte_forms(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("raw".to_owned(), raw.to_vec())];
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".into(), hex.clone().into_bytes()));
    out.push(("HEX".into(), hex.to_uppercase().into_bytes()));
    for pad in 0..3 {
        // Encode behind `pad` bytes and keep only the characters that depend on the
        // secret alone, so the form matches wherever the secret sits in a longer text.
        let mut buf = vec![0u8; pad];
        buf.extend_from_slice(raw);
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&buf);
        let skip = if pad == 0 { 0 } else { (pad * 4).div_ceil(3) };
        let keep = (raw.len() * 4 / 3).saturating_sub(2);
        let s: Vec<u8> = enc.bytes().skip(skip).take(keep).collect();
        out.push((format!("base64+{pad}"), s));
    }
    out
}

/// Which forms of `secret` occur in `hay`.
fn found(hay: &[u8], secret: &str) -> Vec<String> {
    found_forms(hay, forms(secret))
}

fn found_forms(hay: &[u8], forms: Vec<(String, Vec<u8>)>) -> Vec<String> {
    forms
        .into_iter()
        .filter(|(_, f)| hay.windows(f.len()).any(|w| w == f.as_slice()))
        .map(|(name, _)| name)
        .collect()
}

/// A string no capture contains by chance.
fn canary(what: &str) -> String {
    let mut b = [0u8; 8];
    getrandom(&mut b);
    let tag: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("sealdesk-canary-{what}-{tag}")
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

/// Which TURN relay serves the lab.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Relay {
    /// `sealdesk server`'s own.
    Embedded,
    /// coturn with the shipped `deploy/coturn/turnserver.conf`; `sealdesk server` runs
    /// with `--no-relay` and issues credentials for it.
    Coturn,
}

const SECRET: &str = "netns-lab-shared-secret";

/// The relay's machine: `sealdesk server` (signaling on 10.77.0.1, and the embedded
/// relay on 10.77.0.1:3478 or coturn there instead). Returns the processes and the URL.
fn relay_machine(lab: &Lab, relay: Relay, dir: &Path) -> (Vec<Proc>, String) {
    relay_machine_with(lab, relay, dir, "")
}

/// [`relay_machine`] with more `[relay]` settings for the server (coturn only).
fn relay_machine_with(
    lab: &Lab,
    relay: Relay,
    dir: &Path,
    relay_toml: &str,
) -> (Vec<Proc>, String) {
    let mut procs = Vec::new();
    let mut cmd = sealdesk_in(Some(&lab.relay), dir);
    // A fixed port (the namespace is the lab's own), so a restarted server is where it was.
    cmd.args(["server", "--listen", &format!("{RELAY_IP}:7000")]);
    if relay == Relay::Coturn {
        procs.push(coturn(lab, dir));
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "[relay]\nenabled = false\nurls = [\"turn:{RELAY_IP}:3478?transport=udp\", \
                 \"turn:{RELAY_IP}:3478?transport=tcp\"]\nsecret = \"{SECRET}\"\n{relay_toml}"
            ),
        )
        .unwrap();
        cmd.arg("--config").arg(&config);
    } else {
        cmd.args(["--relay-listen", &format!("{RELAY_IP}:3478")]);
    }
    let mut proc = Proc::spawn(cmd);
    let url = proc.wait_line("listening on ");
    match relay {
        Relay::Embedded => assert_eq!(
            proc.wait_line("sealdesk server: TURN relay on udp "),
            format!("{RELAY_IP}:3478")
        ),
        Relay::Coturn => {
            proc.wait_line("sealdesk server: no embedded TURN relay");
        }
    }
    procs.push(proc);
    (procs, url)
}

/// coturn in the relay's namespace on 10.77.0.1:3478 with the shipped configuration, up and
/// listening. Its log is `turn.log` in `dir` (appended to on a restart).
fn coturn(lab: &Lab, dir: &Path) -> Proc {
    let log = dir.join("turn.log");
    let before = std::fs::read_to_string(&log).map_or(0, |t| t.len());
    let conf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/coturn/turnserver.conf"
    );
    let mut turn = Command::new("ip");
    // Verbose: the log then names each allocation's username (a test reads them).
    turn.args([
        "netns",
        "exec",
        &lab.relay,
        "turnserver",
        "-c",
        conf,
        "--verbose",
    ])
    .arg(format!("--listening-ip={RELAY_IP}"))
    .arg(format!("--relay-ip={RELAY_IP}"))
    .arg(format!("--static-auth-secret={SECRET}"))
    // The lab's relay address is private (10/8), which the shipped config denies; a
    // real deployment's is public. Both peers relay through it, so let it through.
    .arg(format!("--allowed-peer-ip={RELAY_IP}"))
    .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
    .arg(format!("--log-file={}", log.display()));
    let mut proc = Proc::spawn(turn);
    let deadline = std::time::Instant::now() + WAIT;
    let new_log = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.get(before..).unwrap_or_default().to_owned()
    };
    while !new_log().contains("Total General servers") {
        assert!(
            proc.child.try_wait().unwrap().is_none(),
            "turnserver exited: {}",
            new_log()
        );
        assert!(std::time::Instant::now() < deadline, "turnserver not up");
        std::thread::sleep(Duration::from_millis(20));
    }
    proc
}

/// The path the viewer's stats lines report, once they report one.
fn path_of(viewer: &mut Proc, from: usize) -> &'static str {
    (from..)
        .find_map(|n| {
            let stats = viewer.wait_nth("stats: ", n, WAIT).expect("no stats");
            ["relay", "direct"]
                .into_iter()
                .find(|p| stats.ends_with(&format!("· {p}")))
        })
        .unwrap()
}

/// The viewer's settled picture matches the screen (PSNR ≥ 35 dB); `when` names the moment.
fn assert_picture(viewer: &mut Proc, display: &str, when: &str) {
    let png = settled_frame(viewer);
    let (_, _, decoded) = sealdesk_viewer::headless::read_png_rgb(&png).unwrap();
    let (_, _, truth) = screen_rgb(display);
    let db = psnr(&decoded, &truth);
    assert!(db >= 35.0, "PSNR {db:.1} dB {when}");
}

/// A desktop on a new Xvfb and a session to it from the lab's viewer, up through the relay
/// with its picture settled.
fn relayed_session(lab: &Lab, url: &str) -> (Xvfb, Desk, common::desk::Pair) {
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let desk = Desk::open(xvfb.display());
    let mut s = connect_in(
        (url, url),
        xvfb.display(),
        "y",
        (Some(&lab.host), &[]),
        (Some(&lab.viewer), &[]),
    );
    assert_eq!(path_of(&mut s.viewer, 1), "relay");
    settled_frame(&mut s.viewer);
    (xvfb, desk, s)
}

/// Whether process `pid` has a thread named like the host's capture thread.
fn capturing(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .any(|name| name.trim() == "sealdesk-captur")
}

/// The zero-config case: the embedded relay lives in `sealdesk server`, so a restart takes
/// signaling and relay down together. The relay's secret is kept in the server's data
/// directory, so the credentials both sides hold still allocate on the restarted relay; both
/// reconnect to signaling, and the viewer's ICE restart goes through once they have.
#[test]
fn when_the_embedded_relay_restarts_with_its_server_the_session_recovers() {
    embedded_relay_restart(false);
}

/// The same with the host reaching the relay over TCP: its new allocation needs a new
/// connection, which the restart makes.
#[test]
fn when_the_embedded_relay_restarts_a_session_relayed_over_tcp_recovers() {
    embedded_relay_restart(true);
}

fn embedded_relay_restart(host_udp_blocked: bool) {
    let lab = Lab::new();
    if host_udp_blocked {
        block_udp_to_relay(&lab.host);
    }
    let server_dir = tempfile::tempdir().unwrap();
    let (mut machine, url) = relay_machine(&lab, Relay::Embedded, server_dir.path());
    let (xvfb, desk, mut s) = relayed_session(&lab, &url);

    drop(machine.pop());
    s.host
        .wait_nth("the viewer stopped answering: capture paused", 1, WAIT)
        .unwrap_or_else(|| panic!("host: {}", s.host.output()));
    let (machine, url_again) = relay_machine(&lab, Relay::Embedded, server_dir.path());
    assert_eq!(url_again, url);
    s.viewer
        .wait_nth("path back", 1, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("viewer: {}", s.viewer.output()));
    s.host
        .wait_nth("the viewer is back: capture resumed", 1, WAIT)
        .unwrap_or_else(|| panic!("host: {}", s.host.output()));
    let stats_now = s.viewer.count("stats: ");
    assert_eq!(path_of(&mut s.viewer, stats_now + 1), "relay");
    desk.show_text(300, 500, "after the server came back");
    assert_picture(&mut s.viewer, xvfb.display(), "after the restart");
    s.viewer.send("type again");
    desk.wait_events(WAIT, |_| desk.typed().ends_with("again"));
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    drop(machine);
    if host_udp_blocked {
        assert!(udp_dropped(&lab.host) > 0);
    }
}

/// TURN credentials expire, and relays refuse every request made with an expired one —
/// the refreshes that keep an allocation and its permissions alive included — so a session
/// through the relay must re-allocate with a fresh credential before the one it holds
/// expires. Here credentials live 20 s: the session must allocate on coturn with new ones in
/// time (coturn's log names the usernames, which carry their expiry) and still work after
/// the first ones expired.
#[test]
fn a_session_through_the_relay_outlives_its_credentials() {
    let lab = Lab::new();
    let server_dir = tempfile::tempdir().unwrap();
    let (_machine, url) =
        relay_machine_with(&lab, Relay::Coturn, server_dir.path(), "ttl_secs = 20\n");
    let started = std::time::Instant::now();
    let (xvfb, desk, mut s) = relayed_session(&lab, &url);
    s.viewer
        .wait_nth("relay credential expires in ", 1, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("viewer: {}", s.viewer.output()));
    // Past the first credentials' expiry (they were issued before `started`).
    std::thread::sleep(Duration::from_secs(26).saturating_sub(started.elapsed()));
    let stats_now = s.viewer.count("stats: ");
    assert_eq!(path_of(&mut s.viewer, stats_now + 1), "relay");
    desk.show_text(300, 500, "after the credentials expired");
    assert_picture(&mut s.viewer, xvfb.display(), "after the renewal");
    s.viewer.send("type later");
    desk.wait_events(WAIT, |_| desk.typed().ends_with("later"));
    let log = std::fs::read_to_string(server_dir.path().join("turn.log")).unwrap();
    let mut users: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ALLOCATE processed, success"))
        .filter_map(|l| l.split("user <").nth(1)?.split('>').next())
        .collect();
    users.sort_unstable();
    users.dedup();
    // Host and viewer allocated with their first credentials, then with fresh ones.
    assert!(
        users.len() >= 4,
        "allocations by {users:?}: {}",
        log.lines()
            .filter(|l| l.contains("ALLOCATE"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
}

#[test]
fn when_the_relay_restarts_mid_session_ice_restarts_through_it_and_when_it_stays_down_the_session_ends(
) {
    let lab = Lab::new();
    let server_dir = tempfile::tempdir().unwrap();
    let (mut machine, url) = relay_machine(&lab, Relay::Coturn, server_dir.path());
    let (xvfb, desk, mut s) = relayed_session(&lab, &url);
    let host_pid = s.host.child.id();
    assert!(capturing(host_pid));

    // The relay dies: every allocation is gone. The host stops capturing while the viewer
    // is unheard; the viewer restarts ICE, which cannot work while the relay is down.
    drop(machine.remove(0));
    s.host
        .wait_nth("the viewer stopped answering: capture paused", 1, WAIT)
        .unwrap_or_else(|| panic!("host: {}", s.host.output()));
    s.viewer
        .wait_nth("path lost: restarting ICE (attempt 1)", 1, WAIT)
        .unwrap_or_else(|| panic!("viewer: {}", s.viewer.output()));

    // The relay comes back (empty): a restart allocates anew on both sides and the
    // session carries on through it — picture, keys — with the same keys and certificates.
    machine.insert(0, coturn(&lab, server_dir.path()));
    s.viewer
        .wait_nth("path back", 1, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("viewer: {}", s.viewer.output()));
    s.host
        .wait_nth("the viewer is back: capture resumed", 1, WAIT)
        .unwrap_or_else(|| panic!("host: {}", s.host.output()));
    assert!(
        s.host
            .count("the viewer lost the path: answering its ICE restart")
            >= 1
    );
    let stats_now = s.viewer.count("stats: ");
    assert_eq!(path_of(&mut s.viewer, stats_now + 1), "relay");
    desk.show_text(300, 500, "after the relay came back");
    assert_picture(&mut s.viewer, xvfb.display(), "after the restart");
    s.viewer.send("type back");
    desk.wait_events(WAIT, |_| desk.typed().ends_with("back"));
    assert!(s.host.output().contains("session active"));

    // The relay dies for good: no restart can work. The session ends on both sides within
    // the silence limit; the host stops capturing and is ready for the next viewer.
    drop(machine.remove(0));
    let ended = s
        .host
        .wait_nth("session ended: ", 1, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("host: {}", s.host.output()));
    assert!(ended.starts_with("the viewer"), "{ended}");
    assert!(!capturing(host_pid), "the host still captures");
    s.viewer.wait_exit();
    let out = s.viewer.output();
    assert!(out.contains("the host stopped answering"), "{out}");
    assert!(
        s.host.child.try_wait().unwrap().is_none(),
        "the host exited"
    );
    s.host
        .wait_nth("code: ", 2, WAIT)
        .unwrap_or_else(|| panic!("no new code: {}", s.host.output()));
}

/// Two NATs, the common case on the internet: neither side can reach the other's own
/// address, but each learns its public one from the relay (the XOR-MAPPED-ADDRESS of its
/// allocation) and offers it as a server-reflexive candidate; ICE's checks from both
/// sides open the two NATs, and the session goes direct — not through the relay. (Without
/// those candidates the only working pair would be relayed: a relay's permissions are for
/// the peer's candidate addresses, and the NATs' public ones are not among them.)
#[test]
fn behind_two_nats_the_session_goes_direct_through_server_reflexive_candidates() {
    let lab = Lab::behind_nats();
    // Nothing outside the NATs routes to the private networks.
    assert!(!lab.routes(&lab.relay, "192.168.1.2"));
    assert!(!lab.routes(&lab.relay, "192.168.2.2"));
    let server_dir = tempfile::tempdir().unwrap();
    let (_machine, url) = relay_machine(&lab, Relay::Embedded, server_dir.path());
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let desk = Desk::open(xvfb.display());
    let mut s = connect_in(
        (&url, &url),
        xvfb.display(),
        "y",
        (Some(&lab.host), &[]),
        (Some(&lab.viewer), &[]),
    );
    assert_eq!(path_of(&mut s.viewer, 1), "direct", "{}", s.viewer.output());
    assert_picture(&mut s.viewer, xvfb.display(), "across the NATs");
    s.viewer.send("type nat");
    desk.wait_events(WAIT, |_| desk.typed().ends_with("nat"));
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
}

#[test]
fn where_udp_is_blocked_the_host_relays_over_tcp_to_the_embedded_relay() {
    udp_blocked(Relay::Embedded, Side::Host);
}

#[test]
fn where_udp_is_blocked_the_host_relays_over_tcp_to_coturn() {
    udp_blocked(Relay::Coturn, Side::Host);
}

#[test]
fn where_udp_is_blocked_the_viewer_relays_over_tcp() {
    udp_blocked(Relay::Embedded, Side::Viewer);
}

/// Which end's network blocks UDP.
#[derive(Clone, Copy, Debug)]
enum Side {
    Host,
    Viewer,
}

/// `side`'s network lets no UDP out to the relay's machine (as some corporate networks do),
/// so neither the direct path nor TURN over UDP exists for it: it allocates over TCP, the
/// session works through that, and its user is told.
fn udp_blocked(relay: Relay, side: Side) {
    let lab = Lab::new();
    let ns = match side {
        Side::Host => &lab.host,
        Side::Viewer => &lab.viewer,
    };
    block_udp_to_relay(ns);
    let server_dir = tempfile::tempdir().unwrap();
    let (_machine, url) = relay_machine(&lab, relay, server_dir.path());
    let (xvfb, desk, mut s) = relayed_session(&lab, &url);
    assert_picture(
        &mut s.viewer,
        xvfb.display(),
        &format!("with the {side:?} relaying over TCP"),
    );
    s.viewer.send("type tcp");
    desk.wait_events(WAIT, |_| desk.typed().ends_with("tcp"));
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    // It did try UDP, and the firewall dropped it.
    assert!(udp_dropped(ns) > 0);
    let (told, output) = match side {
        Side::Host => (
            "relay: UDP to it is blocked from here, so sessions relay over TCP",
            s.host.output(),
        ),
        Side::Viewer => (
            "relay: UDP to it is blocked from here, so this session relays over TCP",
            s.viewer.output(),
        ),
    };
    assert!(output.contains(told), "{output}");
}

/// A firewall in `ns` that drops (and counts) all UDP to the relay's machine.
fn block_udp_to_relay(ns: &str) {
    nft(ns, &["add", "table", "inet", "fw"]);
    nft(
        ns,
        &["add chain inet fw out { type filter hook output priority 0 ; }"],
    );
    nft(
        ns,
        &[
            "add", "rule", "inet", "fw", "out", "ip", "daddr", RELAY_IP, "meta", "l4proto", "udp",
            "counter", "drop",
        ],
    );
}

/// How many packets [`block_udp_to_relay`]'s rule dropped.
fn udp_dropped(ns: &str) -> u64 {
    let rules = nft(ns, &["list", "table", "inet", "fw"]);
    rules
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {rules}"))
}

#[test]
fn through_the_embedded_relay_a_session_works_with_no_path_between_the_two_and_the_relay_sees_only_ciphertext(
) {
    session_through(Relay::Embedded);
}

#[test]
fn through_coturn_a_session_works_with_no_path_between_the_two_and_the_relay_sees_only_ciphertext()
{
    session_through(Relay::Coturn);
}

fn session_through(relay: Relay) {
    let lab = Lab::new();
    // The separation is real: neither side can route to the other, only to the relay.
    assert!(!lab.routes(&lab.host, VIEWER_IP));
    assert!(!lab.routes(&lab.viewer, HOST_IP));
    assert!(lab.routes(&lab.host, RELAY_IP) && lab.routes(&lab.viewer, RELAY_IP));

    let capture = Capture::start(&lab.relay);
    // Positive control: a datagram carrying each form of a control string, sent to the
    // relay's port from the host's namespace, must be found by the same scan.
    let control = canary("control");
    for (_, form) in forms(&control) {
        lab.send_udp(&lab.host, &format!("{RELAY_IP}:3478"), &form);
    }

    let server_dir = tempfile::tempdir().unwrap();
    let (_relay_machine, url) = relay_machine(&lab, relay, server_dir.path());
    let xvfb = Xvfb::start(u32::from(W), u32::from(H)).unwrap();
    let desk = Desk::open(xvfb.display());
    let on_screen = canary("screen");
    desk.show_text(460, 330, &on_screen);

    // Neither side is told to use the relay: the direct candidates simply fail.
    let mut s = connect_in(
        (&url, &url),
        xvfb.display(),
        "y",
        (Some(&lab.host), &[]),
        (Some(&lab.viewer), &[]),
    );
    let path = (1..)
        .find_map(|n| {
            let stats = s.viewer.wait_nth("stats: ", n, WAIT).expect("no stats");
            ["relay", "direct"]
                .into_iter()
                .find(|p| stats.ends_with(&format!("· {p}")))
        })
        .unwrap();
    assert_eq!(path, "relay");

    // The picture arrives intact.
    let png = settled_frame(&mut s.viewer);
    let (w, h, decoded) = sealdesk_viewer::headless::read_png_rgb(&png).unwrap();
    let (sw, sh, truth) = screen_rgb(xvfb.display());
    assert_eq!((w, h), (sw, sh));
    let db = psnr(&decoded, &truth);
    assert!(db >= 35.0, "PSNR {db:.1} dB through the relay");

    // Typed keys arrive.
    let typed = canary("typed");
    s.viewer.send(&format!("type {typed}"));
    desk.wait_events(WAIT, |_| desk.typed().len() >= typed.len());
    assert_eq!(desk.typed(), typed);

    // Clipboard both ways.
    let host_clip = Clipboard::connect(Some(xvfb.display()), 1 << 20).unwrap();
    let to_host = canary("clipboard-to-host");
    s.viewer.send(&format!("clipboard {to_host}"));
    s.host.wait_line("clipboard: ");
    let pasted = host_clip.get_text(Duration::from_secs(5)).unwrap();
    assert_eq!(pasted.as_deref(), Some(to_host.as_str()));
    let to_viewer = canary("clipboard-to-viewer");
    host_clip.set_text(to_viewer.clone()).unwrap();
    s.viewer.wait_line("clipboard from the host: ");
    let got = std::fs::read_to_string(s.frames.join("clipboard.txt")).unwrap();
    assert_eq!(got, to_viewer);

    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    s.host.wait_line("session ended: the viewer ended it");
    let pcap = capture.finish();
    let keys = KeyLog::read(&s.keylogs());

    // The capture saw the session: at least the video the viewer decoded crossed it.
    assert!(pcap.len() > 100_000, "only {} bytes captured", pcap.len());
    let mut control_forms = found(&pcap, &control);
    control_forms.sort();
    let mut all: Vec<String> = forms(&control).into_iter().map(|(n, _)| n).collect();
    all.sort();
    assert_eq!(control_forms, all, "the scan misses forms it should find");
    for secret in [&on_screen, &typed, &to_host, &to_viewer] {
        let leaks = found(&pcap, secret);
        assert!(leaks.is_empty(), "{secret} crossed the relay as {leaks:?}");
    }

    // Both ends bound channels: the bulk travels as ChannelData, not Send/Data indications.
    let datagrams = common::keys::udp_payloads(&pcap);
    let channel_data = datagrams
        .iter()
        .filter(|d| (0x40..=0x4f).contains(&d[0]))
        .count();
    let indications = datagrams
        .iter()
        .filter(|d| d.len() > 1 && d[0] == 0 && (d[1] == 0x16 || d[1] == 0x17))
        .count();
    assert!(
        channel_data > 100 && channel_data > 4 * indications,
        "{channel_data} ChannelData and {indications} Send/Data indications"
    );

    // Neither end's session keys crossed the relay in any form...
    assert_eq!(keys.records.len(), 2, "one record key per direction");
    assert_eq!(keys.srtp.len(), 1, "one SRTP keying material, at both ends");
    for secret in keys.secrets() {
        let leaks = found_forms(&pcap, byte_forms(&secret));
        assert!(
            leaks.is_empty(),
            "a session key crossed the relay as {leaks:?}"
        );
    }
    // ...and they open what did: the capture is this session, and decrypted it carries
    // the typed keys and both clipboard texts the scan above did not find.
    let messages = keys.control_messages(&pcap);
    let mut typed_seen = String::new();
    let mut clipboards = Vec::new();
    for m in &messages {
        match m {
            ControlMessage::Key { keysym, down: true } => {
                typed_seen.extend(char::from_u32(*keysym).filter(char::is_ascii_graphic));
            }
            ControlMessage::Clipboard { text } => clipboards.push(text.clone()),
            _ => {}
        }
    }
    assert!(
        typed_seen.contains(&typed),
        "decrypted key events spell {typed_seen:?}, not {typed}"
    );
    for text in [&to_host, &to_viewer] {
        assert!(
            clipboards.contains(text),
            "{text} not in the decrypted clipboard messages {clipboards:?}"
        );
    }
    // And the video the relay carried, decrypted and decoded, is the screen with the
    // canary on it.
    let (sw, sh, screen) = screen_rgb(xvfb.display());
    let (w, h, picture) = decrypted_picture(&keys, &pcap);
    assert_eq!((w, h), (sw, sh));
    let db = psnr(&picture, &screen);
    assert!(
        db >= 35.0,
        "PSNR {db:.1} dB of the video decrypted from the capture"
    );
    // The canary's own pixels (the text drawn at 460,330 in the 6×13 "fixed" font).
    let text_box = |rgb: &[u8]| -> Vec<u8> {
        (316..336)
            .flat_map(|y| {
                let row = (y * usize::from(W) + 456) * 3;
                rgb[row..row + 3 * (8 + 6 * on_screen.len())].to_vec()
            })
            .collect()
    };
    let db = psnr(&text_box(&picture), &text_box(&screen));
    assert!(
        db >= 30.0,
        "PSNR {db:.1} dB where the canary is, decrypted from the capture"
    );
}

/// The last picture of the video stream in `capture`, decrypted with `keys` and decoded:
/// width, height and RGB.
fn decrypted_picture(keys: &KeyLog, capture: &[u8]) -> (u32, u32, Vec<u8>) {
    let packets = keys.open_srtp(capture);
    // The video is the SSRC with the most payload (the other: retransmissions and the
    // congestion controller's padding probes, which are many but empty).
    let mut counts = std::collections::BTreeMap::<u32, usize>::new();
    for p in &packets {
        *counts.entry(p.ssrc).or_default() += p.payload.len();
    }
    let (&video, _) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("no SRTP packet in the capture opened with the logged keys");
    let stream: Vec<_> = packets.iter().filter(|p| p.ssrc == video).collect();
    let frames = vp9_frames(&stream);
    let mut decoder = Decoder::new(Codec::Vp9).unwrap();
    let last = frames
        .iter()
        .filter_map(|f| decoder.decode(f).ok().flatten())
        .last()
        .unwrap_or_else(|| panic!("none of {} decrypted frames decoded", frames.len()));
    let rgb = last
        .to_rgba_vec()
        .unwrap()
        .chunks(4)
        .flat_map(|px| [px[0], px[1], px[2]])
        .collect();
    (last.width(), last.height(), rgb)
}
