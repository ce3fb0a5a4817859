//! The viewer window on a real Xvfb with real XTest input: what it shows (captured with
//! MIT-SHM), what it sends back, and how it closes.
//!
//! winit opens one event loop per process on the display `$DISPLAY` names, so everything runs
//! in one `#[test]`; the user-closes-the-window path needs a window of its own and runs in a
//! child process (this same test binary, told by an environment variable).

use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use sealdesk_media::capture::Capturer;
use sealdesk_media::input::{Button, Injector, Scroll};
use sealdesk_media::xvfb::Xvfb;
use sealdesk_media::{Monitor, Rect};
use sealdesk_proto::control::ControlMessage;
use sealdesk_viewer::window::{
    self, CursorImage, FromWindow, Picture, ToWindow, WindowConfig, WindowError,
};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ClientMessageEvent, ConfigureWindowAux, ConnectionExt as _, EventMask, InputFocus,
    Window,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

/// Set in the child process that checks closing by the user.
const ROLE: &str = "SEALDESK_WINDOW_TEST_ROLE";
const TITLE: &str = "sealdesk — window test";
const CLOSE_TITLE: &str = "sealdesk — close test";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the test puts the window (no window manager: exactly there).
const WIN: Rect = Rect::new(40, 30, 960, 600);

const RED: (u8, u8, u8) = (255, 0, 0);
const GREEN: (u8, u8, u8) = (0, 255, 0);
const BLUE: (u8, u8, u8) = (0, 0, 255);
const WHITE: (u8, u8, u8) = (255, 255, 255);

const XK_A: u32 = 0x61;
const XK_B: u32 = 0x62;
const XK_B_UPPER: u32 = 0x42;
const XK_C: u32 = 0x63;
const XK_1: u32 = 0x31;
const XK_EXCLAM: u32 = 0x21;
const XK_SHIFT_L: u32 = 0xffe1;
const XK_CONTROL_L: u32 = 0xffe3;

