//! winit keys → X11 keysyms, and the memory of which keysym each held key sent.

use sealdesk_proto::control::ControlMessage;
use winit::keyboard::{Key, KeyLocation, NamedKey, NativeKey, PhysicalKey};
use xkeysym::key as ks;

/// Keys held at once beyond which the oldest is forgotten (its release is then dropped; the
/// next [`ControlMessage::ReleaseAll`] covers it). Keyboards report far fewer.
const MAX_HELD: usize = 64;

/// Offset of the Unicode keysym range (X11 keysym encoding, appendix A).
const UNICODE_OFFSET: u32 = 0x0100_0000;

/// The X11 keysym for a key as winit reports it *without modifiers*, at `location`; `None`
/// for keys with no keysym.
pub(crate) fn keysym(key: &Key, location: KeyLocation) -> Option<u32> {
    match key {
        Key::Named(named) => named_keysym(*named, location),
        Key::Character(text) => {
            let mut chars = text.chars();
            let c = chars.next()?;
            if chars.next().is_some() {
                // A ligature key or a compose result: no single keysym.
                return None;
            }
            if location == KeyLocation::Numpad {
                if let Some(sym) = keypad_char(c) {
                    return Some(sym);
                }
            }
            char_keysym(c)
        }
        // On X11 winit passes keysyms it has no name for through unchanged.
        Key::Unidentified(NativeKey::Xkb(sym)) => (*sym != 0).then_some(*sym),
        Key::Unidentified(_) => None,
        Key::Dead(c) => c.and_then(dead_keysym),
    }
}

/// Latin-1 characters are their own keysym, everything else is in the Unicode range.
fn char_keysym(c: char) -> Option<u32> {
    let cp = u32::from(c);
    match cp {
        0x20..=0x7e | 0xa0..=0xff => Some(cp),
        // Control characters are not keys.
        0..=0x1f | 0x7f..=0x9f => None,
        _ => Some(UNICODE_OFFSET + cp),
    }
}

fn keypad_char(c: char) -> Option<u32> {
    Some(match c {
        '0'..='9' => ks::KP_0 + (u32::from(c) - u32::from('0')),
        '+' => ks::KP_Add,
        '-' => ks::KP_Subtract,
        '*' => ks::KP_Multiply,
        '/' => ks::KP_Divide,
        '.' => ks::KP_Decimal,
        ',' => ks::KP_Separator,
        '=' => ks::KP_Equal,
        _ => return None,
    })
}

fn dead_keysym(c: char) -> Option<u32> {
    Some(match c {
        '`' | '\u{300}' => ks::dead_grave,
        '´' | '\'' | '\u{301}' => ks::dead_acute,
        '^' | '\u{302}' => ks::dead_circumflex,
        '~' | '\u{303}' => ks::dead_tilde,
        '¯' | '\u{304}' => ks::dead_macron,
        '˘' | '\u{306}' => ks::dead_breve,
        '˙' | '\u{307}' => ks::dead_abovedot,
        '¨' | '"' | '\u{308}' => ks::dead_diaeresis,
        '°' | '˚' | '\u{30a}' => ks::dead_abovering,
        '˝' | '\u{30b}' => ks::dead_doubleacute,
        'ˇ' | '\u{30c}' => ks::dead_caron,
        '¸' | '\u{327}' => ks::dead_cedilla,
        '˛' | '\u{328}' => ks::dead_ogonek,
        _ => return None,
    })
}

fn sided(location: KeyLocation, left: u32, right: u32) -> u32 {
    if location == KeyLocation::Right {
        right
    } else {
        left
    }
}

fn keypad(location: KeyLocation, main: u32, pad: u32) -> u32 {
    if location == KeyLocation::Numpad {
        pad
    } else {
        main
    }
}

