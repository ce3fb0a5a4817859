//! Trust stores: the host's pairing registry and the viewer's pinned hosts (DESIGN.md §3).
//!
//! Both are plain values with a versioned JSON encoding; a shell crate stores them in the
//! data directory (mode 0600, atomic replace). Only the local user (the `sealdesk devices`
//! command) or an attended session the host user approved change them — never the server:
//! nothing in a signaling message can reach these types except through
//! [`crate::attended`]'s consent step.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sealdesk_proto::{DeviceKey, RoutingNumber};
use serde::{Deserialize, Serialize};

use crate::identity::DeviceFingerprint;

/// The most bytes a device label may have.
pub const MAX_LABEL_BYTES: usize = 64;
/// The most entries a store holds (a bound on file size and lookups).
pub const MAX_ENTRIES: usize = 4096;

/// What a paired viewer may do on a host. Enforced on the host where events are injected.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u16);

const NAMES: [(u16, &str); 6] = [
    (1, "view"),
    (2, "input"),
    (4, "clipboard"),
    (8, "files"),
    (16, "record"),
    (32, "unattended"),
];

impl Permissions {
    /// Nothing.
    pub const NONE: Self = Self(0);
    /// See the screen.
    pub const VIEW: Self = Self(1);
    /// Send keyboard and mouse input.
    pub const INPUT: Self = Self(2);
    /// Read and write the clipboard.
    pub const CLIPBOARD: Self = Self(4);
    /// Transfer files.
    pub const FILES: Self = Self(8);
    /// Record the session.
    pub const RECORD: Self = Self(16);
    /// Connect without a person at the host (SIGMA-I with the pinned keys).
    pub const UNATTENDED: Self = Self(32);
    /// Everything above.
    pub const ALL: Self = Self(63);
    /// The default for a newly paired device: full control while someone is present.
    pub const DEFAULT_PAIRED: Self = Self(1 | 2 | 4 | 8);

    /// The raw bits (unknown bits are dropped).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// From raw bits, dropping unknown ones.
    pub const fn from_bits_truncate(bits: u16) -> Self {
        Self(bits & Self::ALL.0)
    }

    /// Whether every permission in `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The permissions in `self` that are not in `other`.
    pub const fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Both sets together.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Parses a comma-separated list like `view,input,clipboard` (or `all`, `none`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Self::NONE;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            out = match word {
                "all" => Self::ALL,
                "none" => out,
                w => match NAMES.iter().find(|(_, n)| *n == w) {
                    Some((bit, _)) => out.union(Self(*bit)),
                    None => {
                        let known: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
                        return Err(format!(
                            "unknown permission {w:?}; use a comma-separated list of {}, or all/none",
                            known.join(", ")
                        ));
                    }
                },
            };
        }
        Ok(out)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({self})")
    }
}

/// Checks a device label: 1–64 bytes of UTF-8 without control characters.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.trim().is_empty() {
        return Err("a device label cannot be empty".to_owned());
    }
    if label.len() > MAX_LABEL_BYTES {
        return Err(format!(
            "a device label has at most {MAX_LABEL_BYTES} bytes"
        ));
    }
    if label.chars().any(char::is_control) {
        return Err("a device label cannot contain control characters".to_owned());
    }
    Ok(())
}

/// A viewer the host trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedDevice {
    /// The viewer's identity key.
    pub key: DeviceKey,
    /// A name for people.
    pub label: String,
    /// What it may do.
    pub permissions: Permissions,
    /// When it was added (seconds since the Unix epoch; the caller supplies the clock).
    pub added_at: u64,
    /// Revoked devices stay listed so the user can see what was revoked and when.
    pub revoked: bool,
}

impl PairedDevice {
    /// Its fingerprint.
    pub fn fingerprint(&self) -> DeviceFingerprint {
        DeviceFingerprint::of(&self.key)
    }
}

