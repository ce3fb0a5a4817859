//! `sealdesk pair` and `sealdesk devices` as people run them: a real server process, two
//! devices with their own data directories, real sockets and real trust files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    reason = "tests fail by panicking; children are reaped in Drop"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Instant;

mod common;

use common::{sealdesk, server, Proc, Server};

/// Starts `pair host` and returns it with the code it shows.
fn pair_host(server: &Server, data: &Path, extra: &[&str]) -> (Proc, String) {
    let mut cmd = sealdesk(data);
    cmd.args([
        "pair",
        "host",
        "--server",
        &server.url,
        "--label",
        "office pc",
    ])
    .args(extra);
    let mut host = Proc::spawn(cmd);
    let code = host.wait_line("code: ");
    (host, code)
}

fn run(data: &Path, args: &[&str]) -> Output {
    sealdesk(data).args(args).output().unwrap()
}

fn connect(server: &Server, data: &Path, code: &str) -> Output {
    run(
        data,
        &[
            "pair",
            "connect",
            code,
            "--server",
            &server.url,
            "--label",
            "alice laptop",
        ],
    )
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The 60 digits of a safety number printed as three lines of four groups.
fn safety_digits(stdout: &str) -> String {
    let lines: Vec<String> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| {
            let groups: Vec<&str> = l.split(' ').collect();
            groups.len() == 4
                && groups
                    .iter()
                    .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|l| l.replace(' ', ""))
        .collect();
    assert_eq!(lines.len(), 3, "no safety number in {stdout}");
    lines.concat()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Pairs device `v` (viewer) with device `h` (host) and returns the host's output.
fn pair(server: &Server, h: &Path, v: &Path) -> String {
    let (mut host, code) = pair_host(server, h, &["--yes"]);
    let out = ok(connect(server, v, &code));
    assert!(out.contains("paired with \"office pc\""), "{out}");
    assert!(host.wait_exit(), "{}", host.output());
    host.output()
}

#[test]
fn pairing_over_a_real_server_makes_both_devices_remember_each_other() {
    let server = server();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let host_out = pair(&server, a.path(), b.path());
    assert!(
        host_out.contains("it calls itself: \"alice laptop\""),
        "{host_out}"
    );
    assert!(
        host_out.contains("paired with \"alice laptop\""),
        "{host_out}"
    );

    let list_a = ok(run(a.path(), &["devices", "list"]));
    assert!(list_a.contains("alice laptop"), "{list_a}");
    assert!(list_a.contains("view,input,clipboard,files"), "{list_a}");
    assert!(list_a.contains("pinned hosts: none"), "{list_a}");
    let list_b = ok(run(b.path(), &["devices", "list"]));
    assert!(list_b.contains("office pc"), "{list_b}");
    assert!(list_b.contains("paired viewers: none"), "{list_b}");

    // Each side's fingerprint, as the other side stored it.
    let fpr = |dir: &Path| {
        ok(run(dir, &["devices", "show"]))
            .trim()
            .strip_prefix("this device: ")
            .unwrap()
            .to_owned()
    };
    let (fpr_a, fpr_b) = (fpr(a.path()), fpr(b.path()));
    assert!(ok(run(a.path(), &["devices", "show", "alice laptop"])).contains(&fpr_b));
    assert!(ok(run(b.path(), &["devices", "show", "office pc"])).contains(&fpr_a));

    let on_a = safety_digits(&ok(run(a.path(), &["devices", "verify", &fpr_b[..9]])));
    let on_b = safety_digits(&ok(run(b.path(), &["devices", "verify", "office pc"])));
    assert_eq!(on_a.len(), 60);
    assert_eq!(on_a, on_b);
    // The number printed during pairing is the same one.
    assert_eq!(safety_digits(&host_out), on_a);

    assert_eq!(mode(&a.path().join("paired-devices.json")), 0o600);
    assert_eq!(mode(&b.path().join("pinned-hosts.json")), 0o600);
}

#[test]
fn a_wrong_code_is_refused_and_the_host_keeps_waiting_for_the_right_one() {
    let server = server();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut host, code) = pair_host(&server, a.path(), &["--yes"]);
    let (routing, secret) = code.split_once(" · ").unwrap();
    let wrong_secret = if secret == "1111 1111" {
        "2222 2222"
    } else {
        "1111 1111"
    };
    let wrong = connect(&server, b.path(), &format!("{routing} · {wrong_secret}"));
    assert!(!wrong.status.success(), "{}", text(&wrong));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("wrong code, or someone tampered with the connection (2 attempts left)"),
        "{err}"
    );
    assert!(
        b.path().join("code-attempts.json").exists(),
        "the failure was not persisted"
    );
    // The host counted the attempt at once and still waits.
    host.wait_line("wrong code, or someone tampered with the connection (2 attempts left)");
    assert!(host.child.try_wait().unwrap().is_none());

    let out = ok(connect(&server, b.path(), &code));
    assert!(out.contains("paired with \"office pc\""), "{out}");
    assert!(host.wait_exit(), "{}", host.output());
    assert!(ok(run(a.path(), &["devices", "list"])).contains("alice laptop"));
}

