//! Control-channel message cost: [`ControlMessage::encode`] and [`ControlMessage::decode`] of
//! the messages a session carries most (input events) and of a clipboard message.
//!
//! `cargo bench -p sealdesk-proto --bench control` (add `-- --quick` for a smoke run).

#![allow(
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark stops at the first setup error; criterion's macros generate items"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sealdesk_proto::control::ControlMessage;

/// Short runs: the whole set of sealdesk benches should take minutes, not an hour.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// The messages measured, with their names.
fn messages() -> Vec<(&'static str, ControlMessage)> {
    // A clipboard message of 1 KiB of text (a paragraph): the common case, far below the limit.
    let paragraph: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(1024)
        .collect();
    vec![
        (
            "pointer_move",
            ControlMessage::PointerMove {
                monitor: 0,
                x: 1234,
                y: 567,
            },
        ),
        (
            "key",
            ControlMessage::Key {
                keysym: 0x0061,
                down: true,
            },
        ),
        ("wheel", ControlMessage::Wheel { dx: 0, dy: -120 }),
        (
            "pointer_button",
            ControlMessage::PointerButton {
                button: 1,
                down: true,
            },
        ),
        (
            "clipboard_1KiB",
            ControlMessage::Clipboard { text: paragraph },
        ),
    ]
}

fn control(c: &mut Criterion) {
    let mut group = c.benchmark_group("control");
    for (name, msg) in messages() {
        let bytes = msg.encode().expect("the message encodes");
        // Messages per second for input events; bytes per second for the clipboard.
        group.throughput(match msg {
            ControlMessage::Clipboard { .. } => Throughput::Bytes(bytes.len() as u64),
            _ => Throughput::Elements(1),
        });
        group.bench_with_input(BenchmarkId::new("decode", name), &bytes, |b, bytes| {
            b.iter(|| ControlMessage::decode(black_box(bytes)).expect("decodes"));
        });
        group.bench_with_input(BenchmarkId::new("encode", name), &msg, |b, msg| {
            b.iter(|| black_box(msg).encode().expect("encodes"));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = control
}
criterion_main!(benches);