/// A host the viewer has paired with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedHost {
    /// Where to reach it (routing is not trust: the key is).
    pub routing: RoutingNumber,
    /// Its identity key.
    pub key: DeviceKey,
    /// A name for people.
    pub label: String,
    /// When it was pinned (seconds since the Unix epoch).
    pub added_at: u64,
}

impl PinnedHost {
    /// Its fingerprint.
    pub fn fingerprint(&self) -> DeviceFingerprint {
        DeviceFingerprint::of(&self.key)
    }
}

/// A stored trust file could not be used. Nothing is changed when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Not JSON of the expected shape.
    #[error("trust store is not valid: {0}")]
    Invalid(String),
    /// Written by a newer sealdesk.
    #[error("trust store has format version {0}; this sealdesk reads version 1 — update it")]
    Version(u32),
    /// An entry is broken.
    #[error("trust store entry {index} is not valid: {what}")]
    Entry {
        /// Position in the file, from 0.
        index: usize,
        /// What is wrong.
        what: String,
    },
    /// A change that is not allowed (e.g. the store is full).
    #[error("{0}")]
    Refused(String),
}

/// The host's pairing registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairingRegistry {
    devices: Vec<PairedDevice>,
}

/// The viewer's pinned hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinnedHosts {
    hosts: Vec<PinnedHost>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    format: u32,
    devices: Vec<DeviceRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceRecord {
    key: String,
    label: String,
    permissions: String,
    added_at: u64,
    revoked: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinnedFile {
    format: u32,
    hosts: Vec<HostRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostRecord {
    routing: u32,
    key: String,
    label: String,
    added_at: u64,
}

fn key_from_b64(s: &str) -> Result<DeviceKey, String> {
    let raw = B64.decode(s).map_err(|_| "key is not base64".to_owned())?;
    let arr: [u8; 32] = raw
        .try_into()
        .map_err(|_| "key is not 32 bytes".to_owned())?;
    DeviceKey::try_from_bytes(arr).map_err(|e| e.to_string())
}

/// Matches a user's reference to a device: a fingerprint prefix (hex, spaces ignored, at
/// least 4 digits), or a label (case-insensitive).
fn matches_ref(fpr: &DeviceFingerprint, label: &str, reference: &str) -> bool {
    let hex: String = reference
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let fpr_hex = fpr.grouped_hex(32).replace(' ', "");
    (hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) && fpr_hex.starts_with(&hex))
        || label.to_lowercase() == reference.trim().to_lowercase()
}

/// A reference to a device matched nothing, or more than one device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// Nothing matched.
    #[error("no device matches {0:?} (use a label or at least 4 hex digits of the fingerprint)")]
    NotFound(String),
    /// Several matched.
    #[error("{n} devices match {reference:?}; use more fingerprint digits")]
    Ambiguous {
        /// The reference.
        reference: String,
        /// How many matched.
        n: usize,
    },
}

fn find_one<T>(
    items: &[T],
    reference: &str,
    fpr: impl Fn(&T) -> (DeviceFingerprint, &str),
) -> Result<usize, LookupError> {
    // An exact label wins over everything else.
    let exact: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, t)| fpr(t).1 == reference)
        .map(|(i, _)| i)
        .collect();
    let hits: Vec<usize> = if exact.is_empty() {
        items
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                let (f, l) = fpr(t);
                matches_ref(&f, l, reference)
            })
            .map(|(i, _)| i)
            .collect()
    } else {
        exact
    };
    match hits.as_slice() {
        [] => Err(LookupError::NotFound(reference.to_owned())),
        [one] => Ok(*one),
        many => Err(LookupError::Ambiguous {
            reference: reference.to_owned(),
            n: many.len(),
        }),
    }
}

