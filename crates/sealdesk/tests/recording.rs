//! End-to-end encrypted recordings (DESIGN.md §7) as people make them: `sealdesk recordings
//! keygen`, `sealdesk host --record-to` on a real Xvfb display with a real viewer, then
//! `verify` and `export`, with the WebM decoded by Debian's ffmpeg and a segment opened by
//! Debian's `age` — reference implementations, not ours.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    reason = "tests fail by panicking; children are reaped in Drop"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::desk::{connect_dirs, psnr, screen_rgb, settled_frame, Desk};
use common::{sealdesk, server};
use sealdesk_media::xvfb::Xvfb;

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "$ {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sealdesk recordings keygen` in `data`: the owner key (0600) and its certificate.
fn keygen(data: &Path, label: &str) -> (PathBuf, PathBuf) {
    let out = run(sealdesk(data).args(["recordings", "keygen", "--label", label]));
    assert!(out.status.success());
    let (key, cert) = (
        data.join("recordings/owner.key"),
        data.join("recordings/owner.cert"),
    );
    assert_eq!(mode(&key), 0o600, "the owner key is a secret");
    assert!(
        stdout(&out).contains("recipient:   age1"),
        "{}",
        stdout(&out)
    );
    (key, cert)
}

/// The recording directory a host announced ("● recording this session to DIR for …").
fn announced_dir(host_output: &str) -> PathBuf {
    let line = host_output
        .lines()
        .find(|l| l.starts_with("● recording this session to "))
        .unwrap_or_else(|| panic!("{host_output}"));
    let rest = line.trim_start_matches("● recording this session to ");
    PathBuf::from(rest.split(" for ").next().unwrap())
}

/// `sealdesk recordings export DIR -o OUT` with the owner key `key`, in `data`.
fn export(data: &Path, key: &Path, dir: &Path, out: &Path) -> Output {
    run(sealdesk(data)
        .args(["recordings", "export", "--quiet", "--identity"])
        .arg(key)
        .arg(dir)
        .arg("-o")
        .arg(out))
}

/// How many frames ffprobe decodes from a WebM, requiring it to report no error at all.
fn decoded_frames(webm: &Path) -> u64 {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(webm));
    assert!(
        out.status.success(),
        "ffprobe could not read {}",
        webm.display()
    );
    assert!(out.stderr.is_empty(), "ffprobe reported decoding errors");
    stdout(&out).trim().parse().unwrap()
}

/// The frame count an export reports ("wrote F: N frames, …").
fn exported_frames(export_stdout: &str) -> u64 {
    export_stdout
        .split(": ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{export_stdout}"))
}

