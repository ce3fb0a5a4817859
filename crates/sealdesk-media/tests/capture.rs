//! Capture against a real Xvfb: exact pixels via MIT-SHM, XDamage rectangles, monitors, cursor.

mod common;

use common::{fill, sync, window, Xvfb};
use sealdesk_media::capture::{CaptureError, Capturer, PixelFormat};
use sealdesk_media::input::Injector;
use sealdesk_media::Rect;
use x11rb::connection::Connection;
use x11rb::protocol::randr::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{ChangeWindowAttributesAux, ConnectionExt as _, EventMask};

const RED: u32 = 0xff_0000;
const GREEN: u32 = 0x00_ff00;
const BLUE: u32 = 0x00_00ff;
const GREY: u32 = 0x12_3456;
const BLACK: (u8, u8, u8) = (0, 0, 0);

fn rgb(pixel: u32) -> (u8, u8, u8) {
    let [_, r, g, b] = pixel.to_be_bytes();
    (r, g, b)
}

/// The test picture: a window at (100, 50), 400×300, grey, with a red, a green and a blue
/// rectangle; the root around it is black (`-br`).
const WINDOW: Rect = Rect::new(100, 50, 400, 300);

fn draw_picture(xvfb: &Xvfb) -> anyhow::Result<(x11rb::rust_connection::RustConnection, u32)> {
    let (conn, root) = xvfb.client()?;
    let win = window(&conn, root, WINDOW, GREY, EventMask::NO_EVENT)?;
    fill(&conn, win, RED, Rect::new(0, 0, 100, 100))?;
    fill(&conn, win, GREEN, Rect::new(300, 200, 100, 100))?;
    fill(&conn, win, BLUE, Rect::new(150, 120, 1, 1))?;
    Ok((conn, win))
}

#[test]
fn grab_returns_exact_pixels_of_a_known_picture() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let (_conn, _win) = draw_picture(&xvfb)?;

    let monitors = capturer.monitors()?;
    assert!(!monitors.is_empty());
    assert_eq!(capturer.screen(), Rect::new(0, 0, 1280, 720));

    let frame = capturer.grab(capturer.screen())?;
    assert_eq!((frame.width(), frame.height()), (1280, 720));
    assert_eq!(frame.stride(), 1280 * 4);
    assert_eq!(frame.data().len(), 1280 * 4 * 720);
    assert_eq!(frame.format(), PixelFormat::Bgrx);
    // Inside the window, screen coordinates = window coordinates + (100, 50).
    assert_eq!(frame.rgb(100, 50), Some(rgb(RED)));
    assert_eq!(frame.rgb(199, 149), Some(rgb(RED)));
    assert_eq!(frame.rgb(200, 149), Some(rgb(GREY)));
    assert_eq!(frame.rgb(250, 170), Some(rgb(BLUE)));
    assert_eq!(frame.rgb(251, 170), Some(rgb(GREY)));
    assert_eq!(frame.rgb(499, 349), Some(rgb(GREEN)));
    assert_eq!(frame.rgb(400, 250), Some(rgb(GREEN)));
    assert_eq!(frame.rgb(399, 250), Some(rgb(GREY)));
    // Outside the window: the black root.
    for (x, y) in [(0, 0), (99, 50), (500, 349), (499, 350), (1279, 719)] {
        assert_eq!(frame.rgb(x, y), Some(BLACK), "root at ({x}, {y})");
    }
    // Raw bytes are B, G, R, X.
    let offset = 50 * frame.stride() + 100 * 4;
    assert_eq!(&frame.data()[offset..offset + 3], &[0x00, 0x00, 0xff]);
    assert_eq!(frame.rgb(1280, 0), None);

    // A sub-region: coordinates are relative to the region, stride is its own.
    let frame = capturer.grab(Rect::new(240, 160, 20, 20))?;
    assert_eq!(frame.stride(), 20 * 4);
    assert_eq!(frame.data().len(), 20 * 4 * 20);
    assert_eq!(frame.rgb(10, 10), Some(rgb(BLUE)));
    assert_eq!(frame.rgb(0, 0), Some(rgb(GREY)));
    Ok(())
}

