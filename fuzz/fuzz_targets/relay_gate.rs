//! Datagrams from several clients into the relay as its shell runs them: the gatekeeper
//! first, then — when it lets them pass — the TURN state machine (turn-server-proto), whose
//! allocation requests get synthetic relayed addresses. Nothing may panic, no username may be
//! registered without a valid signature, and the state machine must never produce a datagram
//! from a relayed address to a peer the policy denies (the gate must have refused the
//! permission, channel or Send first).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sealdesk_server::relay::credentials::RelaySecret;
use sealdesk_server::relay::filter::{Gatekeeper, Verdict};
use sealdesk_server::relay::policy::PeerPolicy;
use turn_server_proto::api::{Transmit, TurnServerApi as _, TurnServerPollRet};
use turn_server_proto::server::TurnServer;
use turn_types::stun::TransportType;

const LISTEN: &str = "192.0.2.1:3478";
const NOW_UNIX: u64 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let listen: SocketAddr = LISTEN.parse().unwrap();
    let policy = PeerPolicy {
        own: vec![listen.ip()],
        allow_for_tests: Vec::new(),
    };
    let secret = RelaySecret::new(b"fuzz-relay-secret-0123456789".to_vec()).unwrap();
    let mut gate = Gatekeeper::new(secret, "sealdesk", policy.clone(), 2);
    let mut server = TurnServer::new(TransportType::Udp, listen, "sealdesk".to_owned());
    let clients: [SocketAddr; 3] = [
        "198.51.100.1:4000".parse().unwrap(),
        "198.51.100.2:4000".parse().unwrap(),
        "[2001:db8::1]:4000".parse().unwrap(),
    ];
    let mut next_port = 50_000u16;
    let mut relayed: Vec<SocketAddr> = Vec::new();
    // Input: [client index, length hi, length lo, bytes...] repeated.
    let mut rest = data;
    let mut t = 0i64;
    while let [who, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (msg, after) = tail.split_at(len);
        rest = after;
        t += 10_000_000;
        let now = turn_types::Instant::from_nanos(t);
        let from = clients[usize::from(*who) % clients.len()];
        match gate.check(from, msg, NOW_UNIX) {
            Verdict::Pass { new_user } => {
                if let Some((name, password)) = new_user {
                    server.add_user(name, password.to_string());
                }
                if let Some(out) = server.recv(Transmit::new(msg, TransportType::Udp, from, listen), now) {
                    check_egress(&policy, &relayed, &out.build());
                }
            }
            Verdict::Reply(_) | Verdict::Drop => {}
        }
        // Run the state machine as the shell does, answering allocation requests.
        loop {
            match server.poll(now) {
                TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } => {
                    let addr: SocketAddr = SocketAddr::new(listen.ip(), next_port);
                    next_port = next_port.wrapping_add(1).max(50_000);
                    relayed.push(addr);
                    let _ = gate.allocated(client_addr);
                    server.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        Ok(addr),
                        now,
                    );
                }
                TurnServerPollRet::WaitUntil(_) => break,
                _ => break,
            }
        }
        while let Some(out) = server.poll_transmit(now) {
            check_egress(&policy, &relayed, &out);
        }
    }
});

/// A datagram leaving a relayed address goes only to a peer the policy allows, or to another
/// of the relay's own allocations (handed over inside the relay).
fn check_egress<T: AsRef<[u8]>>(policy: &PeerPolicy, relayed: &[SocketAddr], out: &Transmit<T>) {
    if relayed.contains(&out.from) {
        let to_own = policy.is_own(out.to.ip());
        assert!(
            to_own || !policy.denies(out.to.ip()),
            "the relay would send from {} to the denied peer {}",
            out.from,
            out.to
        );
    }
}
