//! `KeyboardEvent.code` → X11 keysym, and the keys the page holds down.
//!
//! The browser viewer sends *physical* keys: `code` names a position on the keyboard
//! ("KeyA" is the key left of "KeyS" whatever it prints), and each maps to the keysym that
//! position has on a US layout, without modifiers. Shift, AltGr and the rest are keys of
//! their own, so the host's keyboard layout decides which character the combination types —
//! as if the keyboard were plugged into the host.

use std::collections::BTreeMap;

/// The most keys held at once that are remembered (keyboards report far fewer).
pub const MAX_HELD: usize = 64;

/// The keysym of a key event: by its physical `code`, or — for events with no code a US
/// keyboard has (on-screen keyboards, some input methods) — by the one character its `key`
/// types. `None` for a key X11 has no keysym for.
pub fn event_keysym(code: &str, key: Option<&str>) -> Option<u32> {
    keysym(code).or_else(|| {
        let mut chars = key?.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            return None; // a named key ("Unidentified", "Dead", …) or a composed string
        }
        let cp = u32::from(c);
        match cp {
            0x20..=0x7e | 0xa0..=0xff => Some(cp),
            0..=0x1f | 0x7f..=0x9f => None,
            _ => Some(0x0100_0000 + cp), // the Unicode keysym range
        }
    })
}

/// The keysym of the key at `code`, or `None` for a key X11 has no keysym for.
pub fn keysym(code: &str) -> Option<u32> {
    let bytes = code.as_bytes();
    // KeyA..KeyZ: lower-case Latin letters.
    if let [b'K', b'e', b'y', c @ b'A'..=b'Z'] = bytes {
        return Some(u32::from(c.to_ascii_lowercase()));
    }
    // Digit0..Digit9.
    if let [b'D', b'i', b'g', b'i', b't', d @ b'0'..=b'9'] = bytes {
        return Some(u32::from(*d));
    }
    // Numpad0..Numpad9: KP_0..KP_9.
    if let [b'N', b'u', b'm', b'p', b'a', b'd', d @ b'0'..=b'9'] = bytes {
        return Some(0xffb0 + u32::from(d - b'0'));
    }
    // F1..F24: 0xffbe onwards.
    if let Some(n) = code.strip_prefix('F').and_then(|n| n.parse::<u32>().ok()) {
        return (1..=24).contains(&n).then_some(0xffbe + n - 1);
    }
    Some(match code {
        "Space" => 0x20,
        "Minus" => 0x2d,
        "Equal" => 0x3d,
        "BracketLeft" => 0x5b,
        "BracketRight" => 0x5d,
        "Backslash" => 0x5c,
        "Semicolon" => 0x3b,
        "Quote" => 0x27,
        "Backquote" => 0x60,
        "Comma" => 0x2c,
        "Period" => 0x2e,
        "Slash" => 0x2f,
        "IntlBackslash" => 0x3c, // less, the key left of Z on ISO keyboards
        "Enter" => 0xff0d,
        "Tab" => 0xff09,
        "Backspace" => 0xff08,
        "Escape" => 0xff1b,
        "Delete" => 0xffff,
        "Insert" => 0xff63,
        "Home" => 0xff50,
        "End" => 0xff57,
        "PageUp" => 0xff55,
        "PageDown" => 0xff56,
        "ArrowLeft" => 0xff51,
        "ArrowUp" => 0xff52,
        "ArrowRight" => 0xff53,
        "ArrowDown" => 0xff54,
        "ShiftLeft" => 0xffe1,
        "ShiftRight" => 0xffe2,
        "ControlLeft" => 0xffe3,
        "ControlRight" => 0xffe4,
        "CapsLock" => 0xffe5,
        "AltLeft" => 0xffe9,
        "AltRight" => 0xfe03, // ISO_Level3_Shift: AltGr on the layouts that have one
        "MetaLeft" | "OSLeft" => 0xffeb,
        "MetaRight" | "OSRight" => 0xffec,
        "ContextMenu" => 0xff67,
        "NumLock" => 0xff7f,
        "ScrollLock" => 0xff14,
        "Pause" => 0xff13,
        "PrintScreen" => 0xff61,
        "NumpadDecimal" => 0xffae,
        "NumpadAdd" => 0xffab,
        "NumpadSubtract" => 0xffad,
        "NumpadMultiply" => 0xffaa,
        "NumpadDivide" => 0xffaf,
        "NumpadEnter" => 0xff8d,
        "NumpadEqual" => 0xffbd,
        _ => return None,
    })
}

