//! The capture pipeline on a still screen (real Xvfb, real libvpx): the first keyframe, its
//! refinements, and then one near-empty frame a second — never silence long enough for a
//! browser's receiver to ask for a keyframe (Chromium asks after 3 s without a frame), and
//! never another keyframe.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests fail by panicking and read the real clock"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sealdesk_host::pipeline::{Pipeline, PipelineConfig, PipelineOutput, HEARTBEAT};
use sealdesk_media::xvfb::Xvfb;

#[test]
fn a_still_screen_sends_a_tiny_frame_each_heartbeat_and_no_more_keyframes() {
    let xvfb = Xvfb::start(320, 240).unwrap();
    let frames: Arc<Mutex<Vec<(Instant, usize, bool)>>> = Arc::default();
    let sink = {
        let frames = frames.clone();
        move |out: PipelineOutput| {
            if let PipelineOutput::Frame { data, keyframe, .. } = out {
                frames
                    .lock()
                    .unwrap()
                    .push((Instant::now(), data.len(), keyframe));
            }
            true
        }
    };
    let config = PipelineConfig {
        display: Some(xvfb.display().to_owned()),
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(config, sink).unwrap();
    // The keyframe and its refinements are done well within 3 s (20 at most, 100 ms apart).
    std::thread::sleep(Duration::from_secs(3));
    let settled = Instant::now();
    std::thread::sleep(Duration::from_millis(4500));
    pipeline.stop().unwrap();
    let frames = frames.lock().unwrap().clone();
    assert_eq!(frames.iter().filter(|f| f.2).count(), 1, "{frames:?}");
    let still: Vec<_> = frames.iter().filter(|f| f.0 >= settled).collect();
    // One a second: 4 or 5 in 4.5 s.
    assert!((4..=5).contains(&still.len()), "{still:?}");
    for pair in still.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap < HEARTBEAT + Duration::from_millis(300), "{gap:?}");
    }
    assert!(still.iter().all(|f| f.1 < 200), "{still:?}");
}
