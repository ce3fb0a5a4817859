//! The host side of a session test: an X client on the host's display showing a known
//! picture and recording the input it receives, and a host with a headless viewer
//! connected to it by code.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "each test binary uses a subset; tests fail by panicking"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{sealdesk_in, Proc, Server};
use sealdesk_media::capture::Capturer;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, ImageFormat, InputFocus,
    KeyButMask, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

pub(crate) const W: u16 = 800;
pub(crate) const H: u16 = 600;
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A desktop-like test picture: a gradient, solid panels, and rows of glyph-sized marks.
pub(crate) fn picture(w: u16, h: u16) -> Vec<u8> {
    let (w, h) = (usize::from(w), usize::from(h));
    let mut px = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * 4;
            let (mut r, mut g, mut b) = ((x * 255 / w) as u8, (y * 255 / h) as u8, 160u8);
            if (100..300).contains(&x) && (100..250).contains(&y) {
                (r, g, b) = (220, 40, 40);
            }
            if (450..750).contains(&x) && (300..550).contains(&y) {
                (r, g, b) = (245, 245, 245);
                // "Text": 6×10 marks in rows, like a page of glyphs.
                let (cx, cy) = ((x - 450) % 9, (y - 300) % 16);
                if cx < 6 && cy < 10 && ((x / 9 + y / 16) % 3 != 0) && (cx + cy) % 4 != 0 {
                    (r, g, b) = (20, 20, 30);
                }
            }
            px[i] = b;
            px[i + 1] = g;
            px[i + 2] = r;
        }
    }
    px
}

