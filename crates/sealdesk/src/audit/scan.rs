//! Searching what the audit observed for what must never be there: canaries (text that
//! only the endpoints had in the clear) and secrets (keys), in every form an encoding
//! could give them.

use base64::Engine as _;

/// Something that must not appear, in each form it could take.
pub(crate) struct Needle {
    /// What it is, for the report ("typed canary", "host identity key", ...).
    pub(crate) what: String,
    /// Which question it belongs to: a canary or a key.
    pub(crate) kind: NeedleKind,
    forms: Vec<(&'static str, Vec<u8>)>,
}

/// What a needle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NeedleKind {
    /// Content only the endpoints had: screen text, typed text, clipboard.
    Canary,
    /// A secret key or the code's secret digits.
    Secret,
}

impl std::fmt::Debug for Needle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The forms are the secret: never print them.
        f.debug_struct("Needle")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl Needle {
    /// A text: raw, UTF-16 either way round, hex either case, base64 at each alignment.
    pub(crate) fn text(what: impl Into<String>, kind: NeedleKind, text: &str) -> Self {
        let mut forms = byte_forms(text.as_bytes());
        let utf16 = text.encode_utf16();
        forms.push((
            "utf-16le",
            utf16.clone().flat_map(u16::to_le_bytes).collect(),
        ));
        forms.push(("utf-16be", utf16.flat_map(u16::to_be_bytes).collect()));
        Self {
            what: what.into(),
            kind,
            forms,
        }
    }

    /// Bytes: raw, hex either case, base64 (standard and URL-safe) at each alignment.
    pub(crate) fn bytes(what: impl Into<String>, kind: NeedleKind, raw: &[u8]) -> Self {
        Self {
            what: what.into(),
            kind,
            forms: byte_forms(raw),
        }
    }

    /// The names of the forms searched.
    pub(crate) fn form_count(&self) -> usize {
        self.forms.len()
    }
}

fn byte_forms(raw: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![("raw", raw.to_vec())];
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("HEX", hex.to_uppercase().into_bytes()));
    out.push(("hex", hex.into_bytes()));
    const PADS: [&str; 3] = ["base64", "base64+1", "base64+2"];
    const URL_PADS: [&str; 3] = ["base64url", "base64url+1", "base64url+2"];
    for (pad, (name, url_name)) in PADS.iter().zip(URL_PADS).enumerate() {
        // Encode behind `pad` bytes and keep only the characters that depend on the
        // needle alone, so the form matches wherever it sits in a longer text.
        let mut buf = vec![0u8; pad];
        buf.extend_from_slice(raw);
        let skip = if pad == 0 { 0 } else { (pad * 4).div_ceil(3) };
        let keep = (raw.len() * 4 / 3).saturating_sub(2);
        for (engine, n) in [
            (&base64::engine::general_purpose::STANDARD_NO_PAD, *name),
            (&base64::engine::general_purpose::URL_SAFE_NO_PAD, url_name),
        ] {
            let enc = engine.encode(&buf);
            let form: Vec<u8> = enc.bytes().skip(skip).take(keep).collect();
            if !out.iter().any(|(_, f)| *f == form) {
                out.push((n, form));
            }
        }
    }
    out
}

/// Bytes the audit observed, by where.
pub(crate) struct Haystack {
    /// Where they were seen ("signaling messages", "relay datagrams", ...).
    pub(crate) place: String,
    /// How many items (messages, datagrams, files).
    pub(crate) items: usize,
    /// All of them, concatenated (items separated by a zero byte).
    pub(crate) bytes: Vec<u8>,
}

impl Haystack {
    /// An empty haystack for `place`.
    pub(crate) fn new(place: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            items: 0,
            bytes: Vec::new(),
        }
    }

    /// Adds one item.
    pub(crate) fn push(&mut self, item: &[u8]) {
        self.items += 1;
        self.bytes.extend_from_slice(item);
        self.bytes.push(0);
    }
}

/// One needle found somewhere.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    /// The needle's description.
    pub(crate) what: String,
    /// The haystack's place.
    pub(crate) place: String,
    /// The form it had.
    pub(crate) form: &'static str,
    /// How often.
    pub(crate) count: usize,
}

/// Every needle in every haystack.
pub(crate) fn search(needles: &[Needle], hay: &[Haystack]) -> Vec<Hit> {
    let mut hits = Vec::new();
    for h in hay {
        for n in needles {
            for (form, bytes) in &n.forms {
                if bytes.is_empty() {
                    continue;
                }
                let count = memchr::memmem::find_iter(&h.bytes, bytes).count();
                if count > 0 {
                    hits.push(Hit {
                        what: n.what.clone(),
                        place: h.place.clone(),
                        form,
                        count,
                    });
                }
            }
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(hay: &[u8], n: &Needle) -> Vec<&'static str> {
        let mut h = Haystack::new("t");
        h.push(hay);
        search(std::slice::from_ref(n), &[h])
            .into_iter()
            .map(|h| h.form)
            .collect()
    }

    #[test]
    fn a_needle_is_found_in_every_encoding_at_every_offset() {
        let secret = "sealdesk-canary-typed-0123456789abcdef";
        let n = Needle::text("c", NeedleKind::Canary, secret);
        for prefix in ["", "a", "ab", "abc"] {
            let mut buf = prefix.as_bytes().to_vec();
            buf.extend_from_slice(secret.as_bytes());
            let b64 = base64::engine::general_purpose::STANDARD.encode(&buf);
            assert!(found(b64.as_bytes(), &n)
                .iter()
                .any(|f| f.starts_with("base64")));
            let url = base64::engine::general_purpose::URL_SAFE.encode(&buf);
            assert!(!found(url.as_bytes(), &n).is_empty());
        }
        let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(found(hex.as_bytes(), &n), ["HEX"]);
        let le: Vec<u8> = secret.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(found(&le, &n), ["utf-16le"]);
        assert_eq!(found(b"nothing of the sort", &n), Vec::<&str>::new());
    }

    #[test]
    fn debug_output_never_shows_a_needle() {
        let n = Needle::bytes("k", NeedleKind::Secret, b"top secret bytes");
        assert!(!format!("{n:?}").contains("top secret"));
    }
}
