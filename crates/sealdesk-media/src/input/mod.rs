//! Input injection with XTest: pointer motion, buttons, wheel, keys by keysym.
//!
//! The [`Injector`] remembers every key and button it pressed and has not released;
//! [`Injector::release_all`] (also run on drop) releases them, so a session that ends or a
//! channel that drops mid-keystroke never leaves a key stuck on the host.
//!
//! Every event is sent as a checked request: when a method returns `Ok`, the X server has
//! processed the event.

mod keymap;

use x11rb::connection::Connection;
use x11rb::errors::{ConnectionError, ReplyError, ReplyOrIdError};
use x11rb::protocol::xproto::{
    ConnectionExt as _, Window, BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, KEY_PRESS_EVENT,
    KEY_RELEASE_EVENT, MOTION_NOTIFY_EVENT,
};
use x11rb::protocol::xtest::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use crate::x11::{self, XError};
use crate::Monitor;
use keymap::{KeyMap, XK_SHIFT_L, XK_SHIFT_R};

/// Most spare keycodes borrowed at once for keysyms the layout lacks.
pub const MAX_BORROWED: usize = 8;

/// Most wheel clicks one [`Injector::scroll`] call injects; larger counts are clamped.
pub const MAX_SCROLL_CLICKS: u32 = 64;

/// Why an injection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Talking to the X server failed (see [`XError`]).
    #[error(transparent)]
    X(#[from] XError),
    /// No key of the current keyboard layout produces the keysym, unshifted or with Shift.
    /// The event was not injected; the session can go on. The message leaves the keysym out
    /// (a run of these in a log would spell what the peer typed); the field has it.
    #[error(
        "a key the peer sent has no key on the host's keyboard layout (unshifted or with \
         Shift); sealdesk does not remap the keyboard, so it was not injected"
    )]
    NoKeycode {
        /// The keysym asked for.
        keysym: u32,
    },
    /// A keysym needs Shift, but the keyboard layout has no Shift key.
    #[error("a key the peer sent needs Shift, but the host's keyboard layout has no Shift key")]
    NoShiftKey {
        /// The keysym asked for.
        keysym: u32,
    },
    /// The monitor given to [`Injector::move_pointer`] is empty or outside X's coordinate range.
    #[error("cannot move the pointer on monitor {0:?}: it is empty or outside the screen")]
    InvalidMonitor(crate::Rect),
}

impl From<ConnectionError> for InputError {
    fn from(e: ConnectionError) -> Self {
        Self::X(e.into())
    }
}
impl From<ReplyError> for InputError {
    fn from(e: ReplyError) -> Self {
        Self::X(e.into())
    }
}
impl From<ReplyOrIdError> for InputError {
    fn from(e: ReplyOrIdError) -> Self {
        Self::X(e.into())
    }
}

/// A pointer button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Button {
    /// Button 1.
    Left,
    /// Button 2.
    Middle,
    /// Button 3.
    Right,
    /// Button 8 ("back" on five-button mice).
    Back,
    /// Button 9 ("forward").
    Forward,
}

impl Button {
    /// The X button number.
    pub fn number(self) -> u8 {
        match self {
            Self::Left => 1,
            Self::Middle => 2,
            Self::Right => 3,
            Self::Back => 8,
            Self::Forward => 9,
        }
    }
}

/// A wheel direction; X delivers each click as a press and release of buttons 4–7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scroll {
    /// Button 4.
    Up,
    /// Button 5.
    Down,
    /// Button 6.
    Left,
    /// Button 7.
    Right,
}

impl Scroll {
    /// The X button number.
    pub fn number(self) -> u8 {
        match self {
            Self::Up => 4,
            Self::Down => 5,
            Self::Left => 6,
            Self::Right => 7,
        }
    }
}

/// A key this injector holds down.
#[derive(Debug, Clone, Copy)]
struct HeldKey {
    keysym: u32,
    keycode: u8,
    /// It was typed at the Shift level.
    shifted: bool,
}