#[test]
fn viewer_window_on_xvfb() -> anyhow::Result<()> {
    if std::env::var(ROLE).as_deref() == Ok("user-close") {
        return user_closes_the_window();
    }

    // No display: a clear error, and the process's one winit event loop is still unused.
    std::env::set_var("DISPLAY", ":65000");
    match window::open(config(TITLE), |_| {}) {
        Err(WindowError::NoDisplay { display, .. }) => assert_eq!(display, ":65000"),
        other => bail!("open without a display: {other:?}"),
    }

    let xvfb = Xvfb::start(1280, 800)?;
    std::env::set_var("DISPLAY", xvfb.display());
    let (tx, rx) = mpsc::channel();
    let mut window = Closer(Some(window::open(config(TITLE), move |event| {
        let _ = tx.send(event);
    })?));
    let handle = window.0.as_ref().ok_or_else(|| anyhow!("no handle"))?;
    let inbox = Inbox(rx);
    let (conn, root) = client(&xvfb)?;
    let win = find_window(&conn, root, TITLE)?;
    place(&conn, win, WIN)?;
    // Keyboard focus on the viewer from the start: without a window manager the focus
    // otherwise follows the pointer, and the pointer tests would move it.
    focus(&conn, win)?;
    inbox.quiet()?;
    let mut capturer = Capturer::connect(Some(xvfb.display()))?;

    // Before any picture: all bars.
    expect_screen(&mut capturer, &[((500, 330), Dark)])?;

    // 16:9 into 16:10: bars top and bottom, picture 1.5× (960×540 at window y 30). Many
    // frames in a burst: the newest wins and nothing queues up behind.
    let started = Instant::now();
    for i in 0..60u8 {
        handle.send(ToWindow::Frame(solid(640, 360, [i, i, i, 255])))?;
    }
    handle.send(ToWindow::Frame(quadrants(640, 360)))?;
    let (ox, oy) = (WIN.x as u32, WIN.y as u32);
    expect_screen(
        &mut capturer,
        &[
            ((ox + 240, oy + 30 + 135), Is(RED)),
            ((ox + 720, oy + 30 + 135), Is(GREEN)),
            ((ox + 240, oy + 30 + 405), Is(BLUE)),
            ((ox + 720, oy + 30 + 405), Is(WHITE)),
            // The quadrant edges sit where the fit puts them (±2 px of filtering).
            ((ox + 477, oy + 100), Is(RED)),
            ((ox + 483, oy + 100), Is(GREEN)),
            ((ox + 100, oy + 30 + 267), Is(RED)),
            ((ox + 100, oy + 30 + 273), Is(BLUE)),
            // Bars.
            ((ox + 500, oy + 10), Dark),
            ((ox + 500, oy + 27), Dark),
            ((ox + 500, oy + 590), Dark),
        ],
    )?;
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "61 frames took {:?} to settle",
        started.elapsed()
    );

    // The stats line: light text on a dark box, bottom-left.
    handle.send(ToWindow::Stats("60 fps · 180 kbps · rtt 2 ms".into()))?;
    let text_area = Rect::new(WIN.x + 4, WIN.y + 600 - 20, 300, 20);
    wait_until(|| {
        let frame = capturer.grab(text_area)?;
        let lit = (0..text_area.width)
            .flat_map(|x| (0..text_area.height).map(move |y| (x, y)))
            .filter(|&(x, y)| frame.rgb(x, y) == Some((240, 240, 240)))
            .count();
        Ok((lit > 40)
            .then_some(())
            .ok_or_else(|| anyhow!("{lit} text pixels")))
    })
    .context("stats overlay")?;
    // An empty line removes it.
    handle.send(ToWindow::Stats(String::new()))?;
    expect_screen(&mut capturer, &[((ox + 40, oy + 590), Dark)])?;

    // 4:3 into 16:10: bars left and right, picture 2× (800×600 at window x 80).
    handle.send(ToWindow::Frame(quadrants(400, 300)))?;
    expect_screen(
        &mut capturer,
        &[
            ((ox + 80 + 200, oy + 150), Is(RED)),
            ((ox + 80 + 600, oy + 150), Is(GREEN)),
            ((ox + 80 + 200, oy + 450), Is(BLUE)),
            ((ox + 80 + 600, oy + 450), Is(WHITE)),
            ((ox + 40, oy + 300), Dark),
            ((ox + 77, oy + 300), Dark),
            ((ox + 920, oy + 300), Dark),
        ],
    )?;

    // Odd input does not kill the window: empty, 1-pixel, odd-sized and malformed frames,
    // huge and broken cursors, then a resize storm down to 1×1 and back.
    for picture in [
        Picture {
            width: 0,
            height: 0,
            bgra: vec![],
        },
        Picture {
            width: 1,
            height: 1,
            bgra: vec![9, 9, 9, 9],
        },
        solid(3, 7, [1, 2, 3, 4]),
        solid(1, 4000, [1, 2, 3, 4]),
        Picture {
            width: 5,
            height: 5,
            bgra: vec![0; 99],
        },
        Picture {
            width: u32::MAX,
            height: u32::MAX,
            bgra: vec![],
        },
    ] {
        handle.send(ToWindow::Frame(picture))?;
    }
    for cursor in [
        CursorImage {
            width: 5000,
            height: 5000,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![255; 5000 * 5000 * 4],
        },
        CursorImage {
            width: 4,
            height: 4,
            hot_x: 99,
            hot_y: 99,
            rgba: vec![1; 3],
        },
        CursorImage {
            width: 0,
            height: 0,
            hot_x: 0,
            hot_y: 0,
            rgba: vec![],
        },
        CursorImage {
            width: 1000,
            height: 3,
            hot_x: 999,
            hot_y: 2,
            rgba: vec![200; 1000 * 3 * 4],
        },
    ] {
        handle.send(ToWindow::Cursor(Some(cursor)))?;
    }
    for (i, size) in (1u32..40).chain([1, 1, 1, 2]).enumerate() {
        let w = (size * 37) % 1200 + 1;
        let h = if i % 3 == 0 { 1 } else { (size * 53) % 780 + 1 };
        conn.configure_window(win, &ConfigureWindowAux::new().width(w).height(h))?;
    }
    conn.flush()?;
    place(&conn, win, WIN)?;
    handle.send(ToWindow::Frame(quadrants(400, 300)))?;
    expect_screen(
        &mut capturer,
        &[
            ((ox + 80 + 200, oy + 150), Is(RED)),
            ((ox + 80 + 600, oy + 450), Is(WHITE)),
            ((ox + 40, oy + 300), Dark),
        ],
    )?;
    ensure!(!handle.is_closed(), "the window closed on odd input");
    inbox.quiet()?;

    // Pointer: window position → picture pixel (2× here, picture at window x 80), on the
    // monitor the session says.
    let mut injector = Injector::connect(Some(xvfb.display()))?;
    let screen = screen_monitor(&injector)?;
    handle.send(ToWindow::Monitor { index: 3 })?;
    // winit may handle X events queued at the same wake-up before this message.
    std::thread::sleep(Duration::from_millis(100));
    for (px, py) in [(100u32, 50u32), (0, 0), (399, 299), (123, 234), (250, 7)] {
        let (sx, sy) = (WIN.x + 80 + 2 * px as i32 + 1, WIN.y + 2 * py as i32 + 1);
        injector.move_pointer(&screen, sx, sy)?;
        let (m, x, y) = inbox.last_move()?;
        assert_eq!(m, 3);
        assert!(
            x.abs_diff(px as u16) <= 1 && y.abs_diff(py as u16) <= 1,
            "pointer at picture ({px}, {py}) arrived as ({x}, {y})"
        );
    }
    // Over the left bar: clamped to the picture's left edge.
    injector.move_pointer(&screen, WIN.x + 20, WIN.y + 300)?;
    let (_, x, y) = inbox.last_move()?;
    assert!(
        x == 0 && y.abs_diff(150) <= 1,
        "bar position became ({x}, {y})"
    );
    handle.send(ToWindow::Monitor { index: 0 })?;
    std::thread::sleep(Duration::from_millis(100));
    injector.move_pointer(&screen, WIN.x + 80 + 201, WIN.y + 201)?;
    assert_eq!(inbox.last_move()?, (0, 100, 100));

    // Buttons 1, 2, 3 through the injector, 8 and 9 (back, forward) through XTest directly.
    for button in [Button::Left, Button::Middle, Button::Right] {
        injector.button(button, true)?;
        injector.button(button, false)?;
        let n = button.number();
        inbox.expect_exactly(&[button_msg(n, true), button_msg(n, false)])?;
    }
    for n in [8u8, 9] {
        fake_button(&conn, root, n, true)?;
        fake_button(&conn, root, n, false)?;
        inbox.expect_exactly(&[button_msg(n, true), button_msg(n, false)])?;
    }

    // Wheel: one notch is 120, positive dy is down, positive dx is right.
    for (scroll, dx, dy) in [
        (Scroll::Down, 0, 120),
        (Scroll::Up, 0, -120),
        (Scroll::Right, 120, 0),
        (Scroll::Left, -120, 0),
    ] {
        injector.scroll(scroll, 1)?;
        inbox.expect_exactly(&[ControlMessage::Wheel { dx, dy }])?;
    }

    // Keys: press and release agree; modifiers are keys of their own; Shift+b is Shift_L
    // and b, Shift+1 is Shift_L and 1 (the key without modifiers).
    injector.key(XK_A, true)?;
    injector.key(XK_A, false)?;
    inbox.expect_exactly(&[key(XK_A, true), key(XK_A, false)])?;
    injector.key(XK_B_UPPER, true)?;
    injector.key(XK_B_UPPER, false)?;
    inbox.expect_exactly(&[
        key(XK_SHIFT_L, true),
        key(XK_B, true),
        key(XK_B, false),
        key(XK_SHIFT_L, false),
    ])?;
    injector.key(XK_EXCLAM, true)?;
    injector.key(XK_EXCLAM, false)?;
    inbox.expect_exactly(&[
        key(XK_SHIFT_L, true),
        key(XK_1, true),
        key(XK_1, false),
        key(XK_SHIFT_L, false),
    ])?;
    injector.key(XK_CONTROL_L, true)?;
    injector.key(XK_C, true)?;
    injector.key(XK_C, false)?;
    injector.key(XK_CONTROL_L, false)?;
    inbox.expect_exactly(&[
        key(XK_CONTROL_L, true),
        key(XK_C, true),
        key(XK_C, false),
        key(XK_CONTROL_L, false),
    ])?;
    // The viewer's shortcut, Ctrl+Alt+Shift+→: the modifiers go to the host as keys, the
    // arrow does not — it asks for the next monitor instead.
    for (down, sym) in [
        (true, XK_CONTROL_L),
        (true, 0xffe9),
        (true, XK_SHIFT_L),
        (true, 0xff53),
    ] {
        injector.key(sym, down)?;
    }
    let (sent, switch) = inbox.until_switch()?;
    assert_eq!(switch, FromWindow::SwitchMonitor { forward: true });
    assert_eq!(
        sent,
        [
            key(XK_CONTROL_L, true),
            key(0xffe9, true),
            key(XK_SHIFT_L, true)
        ]
    );
    injector.key(0xff53, false)?;
    for sym in [XK_SHIFT_L, 0xffe9, XK_CONTROL_L] {
        injector.key(sym, false)?;
    }
    inbox.expect_exactly(&[
        key(XK_SHIFT_L, false),
        key(0xffe9, false),
        key(XK_CONTROL_L, false),
    ])?;
    // Named keys: Return, BackSpace, Tab, Escape, F5, Left, Home, Delete, Alt_L, Shift_R.
    for sym in [
        0xff0d, 0xff08, 0xff09, 0xff1b, 0xffc2, 0xff51, 0xff50, 0xffff, 0xffe9, 0xffe2,
    ] {
        injector.key(sym, true)?;
        injector.key(sym, false)?;
        inbox.expect_exactly(&[key(sym, true), key(sym, false)])?;
    }

    // Focus moves away while a key and a button are held: ReleaseAll, and the release that
    // follows outside the window is not sent.
    injector.key(XK_A, true)?;
    injector.button(Button::Left, true)?;
    inbox.expect_exactly(&[key(XK_A, true), button_msg(1, true)])?;
    injector.button(Button::Left, false)?;
    inbox.expect_exactly(&[button_msg(1, false)])?;
    conn.set_input_focus(InputFocus::NONE, x11rb::NONE, x11rb::CURRENT_TIME)?
        .check()?;
    inbox.expect_exactly(&[ControlMessage::ReleaseAll])?;
    injector.key(XK_A, false)?;
    inbox.expect_exactly(&[])?;
    // Back in focus, typing works again.
    focus(&conn, win)?;
    injector.key(XK_A, true)?;
    injector.key(XK_A, false)?;
    inbox.expect_exactly(&[key(XK_A, true), key(XK_A, false)])?;

    // The remote cursor becomes the local pointer's shape, scaled with the picture (2×).
    // First back to the default (the last odd cursor above was valid: 1000×3, shown 256×1).
    injector.move_pointer(&screen, WIN.x + 300, WIN.y + 300)?;
    handle.send(ToWindow::Cursor(None))?;
    let arrow = wait_until(|| {
        let s = capturer.cursor_shape()?;
        Ok(ok_if(s.width != 256, s))
    })
    .context("default cursor first")?;
    let magenta = CursorImage {
        width: 12,
        height: 10,
        hot_x: 3,
        hot_y: 4,
        rgba: [255, 0, 255, 255].repeat(120),
    };
    handle.send(ToWindow::Cursor(Some(magenta)))?;
    let shape = wait_until(|| {
        let s = capturer.cursor_shape()?;
        Ok(ok_if((s.width, s.height) == (24, 20), s))
    })
    .context("custom cursor")?;
    assert_eq!(
        (shape.width, shape.height, shape.hot_x, shape.hot_y),
        (24, 20, 6, 8)
    );
    let centre = shape.argb[(10 * shape.width + 12) as usize];
    assert_eq!(centre, 0xffff_00ff, "cursor pixel {centre:#010x}");
    // The host's own pointer, moved at the host: drawn into the picture where it is, as long
    // as it is away from the local pointer (which shows the same shape itself).
    injector.move_pointer(&screen, WIN.x + 80 + 2 * 50, WIN.y + 2 * 50)?;
    let _ = inbox.last_move()?;
    handle.send(ToWindow::CursorAt { x: 300, y: 200 })?;
    // Picture (300, 200) is window (80 + 601, 401); the 12×10 sprite, 2×, hotspot (3, 4) → its
    // centre lands 6 px right and 2 px down of the hotspot.
    let (cx, cy) = (ox + 80 + 601 + 6, oy + 401 + 2);
    expect_screen(&mut capturer, &[((cx, cy), Is((255, 0, 255)))])?;
    // Where the local pointer is, the host's pointer is not drawn a second time.
    handle.send(ToWindow::CursorAt { x: 50, y: 50 })?;
    expect_screen(&mut capturer, &[((cx, cy), Is(WHITE))])?;
    // None goes back to the default arrow.
    handle.send(ToWindow::Cursor(None))?;
    wait_until(|| {
        let s = capturer.cursor_shape()?;
        let back = (s.width, s.height, s.hot_x, s.hot_y)
            == (arrow.width, arrow.height, arrow.hot_x, arrow.hot_y)
            && s.argb == arrow.argb;
        Ok(back.then_some(()).ok_or_else(|| anyhow!("cursor {s:?}")))
    })
    .context("default cursor")?;

    // The session ends: the window closes and join returns; it is gone from the screen.
    let handle = window.0.take().ok_or_else(|| anyhow!("no handle"))?;
    handle.send(ToWindow::Close)?;
    handle.join()?;
    wait_until(|| {
        let gone = !top_level_titles(&conn, root)?.iter().any(|t| t == TITLE);
        Ok(gone
            .then_some(())
            .ok_or_else(|| anyhow!("window still mapped")))
    })?;

    // The user closes a window (in a process of its own: one winit event loop per process).
    let status = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "viewer_window_on_xvfb",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "user-close")
        .env("DISPLAY", xvfb.display())
        // Its harness's summary lines would look like a second run of this test.
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "user-close child: {status}");
    Ok(())
}

