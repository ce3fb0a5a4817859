//! The peer `sealdesk bench session` compares against: x11vnc (Debian's) on the same Xvfb
//! display, read by a VNC client in this process (the `vnc-rs` crate) that keeps a
//! framebuffer, reads the same frame stamps ([`crate::stamp`]) from it and notes when, and
//! counts the bytes the server sent. x11vnc runs with its defaults plus what a local,
//! passwordless, scripted run needs; the client asks for Tight, ZRLE, CopyRect and Raw (as
//! common VNC viewers do) and keeps one incremental update request outstanding, renewed
//! every 2 ms, so that it is never the one waiting.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::stamp;

/// A running x11vnc, killed on drop.
pub(crate) struct X11vnc {
    child: std::process::Child,
    port: u16,
}

impl X11vnc {
    /// Whether x11vnc is installed (the bench leaves the peer out when it is not).
    pub(crate) fn available() -> bool {
        std::process::Command::new("x11vnc")
            .arg("-version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts x11vnc on `display`, listening on a free loopback port.
    pub(crate) async fn start(display: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new("x11vnc")
            .args([
                "-display",
                display,
                "-localhost",
                "-nopw",
                "-shared",
                "-forever",
            ])
            .args(["-quiet", "-noxrecord", "-nocursor", "-rfbport"])
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start x11vnc")?;
        let mut me = X11vnc { child, port };
        let until = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = me.child.try_wait()? {
                bail!("x11vnc exited before listening ({status})");
            }
            if Instant::now() > until {
                bail!("x11vnc did not listen on port {port} within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The probe above was a client too; let x11vnc drop it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(me)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for X11vnc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP stream that counts the bytes it reads.
struct Counting {
    inner: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let out = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        out
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The client's framebuffer: BGRA, as the pixel format it asked for.
struct Framebuffer {
    width: usize,
    height: usize,
    px: Vec<u8>,
}

impl Framebuffer {
    fn resize(&mut self, width: u16, height: u16) {
        self.width = usize::from(width);
        self.height = usize::from(height);
        self.px = vec![0; self.width * self.height * 4];
    }

    /// Whether `rect` lies inside the framebuffer.
    fn holds(&self, rect: &vnc::Rect) -> bool {
        usize::from(rect.x) + usize::from(rect.width) <= self.width
            && usize::from(rect.y) + usize::from(rect.height) <= self.height
    }

    /// Draws a rectangle of BGRA pixels; a rectangle that does not fit is an error.
    fn draw(&mut self, rect: &vnc::Rect, data: &[u8]) -> anyhow::Result<()> {
        let row = usize::from(rect.width) * 4;
        if !self.holds(rect) || data.len() < row * usize::from(rect.height) {
            bail!("the VNC server sent a rectangle {rect:?} that does not fit");
        }
        for (y, src) in data
            .chunks_exact(row.max(1))
            .take(usize::from(rect.height))
            .enumerate()
        {
            let at = ((usize::from(rect.y) + y) * self.width + usize::from(rect.x)) * 4;
            if let Some(dst) = self.px.get_mut(at..at + row) {
                dst.copy_from_slice(src);
            }
        }
        Ok(())
    }

    /// CopyRect: `dst` gets what `src` showed.
    fn copy(&mut self, dst: &vnc::Rect, src: &vnc::Rect) -> anyhow::Result<()> {
        let moved = vnc::Rect {
            x: src.x,
            y: src.y,
            width: dst.width,
            height: dst.height,
        };
        if !self.holds(dst) || !self.holds(&moved) {
            bail!("the VNC server sent a copy {src:?} -> {dst:?} that does not fit");
        }
        let row = usize::from(dst.width) * 4;
        let mut tmp = Vec::with_capacity(row * usize::from(dst.height));
        for y in 0..usize::from(dst.height) {
            let at = ((usize::from(src.y) + y) * self.width + usize::from(src.x)) * 4;
            tmp.extend_from_slice(self.px.get(at..at + row).unwrap_or(&[]));
        }
        self.draw(dst, &tmp)
    }

    /// Whether `rect` touches the stamp's row of cells.
    fn touches_stamp(rect: &vnc::Rect) -> bool {
        rect.y < stamp::CELL && rect.x < stamp::CELLS * stamp::CELL
    }
}

/// A VNC client reading stamps on a thread of its own.
pub(crate) struct Client {
    /// Stamp counter → when a framebuffer first showed it (wall ns).
    pub(crate) seen: Arc<Mutex<HashMap<u32, u64>>>,
    /// Bytes the server sent.
    pub(crate) bytes: Arc<AtomicU64>,
    /// Lossy (JPEG) rectangles, whose stamps this client does not read.
    pub(crate) jpeg_rects: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Client {
    pub(crate) fn connect(port: u16) -> Self {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let bytes = Arc::new(AtomicU64::new(0));
        let jpeg_rects = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, bytes, jpeg, stop) = (
                seen.clone(),
                bytes.clone(),
                jpeg_rects.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(client(port, seen, bytes, jpeg, stop))
            })
        };
        Client {
            seen,
            bytes,
            jpeg_rects,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the client; its error, if it failed.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the VNC client's thread panicked"),
            None => Ok(()),
        }
    }
}

async fn client(
    port: u16,
    seen: Arc<Mutex<HashMap<u32, u64>>>,
    bytes: Arc<AtomicU64>,
    jpeg: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let stream = Counting {
        inner: tcp,
        read: bytes,
    };
    let vnc = vnc::VncConnector::new(stream)
        .set_auth_method(async { Ok(String::new()) })
        .add_encoding(vnc::VncEncoding::Tight)
        .add_encoding(vnc::VncEncoding::Zrle)
        .add_encoding(vnc::VncEncoding::CopyRect)
        .add_encoding(vnc::VncEncoding::Raw)
        .allow_shared(true)
        .set_pixel_format(vnc::PixelFormat::bgra())
        .build()
        .map_err(|e| anyhow::anyhow!("VNC client: {e}"))?
        .try_start()
        .await
        .map_err(|e| anyhow::anyhow!("VNC handshake: {e}"))?
        .finish()
        .map_err(|e| anyhow::anyhow!("VNC client: {e}"))?;
    let mut fb = Framebuffer {
        width: 0,
        height: 0,
        px: Vec::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let event = tokio::select! {
            e = vnc.recv_event() => e,
            _ = tick.tick() => {
                if let Err(e) = vnc.input(vnc::X11Event::Refresh).await {
                    break Err(anyhow::anyhow!("VNC update request: {e}"));
                }
                continue;
            }
        };
        let touched = match event {
            Ok(vnc::VncEvent::SetResolution(s)) => {
                fb.resize(s.width, s.height);
                false
            }
            Ok(vnc::VncEvent::RawImage(rect, data)) => {
                if let Err(e) = fb.draw(&rect, &data) {
                    break Err(e);
                }
                Framebuffer::touches_stamp(&rect)
            }
            Ok(vnc::VncEvent::Copy(dst, src)) => {
                if let Err(e) = fb.copy(&dst, &src) {
                    break Err(e);
                }
                Framebuffer::touches_stamp(&dst)
            }
            Ok(vnc::VncEvent::JpegImage(..)) => {
                jpeg.fetch_add(1, Ordering::Relaxed);
                false
            }
            Ok(vnc::VncEvent::Error(e)) => break Err(anyhow::anyhow!("VNC: {e}")),
            Ok(_) => false,
            Err(e) => break Err(anyhow::anyhow!("VNC: {e}")),
        };
        if touched {
            let width = u32::try_from(fb.width).unwrap_or(0);
            if let Some(n) = stamp::read(&fb.px, width) {
                if let Ok(mut s) = seen.lock() {
                    s.entry(n).or_insert_with(stamp::clock_ns);
                }
            }
        }
    };
    let _ = vnc.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u16, y: u16, width: u16, height: u16) -> vnc::Rect {
        vnc::Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn rectangles_that_do_not_fit_are_refused_not_drawn() {
        let mut fb = Framebuffer {
            width: 0,
            height: 0,
            px: Vec::new(),
        };
        fb.resize(8, 4);
        assert!(fb.draw(&rect(6, 0, 4, 1), &[1; 16]).is_err());
        assert!(fb.draw(&rect(0, 0, 2, 2), &[1; 8]).is_err(), "short data");
        assert!(fb.copy(&rect(0, 0, 4, 4), &rect(6, 0, 4, 4)).is_err());
        assert!(fb.px.iter().all(|&b| b == 0));
    }

    #[test]
    fn draw_and_copy_put_pixels_where_the_server_said() {
        let mut fb = Framebuffer {
            width: 0,
            height: 0,
            px: Vec::new(),
        };
        fb.resize(8, 4);
        fb.draw(&rect(1, 1, 2, 1), &[9, 9, 9, 9, 7, 7, 7, 7])
            .unwrap();
        let at = |x: usize, y: usize| fb.px[(y * 8 + x) * 4];
        assert_eq!((at(1, 1), at(2, 1), at(3, 1)), (9, 7, 0));
        fb.copy(&rect(4, 3, 2, 1), &rect(1, 1, 2, 1)).unwrap();
        let at = |x: usize, y: usize| fb.px[(y * 8 + x) * 4];
        assert_eq!((at(4, 3), at(5, 3)), (9, 7));
    }
}
