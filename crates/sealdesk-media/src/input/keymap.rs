//! Keysym → keycode lookup over the core keyboard mapping (`GetKeyboardMapping`).

/// `NoSymbol`.
const NO_SYMBOL: u32 = 0;
/// `XK_Shift_L`.
pub(super) const XK_SHIFT_L: u32 = 0xffe1;
/// `XK_Shift_R`.
pub(super) const XK_SHIFT_R: u32 = 0xffe2;

/// How to type one keysym: which key, and whether Shift must be down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyStroke {
    pub(super) keycode: u8,
    pub(super) shift: bool,
}

/// The core keyboard mapping: `per_keycode` keysyms for each keycode from `min_keycode` on.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyMap {
    min_keycode: u8,
    per_keycode: usize,
    keysyms: Vec<u32>,
}

impl KeyMap {
    pub(super) fn new(min_keycode: u8, per_keycode: u8, keysyms: Vec<u32>) -> Self {
        Self {
            min_keycode,
            per_keycode: usize::from(per_keycode),
            keysyms,
        }
    }

    /// Keycodes with no keysym at all, which a keysym the layout lacks may borrow.
    pub(super) fn spare_keycodes(&self) -> Vec<u8> {
        if self.per_keycode == 0 {
            return Vec::new();
        }
        self.keysyms
            .chunks_exact(self.per_keycode)
            .enumerate()
            .filter(|(_, syms)| syms.iter().all(|s| *s == NO_SYMBOL))
            .filter_map(|(i, _)| u8::try_from(usize::from(self.min_keycode) + i).ok())
            .collect()
    }

    /// Keysyms per keycode.
    pub(super) fn per_keycode(&self) -> u8 {
        u8::try_from(self.per_keycode).unwrap_or(u8::MAX)
    }

    /// The key that produces `keysym` in group 1, unshifted if possible, else with Shift.
    /// Levels beyond Shift (AltGr) and other groups are not searched.
    pub(super) fn lookup(&self, keysym: u32) -> Option<KeyStroke> {
        if keysym == NO_SYMBOL || self.per_keycode == 0 {
            return None;
        }
        let levels = || {
            self.keysyms
                .chunks_exact(self.per_keycode)
                .enumerate()
                .filter_map(|(i, syms)| {
                    let keycode = u8::try_from(usize::from(self.min_keycode) + i).ok()?;
                    Some((keycode, group1_levels(syms)))
                })
        };
        levels()
            .find(|(_, (plain, _))| *plain == keysym)
            .map(|(keycode, _)| KeyStroke {
                keycode,
                shift: false,
            })
            .or_else(|| {
                levels()
                    .find(|(_, (_, shifted))| *shifted == keysym)
                    .map(|(keycode, _)| KeyStroke {
                        keycode,
                        shift: true,
                    })
            })
    }
}

/// Group 1's two levels of one keycode, with the core protocol's rule for a missing second
/// level: an alphabetic keysym's shifted level is its uppercase, anything else repeats.
fn group1_levels(syms: &[u32]) -> (u32, u32) {
    let plain = syms.first().copied().unwrap_or(NO_SYMBOL);
    let shifted = syms.get(1).copied().unwrap_or(NO_SYMBOL);
    if shifted != NO_SYMBOL {
        return (plain, shifted);
    }
    match latin1_upper(plain) {
        Some(upper) => (plain, upper),
        None => (plain, plain),
    }
}

/// Uppercase of a lowercase Latin-1 letter keysym (keysyms equal Latin-1 code points there).
fn latin1_upper(keysym: u32) -> Option<u32> {
    match keysym {
        0x61..=0x7a => Some(keysym - 0x20),
        0xe0..=0xfe if keysym != 0xf7 => Some(keysym - 0x20),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keycode 8: a A; 9: 1 exclam; 10: z (no explicit shift level); 11: Shift_L; 12: z Z.
    fn map() -> KeyMap {
        KeyMap::new(
            8,
            2,
            vec![0x61, 0x41, 0x31, 0x21, 0x7a, 0, XK_SHIFT_L, 0, 0x7a, 0x5a],
        )
    }

    #[test]
    fn plain_shifted_and_implicit_uppercase() {
        let m = map();
        let plain = |keycode| {
            Some(KeyStroke {
                keycode,
                shift: false,
            })
        };
        let shifted = |keycode| {
            Some(KeyStroke {
                keycode,
                shift: true,
            })
        };
        assert_eq!(m.lookup(0x61), plain(8));
        assert_eq!(m.lookup(0x41), shifted(8));
        assert_eq!(m.lookup(0x21), shifted(9));
        assert_eq!(m.lookup(0x7a), plain(10));
        // Keycode 10 has no explicit shift level: Z is its implicit uppercase.
        assert_eq!(m.lookup(0x5a), shifted(10));
        assert_eq!(m.lookup(XK_SHIFT_L), plain(11));
        assert_eq!(m.lookup(XK_SHIFT_R), None);
        assert_eq!(m.lookup(0), None);
        assert_eq!(KeyMap::default().lookup(0x61), None);
    }

    #[test]
    fn spare_keycodes_are_the_empty_ones() {
        // keycode 8: a A; 9: (nothing); 10: z; 11: (nothing).
        let m = KeyMap::new(8, 2, vec![0x61, 0x41, 0, 0, 0x7a, 0, 0, 0]);
        assert_eq!(m.spare_keycodes(), vec![9, 11]);
        assert_eq!(m.per_keycode(), 2);
        assert_eq!(KeyMap::default().spare_keycodes(), Vec::<u8>::new());
    }

    #[test]
    fn keycodes_past_255_are_ignored() {
        let m = KeyMap::new(255, 1, vec![0x62, 0x61]);
        assert_eq!(
            m.lookup(0x62),
            Some(KeyStroke {
                keycode: 255,
                shift: false
            })
        );
        assert_eq!(m.lookup(0x61), None);
    }
}
