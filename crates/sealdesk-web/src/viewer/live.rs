//! The running session: the control channel both ways, and input from the page mapped to
//! the host's terms. Only once both certificates are checked ([`super::Phase::Live`]).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sealdesk_auth::code::Elapsed;
use sealdesk_auth::sealed::SealedSignaling;
use sealdesk_auth::trust::Permissions;
use sealdesk_proto::control::ControlMessage;

use super::{b64, sanitize, Attempt, Phase, WebViewer, MAX_EARLY_CONTROL, WHEEL_PIXELS_PER_NOTCH};
use crate::api::{MonitorInfo, Output};
use crate::keys::Held;

/// A running session.
pub(super) struct Live {
    pub(super) attempt: Attempt,
    pub(super) sealed: SealedSignaling,
    pub(super) permissions: Permissions,
    pub(super) held: Held,
    pub(super) active_monitor: u8,
    pub(super) last_pointer: Option<(u16, u16)>,
    pub(super) last_heard: Elapsed,
    pub(super) next_ping: Elapsed,
    pub(super) ping_id: u32,
    pub(super) rtt: Option<Duration>,
    pub(super) path: Option<&'static str>,
    pub(super) fps: f64,
    pub(super) kbps: f64,
}

impl WebViewer {
    pub(super) fn live(&mut self) -> Option<&mut Live> {
        match &mut self.phase {
            Phase::Live(l) => Some(l),
            _ => None,
        }
    }

    /// Sends a control message, once the certificates are checked (never before).
    pub(super) fn control(&mut self, msg: ControlMessage) {
        if self.live().is_none() {
            return;
        }
        match msg.encode() {
            Ok(bytes) => self.out.push_back(Output::Control { data: b64(&bytes) }),
            Err(e) => self.out.push_back(Output::Warning {
                text: format!("not sent: {e}"),
            }),
        }
    }

    pub(super) fn on_control_bytes(&mut self, data: &str) {
        let Ok(bytes) = B64.decode(data) else {
            return;
        };
        match &mut self.phase {
            Phase::Live(_) => self.on_control(&bytes),
            Phase::AwaitDtls(s) | Phase::AwaitAnswer(s) if s.early.len() < MAX_EARLY_CONTROL => {
                s.early.push(bytes);
            }
            _ => {}
        }
    }

    pub(super) fn on_control(&mut self, bytes: &[u8]) {
        let now = self.now;
        let Some(live) = self.live() else {
            return;
        };
        live.last_heard = now;
        let Ok(msg) = ControlMessage::decode(bytes) else {
            return; // malformed or from a later version: dropped, never a panic
        };
        match msg {
            ControlMessage::Ping { id, sent_micros } => {
                self.control(ControlMessage::Pong { id, sent_micros });
            }
            ControlMessage::Pong { sent_micros, .. } => {
                let sent = Duration::from_micros(sent_micros);
                let rtt = now.0.saturating_sub(sent);
                if rtt < Duration::from_secs(60) {
                    live.rtt = Some(rtt);
                }
            }
            ControlMessage::MonitorLayout { monitors, active } => {
                live.active_monitor = active;
                live.last_pointer = None;
                self.out.push_back(Output::Monitors {
                    monitors: monitors
                        .iter()
                        .map(|m| MonitorInfo {
                            x: m.x,
                            y: m.y,
                            width: m.width,
                            height: m.height,
                            primary: m.primary,
                        })
                        .collect(),
                    active,
                });
            }
            ControlMessage::Permissions { bits } => {
                let p = Permissions::from_bits_truncate(bits);
                live.permissions = p;
                self.out.push_back(Output::Permissions {
                    permissions: p.bits(),
                    allowed: p.to_string(),
                });
            }
            ControlMessage::InputRefused { count } => {
                self.out.push_back(Output::InputRefused { count })
            }
            ControlMessage::Clipboard { text } => self.out.push_back(Output::Clipboard { text }),
            ControlMessage::Cursor { x, y } => self.out.push_back(Output::Cursor { x, y }),
            ControlMessage::CursorShape {
                width,
                height,
                hot_x,
                hot_y,
                rgba,
            } => self.out.push_back(Output::CursorShape {
                width,
                height,
                hot_x,
                hot_y,
                rgba: b64(&rgba),
            }),
            ControlMessage::Recording { active, owner } => self.out.push_back(Output::Recording {
                active,
                owner: sanitize(owner.as_bytes()),
            }),
            ControlMessage::End { text, .. } => {
                let text = sanitize(text.as_bytes());
                self.finish_live(if text.is_empty() {
                    "the host ended the session".into()
                } else {
                    format!("the host ended the session: {text}")
                });
            }
            _ => {}
        }
    }

    /// The session is over: nothing more is sent; the page closes the connection.
    pub(super) fn finish_live(&mut self, text: String) {
        self.phase = Phase::Idle;
        self.out.push_back(Output::Ended { text });
    }

    pub(super) fn on_pointer(&mut self, x: f64, y: f64) {
        // Pixel (x, y) covers [x, x + 1): the pixel a point is in is its floor.
        let clamp = |v: f64| v.floor().clamp(0.0, f64::from(u16::MAX)) as u16;
        let (x, y) = (clamp(x), clamp(y));
        let Some(live) = self.live() else {
            return;
        };
        if live.last_pointer == Some((x, y)) {
            return;
        }
        live.last_pointer = Some((x, y));
        let monitor = live.active_monitor;
        self.control(ControlMessage::PointerMove { monitor, x, y });
    }

    pub(super) fn on_button(&mut self, dom: u8, down: bool) {
        let button = match dom {
            0 => 1,
            1 => 2,
            2 => 3,
            3 => 8,
            4 => 9,
            _ => return,
        };
        let Some(live) = self.live() else {
            return;
        };
        if live.held.button(button, down) {
            self.control(ControlMessage::PointerButton { button, down });
        }
    }

    pub(super) fn on_wheel(&mut self, dx: f64, dy: f64) {
        let units = |px: f64| {
            (px / WHEEL_PIXELS_PER_NOTCH * 120.0)
                .round()
                .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        };
        let (dx, dy) = (units(dx), units(dy));
        if dx != 0 || dy != 0 {
            self.control(ControlMessage::Wheel { dx, dy });
        }
    }

    pub(super) fn on_key(&mut self, code: &str, key: Option<&str>, down: bool) {
        let Some(live) = self.live() else {
            return;
        };
        // A key without a code is remembered by what it types.
        let id = if code.is_empty() {
            format!("key:{}", key.unwrap_or_default())
        } else {
            code.to_owned()
        };
        let sym = if down {
            live.held.press(&id, key)
        } else {
            live.held.release(&id)
        };
        if let Some(keysym) = sym {
            self.control(ControlMessage::Key { keysym, down });
        }
    }

    /// Every held key and button goes up, one by one, then `ReleaseAll` for anything the
    /// page never saw go up.
    pub(super) fn release_all(&mut self) {
        let Some(live) = self.live() else {
            return;
        };
        let (keys, buttons) = live.held.release_all();
        for keysym in keys {
            self.control(ControlMessage::Key {
                keysym,
                down: false,
            });
        }
        for button in buttons {
            self.control(ControlMessage::PointerButton {
                button,
                down: false,
            });
        }
        self.control(ControlMessage::ReleaseAll);
    }
}