fn named_keysym(key: NamedKey, location: KeyLocation) -> Option<u32> {
    use NamedKey as N;
    let loc = location;
    Some(match key {
        // Modifiers, each side its own key.
        N::Shift => sided(loc, ks::Shift_L, ks::Shift_R),
        N::Control => sided(loc, ks::Control_L, ks::Control_R),
        N::Alt => sided(loc, ks::Alt_L, ks::Alt_R),
        N::Super => sided(loc, ks::Super_L, ks::Super_R),
        N::Meta => sided(loc, ks::Meta_L, ks::Meta_R),
        N::Hyper => sided(loc, ks::Hyper_L, ks::Hyper_R),
        N::AltGraph => ks::ISO_Level3_Shift,
        N::CapsLock => ks::Caps_Lock,
        N::NumLock => ks::Num_Lock,
        N::ScrollLock => ks::Scroll_Lock,
        N::ModeChange => ks::Mode_switch,
        N::GroupNext => ks::ISO_Next_Group,
        N::GroupPrevious => ks::ISO_Prev_Group,
        N::GroupFirst => ks::ISO_First_Group,
        N::GroupLast => ks::ISO_Last_Group,
        // Editing and whitespace.
        N::Enter => keypad(loc, ks::Return, ks::KP_Enter),
        N::Tab => keypad(loc, ks::Tab, ks::KP_Tab),
        N::Space => keypad(loc, ks::space, ks::KP_Space),
        N::Backspace => ks::BackSpace,
        N::Escape => ks::Escape,
        N::Delete => keypad(loc, ks::Delete, ks::KP_Delete),
        N::Insert => keypad(loc, ks::Insert, ks::KP_Insert),
        N::Clear => keypad(loc, ks::Clear, ks::KP_Begin),
        // Navigation.
        N::ArrowLeft => keypad(loc, ks::Left, ks::KP_Left),
        N::ArrowUp => keypad(loc, ks::Up, ks::KP_Up),
        N::ArrowRight => keypad(loc, ks::Right, ks::KP_Right),
        N::ArrowDown => keypad(loc, ks::Down, ks::KP_Down),
        N::Home => keypad(loc, ks::Home, ks::KP_Home),
        N::End => keypad(loc, ks::End, ks::KP_End),
        N::PageUp => keypad(loc, ks::Page_Up, ks::KP_Page_Up),
        N::PageDown => keypad(loc, ks::Page_Down, ks::KP_Page_Down),
        // System.
        N::PrintScreen => ks::Print,
        N::Pause => ks::Pause,
        N::ContextMenu => ks::Menu,
        N::Select => ks::Select,
        N::Execute => ks::Execute,
        N::Undo => ks::Undo,
        N::Redo => ks::Redo,
        N::Find => ks::Find,
        N::Cancel => ks::Cancel,
        N::Help => ks::Help,
        N::Compose => ks::Multi_key,
        // Input-method keys.
        N::KanjiMode => ks::Kanji,
        N::NonConvert => ks::Muhenkan,
        N::Convert => ks::Henkan_Mode,
        N::Romaji => ks::Romaji,
        N::Hiragana => ks::Hiragana,
        N::Katakana => ks::Katakana,
        N::HiraganaKatakana => ks::Hiragana_Katakana,
        N::Zenkaku => ks::Zenkaku,
        N::Hankaku => ks::Hankaku,
        N::ZenkakuHankaku => ks::Zenkaku_Hankaku,
        N::KanaMode => ks::Kana_Lock,
        N::Alphanumeric => ks::Eisu_toggle,
        N::HangulMode => ks::Hangul,
        N::HanjaMode => ks::Hangul_Hanja,
        // Media and browser keys.
        N::AudioVolumeDown => ks::XF86_AudioLowerVolume,
        N::AudioVolumeUp => ks::XF86_AudioRaiseVolume,
        N::AudioVolumeMute => ks::XF86_AudioMute,
        N::MediaPlay => ks::XF86_AudioPlay,
        N::MediaPause => ks::XF86_AudioPause,
        N::MediaPlayPause => ks::XF86_AudioPlay,
        N::MediaStop => ks::XF86_AudioStop,
        N::MediaTrackNext => ks::XF86_AudioNext,
        N::MediaTrackPrevious => ks::XF86_AudioPrev,
        N::BrowserBack => ks::XF86_Back,
        N::BrowserForward => ks::XF86_Forward,
        N::BrowserRefresh => ks::XF86_Refresh,
        N::BrowserHome => ks::XF86_HomePage,
        N::BrowserSearch => ks::XF86_Search,
        N::BrightnessUp => ks::XF86_MonBrightnessUp,
        N::BrightnessDown => ks::XF86_MonBrightnessDown,
        other => return function_key(other, location),
    })
}

