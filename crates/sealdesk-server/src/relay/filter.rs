//! The relay's gatekeeper: every whole STUN message a client sends passes here before the
//! TURN state machine ([`turn_server_proto`]) sees it, because that crate has no hooks for
//! what sealdesk must enforce:
//!
//! - credentials in the TURN REST scheme ([`super::credentials`]): a username that is
//!   malformed or expired is refused (401) before anything else; the password is derived from
//!   it; RFC 8489 anonymous usernames (USERHASH) are refused, since their expiry cannot be read;
//! - a quota of allocations per username (486);
//! - the peer policy ([`super::policy`]) on CreatePermission and ChannelBind (a signed 403)
//!   and on Send indications (dropped).
//!
//! Sans-IO: bytes and the time (Unix seconds) in, a [`Verdict`] out. Nothing from the client
//! can make it panic; it never keeps more than [`MAX_USERS`] usernames.

use std::collections::HashMap;
use std::net::SocketAddr;

use turn_types::attribute::XorPeerAddress;
use turn_types::stun::attribute::{
    Attribute as _, AttributeFromRaw as _, AttributeStaticType as _, ErrorCode, Userhash, Username,
};
use turn_types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite as _,
    MessageWriteExt as _, MessageWriteVec,
};
use zeroize::Zeroizing;

use super::credentials::{check_username, RelaySecret};
use super::policy::PeerPolicy;

/// The most usernames remembered (each issued credential is one); past this, expired ones are
/// forgotten, and if none has expired new ones are refused (a flood of fresh credentials is
/// an issuing server gone wrong).
pub const MAX_USERS: usize = 65_536;

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the TURN state machine; first register `new_user` with it, if given.
    Pass {
        /// A username seen for the first time, with its password.
        new_user: Option<(String, Zeroizing<String>)>,
    },
    /// Answer the client with these bytes instead.
    Reply(Vec<u8>),
    /// Drop it silently.
    Drop,
}

/// Why a message was refused (for counters and logs; no content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Credentials were malformed, expired or anonymous.
    Credentials,
    /// The username is at its allocation quota.
    Quota,
    /// A peer the policy denies.
    Peer,
}

/// The gatekeeper's state.
#[derive(Debug)]
pub struct Gatekeeper {
    secret: RelaySecret,
    realm: String,
    policy: PeerPolicy,
    quota: usize,
    /// Usernames registered with the state machine, and their expiry.
    users: HashMap<String, u64>,
    /// Live allocations per username.
    allocations: HashMap<String, usize>,
    /// The username of each client 5-tuple that sent an authentic Allocate.
    client_user: HashMap<SocketAddr, String>,
    /// The last refusal, for the caller's counters.
    last_refusal: Option<Refusal>,
}

impl Gatekeeper {
    /// A gatekeeper for `realm`, checking credentials against `secret`, peers against
    /// `policy`, allowing `quota` allocations per username.
    pub fn new(secret: RelaySecret, realm: &str, policy: PeerPolicy, quota: usize) -> Self {
        Self {
            secret,
            realm: realm.to_owned(),
            policy,
            quota,
            users: HashMap::new(),
            allocations: HashMap::new(),
            client_user: HashMap::new(),
            last_refusal: None,
        }
    }

    /// The peer policy (for the egress check).
    pub fn policy(&self) -> &PeerPolicy {
        &self.policy
    }

    /// What was refused by the last [`Gatekeeper::check`], if anything.
    pub fn take_refusal(&mut self) -> Option<Refusal> {
        self.last_refusal.take()
    }

    /// An allocation was made for `client`: count it against its username.
    pub fn allocated(&mut self, client: SocketAddr) -> Option<String> {
        let user = self.client_user.get(&client)?.clone();
        *self.allocations.entry(user.clone()).or_default() += 1;
        Some(user)
    }

