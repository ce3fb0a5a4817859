//! `sealdesk audit` end to end: against the embedded server and against coturn as the
//! relay it passes every question a test build can pass — and fails question 5, because
//! this binary has the insecure test-only features compiled in (`scripts/test` runs the
//! audit on a build without them, which must pass all five). Each deliberate leak
//! (`sealdesk_client::insecure`) makes the right question fail. The report's JSON shape is
//! pinned here: SECURITY.md documents it, and programs rely on it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

/// One audit at a time: each runs an Xvfb, a server, a host and a viewer, and two cores
/// shared by four of them make the sessions crawl.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const IDS: [&str; 5] = [
    "vendor-cannot-decrypt",
    "keys-between-endpoints",
    "relay-fallback",
    "recording-keys",
    "auditable-build",
];

fn audit(args: &[&str], control: Option<&str>) -> Output {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::EXE);
    cmd.env("SEALDESK_DATA_DIR", data.path())
        .env("SEALDESK_LOG", "warn")
        .env_remove("SEALDESK_INSECURE_CONTROL")
        .arg("audit")
        .args(args);
    if let Some(c) = control {
        cmd.env("SEALDESK_INSECURE_CONTROL", c);
    }
    cmd.output().unwrap()
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn section<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no section {id}: {r:#}"))
}