#[test]
fn grab_outside_the_screen_is_an_error() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(640, 480)?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    for region in [
        Rect::new(600, 0, 41, 10),
        Rect::new(-1, 0, 10, 10),
        Rect::new(0, 0, 0, 10),
    ] {
        match capturer.grab(region) {
            Err(CaptureError::InvalidRegion { region: r, screen }) => {
                assert_eq!(r, region);
                assert_eq!(screen, Rect::new(0, 0, 640, 480));
            }
            other => anyhow::bail!("grab({region:?}) gave {other:?}"),
        }
    }
    // The capturer is still usable.
    assert_eq!(
        capturer.grab(Rect::new(600, 0, 40, 10))?.rgb(0, 0),
        Some(BLACK)
    );
    Ok(())
}

fn covers(rects: &[Rect], x: i64, y: i64) -> bool {
    rects.iter().any(|r| r.contains_point(x, y))
}

#[test]
fn damage_reports_drawing_and_nothing_when_idle() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    // The server marks a new damage object's window wholly damaged: the first poll is the
    // whole screen (the host's cue for a full first frame), then nothing until something draws.
    assert_eq!(capturer.poll_damage()?, vec![Rect::new(0, 0, 1280, 720)]);
    assert_eq!(capturer.poll_damage()?, vec![]);

    let (conn, win) = draw_picture(&xvfb)?;
    let damage = capturer.poll_damage()?;
    assert!(!damage.is_empty());
    // Every pixel of the window is covered (sampled every 10 px plus the far edges)...
    for x in (WINDOW.x..WINDOW.x + 400)
        .step_by(10)
        .chain([WINDOW.x + 399])
    {
        for y in (WINDOW.y..WINDOW.y + 300)
            .step_by(10)
            .chain([WINDOW.y + 299])
        {
            assert!(
                covers(&damage, x.into(), y.into()),
                "({x}, {y}) not in {damage:?}"
            );
        }
    }
    // ...and nothing far outside it.
    assert!(!covers(&damage, 1000, 600), "{damage:?}");
    assert!(!covers(&damage, 0, 0), "{damage:?}");

    // Idle: nothing changed, nothing reported (twice, and after a capture).
    assert_eq!(capturer.poll_damage()?, vec![]);
    let _ = capturer.grab(capturer.screen())?;
    assert_eq!(capturer.poll_damage()?, vec![]);

    // Positive control: a small drawing yields exactly its area.
    fill(&conn, win, BLUE, Rect::new(10, 20, 30, 40))?;
    sync(&conn)?;
    let damage = capturer.poll_damage()?;
    let small = Rect::new(110, 70, 30, 40);
    assert!(
        damage.iter().all(|r| small.contains(r)),
        "{damage:?} outside {small:?}"
    );
    assert!(
        covers(&damage, 110, 70) && covers(&damage, 139, 109),
        "{damage:?}"
    );
    assert_eq!(capturer.poll_damage()?, vec![]);
    Ok(())
}

/// RandR 1.5 lets a client define monitors (`xrandr --setmonitor`); Xvfb accepts monitors
/// without outputs, so the test splits its 1280×720 screen into LEFT and RIGHT halves.
#[test]
fn grab_of_the_second_monitor_returns_its_region() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1280, 720)?;
    let (conn, root) = xvfb.client()?;
    conn.randr_query_version(1, 5)?.reply()?;
    for (name, x) in [("LEFT", 0), ("RIGHT", 640)] {
        let atom = conn.intern_atom(false, name.as_bytes())?.reply()?.atom;
        conn.randr_set_monitor(
            root,
            randr::MonitorInfo {
                name: atom,
                primary: x == 0,
                automatic: false,
                x,
                y: 0,
                width: 640,
                height: 720,
                width_in_millimeters: 0,
                height_in_millimeters: 0,
                outputs: vec![],
            },
        )?
        .check()?;
    }
    let win = window(
        &conn,
        root,
        Rect::new(700, 100, 100, 100),
        GREEN,
        EventMask::NO_EVENT,
    )?;
    fill(&conn, win, RED, Rect::new(0, 0, 10, 10))?;

    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let monitors = capturer.monitors()?;
    let by_name = |name: &str| monitors.iter().find(|m| m.name == name).cloned();
    let left = by_name("LEFT").ok_or_else(|| anyhow::anyhow!("no LEFT in {monitors:?}"))?;
    let right = by_name("RIGHT").ok_or_else(|| anyhow::anyhow!("no RIGHT in {monitors:?}"))?;
    assert_eq!(left.rect, Rect::new(0, 0, 640, 720));
    assert!(left.primary);
    assert_eq!(right.rect, Rect::new(640, 0, 640, 720));
    assert!(!right.primary);

    let frame = capturer.grab(right.rect)?;
    assert_eq!((frame.width(), frame.height()), (640, 720));
    assert_eq!(frame.rgb(60, 100), Some(rgb(RED)));
    assert_eq!(frame.rgb(70, 110), Some(rgb(GREEN)));
    assert_eq!(frame.rgb(159, 199), Some(rgb(GREEN)));
    assert_eq!(frame.rgb(59, 100), Some(BLACK));
    assert_eq!(frame.rgb(0, 0), Some(BLACK));
    let frame = capturer.grab(left.rect)?;
    assert!(
        (0..640).all(|x| frame.rgb(x, 150) == Some(BLACK)),
        "LEFT is all root"
    );
    Ok(())
}

