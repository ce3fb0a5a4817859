//! Headless output: decoded pictures written as PNG files, for tests and for machines with
//! no display.
//!
//! The decoder hands every picture to [`FrameWriter::offer`]; a writer thread saves the newest
//! one at most every `interval` (PNG encoding a 1080p picture costs tens of milliseconds, and
//! a session decodes up to 60 a second), so writing never slows decoding. Files are
//! `frame-NNNNNN.png` (the decoded picture's number), written to a temporary name and renamed,
//! so a reader never sees half a file, with mode 0600: they are screen content. A picture
//! identical to the last one written is not written again (a still screen still gets a frame
//! a second from the host, every block repeated).
//! [`FrameWriter::finish`] writes the last picture if it was not written yet.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::window::Picture;

/// A picture written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The decoded picture's number (from 1).
    pub index: u64,
    /// Where.
    pub path: PathBuf,
    /// Its width.
    pub width: u32,
    /// Its height.
    pub height: u32,
}

#[derive(Default)]
struct State {
    latest: Option<(u64, Picture)>,
    done: bool,
}

/// The PNG writer thread.
pub struct FrameWriter {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// Creates `dir` if needed and starts the writer; `written` hears of every file.
    pub fn start(
        dir: &Path,
        interval: Duration,
        mut written: impl FnMut(Written) + Send + 'static,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let s = shared.clone();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("sealdesk-frames".into())
            .spawn(move || {
                let mut last_write: Option<Instant> = None;
                let mut last_picture: Option<Picture> = None;
                loop {
                    let (index, picture, done) = {
                        let (lock, cv) = &*s;
                        let mut st = match lock.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        while st.latest.is_none() && !st.done {
                            st = match cv.wait(st) {
                                Ok(g) => g,
                                Err(p) => p.into_inner(),
                            };
                        }
                        match st.latest.take() {
                            Some((i, p)) => (i, p, st.done),
                            None => return,
                        }
                    };
                    if !done {
                        if let Some(t) = last_write {
                            let wait = interval.saturating_sub(t.elapsed());
                            if !wait.is_zero() {
                                // Put it back unless something newer came; sleep; look again.
                                let (lock, _) = &*s;
                                if let Ok(mut st) = lock.lock() {
                                    if st.latest.is_none() {
                                        st.latest = Some((index, picture));
                                    }
                                }
                                std::thread::sleep(wait);
                                continue;
                            }
                        }
                    }
                    if last_picture.as_ref().is_some_and(|l| {
                        (l.width, l.height) == (picture.width, picture.height)
                            && l.bgra == picture.bgra
                    }) {
                        if done {
                            return;
                        }
                        continue;
                    }
                    let path = dir.join(format!("frame-{index:06}.png"));
                    match write_png(&path, &picture) {
                        Ok(()) => written(Written {
                            index,
                            path,
                            width: picture.width,
                            height: picture.height,
                        }),
                        Err(e) => tracing::warn!(error = %e, path = %path.display(), "cannot write a frame"),
                    }
                    last_write = Some(Instant::now());
                    last_picture = Some(picture);
                    if done {
                        return;
                    }
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Offers picture number `index` (the newest replaces any not yet written).
    pub fn offer(&self, index: u64, picture: Picture) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut st) = lock.lock() {
            st.latest = Some((index, picture));
            cv.notify_one();
        }
    }

    /// Writes the last offered picture if it is still pending, and stops.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        {
            let (lock, cv) = &*self.shared;
            if let Ok(mut st) = lock.lock() {
                st.done = true;
                cv.notify_one();
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `picture` as an 8-bit RGB PNG at `path` (via a temporary file, mode 0600).
pub fn write_png(path: &Path, picture: &Picture) -> std::io::Result<()> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
    let pixels = usize::try_from(u64::from(picture.width) * u64::from(picture.height))
        .map_err(|_| invalid("picture too large"))?;
    if picture.bgra.len() != pixels * 4 || pixels == 0 {
        return Err(invalid("picture size does not match its pixels"));
    }
    let mut rgb = Vec::with_capacity(pixels * 3);
    for px in picture.bgra.chunks_exact(4) {
        if let [b, g, r, _] = *px {
            rgb.extend_from_slice(&[r, g, b]);
        }
    }
    let tmp = path.with_extension("png.tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let mut out = BufWriter::new(file);
    {
        let mut enc = png::Encoder::new(&mut out, picture.width, picture.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().map_err(std::io::Error::other)?;
        w.write_image_data(&rgb).map_err(std::io::Error::other)?;
        w.finish().map_err(std::io::Error::other)?;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)
}

/// Reads an 8-bit RGB or RGBA PNG back as (width, height, RGB bytes) — for tests and tools.
pub fn read_png_rgb(path: &Path) -> std::io::Result<(u32, u32, Vec<u8>)> {
    let file = std::fs::File::open(path)?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().map_err(std::io::Error::other)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| std::io::Error::other("PNG too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(std::io::Error::other)?;
    let data = buf.get(..info.buffer_size()).unwrap_or_default();
    let rgb = match info.color_type {
        png::ColorType::Rgb => data.to_vec(),
        png::ColorType::Rgba => data
            .chunks_exact(4)
            .flat_map(|p| p.iter().take(3).copied())
            .collect(),
        other => {
            return Err(std::io::Error::other(format!(
                "unsupported PNG colour type {other:?}"
            )))
        }
    };
    Ok((info.width, info.height, rgb))
}