/// F1–F35 (`KP_F1`–`KP_F4` on the keypad).
fn function_key(key: NamedKey, location: KeyLocation) -> Option<u32> {
    use NamedKey as N;
    const KEYS: [NamedKey; 35] = [
        N::F1,
        N::F2,
        N::F3,
        N::F4,
        N::F5,
        N::F6,
        N::F7,
        N::F8,
        N::F9,
        N::F10,
        N::F11,
        N::F12,
        N::F13,
        N::F14,
        N::F15,
        N::F16,
        N::F17,
        N::F18,
        N::F19,
        N::F20,
        N::F21,
        N::F22,
        N::F23,
        N::F24,
        N::F25,
        N::F26,
        N::F27,
        N::F28,
        N::F29,
        N::F30,
        N::F31,
        N::F32,
        N::F33,
        N::F34,
        N::F35,
    ];
    let n = u32::try_from(KEYS.iter().position(|k| *k == key)?).ok()?;
    if location == KeyLocation::Numpad && n < 4 {
        return Some(ks::KP_F1 + n);
    }
    // F1..F35 are consecutive keysyms.
    Some(ks::F1 + n)
}

/// Which keysym each held physical key sent on its press.
#[derive(Debug, Default)]
pub(crate) struct Keyboard {
    held: Vec<(PhysicalKey, u32)>,
}

impl Keyboard {
    /// A key went down (or auto-repeated) with keysym `sym` (from [`keysym`]); the message to
    /// send. A key already held sends the keysym of its first press again.
    pub(crate) fn press(
        &mut self,
        physical: PhysicalKey,
        sym: Option<u32>,
    ) -> Option<ControlMessage> {
        let keysym = match self.held.iter().find(|(k, _)| *k == physical) {
            Some(&(_, held)) => held,
            None => {
                let sym = sym?;
                if self.held.len() >= MAX_HELD {
                    self.held.remove(0);
                }
                self.held.push((physical, sym));
                sym
            }
        };
        Some(ControlMessage::Key { keysym, down: true })
    }

    /// A key went up; the release of the keysym its press sent, or nothing if this window did
    /// not send its press.
    pub(crate) fn release(&mut self, physical: PhysicalKey) -> Option<ControlMessage> {
        let i = self.held.iter().position(|(k, _)| *k == physical)?;
        let (_, keysym) = self.held.remove(i);
        Some(ControlMessage::Key {
            keysym,
            down: false,
        })
    }

