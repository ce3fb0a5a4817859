//! XTest injection against a real Xvfb: another client's window receives the events.

mod common;

use std::time::Duration;

use common::{drain, wait_for, window, Xvfb};
use sealdesk_media::input::{Button, Injector, InputError, Scroll};
use sealdesk_media::{Monitor, Rect};
use x11rb::connection::Connection;
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ConnectionExt as _, EventMask, InputFocus, KeyButMask, Window};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

const XK_A_LOWER: u32 = 0x61;
const XK_B_LOWER: u32 = 0x62;
const XK_B_UPPER: u32 = 0x42;
const XK_Z_UPPER: u32 = 0x5a;
const XK_1: u32 = 0x31;
const XK_SHIFT_L: u32 = 0xffe1;

/// A 640×480 window at (50, 40) that selects pointer and key events and has the input focus
/// (no window manager would give it one).
fn focused_window(xvfb: &Xvfb) -> anyhow::Result<(RustConnection, Window)> {
    let (conn, root) = xvfb.client()?;
    let events = EventMask::KEY_PRESS
        | EventMask::KEY_RELEASE
        | EventMask::BUTTON_PRESS
        | EventMask::BUTTON_RELEASE
        | EventMask::POINTER_MOTION;
    let win = window(&conn, root, Rect::new(50, 40, 640, 480), 0x20_2020, events)?;
    conn.set_input_focus(InputFocus::POINTER_ROOT, win, x11rb::CURRENT_TIME)?
        .check()?;
    common::sync(&conn)?;
    Ok((conn, win))
}

/// Keysym of `keycode` at the Shift level given by `state`, from the client's own mapping (what
/// an application reading the event would see).
fn keysym(conn: &RustConnection, keycode: u8, state: KeyButMask) -> anyhow::Result<u32> {
    let map = conn.get_keyboard_mapping(keycode, 1)?.reply()?;
    let plain = map.keysyms.first().copied().unwrap_or(0);
    let shifted = map.keysyms.get(1).copied().unwrap_or(0);
    // Core protocol rule: a NoSymbol Shift level repeats the plain one (Shift_L stays Shift_L).
    Ok(if state.contains(KeyButMask::SHIFT) && shifted != 0 {
        shifted
    } else {
        plain
    })
}

/// (press?, keysym, shift held?) for every key event that arrives.
fn key_events(conn: &RustConnection) -> anyhow::Result<Vec<(bool, u32, bool)>> {
    let mut out = Vec::new();
    for event in drain(conn, Duration::from_millis(100))? {
        let (press, code, state) = match event {
            Event::KeyPress(e) => (true, e.detail, e.state),
            Event::KeyRelease(e) => (false, e.detail, e.state),
            _ => continue,
        };
        let shift = state.contains(KeyButMask::SHIFT);
        out.push((press, keysym(conn, code, state)?, shift));
    }
    Ok(out)
}

fn screen_monitor(injector: &Injector) -> anyhow::Result<Monitor> {
    injector
        .monitors()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no monitor"))
}

#[test]
fn motion_and_clicks_reach_the_window() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let (conn, _win) = focused_window(&xvfb)?;
    let mut injector = Injector::connect(Some(&xvfb.display))?;
    let monitor = screen_monitor(&injector)?;

    injector.move_pointer(&monitor, 150, 140)?;
    let (x, y) = wait_for(&conn, |e| match e {
        Event::MotionNotify(m) => Some((m.event_x, m.event_y, m.root_x, m.root_y)),
        _ => None,
    })
    .map(|(ex, ey, rx, ry)| {
        assert_eq!((rx, ry), (150, 140), "root coordinates");
        (ex, ey)
    })?;
    assert_eq!((x, y), (100, 100), "window coordinates");

    injector.button(Button::Left, true)?;
    assert_eq!(injector.held_buttons(), vec![Button::Left]);
    injector.button(Button::Left, false)?;
    assert_eq!(injector.held_buttons(), vec![]);
    injector.button(Button::Right, true)?;
    injector.button(Button::Right, false)?;
    injector.scroll(Scroll::Down, 2)?;
    // Releasing a button that is not held sends nothing.
    injector.button(Button::Middle, false)?;

    let buttons: Vec<(bool, u8, i16, i16)> = drain(&conn, Duration::from_millis(100))?
        .into_iter()
        .filter_map(|e| match e {
            Event::ButtonPress(b) => Some((true, b.detail, b.event_x, b.event_y)),
            Event::ButtonRelease(b) => Some((false, b.detail, b.event_x, b.event_y)),
            _ => None,
        })
        .collect();
    let at = |press, button| (press, button, 100, 100);
    assert_eq!(
        buttons,
        vec![
            at(true, 1),
            at(false, 1),
            at(true, 3),
            at(false, 3),
            at(true, 5),
            at(false, 5),
            at(true, 5),
            at(false, 5),
        ]
    );

    // Coordinates beyond the monitor are clamped to its edge.
    injector.move_pointer(&monitor, 5000, -20)?;
    let pointer = conn.query_pointer(conn.setup().roots[0].root)?.reply()?;
    assert_eq!((pointer.root_x, pointer.root_y), (1279, 0));
    Ok(())
}