impl PairingRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// All entries, revoked ones included.
    pub fn devices(&self) -> &[PairedDevice] {
        &self.devices
    }

    /// The entry for `key`, if any (revoked ones included).
    pub fn get(&self, key: &DeviceKey) -> Option<&PairedDevice> {
        self.devices.iter().find(|d| d.key == *key)
    }

    /// Adds a device, or re-activates and updates it if the key is already listed
    /// (pairing again after a revocation is an explicit act of the host user).
    pub fn pair(&mut self, device: PairedDevice) -> Result<(), StoreError> {
        check_label(&device.label).map_err(StoreError::Refused)?;
        if let Some(d) = self.devices.iter_mut().find(|d| d.key == device.key) {
            *d = device;
            return Ok(());
        }
        if self.devices.len() >= MAX_ENTRIES {
            return Err(StoreError::Refused(format!(
                "the pairing registry is full ({MAX_ENTRIES} devices); remove revoked ones first"
            )));
        }
        self.devices.push(device);
        Ok(())
    }

    /// The index of the one device `reference` names.
    pub fn find(&self, reference: &str) -> Result<&PairedDevice, LookupError> {
        let i = find_one(&self.devices, reference, |d| {
            (d.fingerprint(), d.label.as_str())
        })?;
        Ok(&self.devices[i])
    }

    fn find_mut(&mut self, reference: &str) -> Result<&mut PairedDevice, LookupError> {
        let i = find_one(&self.devices, reference, |d| {
            (d.fingerprint(), d.label.as_str())
        })?;
        Ok(&mut self.devices[i])
    }

    /// Revokes the device `reference` names. It can no longer connect unattended.
    pub fn revoke(&mut self, reference: &str) -> Result<&PairedDevice, LookupError> {
        let d = self.find_mut(reference)?;
        d.revoked = true;
        Ok(d)
    }

    /// Renames the device `reference` names.
    pub fn relabel(&mut self, reference: &str, label: &str) -> Result<&PairedDevice, String> {
        check_label(label)?;
        let d = self.find_mut(reference).map_err(|e| e.to_string())?;
        d.label = label.to_owned();
        Ok(d)
    }

    /// Sets the permissions of the device `reference` names.
    pub fn set_permissions(
        &mut self,
        reference: &str,
        permissions: Permissions,
    ) -> Result<&PairedDevice, LookupError> {
        let d = self.find_mut(reference)?;
        d.permissions = permissions;
        Ok(d)
    }

    /// The JSON file contents.
    pub fn to_json(&self) -> String {
        let file = RegistryFile {
            format: 1,
            devices: self
                .devices
                .iter()
                .map(|d| DeviceRecord {
                    key: B64.encode(d.key.as_bytes()),
                    label: d.label.clone(),
                    permissions: d.permissions.to_string(),
                    added_at: d.added_at,
                    revoked: d.revoked,
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    /// Parses file contents written by [`PairingRegistry::to_json`].
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        let file: RegistryFile =
            serde_json::from_str(text).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if file.format != 1 {
            return Err(StoreError::Version(file.format));
        }
        if file.devices.len() > MAX_ENTRIES {
            return Err(StoreError::Invalid(format!(
                "more than {MAX_ENTRIES} devices"
            )));
        }
        let mut out = Self::new();
        for (index, r) in file.devices.into_iter().enumerate() {
            let entry = |what: String| StoreError::Entry { index, what };
            let key = key_from_b64(&r.key).map_err(entry)?;
            check_label(&r.label).map_err(entry)?;
            let permissions = Permissions::parse(&r.permissions).map_err(entry)?;
            if out.get(&key).is_some() {
                return Err(entry("the same key is listed twice".to_owned()));
            }
            out.devices.push(PairedDevice {
                key,
                label: r.label,
                permissions,
                added_at: r.added_at,
                revoked: r.revoked,
            });
        }
        Ok(out)
    }
}

impl PinnedHosts {
    /// No pinned hosts.
    pub fn new() -> Self {
        Self::default()
    }

    /// All pinned hosts.
    pub fn hosts(&self) -> &[PinnedHost] {
        &self.hosts
    }

    /// The key pinned for a routing number.
    pub fn get(&self, routing: RoutingNumber) -> Option<&PinnedHost> {
        self.hosts.iter().find(|h| h.routing == routing)
    }

    /// Pins a host learned in an authenticated handshake. A different key for an
    /// already pinned routing number is refused: the user must remove the old pin first.
    pub fn pin(&mut self, host: PinnedHost) -> Result<(), StoreError> {
        check_label(&host.label).map_err(StoreError::Refused)?;
        if let Some(h) = self.hosts.iter_mut().find(|h| h.routing == host.routing) {
            if h.key != host.key {
                return Err(StoreError::Refused(format!(
                    "host {} is pinned with a different key ({}); remove that pin first with `sealdesk devices forget`",
                    host.routing.grouped(),
                    h.fingerprint().short()
                )));
            }
            h.label = host.label;
            return Ok(());
        }
        if self.hosts.len() >= MAX_ENTRIES {
            return Err(StoreError::Refused(format!(
                "too many pinned hosts ({MAX_ENTRIES})"
            )));
        }
        self.hosts.push(host);
        Ok(())
    }

    /// The one host `reference` names (label, fingerprint prefix or routing number).
    pub fn find(&self, reference: &str) -> Result<&PinnedHost, LookupError> {
        if let Ok(r) = RoutingNumber::parse_human(reference) {
            if let Some(h) = self.get(r) {
                return Ok(h);
            }
        }
        let i = find_one(&self.hosts, reference, |h| {
            (h.fingerprint(), h.label.as_str())
        })?;
        Ok(&self.hosts[i])
    }

    /// Removes the pin `reference` names.
    pub fn forget(&mut self, reference: &str) -> Result<PinnedHost, LookupError> {
        let key = self.find(reference)?.key;
        let i = self.hosts.iter().position(|h| h.key == key).unwrap_or(0);
        Ok(self.hosts.remove(i))
    }

    /// Renames the host `reference` names.
    pub fn relabel(&mut self, reference: &str, label: &str) -> Result<&PinnedHost, String> {
        check_label(label)?;
        let key = self.find(reference).map_err(|e| e.to_string())?.key;
        let h = self
            .hosts
            .iter_mut()
            .find(|h| h.key == key)
            .ok_or_else(|| "host disappeared".to_owned())?;
        h.label = label.to_owned();
        Ok(h)
    }

    /// The JSON file contents.
    pub fn to_json(&self) -> String {
        let file = PinnedFile {
            format: 1,
            hosts: self
                .hosts
                .iter()
                .map(|h| HostRecord {
                    routing: h.routing.get(),
                    key: B64.encode(h.key.as_bytes()),
                    label: h.label.clone(),
                    added_at: h.added_at,
                })
                .collect(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    /// Parses file contents written by [`PinnedHosts::to_json`].
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        let file: PinnedFile =
            serde_json::from_str(text).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if file.format != 1 {
            return Err(StoreError::Version(file.format));
        }
        if file.hosts.len() > MAX_ENTRIES {
            return Err(StoreError::Invalid(format!(
                "more than {MAX_ENTRIES} hosts"
            )));
        }
        let mut out = Self::new();
        for (index, r) in file.hosts.into_iter().enumerate() {
            let entry = |what: String| StoreError::Entry { index, what };
            let key = key_from_b64(&r.key).map_err(entry)?;
            let routing =
                RoutingNumber::new(u64::from(r.routing)).map_err(|e| entry(e.to_string()))?;
            check_label(&r.label).map_err(entry)?;
            if out.get(routing).is_some() {
                return Err(entry("the same host number is listed twice".to_owned()));
            }
            out.hosts.push(PinnedHost {
                routing,
                key,
                label: r.label,
                added_at: r.added_at,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKey;

    fn key(n: u8) -> DeviceKey {
        IdentityKey::from_seed(&[n; 32]).public()
    }

    #[test]
    fn permissions_parse_and_print() {
        let p = Permissions::parse("view, input,clipboard").unwrap();
        assert_eq!(p.to_string(), "view,input,clipboard");
        assert!(p.contains(Permissions::VIEW));
        assert!(!p.contains(Permissions::UNATTENDED));
        assert_eq!(Permissions::parse("all").unwrap(), Permissions::ALL);
        assert_eq!(Permissions::parse("").unwrap().to_string(), "none");
        assert!(Permissions::parse("root")
            .unwrap_err()
            .contains("unknown permission \"root\""));
        assert_eq!(
            Permissions::ALL
                .minus(Permissions::DEFAULT_PAIRED)
                .to_string(),
            "record,unattended"
        );
    }

    #[test]
    fn registry_round_trip_and_edits() {
        let mut reg = PairingRegistry::new();
        let d = PairedDevice {
            key: key(1),
            label: "alice laptop".into(),
            permissions: Permissions::DEFAULT_PAIRED,
            added_at: 1_700_000_000,
            revoked: false,
        };
        reg.pair(d.clone()).unwrap();
        reg.pair(PairedDevice {
            key: key(2),
            label: "bob".into(),
            ..d.clone()
        })
        .unwrap();
        let again = PairingRegistry::from_json(&reg.to_json()).unwrap();
        assert_eq!(again, reg);
        let fpr_prefix = d.fingerprint().short()[..9].to_owned();
        assert_eq!(reg.find(&fpr_prefix).unwrap().label, "alice laptop");
        assert_eq!(reg.find("bob").unwrap().key, key(2));
        assert_eq!(
            reg.find("Alice Laptop").unwrap().key,
            key(1),
            "labels match case-insensitively"
        );
        assert!(matches!(reg.find("nobody"), Err(LookupError::NotFound(_))));
        reg.revoke("bob").unwrap();
        assert!(reg.get(&key(2)).unwrap().revoked);
        reg.relabel("bob", "bob's desk").unwrap();
        reg.set_permissions("bob's desk", Permissions::VIEW)
            .unwrap();
        let again = PairingRegistry::from_json(&reg.to_json()).unwrap();
        assert_eq!(again.get(&key(2)).unwrap().permissions, Permissions::VIEW);
        assert!(reg.relabel("bob's desk", "").is_err());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(matches!(
            PairingRegistry::from_json("{"),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(
            PairingRegistry::from_json(r#"{"format":2,"devices":[]}"#),
            Err(StoreError::Version(2))
        );
        let bad_key = r#"{"format":1,"devices":[{"key":"AAAA","label":"x","permissions":"view","added_at":0,"revoked":false}]}"#;
        assert!(matches!(
            PairingRegistry::from_json(bad_key),
            Err(StoreError::Entry { index: 0, .. })
        ));
        assert!(matches!(
            PinnedHosts::from_json(
                r#"{"format":1,"hosts":[{"routing":5,"key":"","label":"x","added_at":0}]}"#
            ),
            Err(StoreError::Entry { index: 0, .. })
        ));
    }

    #[test]
    fn a_pinned_key_is_not_silently_replaced() {
        let r = RoutingNumber::new(123_456_789).unwrap();
        let mut pins = PinnedHosts::new();
        pins.pin(PinnedHost {
            routing: r,
            key: key(1),
            label: "office".into(),
            added_at: 0,
        })
        .unwrap();
        let err = pins
            .pin(PinnedHost {
                routing: r,
                key: key(2),
                label: "office".into(),
                added_at: 0,
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("pinned with a different key"),
            "{err}"
        );
        assert_eq!(pins.get(r).unwrap().key, key(1));
        assert_eq!(pins.find("123 456 789").unwrap().label, "office");
        let again = PinnedHosts::from_json(&pins.to_json()).unwrap();
        assert_eq!(again, pins);
        pins.forget("office").unwrap();
        assert!(pins.get(r).is_none());
    }
}
