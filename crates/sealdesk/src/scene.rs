//! The demo's desktop: a small X client that fills the (virtual) screen with something worth
//! looking at — a title, a clock, a moving block — and echoes the keys typed and the clicks
//! made into it, so the demo shows input going all the way to the host and the result coming
//! back as video.
//!
//! It is a plain client on its own connection and thread; dropping [`Scene`] stops it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ChangeGCAux, ConnectionExt as _, EventMask, Gcontext, InputFocus, KeyButMask, Rectangle, Window,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

use crate::xwin::Canvas;

const BACKGROUND: u32 = 0x1d_2b_3a;
const PANEL: u32 = 0x2f_4b_66;
const BLOCK: u32 = 0xf0_a0_30;
const TEXT: u32 = 0xf2_f2_f2;
const ACCENT: u32 = 0x7f_d1_7f;
/// How often the clock and the block move.
const FRAME: Duration = Duration::from_millis(100);

/// The running scene.
pub(crate) struct Scene {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scene {
    /// Opens the scene's window on `display` and starts animating it.
    pub(crate) fn start(display: &str) -> anyhow::Result<Self> {
        let painter = Painter::new(display)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sealdesk-demo-scene".into())
            .spawn(move || {
                if let Err(e) = painter.run(&s) {
                    tracing::warn!(error = %e, "the demo scene stopped");
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Painter {
    conn: RustConnection,
    window: Window,
    gc: Gcontext,
    width: u16,
    height: u16,
    keysyms: Vec<u32>,
    per_keycode: u8,
    min_keycode: u8,
    typed: String,
    last_click: Option<(i16, i16)>,
}

impl Painter {
    fn new(display: &str) -> anyhow::Result<Self> {
        let Canvas {
            conn,
            window,
            gc,
            width,
            height,
        } = Canvas::open(
            display,
            BACKGROUND,
            TEXT,
            EventMask::KEY_PRESS | EventMask::BUTTON_PRESS | EventMask::EXPOSURE,
        )?;
        // No window manager: give the window the keyboard focus ourselves.
        conn.set_input_focus(InputFocus::PARENT, window, x11rb::CURRENT_TIME)?;
        let setup = conn.setup();
        let (min_keycode, max_keycode) = (setup.min_keycode, setup.max_keycode);
        let map = conn
            .get_keyboard_mapping(min_keycode, max_keycode - min_keycode + 1)?
            .reply()?;
        conn.flush()?;
        Ok(Self {
            conn,
            window,
            gc,
            width,
            height,
            keysyms: map.keysyms,
            per_keycode: map.keysyms_per_keycode,
            min_keycode,
            typed: String::new(),
            last_click: None,
        })
    }

    fn fill(&self, color: u32, x: i16, y: i16, w: u16, h: u16) -> anyhow::Result<()> {
        self.conn
            .change_gc(self.gc, &ChangeGCAux::new().foreground(color))?;
        self.conn.poly_fill_rectangle(
            self.window,
            self.gc,
            &[Rectangle {
                x,
                y,
                width: w,
                height: h,
            }],
        )?;
        Ok(())
    }

    fn text(&self, x: i16, y: i16, color: u32, background: u32, s: &str) -> anyhow::Result<()> {
        self.conn.change_gc(
            self.gc,
            &ChangeGCAux::new().foreground(color).background(background),
        )?;
        let bytes: Vec<u8> = s
            .chars()
            .map(|c| u8::try_from(c).unwrap_or(b'?'))
            .take(255)
            .collect();
        self.conn.image_text8(self.window, self.gc, x, y, &bytes)?;
        Ok(())
    }

    fn paint_static(&self) -> anyhow::Result<()> {
        self.fill(BACKGROUND, 0, 0, self.width, self.height)?;
        self.fill(PANEL, 40, 40, self.width.saturating_sub(80), 120)?;
        self.text(
            60,
            75,
            TEXT,
            PANEL,
            "sealdesk demo: this virtual screen is shared end to end encrypted",
        )?;
        self.text(60, 100, ACCENT, PANEL, "only the host and the viewer hold the keys; the server saw public values and ciphertext")?;
        self.paint_input()
    }

    fn paint_input(&self) -> anyhow::Result<()> {
        let y = i16::try_from(self.height.saturating_sub(140)).unwrap_or(0);
        self.fill(PANEL, 40, y, self.width.saturating_sub(80), 100)?;
        let typed = format!("typed on the viewer: {}_", self.typed);
        self.text(60, y + 35, TEXT, PANEL, &typed)?;
        let click = match self.last_click {
            Some((x, y)) => format!("last click at ({x}, {y})"),
            None => "click anywhere in the viewer".to_owned(),
        };
        self.text(60, y + 65, ACCENT, PANEL, &click)?;
        if let Some((x, y)) = self.last_click {
            self.fill(ACCENT, x - 4, y - 4, 9, 9)?;
        }
        Ok(())
    }

    fn paint_frame(&self, t: f64, last_block: &mut Option<(i16, i16)>) -> anyhow::Result<()> {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let x = ((t * 0.7).sin() * 0.35 + 0.5) * (w - 160.0) + 40.0;
        let y = ((t * 1.1).cos() * 0.2 + 0.5) * (h - 400.0) + 160.0;
        let (x, y) = (x as i16, y as i16);
        if let Some((ox, oy)) = last_block.take() {
            self.fill(BACKGROUND, ox, oy, 80, 80)?;
        }
        self.fill(BLOCK, x, y, 80, 80)?;
        *last_block = Some((x, y));
        let clock = format!("uptime {:7.1} s", t);
        self.text(60, 140, TEXT, PANEL, &clock)?;
        self.conn.flush()?;
        Ok(())
    }

    fn keysym(&self, keycode: u8, state: KeyButMask) -> u32 {
        let per = usize::from(self.per_keycode);
        let Some(row) = usize::from(keycode).checked_sub(usize::from(self.min_keycode)) else {
            return 0;
        };
        let shift = usize::from(state.contains(KeyButMask::SHIFT));
        let at = |col: usize| self.keysyms.get(row * per + col).copied().unwrap_or(0);
        match at(shift) {
            0 => at(0),
            k => k,
        }
    }

    fn run(mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        self.paint_static()?;
        let started = Instant::now();
        let mut last_block = None;
        while !stop.load(Ordering::Relaxed) {
            while let Some(event) = self.conn.poll_for_event()? {
                match event {
                    Event::Expose(_) => {
                        self.paint_static()?;
                        last_block = None;
                    }
                    Event::KeyPress(k) => {
                        let sym = self.keysym(k.detail, k.state);
                        match sym {
                            0xff08 => {
                                self.typed.pop();
                            }
                            0x20..=0x7e => {
                                if self.typed.len() >= 60 {
                                    self.typed.clear();
                                }
                                self.typed
                                    .push(char::from(u8::try_from(sym).unwrap_or(b'?')));
                            }
                            _ => {}
                        }
                        self.paint_input()?;
                    }
                    Event::ButtonPress(b) => {
                        self.last_click = Some((b.event_x, b.event_y));
                        self.paint_static()?;
                        last_block = None;
                    }
                    _ => {}
                }
            }
            self.paint_frame(started.elapsed().as_secs_f64(), &mut last_block)?;
            std::thread::sleep(FRAME);
        }
        Ok(())
    }
}
