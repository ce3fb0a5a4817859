//! Time-limited TURN credentials in the TURN REST scheme (draft-uberti-behave-turn-rest),
//! which coturn's `use-auth-secret` also speaks: the username is `expiry:id` (expiry in Unix
//! seconds), the password `base64(HMAC-SHA1(secret, username))`. The signaling server issues
//! them to registered devices; the relay derives the password from the username, so it keeps
//! no table of users and a credential cannot outlive its expiry.
//!
//! Pure: the current time is an argument.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

/// The longest a credential may live.
pub const MAX_TTL_SECS: u64 = 3600;
/// The longest username the relay looks at.
pub const MAX_USERNAME: usize = 128;

/// A secret shared by the signaling server and the relay(s). Zeroized on drop, never printed.
#[derive(Clone)]
pub struct RelaySecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for RelaySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelaySecret(..)")
    }
}

impl RelaySecret {
    /// A secret from its bytes (at least 16).
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= 16).then(|| Self(Zeroizing::new(bytes)))
    }

    /// A fresh random 32-byte secret.
    pub fn random(rng: &mut impl rand::RngCore) -> Self {
        let mut b = vec![0u8; 32];
        rng.fill_bytes(&mut b);
        Self(Zeroizing::new(b))
    }

    /// The password for `username`.
    pub fn password(&self, username: &str) -> Zeroizing<String> {
        // HMAC accepts keys of any length.
        let mut mac = match <Hmac<sha1::Sha1>>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return Zeroizing::new(String::new()),
        };
        mac.update(username.as_bytes());
        Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        )
    }
}

/// A credential for one device.
#[derive(Clone)]
pub struct Credential {
    /// `expiry:id`.
    pub username: String,
    /// The password.
    pub password: Zeroizing<String>,
    /// Unix seconds after which the relay refuses it.
    pub expires_at: u64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Issues a credential for `id` (e.g. a routing number) valid for `ttl_secs` (at most
/// [`MAX_TTL_SECS`]) from `now_unix`.
pub fn issue(secret: &RelaySecret, id: &str, now_unix: u64, ttl_secs: u64) -> Credential {
    let expires_at = now_unix.saturating_add(ttl_secs.min(MAX_TTL_SECS));
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let username = format!("{expires_at}:{id}");
    let password = secret.password(&username);
    Credential {
        username,
        password,
        expires_at,
    }
}

/// Why a username is refused before its password is even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsernameError {
    /// Not `expiry:id` with a decimal expiry, or too long.
    #[error("not a relay username (expiry:id)")]
    Malformed,
    /// The expiry has passed.
    #[error("the relay credential has expired")]
    Expired,
    /// The expiry is further away than any credential this server issues.
    #[error("the relay credential claims a lifetime longer than issued ones")]
    TooLong,
}

/// Checks a username's form and expiry at `now_unix`; returns the expiry.
pub fn check_username(username: &str, now_unix: u64) -> Result<u64, UsernameError> {
    if username.len() > MAX_USERNAME {
        return Err(UsernameError::Malformed);
    }
    let (expiry, id) = username.split_once(':').ok_or(UsernameError::Malformed)?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) || id.is_empty() {
        return Err(UsernameError::Malformed);
    }
    let expiry: u64 = expiry.parse().map_err(|_| UsernameError::Malformed)?;
    if expiry <= now_unix {
        return Err(UsernameError::Expired);
    }
    if expiry - now_unix > MAX_TTL_SECS {
        return Err(UsernameError::TooLong);
    }
    Ok(expiry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_credentials_check_until_they_expire() {
        let s = RelaySecret::new(b"0123456789abcdef".to_vec()).unwrap();
        let c = issue(&s, "123456789", 1_000_000, 600);
        assert_eq!(c.username, "1000600:123456789");
        assert_eq!(c.expires_at, 1_000_600);
        assert_eq!(*s.password(&c.username), *c.password);
        assert_eq!(check_username(&c.username, 1_000_000), Ok(1_000_600));
        assert_eq!(
            check_username(&c.username, 1_000_600),
            Err(UsernameError::Expired)
        );
        // Another secret gives another password; another name too.
        let other = RelaySecret::new(b"fedcba9876543210".to_vec()).unwrap();
        assert_ne!(*other.password(&c.username), *c.password);
        assert_ne!(*s.password("1000600:123456780"), *c.password);
        // TTLs are capped at an hour.
        assert_eq!(issue(&s, "x", 0, 99_999).expires_at, MAX_TTL_SECS);
        assert!(format!("{s:?}{c:?}").find("abcdef").is_none());
    }

    #[test]
    fn a_known_vector() {
        // Python: base64(hmac.new(b"secretsecretsecret", b"1700000000:alice", sha1).digest()).
        let s = RelaySecret::new(b"secretsecretsecret".to_vec()).unwrap();
        assert_eq!(
            *s.password("1700000000:alice"),
            "4oCqSZt2zUGkg95PxJTJuzkcGZ0="
        );
    }

    #[test]
    fn odd_usernames_are_refused_by_form() {
        for u in [
            "",
            "alice",
            ":x",
            "12a:x",
            "-5:x",
            "100:",
            "99999999999999999999999:x",
            &"9".repeat(200),
        ] {
            assert!(check_username(u, 0).is_err(), "{u:?}");
        }
        assert_eq!(check_username("7200:x", 0), Err(UsernameError::TooLong));
        assert!(RelaySecret::new(vec![1; 15]).is_none());
    }
}