/// XTest input injection on one X connection. See the [module docs](self).
pub struct Injector {
    conn: RustConnection,
    root: Window,
    randr_monitors: bool,
    keymap: KeyMap,
    held_keys: Vec<HeldKey>,
    /// A Shift key this injector pressed by itself for a shifted keysym.
    auto_shift: Option<u8>,
    held_buttons: Vec<Button>,
    /// Spare keycodes this injector mapped to keysyms the layout lacks, oldest first;
    /// unmapped again on drop.
    borrowed: Vec<(u8, u32)>,
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Held keysyms are what the peer is typing: keep them out of logs.
        f.debug_struct("Injector")
            .field("root", &self.root)
            .field("held_keys", &self.held_keys.len())
            .field("held_buttons", &self.held_buttons.len())
            .finish_non_exhaustive()
    }
}

impl Injector {
    /// Connect to `display` (`None` means `$DISPLAY`); needs XTEST 2.2.
    pub fn connect(display: Option<&str>) -> Result<Self, InputError> {
        let (conn, screen_num) = x11::connect(display)?;
        let root = x11::root_of(&conn, screen_num)?;
        let missing = XError::MissingExtension {
            name: "XTEST",
            major: 2,
            minor: 2,
        };
        if !x11::has_extension(&conn, xtest::X11_EXTENSION_NAME)? {
            return Err(missing.into());
        }
        let v = conn.xtest_get_version(2, 2)?.reply()?;
        x11::require_version(
            "XTEST",
            (u32::from(v.major_version), u32::from(v.minor_version)),
            (2, 2),
        )?;
        let randr_monitors = x11::has_randr_monitors(&conn)?;
        let mut injector = Self {
            conn,
            root,
            randr_monitors,
            keymap: KeyMap::default(),
            held_keys: Vec::new(),
            auto_shift: None,
            held_buttons: Vec::new(),
            borrowed: Vec::new(),
        };
        injector.refresh_keymap()?;
        Ok(injector)
    }

