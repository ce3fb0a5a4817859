//! Text encodings of the selection targets, and what an owner may be asked for: pure functions,
//! no X I/O.

use std::sync::Arc;

use x11rb::protocol::xproto::{Atom, AtomEnum, Timestamp};

use super::atoms::Atoms;
use super::Refusal;

/// How the bytes of a text property are encoded, by the property's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// `UTF8_STRING`, `text/plain;charset=utf-8`.
    Utf8,
    /// `STRING`: ISO 8859-1.
    Latin1,
}

impl Encoding {
    /// The encoding of a property of type `type_`, or `None` when it is not a text type we read.
    pub(super) fn of(atoms: &Atoms, type_: Atom) -> Option<Self> {
        if type_ == atoms.utf8_string || type_ == atoms.text_plain_utf8 {
            Some(Self::Utf8)
        } else if type_ == Atom::from(AtomEnum::STRING) {
            Some(Self::Latin1)
        } else {
            None
        }
    }
}

/// `text` in ISO 8859-1, or `None` when a character is above U+00FF.
pub(super) fn latin1_encode(text: &str) -> Option<Vec<u8>> {
    text.chars().map(|c| u8::try_from(c).ok()).collect()
}

/// What a fetched property holds, decoded.
#[derive(PartialEq, Eq)]
pub(super) enum Decoded {
    /// A text of at most `max_bytes` UTF-8 bytes.
    Text(String),
    /// The property's type is not one of the text types we read.
    NotText,
    /// The bytes cannot be taken as text, or the text is too large.
    Refused(Refusal),
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never the text: clipboard contents are user secrets.
            Self::Text(text) => f.debug_struct("Text").field("bytes", &text.len()).finish(),
            Self::NotText => f.write_str("NotText"),
            Self::Refused(why) => f.debug_tuple("Refused").field(why).finish(),
        }
    }
}

/// Decode the bytes of a property of type `type_`; the UTF-8 result must fit in `max_bytes`.
pub(super) fn decode(atoms: &Atoms, type_: Atom, bytes: Vec<u8>, max_bytes: usize) -> Decoded {
    let text = match Encoding::of(atoms, type_) {
        None => return Decoded::NotText,
        Some(Encoding::Utf8) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                return Decoded::Refused(Refusal::Malformed {
                    what: "the owner's UTF8_STRING text is not valid UTF-8",
                })
            }
        },
        Some(Encoding::Latin1) => bytes.into_iter().map(char::from).collect(),
    };
    if text.len() > max_bytes {
        // Latin-1 above U+007F takes two bytes in UTF-8.
        Decoded::Refused(Refusal::TooLarge { limit: max_bytes })
    } else {
        Decoded::Text(text)
    }
}

/// The text this client owns the CLIPBOARD with.
pub(super) struct Owned {
    pub(super) text: Arc<str>,
    /// The text in ISO 8859-1, when every character is representable.
    latin1: Option<Arc<[u8]>>,
    /// The server time of our `SetSelectionOwner`.
    pub(super) time: Timestamp,
}

impl Owned {
    pub(super) fn new(text: Arc<str>, time: Timestamp) -> Self {
        let latin1 = latin1_encode(&text).map(Arc::from);
        Self { text, latin1, time }
    }

    fn utf8(&self) -> Arc<[u8]> {
        Arc::from(Arc::clone(&self.text))
    }

    /// The targets we answer, for `TARGETS`.
    fn targets(&self, atoms: &Atoms) -> Vec<Atom> {
        let mut list = vec![
            atoms.targets,
            atoms.timestamp,
            atoms.utf8_string,
            atoms.text_plain_utf8,
            atoms.text,
        ];
        if self.latin1.is_some() {
            list.push(AtomEnum::STRING.into());
        }
        list
    }
}

/// What to put in the requestor's property for one target.
#[derive(PartialEq, Eq)]
pub(super) enum Answer {
    /// Refuse: the SelectionNotify carries property `None`.
    Refuse,
    /// A list of atoms (type `ATOM`, format 32).
    Atoms(Vec<Atom>),
    /// One 32-bit `INTEGER`.
    Integer(u32),
    /// Format-8 bytes of type `type_`.
    Bytes {
        /// The property type.
        type_: Atom,
        /// The bytes (shared with any INCR transfer in progress).
        data: Arc<[u8]>,
    },
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refuse => f.write_str("Refuse"),
            Self::Atoms(list) => f.debug_tuple("Atoms").field(list).finish(),
            Self::Integer(value) => f.debug_tuple("Integer").field(value).finish(),
            // Never the bytes: they are the clipboard text.
            Self::Bytes { type_, data } => f
                .debug_struct("Bytes")
                .field("type_", type_)
                .field("len", &data.len())
                .finish(),
        }
    }
}