/// A full-screen window on the host's display showing [`picture`], with the keyboard focus,
/// recording every key and button event it receives.
pub(crate) struct Desk {
    conn: Arc<RustConnection>,
    window: Window,
    events: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Desk {
    pub(crate) fn open(display: &str) -> Self {
        Self::open_sized(display, W, H)
    }

    pub(crate) fn open_sized(display: &str, w: u16, h: u16) -> Self {
        let (conn, screen) = RustConnection::connect(Some(display)).unwrap();
        let root = conn.setup().roots[screen].root;
        let window = conn.generate_id().unwrap();
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root,
            0,
            0,
            w,
            h,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &CreateWindowAux::new().override_redirect(1).event_mask(
                EventMask::KEY_PRESS
                    | EventMask::KEY_RELEASE
                    | EventMask::BUTTON_PRESS
                    | EventMask::BUTTON_RELEASE,
            ),
        )
        .unwrap()
        .check()
        .unwrap();
        conn.map_window(window).unwrap().check().unwrap();
        let gc = conn.generate_id().unwrap();
        conn.create_gc(gc, window, &CreateGCAux::new()).unwrap();
        let px = picture(w, h);
        // In bands: one PutImage must fit the server's request size.
        let band = 40usize;
        for y0 in (0..usize::from(h)).step_by(band) {
            let rows = band.min(usize::from(h) - y0);
            let start = y0 * usize::from(w) * 4;
            conn.put_image(
                ImageFormat::Z_PIXMAP,
                window,
                gc,
                w,
                rows as u16,
                0,
                y0 as i16,
                0,
                24,
                &px[start..start + rows * usize::from(w) * 4],
            )
            .unwrap()
            .check()
            .unwrap();
        }
        // No window manager: take the focus ourselves.
        conn.set_input_focus(InputFocus::PARENT, window, x11rb::CURRENT_TIME)
            .unwrap()
            .check()
            .unwrap();
        let conn = Arc::new(conn);
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (conn, events, stop) = (conn.clone(), events.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    while let Ok(Some(e)) = conn.poll_for_event() {
                        events.lock().unwrap().push(e);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self {
            conn,
            window,
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// Writes `text` on the picture in the X server's built-in `fixed` font, black on white.
    pub(crate) fn show_text(&self, x: i16, y: i16, text: &str) {
        let font = self.conn.generate_id().unwrap();
        self.conn
            .open_font(font, b"fixed")
            .unwrap()
            .check()
            .unwrap();
        let gc = self.conn.generate_id().unwrap();
        let aux = CreateGCAux::new()
            .font(font)
            .foreground(0)
            .background(0x00ff_ffff);
        self.conn.create_gc(gc, self.window, &aux).unwrap();
        self.conn
            .image_text8(self.window, gc, x, y, text.as_bytes())
            .unwrap()
            .check()
            .unwrap();
    }

    /// The keysym a key event's keycode and modifiers type.
    pub(crate) fn keysym(&self, keycode: u8, state: KeyButMask) -> u32 {
        let map = self
            .conn
            .get_keyboard_mapping(keycode, 1)
            .unwrap()
            .reply()
            .unwrap();
        let col = usize::from(state.contains(KeyButMask::SHIFT));
        match map.keysyms.get(col).copied().unwrap_or(0) {
            0 => map.keysyms.first().copied().unwrap_or(0),
            k => k,
        }
    }

    /// Waits until `done` holds for the events so far.
    pub(crate) fn wait_events(
        &self,
        within: Duration,
        done: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + within;
        loop {
            let evs = self.events.lock().unwrap().clone();
            if done(&evs) || Instant::now() >= deadline {
                return evs;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The characters typed into the window (key presses, Shift applied).
    pub(crate) fn typed(&self) -> String {
        let evs = self.events.lock().unwrap().clone();
        evs.iter()
            .filter_map(|e| match e {
                Event::KeyPress(k) => char::from_u32(self.keysym(k.detail, k.state)),
                _ => None,
            })
            .filter(|c| !c.is_control() && (*c as u32) < 0x100)
            .collect()
    }

    pub(crate) fn input_events(&self) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::KeyPress(_)
                        | Event::KeyRelease(_)
                        | Event::ButtonPress(_)
                        | Event::ButtonRelease(_)
                )
            })
            .count()
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.conn.destroy_window(self.window);
    }
}

/// A host sharing `display` and a headless viewer connected to it with the host's code.
pub(crate) struct Pair {
    pub(crate) host: Proc,
    pub(crate) viewer: Proc,
    pub(crate) frames: PathBuf,
    dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Pair {
    /// The host's and the viewer's data directories.
    pub(crate) fn data_dirs(&self) -> [&std::path::Path; 2] {
        [self.dirs.0.path(), self.dirs.1.path()]
    }

    /// The host's and the viewer's session-key logs (written only when
    /// [`super::LOG_SESSION_KEYS`] is on).
    pub(crate) fn keylogs(&self) -> [PathBuf; 2] {
        [&self.dirs.0, &self.dirs.1].map(|d| d.path().join(super::KEYLOG_FILE))
    }
}

/// Starts `sealdesk host` on `display`, connects a headless viewer with its code, answers
/// the consent prompt with `answer`, and waits for the first decoded frame.
pub(crate) fn connect(server: &Server, display: &str, answer: &str) -> Pair {
    connect_with(server, display, answer, &[], &[])
}

/// [`connect`] with extra arguments for `sealdesk host` and `sealdesk connect`.
pub(crate) fn connect_with(
    server: &Server,
    display: &str,
    answer: &str,
    host_args: &[&str],
    viewer_args: &[&str],
) -> Pair {
    connect_in(
        (&server.url, &server.url),
        display,
        answer,
        (None, host_args),
        (None, viewer_args),
    )
}

/// [`connect_with`] for a host and a viewer each in a network namespace (`None`: this
/// one), each reaching the signaling server at its own URL of it.
pub(crate) fn connect_in(
    (host_url, viewer_url): (&str, &str),
    display: &str,
    answer: &str,
    (host_ns, host_args): (Option<&str>, &[&str]),
    (viewer_ns, viewer_args): (Option<&str>, &[&str]),
) -> Pair {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    connect_dirs(
        (host_url, viewer_url),
        display,
        answer,
        dirs,
        (host_ns, host_args),
        (viewer_ns, viewer_args),
    )
}

/// [`connect_in`] with the host's and the viewer's data directories made beforehand.
pub(crate) fn connect_dirs(
    (host_url, viewer_url): (&str, &str),
    display: &str,
    answer: &str,
    (hd, vd): (tempfile::TempDir, tempfile::TempDir),
    (host_ns, host_args): (Option<&str>, &[&str]),
    (viewer_ns, viewer_args): (Option<&str>, &[&str]),
) -> Pair {
    let mut cmd = sealdesk_in(host_ns, hd.path());
    cmd.args([
        "host",
        "--server",
        host_url,
        "--display",
        display,
        "--no-qr",
        "--label",
        "test host",
    ])
    .args(host_args);
    let mut host = Proc::spawn_interactive(cmd);
    let code = host.wait_line("code: ");
    let frames = vd.path().join("frames");
    let mut cmd = sealdesk_in(viewer_ns, vd.path());
    cmd.args(["connect", &code, "--server", viewer_url, "--headless"])
        .arg("--frames")
        .arg(&frames)
        .args(["--frame-interval", "100", "--label", "test viewer"])
        .args(viewer_args);
    let mut viewer = Proc::spawn_interactive(cmd);
    host.wait_line("Allow? ");
    assert!(
        host.output().contains("\"test viewer\" wants to"),
        "{}",
        host.output()
    );
    host.send(answer);
    viewer.wait_line("connected in ");
    viewer.wait_line("first frame ");
    Pair {
        host,
        viewer,
        frames,
        dirs: (hd, vd),
    }
}

/// The newest frame the viewer wrote once the picture stopped changing: no new frame for
/// 1.5 s, or a new one within 50 dB of the one before. (A still screen still gets a frame a
/// second from the host, and VP9's cyclic refresh goes on sharpening a few blocks in it.)
pub(crate) fn settled_frame(viewer: &mut Proc) -> PathBuf {
    let path_of = |line: &str| PathBuf::from(line.rsplit(' ').next().unwrap());
    let mut last = String::new();
    let mut since = Instant::now();
    let deadline = Instant::now() + WAIT;
    loop {
        let newest = viewer
            .lines()
            .into_iter()
            .rev()
            .find(|l| l.starts_with("frame "))
            .unwrap_or_default();
        if newest != last {
            if !last.is_empty() && since.elapsed() > Duration::from_millis(500) {
                let read = |l: &str| sealdesk_viewer::headless::read_png_rgb(&path_of(l));
                if let (Ok(a), Ok(b)) = (read(&last), read(&newest)) {
                    if (a.0, a.1) == (b.0, b.1) && psnr(&a.2, &b.2) >= 50.0 {
                        return path_of(&newest);
                    }
                }
            }
            (last, since) = (newest, Instant::now());
        } else if !last.is_empty() && since.elapsed() > Duration::from_millis(1500) {
            return path_of(&last);
        }
        assert!(Instant::now() < deadline, "{}", viewer.output());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PSNR in dB between two RGB images of the same size.
pub(crate) fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// The host's screen as RGB, straight from the X server.
pub(crate) fn screen_rgb(display: &str) -> (u32, u32, Vec<u8>) {
    let mut c = Capturer::connect(Some(display)).unwrap();
    let screen = c.screen();
    let frame = c.grab(screen).unwrap();
    let mut rgb = Vec::with_capacity((screen.width * screen.height * 3) as usize);
    for y in 0..screen.height {
        for x in 0..screen.width {
            let (r, g, b) = frame.rgb(x, y).unwrap();
            rgb.extend_from_slice(&[r, g, b]);
        }
    }
    (screen.width, screen.height, rgb)
}
