//! Recipient certificates: an age recipient signed by its owner's device identity key.
//!
//! A recorder encrypts only to a recipient whose certificate verifies under a key it already
//! trusts (its own, a pinned host or a paired device). The server, which may carry
//! certificates around, cannot make one: it holds no trusted identity key.
//!
//! Text format (one field per line, in this order):
//!
//! ```text
//! sealdesk recording recipient v1
//! recipient: age1…
//! owner: <base64 Ed25519 public key>
//! label: <text, at most 64 bytes>
//! created: <unix seconds>
//! signature: <base64 Ed25519 signature>
//! ```
//!
//! Signed: `"sealdesk/v1 recording-recipient" ‖ LP(recipient) ‖ LP(owner) ‖ LP(label) ‖ LP(created u64 BE)`.

use std::str::FromStr as _;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sealdesk_auth::{DeviceFingerprint, IdentityKey};
use sealdesk_proto::{DeviceKey, SignatureBytes};

use crate::labelled_hash;

/// The label of the certificate signature.
pub const CERT_LABEL: &[u8] = b"sealdesk/v1 recording-recipient";
/// The label of a certificate's fingerprint (bound into every segment entry).
pub const CERT_FPR_LABEL: &[u8] = b"sealdesk/v1 recording-recipient-fpr";
const HEADER: &str = "sealdesk recording recipient v1";
/// Longest label, in bytes.
pub const MAX_LABEL: usize = 64;
/// Longest certificate file accepted, in bytes.
pub const MAX_CERT_BYTES: usize = 1024;

/// A certificate could not be used. Each says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Not this format at all.
    #[error("not a sealdesk recording recipient certificate (first line should be {HEADER:?})")]
    NotACertificate,
    /// Longer than [`MAX_CERT_BYTES`].
    #[error("the certificate is longer than {MAX_CERT_BYTES} bytes")]
    TooLong,
    /// A field is missing, out of order, or malformed.
    #[error("the certificate's `{0}:` line is missing or malformed")]
    BadField(&'static str),
    /// The signature does not verify under the owner key it names.
    #[error(
        "the certificate's signature does not verify: it was altered or not made by its owner key"
    )]
    BadSignature,
    /// The signature is good but the signing key is not one this device trusts.
    #[error(
        "the certificate is signed by device {0}, which this device does not trust \
         (not itself, not a pinned host, not a paired device): refusing to record to it"
    )]
    UntrustedOwner(String),
}

/// A recipient certificate as parsed (not yet trusted).
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientCertificate {
    recipient: String,
    owner: DeviceKey,
    label: String,
    created: u64,
    signature: SignatureBytes,
}

impl std::fmt::Debug for RecipientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientCertificate")
            .field("recipient", &self.recipient)
            .field("owner", &DeviceFingerprint::of(&self.owner).short())
            .field("label", &self.label)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

fn signed_message(recipient: &str, owner: &DeviceKey, label: &str, created: u64) -> Vec<u8> {
    let mut m = CERT_LABEL.to_vec();
    for f in [
        recipient.as_bytes(),
        owner.as_bytes(),
        label.as_bytes(),
        &created.to_be_bytes(),
    ] {
        m.extend_from_slice(&(f.len() as u32).to_be_bytes());
        m.extend_from_slice(f);
    }
    m
}

impl RecipientCertificate {
    /// Signs `recipient` with the owner's identity key. `label` is cut to [`MAX_LABEL`] bytes
    /// (at a character boundary) and may not hold line breaks (they become spaces).
    pub fn issue(
        owner: &IdentityKey,
        recipient: &age::x25519::Recipient,
        label: &str,
        created: u64,
    ) -> Self {
        let mut label: String = label
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        while label.len() > MAX_LABEL {
            label.pop();
        }
        let label = label.trim().to_owned();
        let recipient = recipient.to_string();
        let signature = owner.sign(&signed_message(
            &recipient,
            &owner.public(),
            &label,
            created,
        ));
        Self {
            recipient,
            owner: owner.public(),
            label,
            created,
            signature,
        }
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        format!(
            "{HEADER}\nrecipient: {}\nowner: {}\nlabel: {}\ncreated: {}\nsignature: {}\n",
            self.recipient,
            B64.encode(self.owner.as_bytes()),
            self.label,
            self.created,
            B64.encode(self.signature.0)
        )
    }