/// The keys and buttons the page holds down on the host, so each gets its release.
#[derive(Debug, Default)]
pub struct Held {
    /// Key code → the keysym its press sent (a release sends the same one).
    keys: BTreeMap<String, u32>,
    /// Pointer buttons down (X11 numbers).
    buttons: Vec<u8>,
}

impl Held {
    /// A key went down (or auto-repeated): its keysym, to send as a press. `None` for a key
    /// with no keysym, or a new key while [`MAX_HELD`] are down (it is not sent, so it can
    /// never be left held on the host). A repeat sends its first press's keysym again.
    pub fn press(&mut self, code: &str, key: Option<&str>) -> Option<u32> {
        let sym = event_keysym(code, key)?;
        if self.keys.contains_key(code) || self.keys.len() >= MAX_HELD {
            return (self.keys.get(code) == Some(&sym)).then_some(sym);
        }
        self.keys.insert(code.to_owned(), sym);
        Some(sym)
    }

    /// A key came up: the keysym its press sent, or `None` if it was not down here.
    pub fn release(&mut self, code: &str) -> Option<u32> {
        self.keys.remove(code)
    }

    /// A button changed; `false` if nothing changed (a release of a button not down).
    pub fn button(&mut self, button: u8, down: bool) -> bool {
        let held = self.buttons.contains(&button);
        match (down, held) {
            (true, false) => self.buttons.push(button),
            (false, true) => self.buttons.retain(|b| *b != button),
            (true, true) => {}
            (false, false) => return false,
        }
        true
    }

    /// Everything held, now released: the keysyms and the buttons.
    pub fn release_all(&mut self) -> (Vec<u32>, Vec<u8>) {
        let keys = std::mem::take(&mut self.keys).into_values().collect();
        (keys, std::mem::take(&mut self.buttons))
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.buttons.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_us_keysyms() {
        assert_eq!(keysym("KeyA"), Some(u32::from(b'a')));
        assert_eq!(keysym("KeyZ"), Some(u32::from(b'z')));
        assert_eq!(keysym("Digit0"), Some(u32::from(b'0')));
        assert_eq!(keysym("Numpad7"), Some(0xffb7));
        assert_eq!(keysym("F1"), Some(0xffbe));
        assert_eq!(keysym("F12"), Some(0xffc9));
        assert_eq!(keysym("F24"), Some(0xffd5));
        assert_eq!(keysym("F25"), None);
        assert_eq!(keysym("F0"), None);
        assert_eq!(keysym("Enter"), Some(0xff0d));
        assert_eq!(keysym("ShiftLeft"), Some(0xffe1));
        assert_eq!(keysym("Semicolon"), Some(u32::from(b';')));
        for nonsense in [
            "",
            "Key",
            "KeyAA",
            "Keya",
            "Digit",
            "Digit10",
            "Unidentified",
            "F",
        ] {
            assert_eq!(keysym(nonsense), None, "{nonsense:?}");
        }
    }

    #[test]
    fn holds_and_releases() {
        let mut h = Held::default();
        assert_eq!(h.press("ShiftLeft", None), Some(0xffe1));
        assert_eq!(h.press("KeyA", Some("A")), Some(0x61));
        // Auto-repeat: the same key again still types (the host sees a repeat).
        assert_eq!(h.press("KeyA", Some("A")), Some(0x61));
        assert_eq!(h.release("KeyA"), Some(0x61));
        assert_eq!(h.release("KeyA"), None);
        assert_eq!(h.press("Bogus", None), None);
        assert_eq!(h.press("Bogus", Some("Unidentified")), None);
        assert!(h.button(1, true));
        assert!(!h.button(3, false));
        let (keys, buttons) = h.release_all();
        assert_eq!(keys, vec![0xffe1]);
        assert_eq!(buttons, vec![1]);
        assert!(h.is_empty());
    }

    #[test]
    fn held_keys_are_bounded() {
        let mut h = Held::default();
        for i in 0..200 {
            h.press(&format!("Key{}", char::from(b'A' + (i % 26) as u8)), None);
        }
        for n in 1..=24 {
            h.press(&format!("F{n}"), None);
        }
        for d in 0..10 {
            h.press(&format!("Digit{d}"), None);
            h.press(&format!("Numpad{d}"), None);
        }
        h.press("Space", None);
        let (keys, _) = h.release_all();
        assert!(keys.len() <= MAX_HELD);
    }
}