/// Closes the window and waits for it when a check fails, before the Xvfb goes away
/// (Xlib ends the process when its server disappears under a running window).
struct Closer(Option<window::WindowHandle>);

impl Drop for Closer {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.send(ToWindow::Close);
            let _ = handle.join();
        }
    }
}

/// Child process: the window manager's close button (WM_DELETE_WINDOW) ends the window with
/// ReleaseAll then Closed, and `join` returns.
fn user_closes_the_window() -> anyhow::Result<()> {
    let display = std::env::var("DISPLAY")?;
    let (tx, rx) = mpsc::channel();
    let handle = window::open(config(CLOSE_TITLE), move |event| {
        let _ = tx.send(event);
    })?;
    let (conn, screen) = RustConnection::connect(Some(&display))?;
    let root = conn.setup().roots[screen].root;
    let win = find_window(&conn, root, CLOSE_TITLE)?;
    let protocols = conn.intern_atom(false, b"WM_PROTOCOLS")?.reply()?.atom;
    let delete = conn.intern_atom(false, b"WM_DELETE_WINDOW")?.reply()?.atom;
    let message = ClientMessageEvent::new(32, win, protocols, [delete, 0, 0, 0, 0]);
    conn.send_event(false, win, EventMask::NO_EVENT, message)?
        .check()?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while !seen.contains(&FromWindow::Closed) {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.push(
            rx.recv_timeout(left)
                .with_context(|| format!("after {seen:?}"))?,
        );
    }
    // The last two: everything released, then closed (focus events may add ReleaseAlls).
    let n = seen.len();
    ensure!(
        n >= 2 && seen[n - 2] == FromWindow::Control(ControlMessage::ReleaseAll),
        "{seen:?}"
    );
    handle.join()?;
    Ok(())
}