    /// An allocation of `user` ended.
    pub fn released(&mut self, user: &str) {
        if let Some(n) = self.allocations.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.allocations.remove(user);
            }
        }
    }

    /// Decides about one whole message from `from` at `now_unix`. Bytes that are not STUN
    /// (ChannelData) pass: their peer was checked when the channel was bound, and the egress
    /// check sees every datagram again.
    pub fn check(&mut self, from: SocketAddr, data: &[u8], now_unix: u64) -> Verdict {
        let pass = Verdict::Pass { new_user: None };
        let Ok(msg) = Message::from_bytes(data) else {
            return pass;
        };
        let request = msg.has_class(MessageClass::Request);
        if msg.has_attribute(Userhash::TYPE) {
            return self.refuse(
                Refusal::Credentials,
                &msg,
                request,
                ErrorCode::UNAUTHORIZED,
                None,
            );
        }
        let method = msg.method();
        if msg.has_class(MessageClass::Indication) && method == turn_types::message::SEND {
            // Send indications carry no credentials: only their peer can be judged.
            return if self.peer_denied(&msg) {
                self.last_refusal = Some(Refusal::Peer);
                Verdict::Drop
            } else {
                pass
            };
        }
        let Ok(user) = msg.attribute::<Username>() else {
            // No credentials yet: the state machine answers 401 with a realm and a nonce.
            return pass;
        };
        let name = user.username().to_owned();
        let expiry = match check_username(&name, now_unix) {
            Ok(e) => e,
            Err(_) => {
                return self.refuse(
                    Refusal::Credentials,
                    &msg,
                    request,
                    ErrorCode::UNAUTHORIZED,
                    None,
                )
            }
        };
        let password = self.secret.password(&name);
        let key =
            LongTermKeyCredentials::new(name.clone(), password.to_string(), self.realm.clone());
        let authentic = msg.validate_integrity(&key.clone().into()).is_ok();
        let mut new_user = None;
        // Only a message signed with the derived password registers its username: anyone can
        // make up well-formed names, only the issuing server can sign with them.
        if authentic && !self.users.contains_key(&name) {
            if self.users.len() >= MAX_USERS {
                self.users.retain(|_, e| *e > now_unix);
            }
            if self.users.len() >= MAX_USERS {
                return self.refuse(
                    Refusal::Credentials,
                    &msg,
                    request,
                    ErrorCode::UNAUTHORIZED,
                    None,
                );
            }
            self.users.insert(name.clone(), expiry);
            new_user = Some((name.clone(), password));
        }
        if authentic && request && method == turn_types::message::ALLOCATE {
            let live = self.allocations.get(&name).copied().unwrap_or(0);
            // A retransmitted Allocate from a 5-tuple already counted is not a new one.
            let known = self.client_user.get(&from) == Some(&name);
            if live >= self.quota && !known {
                return self.refuse(
                    Refusal::Quota,
                    &msg,
                    request,
                    ErrorCode::ALLOCATION_QUOTA_REACHED,
                    Some(&key),
                );
            }
            if self.client_user.len() < MAX_USERS || known {
                self.client_user.insert(from, name.clone());
            }
        }
        let with_peers = method == turn_types::message::CREATE_PERMISSION
            || method == turn_types::message::CHANNEL_BIND;
        // A request that is not authentic is refused by the state machine (401/438) without
        // acting on it; an authentic one to a denied peer gets a signed 403.
        if with_peers && authentic && request && self.peer_denied(&msg) {
            return self.refuse(
                Refusal::Peer,
                &msg,
                request,
                ErrorCode::FORBIDDEN,
                Some(&key),
            );
        }
        Verdict::Pass { new_user }
    }

    /// A client 5-tuple went away (its allocation expired or was deleted).
    pub fn forget_client(&mut self, client: SocketAddr) {
        self.client_user.remove(&client);
    }

    fn peer_denied(&self, msg: &Message<'_>) -> bool {
        msg.iter_attributes()
            .filter(|(_, raw)| raw.get_type() == XorPeerAddress::TYPE)
            .any(|(_, raw)| match XorPeerAddress::from_raw(raw) {
                Ok(p) => self
                    .policy
                    .denies_permission(p.addr(msg.transaction_id()).ip()),
                // An unreadable peer address is no permission to anything.
                Err(_) => true,
            })
    }

    fn refuse(
        &mut self,
        why: Refusal,
        msg: &Message<'_>,
        request: bool,
        code: u16,
        key: Option<&LongTermKeyCredentials>,
    ) -> Verdict {
        self.last_refusal = Some(why);
        if !request {
            return Verdict::Drop;
        }
        match error_reply(msg, code, key) {
            Some(bytes) => Verdict::Reply(bytes),
            None => Verdict::Drop,
        }
    }
}

/// An error response to `msg`, signed with `key` when given.
fn error_reply(
    msg: &Message<'_>,
    code: u16,
    key: Option<&LongTermKeyCredentials>,
) -> Option<Vec<u8>> {
    let mut b = Message::builder_error(msg, MessageWriteVec::new());
    let error = ErrorCode::builder(code).build().ok()?;
    b.add_attribute(&error).ok()?;
    if let Some(k) = key {
        b.add_message_integrity(&k.clone().into(), IntegrityAlgorithm::Sha1)
            .ok()?;
    }
    b.add_fingerprint().ok()?;
    Some(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gatekeeper {
        let secret = RelaySecret::new(vec![7; 32]).unwrap_or_else(|| unreachable!());
        Gatekeeper::new(secret, "sealdesk", PeerPolicy::default(), 2)
    }

    proptest::proptest! {
        /// Whatever a client sends, the gatekeeper answers with a verdict — never a panic —
        /// and registers no username it did not see signed.
        #[test]
        fn any_bytes_get_a_verdict(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut g = gate();
            let from: SocketAddr = "192.0.2.1:5000".parse().unwrap_or_else(|_| unreachable!());
            let v = g.check(from, &data, 1_000_000);
            let registered = matches!(v, Verdict::Pass { new_user: Some(_) });
            proptest::prop_assert!(!registered, "registered an unsigned username");
        }

        /// STUN-shaped bytes (right magic cookie, TURN methods, random attributes) too.
        #[test]
        fn stun_shaped_bytes_get_a_verdict(
            method in 0u16..16,
            class in 0u16..4,
            attrs in proptest::collection::vec((proptest::num::u16::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..6),
        ) {
            let mut body = Vec::new();
            for (t, v) in &attrs {
                body.extend_from_slice(&t.to_be_bytes());
                body.extend_from_slice(&(v.len() as u16).to_be_bytes());
                body.extend_from_slice(v);
                while body.len() % 4 != 0 {
                    body.push(0);
                }
            }
            let kind = (method & 0xf) | ((class & 1) << 4) | ((class & 2) << 7);
            let mut msg = kind.to_be_bytes().to_vec();
            msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
            msg.extend_from_slice(&0x2112_a442u32.to_be_bytes());
            msg.extend_from_slice(&[9; 12]);
            msg.extend_from_slice(&body);
            let mut g = gate();
            let from: SocketAddr = "192.0.2.1:5000".parse().unwrap_or_else(|_| unreachable!());
            let _ = g.check(from, &msg, 1_000_000);
            for cut in 0..msg.len() {
                let _ = g.check(from, &msg[..cut], 1_000_000);
            }
        }
    }
}
