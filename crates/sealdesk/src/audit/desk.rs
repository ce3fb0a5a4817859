//! The audit's desktop: a full-screen X client that shows the screen canary and records
//! what is typed into it, so the audit knows the canaries really crossed the session (the
//! positive control for "found nowhere").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{ConnectionExt as _, EventMask, InputFocus, KeyButMask};
use x11rb::protocol::Event;

use crate::xwin::Canvas;

/// The running desktop. Dropping it stops its thread (the window goes with the display).
pub(crate) struct Desk {
    typed: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Desk {
    /// Opens `display`, shows `screen_text` (several times, black on white) and starts
    /// recording key presses.
    pub(crate) fn start(display: &str, screen_text: &str) -> anyhow::Result<Self> {
        let canvas = Canvas::open(display, 0x00ff_ffff, 0, EventMask::KEY_PRESS)?;
        let Canvas {
            conn,
            window,
            gc,
            height,
            ..
        } = canvas;
        let min = conn.setup().min_keycode;
        let max = conn.setup().max_keycode;
        let map = conn
            .get_keyboard_mapping(min, max - min + 1)?
            .reply()
            .context("cannot read the keyboard mapping")?;
        conn.set_input_focus(InputFocus::PARENT, window, x11rb::CURRENT_TIME)?;
        conn.flush()?;
        let text = screen_text.as_bytes().to_vec();
        let typed = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (typed, stop) = (typed.clone(), stop.clone());
            std::thread::spawn(move || {
                let per = usize::from(map.keysyms_per_keycode);
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Redraw now and then: the screen changes, so there is video to send.
                    if n.is_multiple_of(25) {
                        for row in 0..4i16 {
                            let y = 40 + row * i16::try_from(height / 5).unwrap_or(100);
                            let _ = conn.image_text8(window, gc, 40, y, &text);
                        }
                        let _ = conn.flush();
                    }
                    n = n.wrapping_add(1);
                    while let Ok(Some(e)) = conn.poll_for_event() {
                        let Event::KeyPress(k) = e else { continue };
                        let shift = k.state.contains(KeyButMask::SHIFT);
                        let at = usize::from(k.detail.saturating_sub(min)) * per;
                        let sym = map
                            .keysyms
                            .get(at + usize::from(shift))
                            .copied()
                            .filter(|s| *s != 0)
                            .or_else(|| map.keysyms.get(at).copied());
                        if let Some(c) = sym.and_then(char::from_u32) {
                            if !c.is_control() && (c as u32) < 0x100 {
                                typed.lock().unwrap_or_else(PoisonError::into_inner).push(c);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Ok(Self {
            typed,
            stop,
            thread: Some(thread),
        })
    }

    /// What was typed into the window so far.
    pub(crate) fn typed(&self) -> String {
        self.typed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