    /// Re-read the keyboard mapping. Done automatically once when a keysym is not found, so
    /// layout changes are picked up without the caller watching `MappingNotify`.
    pub fn refresh_keymap(&mut self) -> Result<(), InputError> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let count = max.saturating_sub(min).saturating_add(1);
        let reply = self.conn.get_keyboard_mapping(min, count)?.reply()?;
        self.keymap = KeyMap::new(min, reply.keysyms_per_keycode, reply.keysyms);
        Ok(())
    }

    /// The monitors of the screen (same list as [`crate::capture::Capturer::monitors`]).
    pub fn monitors(&self) -> Result<Vec<Monitor>, InputError> {
        Ok(x11::list_monitors(
            &self.conn,
            self.root,
            self.randr_monitors,
        )?)
    }

    /// Move the pointer to (`x`, `y`) relative to `monitor`'s top-left corner. Coordinates
    /// outside the monitor are clamped to its edge (a viewer's scaled coordinates may be off by
    /// a pixel; a hostile one cannot reach another monitor).
    pub fn move_pointer(&mut self, monitor: &Monitor, x: i32, y: i32) -> Result<(), InputError> {
        let r = monitor.rect;
        let invalid = || InputError::InvalidMonitor(r);
        if r.is_empty() {
            return Err(invalid());
        }
        let max_x = r.right() - 1;
        let max_y = r.bottom() - 1;
        let root_x = (i64::from(r.x) + i64::from(x)).clamp(i64::from(r.x), max_x);
        let root_y = (i64::from(r.y) + i64::from(y)).clamp(i64::from(r.y), max_y);
        let root_x = i16::try_from(root_x).map_err(|_| invalid())?;
        let root_y = i16::try_from(root_y).map_err(|_| invalid())?;
        // detail 0: absolute motion.
        self.fake(MOTION_NOTIFY_EVENT, 0, root_x, root_y)
    }

    /// Press (`pressed = true`) or release a button at the current pointer position.
    /// Releasing a button this injector does not hold does nothing.
    pub fn button(&mut self, button: Button, pressed: bool) -> Result<(), InputError> {
        if pressed {
            if !self.held_buttons.contains(&button) {
                // Track before sending: releasing an unpressed button is harmless, a stuck one
                // is not.
                self.held_buttons.push(button);
            }
            self.fake(BUTTON_PRESS_EVENT, button.number(), 0, 0)
        } else if let Some(i) = self.held_buttons.iter().position(|b| *b == button) {
            self.fake(BUTTON_RELEASE_EVENT, button.number(), 0, 0)?;
            self.held_buttons.remove(i);
            Ok(())
        } else {
            Ok(())
        }
    }

    /// Turn the wheel `clicks` notches (at most [`MAX_SCROLL_CLICKS`]; more are clamped).
    pub fn scroll(&mut self, direction: Scroll, clicks: u32) -> Result<(), InputError> {
        let button = direction.number();
        for _ in 0..clicks.min(MAX_SCROLL_CLICKS) {
            self.fake(BUTTON_PRESS_EVENT, button, 0, 0)?;
            self.fake(BUTTON_RELEASE_EVENT, button, 0, 0)?;
        }
        Ok(())
    }

    /// Press or release the key that types X keysym `keysym` (e.g. `0x61` for `a`, `0x5a` for
    /// `Z`, `0xff0d` for Return).
    ///
    /// A keysym on the Shift level (uppercase letters, `!`, …) is typed with Shift: if the peer
    /// does not hold a Shift key, the injector presses one first and releases it when the last
    /// shifted key is released (or when an unshifted key is pressed). A keysym no key produces
    /// (`€`, Cyrillic on a Latin layout, …) is typed on a spare keycode mapped to it for the
    /// rest of the session — at most [`MAX_BORROWED`] at a time, given back on drop —
    /// [`InputError::NoKeycode`] only when no spare keycode is left. Pressing a held key again
    /// repeats it; releasing a key this injector does not hold does nothing.
    ///
    /// Known limits: while the peer holds Shift itself, an unshifted keysym (e.g. `a`) comes
    /// out shifted; AltGr levels and other groups are not searched.
    pub fn key(&mut self, keysym: u32, pressed: bool) -> Result<(), InputError> {
        if pressed {
            self.key_down(keysym)
        } else {
            self.key_up(keysym)
        }
    }

    fn key_down(&mut self, keysym: u32) -> Result<(), InputError> {
        if let Some(held) = self.held_keys.iter().find(|k| k.keysym == keysym) {
            return self.fake(KEY_PRESS_EVENT, held.keycode, 0, 0);
        }
        let stroke = match self.keymap.lookup(keysym) {
            Some(s) => s,
            None => {
                self.refresh_keymap()?;
                match self.keymap.lookup(keysym) {
                    Some(s) => s,
                    None => self.borrow_keycode(keysym)?,
                }
            }
        };
        let peer_shift = self
            .held_keys
            .iter()
            .any(|k| k.keysym == XK_SHIFT_L || k.keysym == XK_SHIFT_R);
        if stroke.shift && !peer_shift && self.auto_shift.is_none() {
            let shift = self
                .keymap
                .lookup(XK_SHIFT_L)
                .or_else(|| self.keymap.lookup(XK_SHIFT_R))
                .filter(|s| !s.shift)
                .ok_or(InputError::NoShiftKey { keysym })?;
            self.auto_shift = Some(shift.keycode);
            self.fake(KEY_PRESS_EVENT, shift.keycode, 0, 0)?;
        } else if !stroke.shift {
            // Keys still held were already typed at the Shift level; this one must not be.
            self.release_auto_shift()?;
        }
        self.held_keys.push(HeldKey {
            keysym,
            keycode: stroke.keycode,
            shifted: stroke.shift,
        });
        self.fake(KEY_PRESS_EVENT, stroke.keycode, 0, 0)
    }

    /// Maps `keysym` (one the layout has no key for: `€`, Cyrillic on a Latin layout, …) onto
    /// a spare keycode, at most [`MAX_BORROWED`] at a time (the oldest not held is reused).
    /// X clients see a `MappingNotify` before the key event, so they read it right.
    fn borrow_keycode(&mut self, keysym: u32) -> Result<keymap::KeyStroke, InputError> {
        let none = InputError::NoKeycode { keysym };
        // Legacy keysyms, or Unicode ones (0x01000100 + code point); nothing else is a keysym.
        if !(keysym < 0x1_0000 || (0x0100_0100..=0x0110_ffff).contains(&keysym)) {
            return Err(none);
        }
        let held = |k: u8, held: &[HeldKey]| held.iter().any(|h| h.keycode == k);
        let keycode = if self.borrowed.len() < MAX_BORROWED {
            let taken: Vec<u8> = self.borrowed.iter().map(|(k, _)| *k).collect();
            self.keymap
                .spare_keycodes()
                .into_iter()
                .find(|k| !taken.contains(k))
        } else {
            None
        };
        let keycode = match keycode {
            Some(k) => k,
            None => {
                let i = self
                    .borrowed
                    .iter()
                    .position(|(k, _)| !held(*k, &self.held_keys))
                    .ok_or(none)?;
                self.borrowed.remove(i).0
            }
        };
        let per = self.keymap.per_keycode().max(1);
        let mut syms = vec![0u32; usize::from(per)];
        for s in syms.iter_mut().take(2) {
            *s = keysym; // both levels, so a held Shift changes nothing
        }
        self.conn
            .change_keyboard_mapping(1, keycode, per, &syms)?
            .check()?;
        self.borrowed.push((keycode, keysym));
        self.refresh_keymap()?;
        self.keymap
            .lookup(keysym)
            .ok_or(InputError::NoKeycode { keysym })
    }

    /// Gives back the keycodes borrowed for missing keysyms.
    fn return_keycodes(&mut self) {
        let per = self.keymap.per_keycode().max(1);
        let empty = vec![0u32; usize::from(per)];
        for (keycode, _) in std::mem::take(&mut self.borrowed) {
            if let Ok(cookie) = self.conn.change_keyboard_mapping(1, keycode, per, &empty) {
                let _ = cookie.check();
            }
        }
    }

    fn key_up(&mut self, keysym: u32) -> Result<(), InputError> {
        let Some(i) = self.held_keys.iter().rposition(|k| k.keysym == keysym) else {
            return Ok(());
        };
        let keycode = self.held_keys.get(i).map(|k| k.keycode).unwrap_or_default();
        self.fake(KEY_RELEASE_EVENT, keycode, 0, 0)?;
        self.held_keys.remove(i);
        if !self.held_keys.iter().any(|k| k.shifted) {
            self.release_auto_shift()?;
        }
        Ok(())
    }

    fn release_auto_shift(&mut self) -> Result<(), InputError> {
        if let Some(keycode) = self.auto_shift {
            self.fake(KEY_RELEASE_EVENT, keycode, 0, 0)?;
            self.auto_shift = None;
        }
        Ok(())
    }

    /// Keysyms of the keys held down by this injector, in the order they were pressed.
    pub fn held_keysyms(&self) -> Vec<u32> {
        self.held_keys.iter().map(|k| k.keysym).collect()
    }

    /// Buttons held down by this injector.
    pub fn held_buttons(&self) -> Vec<Button> {
        self.held_buttons.clone()
    }

    /// Release every key and button this injector holds (keys in reverse order, then the Shift
    /// it added, then buttons). Call it when a session ends or its control channel drops;
    /// [`Drop`] calls it too. Keeps going past failures, returns the first, and keeps whatever
    /// could not be released so a later call can retry.
    pub fn release_all(&mut self) -> Result<(), InputError> {
        let mut first_error = None;
        let keys = std::mem::take(&mut self.held_keys);
        for key in keys.into_iter().rev() {
            if let Err(e) = self.fake(KEY_RELEASE_EVENT, key.keycode, 0, 0) {
                first_error.get_or_insert(e);
                self.held_keys.insert(0, key);
            }
        }
        if let Err(e) = self.release_auto_shift() {
            first_error.get_or_insert(e);
        }
        let buttons = std::mem::take(&mut self.held_buttons);
        for button in buttons {
            if let Err(e) = self.fake(BUTTON_RELEASE_EVENT, button.number(), 0, 0) {
                first_error.get_or_insert(e);
                self.held_buttons.push(button);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One XTest event, checked (so when this returns the server has processed it).
    fn fake(&self, kind: u8, detail: u8, root_x: i16, root_y: i16) -> Result<(), InputError> {
        self.conn
            .xtest_fake_input(
                kind,
                detail,
                x11rb::CURRENT_TIME,
                self.root,
                root_x,
                root_y,
                0,
            )?
            .check()?;
        Ok(())
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // Nothing useful to do with an error here: the connection is going away, and with it
        // the chance to release anything.
        let _ = self.release_all();
        self.return_keycodes();
    }
}