/// `Ok(v)` if `cond`, else an error showing `v`.
fn ok_if<T: std::fmt::Debug>(cond: bool, v: T) -> anyhow::Result<T> {
    if cond {
        Ok(v)
    } else {
        Err(anyhow!("not yet: {v:?}"))
    }
}

fn config(title: &str) -> WindowConfig {
    WindowConfig {
        title: title.to_owned(),
    }
}

/// A picture in four solid quadrants: red, green / blue, white.
fn quadrants(w: u32, h: u32) -> Picture {
    let mut bgra = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let (r, g, b) = match (x < w / 2, y < h / 2) {
                (true, true) => RED,
                (false, true) => GREEN,
                (true, false) => BLUE,
                (false, false) => WHITE,
            };
            bgra.extend_from_slice(&[b, g, r, 255]);
        }
    }
    Picture {
        width: w,
        height: h,
        bgra,
    }
}

fn solid(w: u32, h: u32, bgra: [u8; 4]) -> Picture {
    Picture {
        width: w,
        height: h,
        bgra: bgra.repeat((w * h) as usize),
    }
}

fn button_msg(button: u8, down: bool) -> ControlMessage {
    ControlMessage::PointerButton { button, down }
}

fn key(keysym: u32, down: bool) -> ControlMessage {
    ControlMessage::Key { keysym, down }
}