/// The answer to a request for `target` of the text we own.
///
/// `STRING` is served only when the whole text is representable in ISO 8859-1 (and is then
/// listed in `TARGETS`): a lossy conversion would paste something the user did not copy.
/// `TEXT` lets the owner pick the encoding: `STRING` when representable, else `UTF8_STRING`.
pub(super) fn answer(atoms: &Atoms, owned: &Owned, target: Atom) -> Answer {
    let string = Atom::from(AtomEnum::STRING);
    if target == atoms.targets {
        Answer::Atoms(owned.targets(atoms))
    } else if target == atoms.timestamp {
        Answer::Integer(owned.time)
    } else if target == atoms.utf8_string || target == atoms.text_plain_utf8 {
        Answer::Bytes {
            type_: target,
            data: owned.utf8(),
        }
    } else if target == string || target == atoms.text {
        match &owned.latin1 {
            Some(latin1) => Answer::Bytes {
                type_: string,
                data: Arc::clone(latin1),
            },
            None if target == atoms.text => Answer::Bytes {
                type_: atoms.utf8_string,
                data: owned.utf8(),
            },
            None => Answer::Refuse,
        }
    } else {
        Answer::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atoms() -> Atoms {
        Atoms::for_tests()
    }

    fn bytes(answer: Answer) -> Option<(Atom, Vec<u8>)> {
        match answer {
            Answer::Bytes { type_, data } => Some((type_, data.to_vec())),
            _ => None,
        }
    }

    #[test]
    fn latin1_round_trips_only_what_it_can_represent() {
        assert_eq!(latin1_encode("café\n\t"), Some(b"caf\xe9\n\t".to_vec()));
        assert_eq!(latin1_encode("€"), None);
        assert_eq!(latin1_encode("世界"), None);
        let a = atoms();
        assert_eq!(
            decode(&a, AtomEnum::STRING.into(), b"caf\xe9".to_vec(), 100),
            Decoded::Text("café".to_owned())
        );
    }

    #[test]
    fn decode_checks_type_utf8_and_size_after_decoding() {
        let a = atoms();
        assert_eq!(
            decode(&a, a.utf8_string, "héllo".as_bytes().to_vec(), 6),
            Decoded::Text("héllo".to_owned())
        );
        assert_eq!(
            decode(&a, a.text_plain_utf8, b"ok".to_vec(), 2),
            Decoded::Text("ok".to_owned())
        );
        assert!(matches!(
            decode(&a, a.utf8_string, vec![0xff, 0xfe], 100),
            Decoded::Refused(Refusal::Malformed { .. })
        ));
        assert_eq!(decode(&a, a.targets, b"x".to_vec(), 100), Decoded::NotText);
        // 3 Latin-1 bytes become 6 UTF-8 bytes: the limit applies to the UTF-8 text.
        assert_eq!(
            decode(&a, AtomEnum::STRING.into(), vec![0xe9; 3], 5),
            Decoded::Refused(Refusal::TooLarge { limit: 5 })
        );
    }

    #[test]
    fn answers_per_target() {
        let a = atoms();
        let latin = Owned::new(Arc::from("café"), 42);
        let wide = Owned::new(Arc::from("世界"), 42);
        let string = Atom::from(AtomEnum::STRING);

        assert_eq!(answer(&a, &latin, a.timestamp), Answer::Integer(42));
        let Answer::Atoms(targets) = answer(&a, &latin, a.targets) else {
            panic!("TARGETS is a list of atoms");
        };
        assert!(targets.contains(&a.utf8_string) && targets.contains(&string));
        let Answer::Atoms(targets) = answer(&a, &wide, a.targets) else {
            panic!("TARGETS is a list of atoms");
        };
        assert!(targets.contains(&a.utf8_string) && !targets.contains(&string));

        assert_eq!(
            bytes(answer(&a, &wide, a.utf8_string)),
            Some((a.utf8_string, "世界".as_bytes().to_vec()))
        );
        assert_eq!(
            bytes(answer(&a, &wide, a.text_plain_utf8)),
            Some((a.text_plain_utf8, "世界".as_bytes().to_vec()))
        );
        assert_eq!(
            bytes(answer(&a, &latin, string)),
            Some((string, b"caf\xe9".to_vec()))
        );
        assert_eq!(answer(&a, &wide, string), Answer::Refuse);
        assert_eq!(
            bytes(answer(&a, &latin, a.text)),
            Some((string, b"caf\xe9".to_vec()))
        );
        assert_eq!(
            bytes(answer(&a, &wide, a.text)),
            Some((a.utf8_string, "世界".as_bytes().to_vec()))
        );
        assert_eq!(answer(&a, &latin, a.incr), Answer::Refuse);
    }
}
