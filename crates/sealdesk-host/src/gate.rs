//! The permission gate between the control channel and the machine (DESIGN.md §5:
//! "Permissions are enforced on the host at the point where an event is injected").
//!
//! Every message from the viewer passes [`Gate::check`]. Input needs `input`, clipboard
//! needs `clipboard`; choosing a monitor or asking for a keyframe needs `view`. Refused
//! events are counted, and the viewer is told the running count at most every
//! [`REFUSAL_NOTICE_INTERVAL`] so a view-only viewer learns why nothing happens without the
//! host flooding it. Sans-IO: time is an argument.

use std::time::{Duration, Instant};

use sealdesk_auth::trust::Permissions;
use sealdesk_proto::control::ControlMessage;

/// The least time between two refusal notices to the viewer.
pub const REFUSAL_NOTICE_INTERVAL: Duration = Duration::from_millis(500);

/// What to do with a message from the viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Act on it (inject, set the clipboard, switch monitor, …).
    Allow,
    /// Do not act on it. `notice`, if any, is the [`ControlMessage::InputRefused`] to send.
    Refuse {
        /// A notice to send to the viewer now.
        notice: Option<ControlMessage>,
    },
    /// Not something a viewer may send at all (e.g. a `Permissions` or `MonitorLayout`
    /// message, which only the host sends): ignore it.
    Ignore,
}

/// The gate for one session.
#[derive(Debug)]
pub struct Gate {
    permissions: Permissions,
    refused: u32,
    last_notice: Option<Instant>,
}

impl Gate {
    /// A gate for a session granted `permissions`.
    pub fn new(permissions: Permissions) -> Self {
        Self {
            permissions,
            refused: 0,
            last_notice: None,
        }
    }

    /// The permissions in force.
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    /// Changes the permissions mid-session (e.g. the host user made it view-only).
    pub fn set_permissions(&mut self, permissions: Permissions) {
        self.permissions = permissions;
    }

    /// How many events were refused so far.
    pub fn refused(&self) -> u32 {
        self.refused
    }

    /// Decides about one message from the viewer at `now`.
    pub fn check(&mut self, now: Instant, msg: &ControlMessage) -> Verdict {
        let needed = match msg {
            m if m.is_input() => Permissions::INPUT,
            // Releasing keys is always allowed: it can only undo input.
            ControlMessage::ReleaseAll => return Verdict::Allow,
            ControlMessage::Clipboard { .. } => Permissions::CLIPBOARD,
            ControlMessage::SelectMonitor { .. } | ControlMessage::RequestKeyframe => {
                Permissions::VIEW
            }
            ControlMessage::Hello { .. }
            | ControlMessage::Ping { .. }
            | ControlMessage::Pong { .. }
            | ControlMessage::Stats { .. }
            | ControlMessage::End { .. } => return Verdict::Allow,
            _ => return Verdict::Ignore,
        };
        if self.permissions.contains(needed) {
            return Verdict::Allow;
        }
        self.refused = self.refused.saturating_add(1);
        let due = self
            .last_notice
            .is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_NOTICE_INTERVAL);
        let notice = due.then(|| {
            self.last_notice = Some(now);
            ControlMessage::InputRefused {
                count: self.refused,
            }
        });
        Verdict::Refuse { notice }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(
        clippy::disallowed_methods,
        reason = "a test needs some real Instant to offset from"
    )]
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn view_only_refuses_input_and_clipboard_and_says_so_at_a_bounded_rate() {
        let t = t0();
        let mut g = Gate::new(Permissions::VIEW);
        let key = ControlMessage::Key {
            keysym: 0x61,
            down: true,
        };
        assert_eq!(
            g.check(t, &key),
            Verdict::Refuse {
                notice: Some(ControlMessage::InputRefused { count: 1 })
            }
        );
        // Within the interval: refused, no new notice.
        assert_eq!(
            g.check(
                t + Duration::from_millis(10),
                &ControlMessage::Wheel { dx: 0, dy: 120 }
            ),
            Verdict::Refuse { notice: None }
        );
        assert_eq!(
            g.check(
                t + Duration::from_millis(20),
                &ControlMessage::Clipboard { text: "x".into() }
            ),
            Verdict::Refuse { notice: None }
        );
        assert_eq!(
            g.check(t + REFUSAL_NOTICE_INTERVAL, &key),
            Verdict::Refuse {
                notice: Some(ControlMessage::InputRefused { count: 4 })
            }
        );
        assert_eq!(g.refused(), 4);
        // Viewing still works, and releasing keys is always allowed.
        assert_eq!(g.check(t, &ControlMessage::RequestKeyframe), Verdict::Allow);
        assert_eq!(
            g.check(t, &ControlMessage::SelectMonitor { index: 1 }),
            Verdict::Allow
        );
        assert_eq!(g.check(t, &ControlMessage::ReleaseAll), Verdict::Allow);
    }

    #[test]
    fn granted_permissions_allow_and_host_only_messages_are_ignored() {
        let t = t0();
        let mut g = Gate::new(Permissions::DEFAULT_PAIRED);
        for m in [
            ControlMessage::PointerMove {
                monitor: 0,
                x: 1,
                y: 2,
            },
            ControlMessage::PointerButton {
                button: 1,
                down: true,
            },
            ControlMessage::Key {
                keysym: 0x61,
                down: false,
            },
            ControlMessage::Clipboard { text: "hi".into() },
        ] {
            assert_eq!(g.check(t, &m), Verdict::Allow, "{m:?}");
        }
        assert_eq!(
            g.check(t, &ControlMessage::Permissions { bits: 63 }),
            Verdict::Ignore
        );
        assert_eq!(
            g.check(
                t,
                &ControlMessage::MonitorLayout {
                    monitors: vec![],
                    active: 0
                }
            ),
            Verdict::Ignore
        );
        assert_eq!(
            g.check(t, &ControlMessage::InputRefused { count: 0 }),
            Verdict::Ignore
        );
        // Taking input away mid-session takes effect at once.
        g.set_permissions(Permissions::VIEW);
        assert!(matches!(
            g.check(
                t,
                &ControlMessage::Key {
                    keysym: 0x61,
                    down: true
                }
            ),
            Verdict::Refuse { .. }
        ));
    }
}