/// What a screen pixel should be.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// This colour, ±8 per channel.
    Is((u8, u8, u8)),
    /// A letterbox bar: every channel under 0x30.
    Dark,
}
use Want::{Dark, Is};

impl Want {
    fn matches(self, got: (u8, u8, u8)) -> bool {
        match self {
            Is((r, g, b)) => {
                got.0.abs_diff(r) <= 8 && got.1.abs_diff(g) <= 8 && got.2.abs_diff(b) <= 8
            }
            Dark => got.0 < 0x30 && got.1 < 0x30 && got.2 < 0x30,
        }
    }
}

/// Grabs the screen until every listed pixel is as wanted (the window draws asynchronously).
fn expect_screen(capturer: &mut Capturer, wants: &[((u32, u32), Want)]) -> anyhow::Result<()> {
    let screen = capturer.screen();
    wait_until(|| {
        let frame = capturer.grab(screen)?;
        let wrong: Vec<_> = wants
            .iter()
            .filter_map(|&((x, y), want)| {
                let got = frame.rgb(x, y)?;
                (!want.matches(got)).then_some(((x, y), want, got))
            })
            .collect();
        Ok(wrong
            .is_empty()
            .then_some(())
            .ok_or_else(|| anyhow!("wrong pixels (at, wanted, got): {wrong:?}")))
    })
}

