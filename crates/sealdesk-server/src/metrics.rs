//! Counters exposed at `/metrics` in the Prometheus text format.
//!
//! A fixed set of atomics: no labels are built from input, so a client cannot grow
//! the metric set.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use sealdesk_proto::CloseReason;

/// Reasons a connection or request is refused, as metric labels.
pub(crate) const REJECTION_REASONS: &[&str] = &[
    "malformed",
    "binary_frame",
    "too_large",
    "unsupported_version",
    "auth_failed",
    "out_of_order",
    "slow_consumer",
    "registration_timeout",
    "idle_timeout",
    "server_error",
    "rate_limited_ip",
    "max_connections",
    "bad_host",
    "envelope_rate_limited",
    "peer_offline",
    "unknown_number",
    "peer_busy",
    "blob_auth_failed",
    "blob_bad_request",
    "blob_too_large",
    "blob_quota",
    "blob_busy",
];

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) registrations_total: AtomicU64,
    pub(crate) new_devices_total: AtomicU64,
    pub(crate) envelopes_routed_total: AtomicU64,
    pub(crate) envelope_bytes_total: AtomicU64,
    pub(crate) relay_credentials_total: AtomicU64,
    pub(crate) blobs_stored_total: AtomicU64,
    pub(crate) blob_bytes_stored_total: AtomicU64,
    pub(crate) blobs_deleted_total: AtomicU64,
    rejections: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            registrations_total: AtomicU64::new(0),
            new_devices_total: AtomicU64::new(0),
            envelopes_routed_total: AtomicU64::new(0),
            envelope_bytes_total: AtomicU64::new(0),
            relay_credentials_total: AtomicU64::new(0),
            blobs_stored_total: AtomicU64::new(0),
            blob_bytes_stored_total: AtomicU64::new(0),
            blobs_deleted_total: AtomicU64::new(0),
            rejections: REJECTION_REASONS
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Metrics {
    /// Counts a rejection; `reason` must be one of [`REJECTION_REASONS`].
    pub(crate) fn reject(&self, reason: &str) {
        if let Some(i) = REJECTION_REASONS.iter().position(|r| *r == reason) {
            if let Some(c) = self.rejections.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a close the server decided on, if it is a rejection.
    pub(crate) fn reject_close(&self, reason: CloseReason) {
        if !matches!(
            reason,
            CloseReason::Normal | CloseReason::GoingAway | CloseReason::Replaced
        ) {
            self.reject(reason.as_str());
        }
    }

    /// A rejection counter's value.
    pub fn rejections(&self, reason: &str) -> u64 {
        REJECTION_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.rejections.get(i))
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Successful registrations so far.
    pub fn registrations(&self) -> u64 {
        self.registrations_total.load(Ordering::Relaxed)
    }

    /// Envelopes forwarded so far.
    pub fn envelopes_routed(&self) -> u64 {
        self.envelopes_routed_total.load(Ordering::Relaxed)
    }

    /// Blobs stored (durably) since start.
    pub fn blobs_stored(&self) -> u64 {
        self.blobs_stored_total.load(Ordering::Relaxed)
    }

    /// Bytes of the blobs stored since start.
    pub fn blob_bytes_stored(&self) -> u64 {
        self.blob_bytes_stored_total.load(Ordering::Relaxed)
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the text exposition format.
    pub(crate) fn render(&self, devices_online: usize, devices_registered: usize) -> String {
        let mut s = String::with_capacity(2048);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        one(
            "sealdesk_connections",
            "gauge",
            "Open WebSocket connections.",
            load(&self.connections_open),
        );
        one(
            "sealdesk_connections_total",
            "counter",
            "WebSocket connections accepted.",
            load(&self.connections_total),
        );
        one(
            "sealdesk_devices_online",
            "gauge",
            "Registered devices connected now.",
            devices_online as u64,
        );
        one(
            "sealdesk_devices_registered",
            "gauge",
            "Device keys in the registry.",
            devices_registered as u64,
        );
        one(
            "sealdesk_registrations_total",
            "counter",
            "Successful registrations (durable).",
            load(&self.registrations_total),
        );
        one(
            "sealdesk_new_devices_total",
            "counter",
            "Registrations that created a routing number.",
            load(&self.new_devices_total),
        );
        one(
            "sealdesk_envelopes_routed_total",
            "counter",
            "Envelopes forwarded to an online device.",
            load(&self.envelopes_routed_total),
        );
        one(
            "sealdesk_envelope_bytes_total",
            "counter",
            "Body bytes of forwarded envelopes.",
            load(&self.envelope_bytes_total),
        );
        one(
            "sealdesk_relay_credentials_total",
            "counter",
            "TURN relay credentials issued to registered devices.",
            load(&self.relay_credentials_total),
        );
        one(
            "sealdesk_blobs_stored_total",
            "counter",
            "Blobs (recording segments) stored durably.",
            load(&self.blobs_stored_total),
        );
        one(
            "sealdesk_blob_bytes_stored_total",
            "counter",
            "Bytes of the blobs stored.",
            load(&self.blob_bytes_stored_total),
        );
        one(
            "sealdesk_blobs_deleted_total",
            "counter",
            "Blobs deleted by their owners.",
            load(&self.blobs_deleted_total),
        );
        let _ = writeln!(
            s,
            "# HELP sealdesk_rejections_total Connections closed or requests refused, by reason.\n# TYPE sealdesk_rejections_total counter"
        );
        for (reason, c) in REJECTION_REASONS.iter().zip(&self.rejections) {
            let _ = writeln!(
                s,
                "sealdesk_rejections_total{{reason=\"{reason}\"}} {}",
                load(c)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_that_is_a_rejection_has_a_label() {
        let m = Metrics::default();
        m.reject_close(CloseReason::Malformed);
        m.reject("not a reason");
        assert_eq!(m.rejections("malformed"), 1);
        let text = m.render(2, 3);
        assert!(text.contains("sealdesk_rejections_total{reason=\"malformed\"} 1"));
        assert!(text.contains("sealdesk_devices_online 2"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("sealdesk_"), "{line}");
        }
    }
}
