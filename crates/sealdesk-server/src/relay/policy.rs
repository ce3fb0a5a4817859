//! Which peers a relay may send to (DESIGN.md §6).
//!
//! A TURN relay that forwards to any address is an open proxy into the network it sits in:
//! loopback services, cloud metadata (169.254.169.254), the LAN behind it. The policy refuses
//! every non-public address, in every form an IPv6 address can carry an IPv4 one —
//! IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and
//! `64:ff9b:1::/48`, 6to4 `2002::/16` — which are reduced to that IPv4 address first (coturn's
//! CVE-2020-26262 and CVE-2026-27624 were bypasses through exactly these forms), and the
//! relay's own addresses. Tests may let chosen addresses through with
//! [`PeerPolicy::allow_for_tests`]; release configurations leave it empty.
//!
//! Pure: no I/O, no clock. Checked on CreatePermission, ChannelBind and Send, and again on
//! every datagram the relay is about to send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 networks no relay may reach (RFC 6890 special-purpose, private, shared, multicast).
const DENIED_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // carrier-grade NAT
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, cloud metadata
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24),  // documentation
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast
];

/// IPv6 networks no relay may reach (besides the IPv4 forms, checked as IPv4).
const DENIED_V6: &[(u128, u32)] = &[
    (0, 128),                          // :: unspecified
    (1, 128),                          // ::1 loopback
    (0x0100_0000_0000_0000 << 64, 64), // 100::/64 discard
    (0x2001_0000 << 96, 32),           // 2001::/32 Teredo
    (0x2001_0db8 << 96, 32),           // 2001:db8::/32 documentation
    (0xfc00 << 112, 7),                // fc00::/7 unique local
    (0xfe80 << 112, 10),               // fe80::/10 link-local
    (0xfec0 << 112, 10),               // fec0::/10 site-local (deprecated)
    (0xff00 << 112, 8),                // ff00::/8 multicast
];

fn v4_in(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn v6_in(ip: u128, net: u128, bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    ip & mask == net & mask
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one.
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if v6_in(bits, 0xffff << 32, 96) // ::ffff:a.b.c.d, IPv4-mapped
        || v6_in(bits, 0xffff << 48, 96) // ::ffff:0:a.b.c.d, SIIT translated
        || (v6_in(bits, 0, 96) && bits > 1) // ::a.b.c.d, IPv4-compatible (not :: or ::1)
        || v6_in(bits, 0x0064_ff9b << 96, 96) // NAT64 well-known prefix
        || v6_in(bits, 0x0064_ff9b_0001 << 80, 48)
    // NAT64 local-use prefix
    {
        return Some(low32);
    }
    if v6_in(bits, 0x2002 << 112, 16) {
        // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// The address as the relay must judge it: IPv4 forms of IPv6 reduced to IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` (already canonical) is in a denied range.
fn special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => DENIED_V4.iter().any(|(n, b)| v4_in(v4, *n, *b)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            DENIED_V6.iter().any(|(n, b)| v6_in(bits, *n, *b))
        }
    }
}

/// The relay's peer-address policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The relay's own addresses (listening and relayed): never a peer.
    pub own: Vec<IpAddr>,
    /// Addresses let through although they are in a denied range — for tests that run in
    /// private network namespaces only. Never the relay's own addresses. Empty by default.
    pub allow_for_tests: Vec<IpAddr>,
}

impl PeerPolicy {
    /// Whether `ip` is one of the relay's own addresses (in any form).
    pub fn is_own(&self, ip: IpAddr) -> bool {
        let canon = canonical(ip);
        self.own.iter().any(|o| canonical(*o) == canon)
    }

    /// Whether a permission (or channel) to `ip` must be refused. The relay's own addresses
    /// are allowed here — two clients of the same relay reach each other through them — but
    /// data to them goes only to the relay's own live allocations, handed over inside the
    /// relay (see the egress check), never to another service on its host.
    pub fn denies_permission(&self, ip: IpAddr) -> bool {
        !self.is_own(ip) && self.denies(ip)
    }

    /// Whether the relay must refuse to send to `ip` from a relayed socket.
    pub fn denies(&self, ip: IpAddr) -> bool {
        let canon = canonical(ip);
        if self.own.iter().any(|o| canonical(*o) == canon) {
            return true;
        }
        if self.allow_for_tests.contains(&canon) {
            return false;
        }
        special(canon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    /// Every form issue 5 names, and the forms that bypassed coturn.
    pub(crate) const DENIED: &[&str] = &[
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.255",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.1",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:0.0.0.0",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:192.168.1.1",
        "::ffff:0:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::7f00:1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
        "2002:c0a8:101::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
        "ff05::1:3",
        "2001::1",
        "2001:db8::1",
        "100::1",
    ];

    #[test]
    fn every_non_public_form_is_denied() {
        let p = PeerPolicy::default();
        for a in DENIED {
            assert!(p.denies(ip(a)), "{a} was allowed");
        }
    }

    #[test]
    fn public_addresses_are_allowed_in_every_form() {
        let p = PeerPolicy::default();
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.169.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2a00:1450:4001::1",
            "2606:4700::1111",
        ] {
            assert!(!p.denies(ip(a)), "{a} was denied");
        }
    }

    #[test]
    fn the_relays_own_addresses_are_denied_in_any_form_and_tests_may_allow_chosen_ones() {
        let p = PeerPolicy {
            own: vec![ip("203.0.114.5"), ip("2a01:4f8::5")],
            allow_for_tests: vec![ip("10.77.1.2"), ip("203.0.114.5")],
        };
        assert!(p.denies(ip("203.0.114.5")), "own address, even if allowed");
        assert!(p.denies(ip("::ffff:203.0.114.5")));
        assert!(p.denies(ip("2002:cb00:7205::1")));
        assert!(p.denies(ip("2a01:4f8::5")));
        assert!(!p.denies(ip("10.77.1.2")), "test allowance");
        assert!(
            !p.denies(ip("::ffff:10.77.1.2")),
            "test allowance, mapped form"
        );
        assert!(p.denies(ip("10.77.1.3")));
    }

    #[test]
    fn embedded_forms_reduce_to_their_ipv4() {
        assert_eq!(canonical(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(canonical(ip("64:ff9b::102:304")), ip("1.2.3.4"));
        assert_eq!(canonical(ip("2002:102:304::9")), ip("1.2.3.4"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("::")), ip("::"));
        assert_eq!(canonical(ip("2a00::1")), ip("2a00::1"));
    }
}