/// Calls `check` until it returns `Ok(Ok(v))` or [`TIMEOUT`] passes (then the last
/// complaint is the error); `Err` from `check` itself stops at once.
fn wait_until<T>(
    mut check: impl FnMut() -> anyhow::Result<anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match check()? {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The window's messages, as the test sees them.
struct Inbox(Receiver<FromWindow>);

impl Inbox {
    /// Everything that arrives until nothing has for `quiet_for`.
    fn settle(&self, quiet_for: Duration) -> anyhow::Result<Vec<ControlMessage>> {
        let mut out = Vec::new();
        while let Ok(event) = self.0.recv_timeout(quiet_for) {
            match event {
                FromWindow::Control(m) => out.push(m),
                other => bail!("unexpected {other:?} after {out:?}"),
            }
        }
        Ok(out)
    }

    /// The control messages before the next [`FromWindow::SwitchMonitor`], and it.
    fn until_switch(&self) -> anyhow::Result<(Vec<ControlMessage>, FromWindow)> {
        let mut sent = Vec::new();
        loop {
            match self.0.recv_timeout(TIMEOUT)? {
                FromWindow::Control(m) => sent.push(m),
                other @ FromWindow::SwitchMonitor { .. } => return Ok((sent, other)),
                other => bail!("unexpected {other:?} after {sent:?}"),
            }
        }
    }

    /// Drops whatever is pending.
    fn quiet(&self) -> anyhow::Result<()> {
        self.settle(Duration::from_millis(300)).map(drop)
    }

    /// Exactly these messages, in this order, arrive next (and then nothing for a moment).
    fn expect_exactly(&self, want: &[ControlMessage]) -> anyhow::Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        let mut got = Vec::new();
        while got.len() < want.len() && Instant::now() < deadline {
            got.extend(self.settle(Duration::from_millis(100))?);
        }
        got.extend(self.settle(Duration::from_millis(150))?);
        ensure!(got == want, "wanted {want:?}, got {got:?}");
        Ok(())
    }

    /// The last pointer move once the moves stop (and nothing else came).
    fn last_move(&self) -> anyhow::Result<(u8, u16, u16)> {
        let deadline = Instant::now() + TIMEOUT;
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            got.extend(self.settle(Duration::from_millis(100))?);
        }
        got.extend(self.settle(Duration::from_millis(150))?);
        let mut last = None;
        for m in &got {
            match *m {
                ControlMessage::PointerMove { monitor, x, y } => last = Some((monitor, x, y)),
                ref other => bail!("unexpected {other:?} among moves {got:?}"),
            }
        }
        last.ok_or_else(|| anyhow!("no pointer move arrived"))
    }
}