#[test]
fn xvfb_single_output_is_one_monitor_covering_the_screen() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(800, 600)?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let monitors = capturer.monitors()?;
    // Xvfb's RandR reports one automatic monitor for its one output.
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    assert_eq!(monitors[0].rect, Rect::new(0, 0, 800, 600));
    assert_ne!(
        monitors[0].name, "root",
        "came from RandR, not the fallback"
    );
    Ok(())
}

#[test]
fn without_randr_the_root_is_the_single_monitor() -> anyhow::Result<()> {
    let xvfb = Xvfb::start_with(800, 600, &["-extension", "RANDR"])?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let monitors = capturer.monitors()?;
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    assert_eq!(monitors[0].name, "root");
    assert!(monitors[0].primary);
    assert_eq!(monitors[0].rect, Rect::new(0, 0, 800, 600));
    assert_eq!(capturer.grab(monitors[0].rect)?.rgb(799, 599), Some(BLACK));
    Ok(())
}

#[test]
fn cursor_shape_is_reported_once_per_change() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(640, 480)?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let first = capturer.poll_cursor()?;
    let shape = first
        .shape
        .ok_or_else(|| anyhow::anyhow!("first poll has no shape"))?;
    assert!(shape.width > 0 && shape.height > 0);
    assert_eq!(shape.argb.len(), (shape.width * shape.height) as usize);
    assert_eq!(first.serial, shape.serial);
    // Xvfb starts the pointer in the middle of the screen.
    assert_eq!((first.x, first.y), (320, 240));

    let again = capturer.poll_cursor()?;
    assert_eq!(again.shape, None);
    assert_eq!(again.serial, first.serial);

    // Another client changes the root window's cursor (the pointer is over the root).
    let (conn, root) = xvfb.client()?;
    let font = conn.generate_id()?;
    conn.open_font(font, b"cursor")?.check()?;
    let cursor = conn.generate_id()?;
    // XC_hand2 = 60 in the cursor font; its mask glyph is the next one.
    conn.create_glyph_cursor(cursor, font, font, 60, 61, 0, 0, 0, 0xffff, 0xffff, 0xffff)?
        .check()?;
    conn.change_window_attributes(root, &ChangeWindowAttributesAux::new().cursor(cursor))?
        .check()?;
    sync(&conn)?;

    let changed = capturer.poll_cursor()?;
    let new_shape = changed
        .shape
        .ok_or_else(|| anyhow::anyhow!("cursor change not reported"))?;
    assert_ne!(new_shape.serial, shape.serial);
    assert_ne!(new_shape.argb, shape.argb);
    assert_eq!(capturer.poll_cursor()?.shape, None);
    // cursor_shape() always fetches.
    assert_eq!(capturer.cursor_shape()?.serial, new_shape.serial);
    conn.flush()?;
    Ok(())
}

/// The cursor travels separately (`poll_cursor`): moving it must not damage the screen (no
/// re-encode for pointer motion) and frames must not contain it.
#[test]
fn pointer_motion_causes_no_damage_and_frames_exclude_the_cursor() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(640, 480)?;
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let mut injector = Injector::connect(Some(&xvfb.display))?;
    let monitor = capturer
        .monitors()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no monitor"))?;
    let _ = capturer.poll_damage()?;
    let _ = capturer.poll_cursor()?;

    injector.move_pointer(&monitor, 100, 100)?;
    let cursor = capturer.poll_cursor()?;
    assert_eq!((cursor.x, cursor.y, cursor.shape), (100, 100, None));
    assert_eq!(capturer.poll_damage()?, vec![]);
    let frame = capturer.grab(Rect::new(90, 90, 30, 30))?;
    for y in 0..30 {
        for x in 0..30 {
            assert_eq!(frame.rgb(x, y), Some(BLACK), "cursor pixel at ({x}, {y})");
        }
    }
    Ok(())
}