/// The last frame of a WebM, decoded by ffmpeg, as RGB.
fn last_frame_rgb(webm: &Path, w: u32, h: u32) -> (Vec<u8>, usize) {
    let raw = webm.with_extension("rgb");
    let out = run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(webm)
        // Every decoded frame as it is (the recording's frame times vary: no resampling),
        // in the input's millisecond time base, so close frames keep distinct times.
        .args(["-fps_mode", "passthrough", "-enc_time_base", "-1"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
        .arg(&raw));
    assert!(out.status.success(), "ffmpeg could not decode the export");
    assert!(out.stderr.is_empty(), "ffmpeg reported decoding errors");
    let all = std::fs::read(&raw).unwrap();
    let frame = (w * h * 3) as usize;
    assert!(
        !all.is_empty() && all.len().is_multiple_of(frame),
        "{} bytes",
        all.len()
    );
    (all[all.len() - frame..].to_vec(), all.len() / frame)
}

#[test]
fn a_recorded_session_verifies_exports_to_webm_and_matches_the_screen() {
    let server = server();
    let xvfb = Xvfb::start(1024, 640).unwrap();
    let desk = Desk::open_sized(xvfb.display(), 1024, 640);
    let (hd, vd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The host's own user owns its recordings: the certificate is signed by the host's key.
    let (key, cert) = keygen(hd.path(), "host owner");
    let recs = hd.path().join("recs");
    let (cert_s, recs_s) = (cert.to_str().unwrap(), recs.to_str().unwrap());
    let mut s = connect_dirs(
        (&server.url, &server.url),
        xvfb.display(),
        "y",
        (hd, vd),
        (None, &["--record-to", cert_s, "--record-dir", recs_s]),
        (None, &[]),
    );
    assert!(s.host.output().contains("recording every session to"));
    let dir = announced_dir(&s.host.output());
    assert!(dir.starts_with(&recs), "{}", dir.display());
    s.viewer.wait_line("● the host is recording this session");
    assert!(
        s.viewer.output().contains("for \"host owner ("),
        "{}",
        s.viewer.output()
    );

    // Something changes on screen, then settles: the recording holds both.
    desk.show_text(40, 120, "recorded canary 7f3a");
    let _ = settled_frame(&mut s.viewer);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (w, h, truth) = screen_rgb(xvfb.display());
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    s.host.wait_line("recording: ");

    // Every file is private, every segment is a complete file (no leftovers), and the
    // canary text is nowhere in them.
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        assert!(
            f.extension().is_some_and(|x| x == "sdseg"),
            "{}",
            f.display()
        );
        assert_eq!(mode(f), 0o600);
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(7).any(|w| w == b"canary "),
            "plaintext in {}",
            f.display()
        );
    }

    // verify: complete, and by whom.
    let [hdir, _] = s.data_dirs();
    let out = run(sealdesk(hdir).args(["recordings", "verify"]).arg(&dir));
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("complete: {} segments", files.len())),
        "{text}"
    );
    assert!(text.contains("recorded by this device"), "{text}");

    // export → WebM that Debian's ffmpeg decodes without errors; its last frame is the screen.
    let webm = hdir.join("session.webm");
    let out = export(hdir, &key, &dir, &webm);
    assert!(out.status.success());
    let export_words = stdout(&out);
    assert!(export_words.starts_with("wrote "), "{export_words}");
    let (last, frames) = last_frame_rgb(&webm, w, h);
    let db = psnr(&last, &truth);
    eprintln!("exported last frame ({frames} frames) vs screen: PSNR {db:.1} dB");
    assert!(db >= 35.0, "PSNR {db:.1} dB < 35 dB");
    let probe = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&webm));
    let probe = stdout(&probe);
    assert!(probe.contains(&format!("vp9,{w},{h}")), "{probe}");
    let seconds: f64 = probe.lines().last().unwrap().trim().parse().unwrap();
    assert!(seconds > 2.0, "{probe}");

    // play: the recording shows in a window on another display (its red panel appears),
    // with the session's events on the terminal.
    let player_x = Xvfb::start(1280, 800).unwrap();
    let mut cmd = sealdesk(hdir);
    cmd.args(["recordings", "play", "--speed", "2", "--identity"])
        .arg(&key)
        .arg(&dir)
        .env("DISPLAY", player_x.display());
    let mut player = common::Proc::spawn(cmd);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, _, rgb) = screen_rgb(player_x.display());
        let red = rgb
            .chunks_exact(3)
            .filter(|p| p[0] > 200 && p[1] < 70 && p[2] < 70)
            .count();
        if red > 2000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{red} red pixels: {}",
            player.output()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(player.wait_exit(), "{}", player.output());
    let played = player.output();
    assert!(
        played.contains("recording started by the host — the other side: test viewer"),
        "{played}"
    );
    assert!(
        played.contains("session ended: the viewer ended it"),
        "{played}"
    );
    let exported = exported_frames(&export_words);
    assert!(
        played.contains(&format!("played {exported} frames")),
        "{played}"
    );

    // Each segment's age part is a standard age file: Debian's age opens it with the key.
    let first = std::fs::read(files.iter().min().unwrap()).unwrap();
    let age_part = hdir.join("first.age");
    std::fs::write(&age_part, &first[sealdesk_record::segment::AGE_OFFSET..]).unwrap();
    let out = run(Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&age_part));
    assert!(out.status.success());
    assert!(out.stdout.starts_with(b"sdrecb01"));

    // Without the owner key nothing opens: another key is refused by name.
    let stranger = tempfile::tempdir().unwrap();
    let (other_key, _) = keygen(stranger.path(), "someone else");
    let out = export(hdir, &other_key, &dir, &hdir.join("nope.webm"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
}

#[test]
fn a_host_refuses_a_recipient_it_cannot_trust_before_anyone_connects() {
    let server = server();
    let xvfb = Xvfb::start(320, 240).unwrap();
    let host = tempfile::tempdir().unwrap();
    let stranger = tempfile::tempdir().unwrap();
    let (_, own_cert) = keygen(host.path(), "me");
    // Certified by a device the host never paired with.
    let (_, foreign) = keygen(stranger.path(), "stranger");
    // The host's own certificate with the recipient swapped (what a server would try).
    let server_dir = tempfile::tempdir().unwrap();
    let (_, other) = keygen(server_dir.path(), "server");
    let theirs = std::fs::read_to_string(&other).unwrap();
    let ours = std::fs::read_to_string(&own_cert).unwrap();
    let field = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("recipient: "))
            .unwrap()
            .to_owned()
    };
    let swapped = host.path().join("swapped.cert");
    std::fs::write(&swapped, ours.replace(&field(&ours), &field(&theirs))).unwrap();
    let garbage = host.path().join("garbage.cert");
    std::fs::write(&garbage, "recipient: age1qqqq\n").unwrap();

    for (cert, words) in [
        (&foreign, "which this device does not trust"),
        (&swapped, "signature does not verify"),
        (&garbage, "not a sealdesk recording recipient certificate"),
    ] {
        let out = run(sealdesk(host.path())
            .args([
                "host",
                "--server",
                &server.url,
                "--display",
                xvfb.display(),
                "--no-qr",
            ])
            .arg("--record-to")
            .arg(cert));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{err}");
        assert!(
            !stdout(&out).contains("code: "),
            "it must not get as far as a code"
        );
    }
}

