//! Capture costs on a 1920×1080 Xvfb: MIT-SHM grab (full screen and a small region), plain
//! `GetImage` for comparison, XDamage poll (idle and after a small drawing), cursor poll, and an
//! XTest key press+release. Run with `cargo bench -p sealdesk-media --bench capture`.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{fill, window, Xvfb};
use sealdesk_media::capture::Capturer;
use sealdesk_media::input::Injector;
use sealdesk_media::Rect;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, EventMask, ImageFormat};

/// p50 and p99 of `samples`, in milliseconds.
fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{name:<44} p50 {:>7.3} ms   p99 {:>7.3} ms   (n = {})",
        at(0.5),
        at(0.99),
        samples.len()
    );
}

fn time(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..n.min(10) {
        f()?;
    }
    (0..n)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed())
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let xvfb = Xvfb::start(1920, 1080)?;
    let (conn, root) = xvfb.client()?;
    let win = window(
        &conn,
        root,
        Rect::new(0, 0, 1920, 1080),
        0x30_3030,
        EventMask::NO_EVENT,
    )?;
    for i in 0..50u16 {
        let colour = 0x01_0203 * u32::from(i % 80);
        fill(
            &conn,
            win,
            colour,
            Rect::new(i32::from(i) * 38, 0, 30, 1080),
        )?;
    }
    let mut capturer = Capturer::connect(Some(&xvfb.display))?;
    let screen = capturer.screen();
    println!(
        "Xvfb {screen:?}, {} cores",
        std::thread::available_parallelism()?
    );

    report(
        "MIT-SHM grab 1920x1080",
        time(200, || {
            let frame = capturer.grab(screen)?;
            std::hint::black_box(frame.data().first());
            Ok(())
        })?,
    );
    report(
        "MIT-SHM grab 1920x1080 + copy out (to_vec)",
        time(200, || {
            let frame = capturer.grab(screen)?;
            std::hint::black_box(frame.data().to_vec());
            Ok(())
        })?,
    );
    report(
        "MIT-SHM grab 256x64 region",
        time(200, || {
            let frame = capturer.grab(Rect::new(800, 500, 256, 64))?;
            std::hint::black_box(frame.data().first());
            Ok(())
        })?,
    );
    report(
        "plain GetImage 1920x1080 (not used)",
        time(20, || {
            let reply = conn
                .get_image(ImageFormat::Z_PIXMAP, root, 0, 0, 1920, 1080, u32::MAX)?
                .reply()?;
            std::hint::black_box(reply.data.len());
            Ok(())
        })?,
    );
    let _ = capturer.poll_damage()?;
    report(
        "poll_damage, idle (returns nothing)",
        time(200, || {
            anyhow::ensure!(capturer.poll_damage()?.is_empty());
            Ok(())
        })?,
    );
    let mut samples = Vec::new();
    for i in 0..200 {
        let x = (i % 40) * 40;
        fill(&conn, win, 0xff_ffff, Rect::new(x, 500, 8, 16))?;
        let start = Instant::now();
        let damage = capturer.poll_damage()?;
        samples.push(start.elapsed());
        anyhow::ensure!(!damage.is_empty());
    }
    report("poll_damage after an 8x16 glyph-sized fill", samples);
    let _ = capturer.poll_cursor()?;
    report(
        "poll_cursor, shape unchanged",
        time(200, || {
            anyhow::ensure!(capturer.poll_cursor()?.shape.is_none());
            Ok(())
        })?,
    );
    let mut injector = Injector::connect(Some(&xvfb.display))?;
    report(
        "XTest key press + release (checked)",
        time(200, || {
            injector.key(0x61, true)?;
            injector.key(0x61, false)?;
            Ok(())
        })?,
    );
    conn.flush()?;
    Ok(())
}