    /// Parses the text form (does not check the signature: see [`RecipientCertificate::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, CertError> {
        if bytes.len() > MAX_CERT_BYTES {
            return Err(CertError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| CertError::NotACertificate)?;
        let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
        if lines.next() != Some(HEADER) {
            return Err(CertError::NotACertificate);
        }
        let mut field = |name: &'static str| -> Result<&str, CertError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(": "))
                .ok_or(CertError::BadField(name))
        };
        let recipient = field("recipient")?;
        age::x25519::Recipient::from_str(recipient)
            .map_err(|_| CertError::BadField("recipient"))?;
        let owner = decode_array::<32>(field("owner")?)
            .and_then(|b| DeviceKey::try_from_bytes(b).ok())
            .ok_or(CertError::BadField("owner"))?;
        let label = field("label")?;
        if label.len() > MAX_LABEL {
            return Err(CertError::BadField("label"));
        }
        let created = field("created")?
            .parse::<u64>()
            .map_err(|_| CertError::BadField("created"))?;
        let signature = decode_array::<64>(field("signature")?)
            .map(SignatureBytes)
            .ok_or(CertError::BadField("signature"))?;
        Ok(Self {
            recipient: recipient.to_owned(),
            owner,
            label: label.to_owned(),
            created,
            signature,
        })
    }

    /// Checks the signature, then asks `trusted` whether the owner key is one this device
    /// trusts. Only a [`VerifiedRecipient`] can start a recording.
    pub fn verify(
        &self,
        trusted: impl Fn(&DeviceKey) -> bool,
    ) -> Result<VerifiedRecipient, CertError> {
        let message = signed_message(&self.recipient, &self.owner, &self.label, self.created);
        if !self.owner.verify_strict(&message, &self.signature) {
            return Err(CertError::BadSignature);
        }
        if !trusted(&self.owner) {
            return Err(CertError::UntrustedOwner(
                DeviceFingerprint::of(&self.owner).short(),
            ));
        }
        let recipient = age::x25519::Recipient::from_str(&self.recipient)
            .map_err(|_| CertError::BadField("recipient"))?;
        let mut signed = message;
        signed.extend_from_slice(&self.signature.0);
        Ok(VerifiedRecipient {
            recipient,
            owner: self.owner,
            label: self.label.clone(),
            fingerprint: labelled_hash(CERT_FPR_LABEL, &[&signed]),
        })
    }

    /// The owner's device key (who signed it).
    pub fn owner(&self) -> &DeviceKey {
        &self.owner
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The `age1…` recipient.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }
}

fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = B64.decode(s).ok()?;
    v.try_into().ok()
}

/// A recipient whose certificate verified under a trusted key.
#[derive(Clone)]
pub struct VerifiedRecipient {
    recipient: age::x25519::Recipient,
    owner: DeviceKey,
    label: String,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for VerifiedRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedRecipient")
            .field("recipient", &self.recipient.to_string())
            .field("owner", &DeviceFingerprint::of(&self.owner).short())
            .field("label", &self.label)
            .finish()
    }
}

impl VerifiedRecipient {
    /// The age recipient to encrypt to.
    pub fn recipient(&self) -> &age::x25519::Recipient {
        &self.recipient
    }

    /// The owner's device key.
    pub fn owner(&self) -> &DeviceKey {
        &self.owner
    }

    /// The owner's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `H("sealdesk/v1 recording-recipient-fpr" ‖ LP(signed message ‖ signature))`: bound into
    /// every segment entry, so the manifest says which certificate the recording was made for.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::OwnerKey;

    fn owner() -> IdentityKey {
        IdentityKey::from_seed(&[7; 32])
    }

    #[test]
    fn issued_certificate_round_trips_and_verifies_for_a_trusted_owner() {
        let ik = owner();
        let key = OwnerKey::generate();
        let cert =
            RecipientCertificate::issue(&ik, &key.recipient(), "alice's laptop", 1_700_000_000);
        let parsed = RecipientCertificate::parse(cert.to_text().as_bytes()).unwrap();
        assert_eq!(parsed, cert);
        let v = parsed.verify(|k| *k == ik.public()).unwrap();
        assert_eq!(v.recipient().to_string(), key.recipient().to_string());
        assert_eq!(v.label(), "alice's laptop");
    }

    #[test]
    fn substituted_recipient_or_unknown_signer_is_refused() {
        let ik = owner();
        let cert = RecipientCertificate::issue(&ik, &OwnerKey::generate().recipient(), "a", 1);
        // The server swaps in its own recipient, keeping the owner's signature.
        let server_key = OwnerKey::generate();
        let text = cert.to_text();
        let swapped = text.replace(cert.recipient(), &server_key.recipient().to_string());
        let parsed = RecipientCertificate::parse(swapped.as_bytes()).unwrap();
        assert_eq!(
            parsed.verify(|k| *k == ik.public()).unwrap_err(),
            CertError::BadSignature
        );
        // The server signs its own recipient with its own key: valid, but not trusted.
        let server_ik = IdentityKey::from_seed(&[9; 32]);
        let forged = RecipientCertificate::issue(&server_ik, &server_key.recipient(), "a", 1);
        let err = forged.verify(|k| *k == ik.public()).unwrap_err();
        assert!(matches!(err, CertError::UntrustedOwner(_)), "{err}");
        assert!(err.to_string().contains("does not trust"));
    }

    #[test]
    fn malformed_certificates_are_named() {
        let ik = owner();
        let cert = RecipientCertificate::issue(&ik, &OwnerKey::generate().recipient(), "x", 5);
        let text = cert.to_text();
        assert_eq!(
            RecipientCertificate::parse(b"hello").unwrap_err(),
            CertError::NotACertificate
        );
        assert_eq!(
            RecipientCertificate::parse(&vec![b'a'; 2000]).unwrap_err(),
            CertError::TooLong
        );
        for (field, bad) in [
            ("recipient", "recipient: age1nope"),
            ("owner", "owner: AAAA"),
            ("created", "created: soon"),
            ("signature", "signature: !!"),
        ] {
            let line = text.lines().find(|l| l.starts_with(field)).unwrap();
            let broken = text.replace(line, bad);
            assert_eq!(
                RecipientCertificate::parse(broken.as_bytes()).unwrap_err(),
                CertError::BadField(field),
                "{field}"
            );
        }
        let long_label =
            RecipientCertificate::issue(&ik, &OwnerKey::generate().recipient(), &"é".repeat(60), 5);
        assert!(long_label.label().len() <= MAX_LABEL);
        let newline = RecipientCertificate::issue(
            &ik,
            &OwnerKey::generate().recipient(),
            "a\nrecipient: x",
            5,
        );
        assert!(RecipientCertificate::parse(newline.to_text().as_bytes()).is_ok());
    }
}