/// Records with a host that is then killed with SIGKILL after `after`, the screen changing
/// meanwhile. Returns the recording's directory.
fn record_then_kill(
    server: &common::Server,
    display: &str,
    desk: &Desk,
    hd: tempfile::TempDir,
    cert: &Path,
    after: std::time::Duration,
) -> (PathBuf, tempfile::TempDir) {
    let recs = hd.path().join("recs");
    let (cert_s, recs_s) = (cert.to_str().unwrap(), recs.to_str().unwrap());
    let mut s = connect_dirs(
        (&server.url, &server.url),
        display,
        "y",
        (hd, tempfile::tempdir().unwrap()),
        (None, &["--record-to", cert_s, "--record-dir", recs_s]),
        (None, &[]),
    );
    let dir = announced_dir(&s.host.output());
    let until = std::time::Instant::now() + after;
    let mut n = 0;
    while std::time::Instant::now() < until {
        desk.show_text(40, 100 + (n % 10) * 20, &format!("line {n}"));
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    s.host.child.kill().unwrap(); // SIGKILL: no final segment
    s.host.child.wait().unwrap();
    // Keep the host's data directory (its key signs what verify trusts).
    let [hdir, _] = s.data_dirs();
    let keep = tempfile::tempdir().unwrap();
    copy_dir(hdir, keep.path());
    (keep.path().join(dir.strip_prefix(hdir).unwrap()), keep)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn verify_words(data: &Path, dir: &Path) -> (bool, String) {
    let out = run(sealdesk(data).args(["recordings", "verify"]).arg(dir));
    (
        out.status.success(),
        stdout(&out).lines().next().unwrap_or("").to_owned(),
    )
}

#[test]
fn a_host_killed_mid_session_leaves_a_truncated_recording_and_tampering_is_named() {
    let server = server();
    let xvfb = Xvfb::start(640, 400).unwrap();
    let desk = Desk::open_sized(xvfb.display(), 640, 400);
    let hd = tempfile::tempdir().unwrap();
    let (key0, cert0) = keygen(hd.path(), "owner");
    // The host's data directory goes with its process; keep the owner's files apart.
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = (
        keys.path().join("owner.key"),
        keys.path().join("owner.cert"),
    );
    std::fs::copy(&key0, &key).unwrap();
    std::fs::copy(&cert0, &cert).unwrap();
    // Two sessions by the same host, each ended by SIGKILL.
    let (a, keep_a) = record_then_kill(
        &server,
        xvfb.display(),
        &desk,
        hd,
        &cert,
        std::time::Duration::from_millis(8000),
    );
    let data = keep_a.path();
    let hd2 = tempfile::tempdir().unwrap();
    copy_dir(data, hd2.path());
    let _ = std::fs::remove_dir_all(hd2.path().join("recs"));
    let (b, _keep_b) = record_then_kill(
        &server,
        xvfb.display(),
        &desk,
        hd2,
        &cert,
        std::time::Duration::from_millis(2600),
    );

    let files = |d: &Path| -> Vec<PathBuf> {
        let mut f: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sdseg"))
            .collect();
        f.sort();
        f
    };
    let seg_a = files(&a);
    assert!(seg_a.len() >= 3, "{seg_a:?}");
    assert!(!files(&b).is_empty());
    let last = seg_a.len() - 1;

    // Killed: truncated after its last durable segment, and it still exports, saying so.
    let (ok, words) = verify_words(data, &a);
    assert!(!ok);
    assert!(
        words.starts_with(&format!("truncated after segment {last}:")),
        "{words}"
    );
    let webm = data.join("killed.webm");
    let out = export(data, &key, &a, &webm);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("the recording is not complete — truncated after segment"),
        "{}",
        stdout(&out)
    );
    // Every frame the export wrote decodes in ffmpeg, without one error.
    assert_eq!(decoded_frames(&webm), exported_frames(&stdout(&out)));

    // The tampering matrix, on copies of the real recording.
    let variant = |name: &str, change: &dyn Fn(&Path)| -> String {
        let dir = data.join(format!("tampered-{name}"));
        copy_dir(&a, &dir);
        change(&dir);
        let (ok, words) = verify_words(data, &dir);
        assert!(!ok, "{name}: {words}");
        words
    };
    let name = |i: usize| format!("{i:06}.sdseg");
    let w = variant("dropped", &|d| {
        std::fs::remove_file(d.join(name(1))).unwrap()
    });
    assert!(w.starts_with("gap at segment 1: it is missing"), "{w}");
    let w = variant("reordered", &|d| {
        std::fs::rename(d.join(name(0)), d.join("tmp")).unwrap();
        std::fs::rename(d.join(name(1)), d.join(name(0))).unwrap();
        std::fs::rename(d.join("tmp"), d.join(name(1))).unwrap();
    });
    assert!(
        w.starts_with("reorder at segment 0: segment 1 is in its place"),
        "{w}"
    );
    let w = variant("duplicated", &|d| {
        std::fs::copy(d.join(name(1)), d.join("000001b.sdseg")).unwrap();
    });
    assert!(
        w.starts_with("duplicate at segment 2: a second copy of segment 1"),
        "{w}"
    );
    let w = variant("tail-removed", &|d| {
        std::fs::remove_file(d.join(name(last))).unwrap()
    });
    assert!(
        w.starts_with(&format!("truncated after segment {}:", last - 1)),
        "{w}"
    );
    let w = variant("cut-short", &|d| {
        let f = d.join(name(1));
        let len = std::fs::metadata(&f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len - 100)
            .unwrap();
    });
    assert!(
        w.starts_with("forged or corrupted at segment 1: its encrypted content does not match"),
        "{w}"
    );
    let w = variant("bit-flipped", &|d| {
        let f = d.join(name(1));
        let mut bytes = std::fs::read(&f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(&f, bytes).unwrap();
    });
    assert!(
        w.starts_with("forged or corrupted at segment 1: its encrypted content does not match"),
        "{w}"
    );
    let w = variant("entry-flipped", &|d| {
        let f = d.join(name(2));
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[40] ^= 0x01; // inside the signed entry (its times)
        std::fs::write(&f, bytes).unwrap();
    });
    assert!(
        w.starts_with(
            "forged or corrupted at segment 2: its manifest entry's signature does not verify"
        ),
        "{w}"
    );
    let w = variant("spliced", &|d| {
        std::fs::copy(b.join(name(0)), d.join(name(0))).unwrap();
    });
    assert!(
        w.starts_with("forged or corrupted at segment 0: it belongs to another recording"),
        "{w}"
    );
    // The server knows the owner's recipient (it is public) and encrypts its own content
    // to it with the real age tool, keeping the recorder's signed entry.
    let recipient = std::fs::read_to_string(&cert)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("recipient: ").map(str::to_owned))
        .unwrap();
    let w = variant("server-forged", &|d| {
        let f = d.join(name(1));
        let original = std::fs::read(&f).unwrap();
        let fake = data.join("fake.txt");
        std::fs::write(&fake, b"sdrecb01 nothing happened here").unwrap();
        let out = Command::new("age")
            .args(["-r", &recipient])
            .arg(&fake)
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut forged = original[..sealdesk_record::segment::AGE_OFFSET].to_vec();
        forged.extend_from_slice(&out.stdout);
        std::fs::write(&f, forged).unwrap();
    });
    assert!(
        w.starts_with("forged or corrupted at segment 1: its encrypted content does not match"),
        "{w}"
    );
    // Nothing of the tampering touched the original.
    let (_, words) = verify_words(data, &a);
    assert!(
        words.starts_with(&format!("truncated after segment {last}:")),
        "{words}"
    );
}

#[test]
fn a_viewer_records_to_its_own_key_and_the_host_is_told() {
    let server = server();
    let xvfb = Xvfb::start(800, 480).unwrap();
    let desk = Desk::open_sized(xvfb.display(), 800, 480);
    let (hd, vd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (key, _) = keygen(vd.path(), "viewer owner");
    let recs = vd.path().join("my recordings");
    let mut s = connect_dirs(
        (&server.url, &server.url),
        xvfb.display(),
        "y",
        (hd, vd),
        (None, &[]),
        (
            None,
            // VP8 here (the host's test records VP9): export muxes either.
            &[
                "--record",
                "--record-dir",
                recs.to_str().unwrap(),
                "--upload",
                "--codec",
                "vp8",
            ],
        ),
    );
    s.host.wait_line("● the viewer is recording this session");
    assert!(
        s.host.output().contains("for \"viewer owner ("),
        "{}",
        s.host.output()
    );
    let line = s
        .viewer
        .output()
        .lines()
        .find(|l| l.starts_with("● recording this session to "))
        .unwrap_or_else(|| panic!("{}", s.viewer.output()))
        .to_owned();
    let dir = PathBuf::from(
        line.trim_start_matches("● recording this session to ")
            .split(" for ")
            .next()
            .unwrap(),
    );
    assert!(dir.starts_with(&recs));
    desk.show_text(30, 60, "viewer side");
    let _ = settled_frame(&mut s.viewer);
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let (w, h, truth) = screen_rgb(xvfb.display());
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    assert!(
        s.viewer.output().contains("recording: "),
        "{}",
        s.viewer.output()
    );
    let segments = std::fs::read_dir(&dir).unwrap().count();
    assert!(
        s.viewer
            .output()
            .contains(&format!("recording uploaded: {segments} segments")),
        "{}",
        s.viewer.output()
    );
    let [_, vdir] = s.data_dirs();
    // The viewer owns them: it lists them on the server.
    let out = run(sealdesk(vdir).args(["recordings", "list", "--server", &server.url]));
    assert!(
        stdout(&out).starts_with(&format!("{segments} blobs")),
        "{}",
        stdout(&out)
    );
    let out = run(sealdesk(vdir).args(["recordings", "verify"]).arg(&dir));
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("recorded by this device"),
        "{}",
        stdout(&out)
    );
    let webm = vdir.join("v.webm");
    let out = export(vdir, &key, &dir, &webm);
    assert!(out.status.success());
    let probe = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&webm));
    assert_eq!(stdout(&probe).trim(), "vp8");
    let (last, _) = last_frame_rgb(&webm, w, h);
    let db = psnr(&last, &truth);
    eprintln!("viewer's recording (VP8), last frame vs screen: PSNR {db:.1} dB");
    assert!(db >= 35.0, "PSNR {db:.1} dB");
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn uploaded_segments_reach_only_their_owner_and_the_blob_store_holds_no_plaintext_or_keys() {
    use base64::Engine as _;
    let server = server();
    let xvfb = Xvfb::start(640, 400).unwrap();
    let desk = Desk::open_sized(xvfb.display(), 640, 400);
    let (hd, vd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (key, cert) = keygen(hd.path(), "owner");
    let recs = hd.path().join("recs");
    let clip = "clipboard canary ZK9-41f0";
    let mut s = connect_dirs(
        (&server.url, &server.url),
        xvfb.display(),
        "y",
        (hd, vd),
        (
            None,
            &[
                "--record-to",
                cert.to_str().unwrap(),
                "--record-dir",
                recs.to_str().unwrap(),
                "--record-clipboard",
                "--upload",
            ],
        ),
        (None, &[]),
    );
    desk.show_text(20, 40, "screen canary 9c2e");
    s.viewer.send(&format!("clipboard {clip}"));
    s.host.wait_line("clipboard: ");
    std::thread::sleep(std::time::Duration::from_millis(2300));
    s.viewer.send("end");
    assert!(s.viewer.wait_exit(), "{}", s.viewer.output());
    let uploaded = s.host.wait_line("recording uploaded: ");
    let n: usize = uploaded.split(' ').next().unwrap().parse().unwrap();
    let local = announced_dir(&s.host.output());
    assert_eq!(n, std::fs::read_dir(&local).unwrap().count(), "{uploaded}");
    let [hdir, vdir] = s.data_dirs();

    // Positive control: the clipboard text is in the recording's plaintext (opened with
    // Debian's age), so a scan that does not find it below is looking at what matters.
    let mut plaintext = Vec::new();
    for f in all_files(&local) {
        let bytes = std::fs::read(&f).unwrap();
        let part = hdir.join("part.age");
        std::fs::write(&part, &bytes[sealdesk_record::segment::AGE_OFFSET..]).unwrap();
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(&part)
            .output()
            .unwrap();
        assert!(out.status.success());
        plaintext.extend_from_slice(&out.stdout);
    }
    assert!(plaintext.windows(clip.len()).any(|w| w == clip.as_bytes()));

    // What the server holds: no canary, no key, in any usual encoding.
    let secret = |path: &Path, prefix: &str| -> String {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
            .unwrap()
    };
    let owner_secret = secret(&key, "AGE-SECRET-KEY-1");
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("clipboard canary".into(), clip.as_bytes().to_vec()),
        (
            "clipboard canary, base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(clip)
                .into_bytes(),
        ),
        ("owner key".into(), owner_secret.clone().into_bytes()),
        (
            "owner key, lowercase".into(),
            owner_secret.to_lowercase().into_bytes(),
        ),
    ];
    for (who, dir) in [("host", hdir), ("viewer", vdir)] {
        let seed_b64 = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find_map(|p| {
                std::fs::read_to_string(&p).ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("seed: ").map(str::to_owned))
                })
            })
            .unwrap_or_else(|| panic!("no identity key file in {}", dir.display()));
        let seed = base64::engine::general_purpose::STANDARD
            .decode(&seed_b64)
            .unwrap();
        needles.push((format!("{who} identity seed"), seed));
        needles.push((
            format!("{who} identity seed, base64"),
            seed_b64.into_bytes(),
        ));
    }
    let stored = all_files(server.data_dir());
    let blob_files: Vec<_> = stored
        .iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "blobs"))
        .collect();
    assert!(blob_files.len() >= n, "{stored:?}");
    for f in &stored {
        let bytes = std::fs::read(f).unwrap();
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} found in the server's {}",
                f.display()
            );
        }
    }

    // The owner lists and pulls them; the pulled recording is the recording.
    let out = run(sealdesk(hdir).args(["recordings", "list", "--server", &server.url]));
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with(&format!("{n} blobs")),
        "{}",
        stdout(&out)
    );
    let pulled = hdir.join("pulled");
    let out = run(sealdesk(hdir)
        .args(["recordings", "pull", "--server", &server.url, "-o"])
        .arg(&pulled));
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains(&format!("{n} written")), "{text}");
    assert!(text.contains(&format!("complete: {n} segments")), "{text}");
    let got = std::fs::read_dir(&pulled)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in all_files(&local) {
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(got.join(f.file_name().unwrap())).unwrap()
        );
    }
    // Pulling again writes nothing new.
    let out = run(sealdesk(hdir)
        .args(["recordings", "pull", "--server", &server.url, "-o"])
        .arg(&pulled));
    assert!(
        stdout(&out).contains(&format!("0 written, {n} already here")),
        "{}",
        stdout(&out)
    );

    // Another registered device sees none of them.
    let out = run(sealdesk(vdir).args(["recordings", "list", "--server", &server.url]));
    assert!(
        out.status.success(),
        "the viewer is registered: it may list (its own)"
    );
    assert!(stdout(&out).starts_with("0 blobs"), "{}", stdout(&out));
}