#[test]
fn a_code_tried_three_times_is_locked_on_both_sides() {
    let server = server();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut host, code) = pair_host(&server, a.path(), &["--yes"]);
    let (routing, secret) = code.split_once(" · ").unwrap();
    let wrong: Vec<String> = ["1111 1111", "2222 2222", "3333 3333", "4444 4444"]
        .iter()
        .filter(|s| **s != secret)
        .map(|s| format!("{routing} · {s}"))
        .collect();
    for (i, left) in ["2 attempts left", "1 attempt left", "no attempts left"]
        .iter()
        .enumerate()
    {
        let out = connect(&server, b.path(), &wrong[i]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(left), "attempt {i}: {err}");
    }
    // The host gives up on its code and says why.
    assert!(!host.wait_exit());
    assert!(
        host.output()
            .contains("this code was tried 3 times and is now locked; ask for a new one"),
        "{}",
        host.output()
    );
    // A new process on the viewer remembers its own failures: even the right code is not
    // tried against this host number for 10 minutes.
    let out = connect(&server, b.path(), &code);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 failed attempts to reach host"), "{err}");
}

#[test]
fn a_mistyped_code_is_refused_in_the_parsers_words() {
    let b = tempfile::tempdir().unwrap();
    let out = run(
        b.path(),
        &[
            "pair",
            "connect",
            "123 456 789 · 1234 567",
            "--server",
            "ws://127.0.0.1:9/ws",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a code has 17 digits"), "{err}");
}

#[test]
fn a_host_user_who_says_no_stores_nothing() {
    let server = server();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cmd = sealdesk(a.path());
    cmd.args([
        "pair",
        "host",
        "--server",
        &server.url,
        "--label",
        "office pc",
    ]);
    let mut host = Proc::spawn_interactive(cmd);
    let code = host.wait_line("code: ");
    host.send("n");
    let out = connect(&server, b.path(), &code);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the host's user declined the connection"),
        "{}",
        text(&out)
    );
    assert!(!host.wait_exit(), "{}", host.output());
    assert!(!a.path().join("paired-devices.json").exists());
    assert!(!b.path().join("pinned-hosts.json").exists());
}

#[test]
fn devices_commands_change_what_list_shows_and_verify_writes_images() {
    let server = server();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    pair(&server, a.path(), b.path());

    ok(run(
        a.path(),
        &["devices", "label", "alice laptop", "alice work"],
    ));
    ok(run(
        a.path(),
        &["devices", "permit", "alice work", "view,input,unattended"],
    ));
    let list = ok(run(a.path(), &["devices", "list"]));
    assert!(list.contains("alice work"), "{list}");
    assert!(!list.contains("alice laptop"), "{list}");
    assert!(list.contains("view,input,unattended"), "{list}");
    assert!(list.contains("active"), "{list}");
    ok(run(a.path(), &["devices", "revoke", "alice work"]));
    let list = ok(run(a.path(), &["devices", "list"]));
    assert!(list.contains("REVOKED"), "{list}");

    let bad = run(a.path(), &["devices", "permit", "alice work", "root"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown permission"));
    let missing = run(a.path(), &["devices", "revoke", "nobody"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no device matches"));

    let png = a.path().join("sn.png");
    let svg = a.path().join("sn.svg");
    ok(run(
        a.path(),
        &[
            "devices",
            "verify",
            "alice work",
            "--png",
            png.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
    ));
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));

    // On the viewer: rename, then forget the pinned host by its number.
    let host_number = ok(run(b.path(), &["devices", "show", "office pc"]))
        .lines()
        .find_map(|l| l.trim().strip_prefix("host number: ").map(str::to_owned))
        .unwrap();
    ok(run(b.path(), &["devices", "label", &host_number, "office"]));
    assert!(ok(run(b.path(), &["devices", "list"])).contains("office "));
    ok(run(b.path(), &["devices", "forget", &host_number]));
    assert!(ok(run(b.path(), &["devices", "list"])).contains("pinned hosts: none"));
}

#[test]
fn a_corrupt_registry_is_named_and_left_untouched() {
    let a = tempfile::tempdir().unwrap();
    let path = a.path().join("paired-devices.json");
    let garbage = b"{\"format\":1,\"devices\":[{\"key\":\"AAAA\"";
    std::fs::write(&path, garbage).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

    for args in [
        &["devices", "list"][..],
        &["devices", "revoke", "abcd"][..],
        // Refused before a code is shown or a server is contacted.
        &["pair", "host", "--server", "ws://127.0.0.1:9/ws", "--yes"][..],
    ] {
        let out = run(a.path(), args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&path.display().to_string()) && err.contains("damaged"),
            "{args:?}: {err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("code: "));
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    std::fs::write(&path, b"{\"format\":1,\"devices\":[]}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(a.path(), &["devices", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
}

/// DESIGN.md §10.6: nothing that must persist is lost to kill -9. Relabel the paired
/// device again and again, killing each `devices label` at a different moment; after every
/// kill the registry must load, still hold the device, and carry either the old or the new
/// label — never a torn file.
#[test]
fn kill_9_during_trust_store_writes_never_loses_the_pairing() {
    let server = server();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    pair(&server, a.path(), b.path());
    let registry = a.path().join("paired-devices.json");
    let mut label = "alice laptop".to_owned();
    // How long one uninterrupted run takes here, so the kills cover its whole life on a
    // fast or a slow machine alike.
    let started = Instant::now();
    ok(run(a.path(), &["devices", "label", &label, &label]));
    let full_run = started.elapsed();
    let mut killed_mid_way = 0;
    for i in 0..40u64 {
        let new = format!("laptop {i}");
        let mut child = sealdesk(a.path())
            .args(["devices", "label", &label, &new])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the command's life (start-up, read, write, rename).
        std::thread::sleep(full_run * u32::try_from(i % 20).unwrap() / 13);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed_mid_way += 1;
        }
        let out = ok(run(a.path(), &["devices", "list"]));
        let stored: String = std::fs::read_to_string(&registry).unwrap();
        assert!(
            stored.contains(&format!("\"{label}\"")) || stored.contains(&format!("\"{new}\"")),
            "{stored}"
        );
        if stored.contains(&format!("\"{new}\"")) {
            label = new;
        }
        assert!(out.contains(&label), "{out}");
        assert_eq!(mode(&registry), 0o600);
    }
    eprintln!("{killed_mid_way} of 40 runs killed before finishing; final label {label:?}");
    // Positive controls: some runs really were killed before finishing, and some finished.
    assert!(
        killed_mid_way > 0,
        "no run was killed; the test proves nothing"
    );
    assert!(
        killed_mid_way < 40,
        "no run finished; the test proves nothing"
    );
}