fn passes(r: &Value, id: &str) -> bool {
    section(r, id)["pass"].as_bool().unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn against_the_embedded_server_all_but_the_build_question_pass_and_the_report_keeps_its_shape() {
    let out = audit(&["--json"], None);
    let r = report(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a test build must not pass: {r:#}");
    assert!(
        stderr.contains("the audit failed: 5 (auditable-build)"),
        "{stderr}"
    );

    // The shape programs rely on (documented in SECURITY.md).
    assert_eq!(r["schema"], "sealdesk-audit/1");
    assert_eq!(
        keys(&r),
        [
            "embedded_server",
            "passed",
            "relay_only",
            "schema",
            "sealdesk",
            "sections",
            "server"
        ]
    );
    assert_eq!(r["passed"], false);
    assert_eq!(r["embedded_server"], true);
    let sections = r["sections"].as_array().unwrap();
    assert_eq!(
        sections
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        IDS
    );
    for (i, s) in sections.iter().enumerate() {
        assert_eq!(
            keys(s),
            ["details", "evidence", "id", "number", "pass", "question", "summary"]
        );
        assert_eq!(s["number"], i + 1);
        assert!(!s["evidence"].as_array().unwrap().is_empty());
    }
    for id in &IDS[..4] {
        assert!(passes(&r, id), "{id} failed: {:#}", section(&r, id));
    }

    // 1: the canaries crossed, and neither they nor any key were seen — including the
    // DTLS/SRTP keys, which this test build can log and so searches for.
    let q1 = &section(&r, "vendor-cannot-decrypt")["details"];
    assert_eq!(q1["canaries_crossed"], true);
    assert_eq!(q1["found"].as_array().unwrap().len(), 0);
    assert!(q1["dtls_srtp_keys"].as_u64().unwrap() >= 4, "{q1:#}");
    for place in q1["observed"].as_array().unwrap() {
        assert!(
            place["items"].as_u64().unwrap() > 0,
            "nothing observed: {place}"
        );
    }
    // 2: the transcript, and every attack stopped.
    let q2 = &section(&r, "keys-between-endpoints")["details"];
    let attacks = q2["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 5, "{q2:#}");
    assert!(attacks.iter().all(|a| a["pass"] == true), "{q2:#}");
    let transcript: Vec<&str> = q2["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(transcript, ["A1", "A2", "A3", "sealed"]);
    // 3: DTLS 1.2 with EMS through the embedded relay.
    let q3 = &section(&r, "relay-fallback")["details"];
    assert_eq!(q3["path"], "relay");
    assert_eq!(q3["server_hellos"][0]["version"], "0xfefd");
    assert_eq!(q3["server_hellos"][0]["extended_master_secret"], true);
    assert_eq!(q3["unparsed"], 0);
    // 4: the owner's key opened what the server stores, nothing else did.
    let q4 = &section(&r, "recording-keys")["details"];
    assert!(q4["blobs"].as_u64().unwrap() >= 1);
    assert_eq!(q4["opened_by_owner"], q4["blobs"]);
    assert_eq!(q4["opened_by_other_key"], 0);
    assert_eq!(q4["substitutions_refused"], 2);
    // 5: names what makes this build unfit.
    let q5 = &section(&r, "auditable-build")["details"];
    let insecure: Vec<&str> = q5["insecure_features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(insecure, ["insecure-keylog", "insecure-controls"]);
    assert_eq!(q5["commit"].as_str().unwrap().len(), 40, "{q5:#}");
}

#[test]
fn with_coturn_as_the_relay_every_session_through_it_passes() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let secret = "audit-test-coturn-shared-secret";
    let conf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/coturn/turnserver.conf"
    );
    let log = dir.path().join("turn.log");
    let mut turn = Command::new("turnserver");
    // The shipped configuration, on loopback: devices and relayed addresses are 127.0.0.1
    // here, which it (rightly) denies as peers; let exactly that through.
    turn.args(["-c", conf, "--allow-loopback-peers"])
        .arg("--listening-ip=127.0.0.1")
        .arg("--relay-ip=127.0.0.1")
        .arg(format!("--listening-port={port}"))
        .arg(format!("--static-auth-secret={secret}"))
        .arg("--allowed-peer-ip=127.0.0.1")
        .arg(format!(
            "--pidfile={}",
            dir.path().join("turn.pid").display()
        ))
        .arg(format!("--log-file={}", log.display()));
    let mut turn = common::Proc::spawn(turn);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Total General servers")
    {
        assert!(
            turn.child.try_wait().unwrap().is_none(),
            "turnserver exited"
        );
        assert!(std::time::Instant::now() < deadline, "turnserver not up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = format!("turn:127.0.0.1:{port}?transport=udp");
    let out = audit(
        &[
            "--relay-only",
            "--relay-url",
            &url,
            "--relay-secret",
            secret,
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "[PASS] 1. Can the vendor decrypt a session",
        "[PASS] 2. Are session keys derived between the endpoints",
        "[PASS] 3. What happens on relay fallback?",
        "[PASS] 4. Who holds the recording keys?",
        "[FAIL] 5. Is the implementation auditable?",
        &format!("the forced-relay session ran over 127.0.0.1:{port} (path relay)"),
        "DTLS ServerHello: version DTLS 1.2",
        "result: FAIL (4 of 5 questions pass)",
    ] {
        assert!(
            text.contains(line),
            "missing {line:?}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Session 1 went through coturn too (--relay-only), and coturn saw the allocations.
    assert!(text.contains("session 1 (relay)"), "{text}");
    assert!(!out.status.success());
}

#[test]
fn an_offer_leaked_past_the_seal_fails_question_2_and_only_it() {
    let r = report(&audit(&["--json"], Some("leak-offer")));
    assert!(!passes(&r, "keys-between-endpoints"), "{r:#}");
    let q2 = &section(&r, "keys-between-endpoints")["details"];
    assert!(q2["sdp_in_clear"].as_u64().unwrap() > 0, "{q2:#}");
    assert!(q2["undecodable"].as_u64().unwrap() > 0, "{q2:#}");
    for id in ["vendor-cannot-decrypt", "relay-fallback", "recording-keys"] {
        assert!(passes(&r, id), "{id}: {:#}", section(&r, id));
    }
}

#[test]
fn a_recording_leaked_in_plain_text_fails_question_4_where_it_is_stored() {
    let r = report(&audit(&["--json"], Some("plaintext-recording")));
    assert!(!passes(&r, "recording-keys"), "{r:#}");
    let q4 = &section(&r, "recording-keys")["details"];
    assert!(q4["canaries_in_storage"].as_u64().unwrap() > 0, "{q4:#}");
    // Question 1 searches what was uploaded too, and finds the leak only there.
    let found = section(&r, "vendor-cannot-decrypt")["details"]["found"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!found.is_empty());
    for f in &found {
        let place = f["place"].as_str().unwrap();
        assert!(
            place == "blobs the server stores" || place == "files in the server's data directory",
            "{f}"
        );
        assert!(
            f["what"].as_str().unwrap().starts_with("clipboard canary"),
            "{f}"
        );
    }
    for id in ["keys-between-endpoints", "relay-fallback"] {
        assert!(passes(&r, id), "{id}: {:#}", section(&r, id));
    }
}

#[test]
fn against_a_server_running_elsewhere_the_same_questions_pass() {
    // A `sealdesk server` process the audit does not control, with its own relay.
    let server = common::server();
    let r = report(&audit(&["--json", "--server", &server.url], None));
    assert_eq!(r["embedded_server"], false);
    assert_eq!(r["server"], server.url.as_str());
    for id in &IDS[..4] {
        assert!(passes(&r, id), "{id} failed: {:#}", section(&r, id));
    }
    // It cannot read that server's files, and does not pretend to.
    let observed: Vec<&str> = section(&r, "vendor-cannot-decrypt")["details"]["observed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["place"].as_str().unwrap())
        .collect();
    assert_eq!(
        observed,
        [
            "signaling messages",
            "envelope bodies (decoded)",
            "relay datagrams",
            "blobs the server stores"
        ]
    );
}