/// `sealdesk host` itself, killed with SIGKILL at random moments of recorded sessions
/// (before, during and after segments are written): every time, verify calls the recording
/// truncated exactly where its files end, and export turns what is there into WebM.
#[test]
fn a_host_killed_at_random_moments_always_leaves_a_recording_that_verifies() {
    use rand::Rng as _;
    let server = server();
    let xvfb = Xvfb::start(480, 320).unwrap();
    let desk = Desk::open_sized(xvfb.display(), 480, 320);
    let keys = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    for round in 0..6 {
        let hd = tempfile::tempdir().unwrap();
        let (key0, cert0) = keygen(hd.path(), "owner");
        let (key, cert) = (
            keys.path().join(format!("{round}.key")),
            keys.path().join(format!("{round}.cert")),
        );
        std::fs::copy(&key0, &key).unwrap();
        std::fs::copy(&cert0, &cert).unwrap();
        let after = std::time::Duration::from_millis(rng.gen_range(100..5000));
        let (dir, keep) = record_then_kill(&server, xvfb.display(), &desk, hd, &cert, after);
        let data = keep.path();
        let segments = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sdseg")
            })
            .count();
        let (ok, words) = verify_words(data, &dir);
        assert!(!ok, "round {round} ({after:?}): {words}");
        if segments == 0 {
            assert!(
                words.starts_with("truncated: not even the first segment"),
                "{words}"
            );
            continue;
        }
        assert!(
            words.starts_with(&format!("truncated after segment {}:", segments - 1)),
            "round {round} ({after:?}, {segments} files): {words}"
        );
        let webm = data.join("k.webm");
        let out = export(data, &key, &dir, &webm);
        assert!(out.status.success(), "round {round} ({after:?})");
        // Every frame the export wrote decodes in ffmpeg, without one error.
        assert_eq!(decoded_frames(&webm), exported_frames(&stdout(&out)));
        eprintln!(
            "round {round}: killed after {after:?}, {segments} segments verified and exported"
        );
    }
}