#[test]
fn typing_a_uppercase_z_and_1_arrives_with_shift_only_on_z() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let (conn, _win) = focused_window(&xvfb)?;
    let mut injector = Injector::connect(Some(&xvfb.display))?;

    for keysym in [XK_A_LOWER, XK_Z_UPPER, XK_1] {
        injector.key(keysym, true)?;
        injector.key(keysym, false)?;
    }
    assert_eq!(injector.held_keysyms(), vec![]);
    assert_eq!(
        key_events(&conn)?,
        vec![
            (true, XK_A_LOWER, false),
            (false, XK_A_LOWER, false),
            (true, XK_SHIFT_L, false),
            (true, XK_Z_UPPER, true),
            (false, XK_Z_UPPER, true),
            (false, XK_SHIFT_L, true),
            (true, XK_1, false),
            (false, XK_1, false),
        ]
    );

    // Keysyms the layout has no key for (Cyrillic Zhe, a Unicode keysym; the euro sign) are
    // typed on spare keycodes, which the receiving client reads as those keysyms …
    const ZHE: u32 = 0x100_0416;
    const EURO: u32 = 0x20ac;
    for sym in [ZHE, EURO, ZHE] {
        injector.key(sym, true)?;
        injector.key(sym, false)?;
    }
    assert_eq!(
        key_events(&conn)?,
        vec![
            (true, ZHE, false),
            (false, ZHE, false),
            (true, EURO, false),
            (false, EURO, false),
            (true, ZHE, false),
            (false, ZHE, false),
        ]
    );
    // … and a value that is no keysym at all is an error: nothing sent or held.
    match injector.key(0x2000_0000, true) {
        Err(InputError::NoKeycode { keysym }) => assert_eq!(keysym, 0x2000_0000),
        other => anyhow::bail!("unexpected {other:?}"),
    }
    assert_eq!(injector.held_keysyms(), vec![]);
    assert_eq!(key_events(&conn)?, vec![]);
    // The borrowed keycodes are given back when the injector goes.
    drop(injector);
    let setup = conn.setup();
    let (min, max) = (setup.min_keycode, setup.max_keycode);
    let map = conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
    assert!(!map.keysyms.contains(&ZHE), "Zhe is still mapped");
    Ok(())
}

#[test]
fn release_all_releases_what_the_peer_left_pressed() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let (conn, _win) = focused_window(&xvfb)?;
    let mut injector = Injector::connect(Some(&xvfb.display))?;
    let monitor = screen_monitor(&injector)?;
    injector.move_pointer(&monitor, 100, 100)?;

    injector.key(XK_B_LOWER, true)?;
    injector.key(XK_Z_UPPER, true)?;
    injector.button(Button::Middle, true)?;
    assert_eq!(injector.held_keysyms(), vec![XK_B_LOWER, XK_Z_UPPER]);
    let pressed = key_events(&conn)?;
    assert_eq!(
        pressed,
        vec![
            (true, XK_B_LOWER, false),
            (true, XK_SHIFT_L, false),
            (true, XK_Z_UPPER, true)
        ]
    );

    injector.release_all()?;
    assert_eq!(injector.held_keysyms(), vec![]);
    assert_eq!(injector.held_buttons(), vec![]);
    let released = key_events(&conn)?;
    assert_eq!(
        released,
        vec![
            (false, XK_Z_UPPER, true),
            // b is released while Shift is still down, so it reads as B.
            (false, XK_B_UPPER, true),
            (false, XK_SHIFT_L, true)
        ]
    );
    let root = conn.setup().roots[0].root;
    let pointer = conn.query_pointer(root)?.reply()?;
    assert!(
        !pointer.mask.contains(KeyButMask::BUTTON2),
        "middle button still down: {:?}",
        pointer.mask
    );
    assert!(!pointer.mask.contains(KeyButMask::SHIFT));
    Ok(())
}

#[test]
fn dropping_the_injector_releases_held_keys() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let (conn, _win) = focused_window(&xvfb)?;
    {
        let mut injector = Injector::connect(Some(&xvfb.display))?;
        injector.key(XK_A_LOWER, true)?;
    }
    assert_eq!(
        key_events(&conn)?,
        vec![(true, XK_A_LOWER, false), (false, XK_A_LOWER, false)]
    );
    Ok(())
}

#[test]
fn pointer_motion_is_offset_by_the_monitor() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let (conn, root) = xvfb.client()?;
    conn.randr_query_version(1, 5)?.reply()?;
    let atom = conn.intern_atom(false, b"RIGHT")?.reply()?.atom;
    conn.randr_set_monitor(
        root,
        randr::MonitorInfo {
            name: atom,
            primary: false,
            automatic: false,
            x: 640,
            y: 100,
            width: 640,
            height: 620,
            width_in_millimeters: 0,
            height_in_millimeters: 0,
            outputs: vec![],
        },
    )?
    .check()?;
    let mut injector = Injector::connect(Some(&xvfb.display))?;
    let right = injector
        .monitors()?
        .into_iter()
        .find(|m| m.name == "RIGHT")
        .ok_or_else(|| anyhow::anyhow!("RIGHT monitor missing"))?;
    injector.move_pointer(&right, 10, 20)?;
    let pointer = conn.query_pointer(root)?.reply()?;
    assert_eq!((pointer.root_x, pointer.root_y), (650, 120));
    // Clamped to the monitor, not the screen.
    injector.move_pointer(&right, -5, -5)?;
    let pointer = conn.query_pointer(root)?.reply()?;
    assert_eq!((pointer.root_x, pointer.root_y), (640, 100));
    Ok(())
}