fn client(xvfb: &Xvfb) -> anyhow::Result<(RustConnection, Window)> {
    let (conn, screen) = RustConnection::connect(Some(xvfb.display()))?;
    let root = conn.setup().roots[screen].root;
    Ok((conn, root))
}

fn screen_monitor(injector: &Injector) -> anyhow::Result<Monitor> {
    injector
        .monitors()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no monitor"))
}

/// Titles (`_NET_WM_NAME`, else `WM_NAME`) of the mapped top-level windows.
fn top_level_titles(conn: &RustConnection, root: Window) -> anyhow::Result<Vec<String>> {
    Ok(top_levels(conn, root)?
        .into_iter()
        .map(|(_, t)| t)
        .collect())
}

fn top_levels(conn: &RustConnection, root: Window) -> anyhow::Result<Vec<(Window, String)>> {
    let net_wm_name = conn.intern_atom(false, b"_NET_WM_NAME")?.reply()?.atom;
    let utf8 = conn.intern_atom(false, b"UTF8_STRING")?.reply()?.atom;
    let mut out = Vec::new();
    for win in conn.query_tree(root)?.reply()?.children {
        let Ok(attrs) = conn.get_window_attributes(win)?.reply() else {
            continue;
        };
        if attrs.map_state != x11rb::protocol::xproto::MapState::VIEWABLE {
            continue;
        }
        let mut name = conn
            .get_property(false, win, net_wm_name, utf8, 0, 1024)?
            .reply()?
            .value;
        if name.is_empty() {
            name = conn
                .get_property(false, win, AtomEnum::WM_NAME, AtomEnum::STRING, 0, 1024)?
                .reply()?
                .value;
        }
        out.push((win, String::from_utf8_lossy(&name).into_owned()));
    }
    Ok(out)
}

/// The mapped top-level window titled `title`.
fn find_window(conn: &RustConnection, root: Window, title: &str) -> anyhow::Result<Window> {
    wait_until(|| {
        let found = top_levels(conn, root)?
            .into_iter()
            .find(|(_, t)| t == title)
            .map(|(w, _)| w);
        Ok(found.ok_or_else(|| anyhow!("no mapped window titled {title:?}")))
    })
}

/// Moves and resizes `win` to `rect` (root coordinates) and waits until it is there.
fn place(conn: &RustConnection, win: Window, rect: Rect) -> anyhow::Result<()> {
    conn.configure_window(
        win,
        &ConfigureWindowAux::new()
            .x(rect.x)
            .y(rect.y)
            .width(rect.width)
            .height(rect.height),
    )?
    .check()?;
    wait_until(|| {
        let g = conn.get_geometry(win)?.reply()?;
        let at = (
            i32::from(g.x),
            i32::from(g.y),
            u32::from(g.width),
            u32::from(g.height),
        );
        let want = (rect.x, rect.y, rect.width, rect.height);
        Ok((at == want)
            .then_some(())
            .ok_or_else(|| anyhow!("window at {at:?}, not {want:?}")))
    })
}

/// Gives `win` the keyboard focus (no window manager does) and lets the viewer notice.
fn focus(conn: &RustConnection, win: Window) -> anyhow::Result<()> {
    conn.set_input_focus(InputFocus::PARENT, win, x11rb::CURRENT_TIME)?
        .check()?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// Presses or releases pointer button `n` with XTest.
fn fake_button(conn: &RustConnection, root: Window, n: u8, down: bool) -> anyhow::Result<()> {
    // X core event codes: ButtonPress 4, ButtonRelease 5.
    let kind = if down { 4 } else { 5 };
    conn.xtest_fake_input(kind, n, x11rb::CURRENT_TIME, root, 0, 0, 0)?
        .check()?;
    Ok(())
}