    /// Forget every held key (after a [`ControlMessage::ReleaseAll`]).
    pub(crate) fn clear(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use winit::keyboard::KeyCode;

    fn ch(s: &str) -> Key {
        Key::Character(s.into())
    }

    #[test]
    fn named_keys() {
        let std = KeyLocation::Standard;
        let cases = [
            (NamedKey::Enter, std, 0xff0d),
            (NamedKey::Backspace, std, 0xff08),
            (NamedKey::Tab, std, 0xff09),
            (NamedKey::Escape, std, 0xff1b),
            (NamedKey::Space, std, 0x20),
            (NamedKey::ArrowLeft, std, 0xff51),
            (NamedKey::ArrowUp, std, 0xff52),
            (NamedKey::ArrowRight, std, 0xff53),
            (NamedKey::ArrowDown, std, 0xff54),
            (NamedKey::Home, std, 0xff50),
            (NamedKey::End, std, 0xff57),
            (NamedKey::PageUp, std, 0xff55),
            (NamedKey::PageDown, std, 0xff56),
            (NamedKey::Delete, std, 0xffff),
            (NamedKey::Insert, std, 0xff63),
            (NamedKey::F1, std, 0xffbe),
            (NamedKey::F12, std, 0xffc9),
            (NamedKey::F24, std, 0xffd5),
            (NamedKey::F35, std, 0xffe0),
            (NamedKey::Shift, KeyLocation::Left, 0xffe1),
            (NamedKey::Shift, KeyLocation::Right, 0xffe2),
            (NamedKey::Control, KeyLocation::Left, 0xffe3),
            (NamedKey::Control, KeyLocation::Right, 0xffe4),
            (NamedKey::CapsLock, std, 0xffe5),
            (NamedKey::Alt, KeyLocation::Left, 0xffe9),
            (NamedKey::Alt, KeyLocation::Right, 0xffea),
            (NamedKey::Super, KeyLocation::Left, 0xffeb),
            (NamedKey::Super, KeyLocation::Right, 0xffec),
            (NamedKey::AltGraph, std, 0xfe03),
            (NamedKey::NumLock, std, 0xff7f),
            (NamedKey::PrintScreen, std, 0xff61),
            (NamedKey::ContextMenu, std, 0xff67),
            (NamedKey::Enter, KeyLocation::Numpad, 0xff8d),
            (NamedKey::End, KeyLocation::Numpad, 0xff9c),
            (NamedKey::F1, KeyLocation::Numpad, 0xff91),
            (NamedKey::AudioVolumeMute, std, 0x1008_ff12),
        ];
        for (key, location, want) in cases {
            assert_eq!(
                keysym(&Key::Named(key), location),
                Some(want),
                "{key:?} {location:?}"
            );
        }
        assert_eq!(
            keysym(&Key::Named(NamedKey::Fn), KeyLocation::Standard),
            None
        );
    }

    #[test]
    fn characters() {
        let std = KeyLocation::Standard;
        assert_eq!(keysym(&ch("a"), std), Some(0x61));
        assert_eq!(keysym(&ch("1"), std), Some(0x31));
        assert_eq!(keysym(&ch("é"), std), Some(0xe9));
        assert_eq!(keysym(&ch("ÿ"), std), Some(0xff));
        assert_eq!(keysym(&ch("€"), std), Some(0x0100_20ac));
        assert_eq!(keysym(&ch("ж"), std), Some(0x0100_0436));
        assert_eq!(keysym(&ch("😀"), std), Some(0x0101_f600));
        assert_eq!(keysym(&ch("\u{7}"), std), None);
        assert_eq!(keysym(&ch("ab"), std), None);
        assert_eq!(keysym(&ch(""), std), None);
        assert_eq!(keysym(&ch("7"), KeyLocation::Numpad), Some(0xffb7));
        assert_eq!(keysym(&ch("+"), KeyLocation::Numpad), Some(0xffab));
        assert_eq!(
            keysym(&Key::Unidentified(NativeKey::Xkb(0xfe51)), std),
            Some(0xfe51)
        );
        assert_eq!(
            keysym(&Key::Unidentified(NativeKey::Unidentified), std),
            None
        );
        assert_eq!(keysym(&Key::Dead(Some('´')), std), Some(0xfe51));
        assert_eq!(keysym(&Key::Dead(None), std), None);
    }

    #[test]
    fn release_sends_what_press_sent() {
        let mut kb = Keyboard::default();
        let a = PhysicalKey::Code(KeyCode::KeyA);
        let press = |sym| {
            Some(ControlMessage::Key {
                keysym: sym,
                down: true,
            })
        };
        let release = |sym| {
            Some(ControlMessage::Key {
                keysym: sym,
                down: false,
            })
        };
        assert_eq!(kb.press(a, Some(0x61)), press(0x61));
        // The layout changed while held, or repeat: still the first keysym.
        assert_eq!(kb.press(a, Some(0x41)), press(0x61));
        assert_eq!(kb.release(a), release(0x61));
        assert_eq!(kb.release(a), None, "not held any more");
        assert_eq!(kb.press(a, None), None, "no keysym, nothing held");
        assert_eq!(kb.release(a), None);
        assert_eq!(kb.press(a, Some(0x61)), press(0x61));
        kb.clear();
        assert_eq!(kb.release(a), None);
        // Many keys: bounded memory.
        for code in 0..200u32 {
            let k = PhysicalKey::Unidentified(winit::keyboard::NativeKeyCode::Xkb(code));
            assert!(kb.press(k, Some(code)).is_some());
        }
        assert!(kb.held.len() <= MAX_HELD);
    }
}
