//! Scripted input for the headless viewer: one command per line, so a test (or a person at
//! a terminal without a display) can drive a session end to end.
//!
//! ```text
//! # comments and blank lines are ignored
//! wait 500ms             wait (ms or s)
//! wait-frame             wait until a picture has been decoded (since the last wait-frame)
//! move 100 200           pointer to (x, y) in the shown monitor's pixels
//! click [left|middle|right|back|forward] [X Y]   press and release (moving first if X Y)
//! down left / up left    press or release a button
//! wheel 3 [DX]           turn the wheel: positive is down (notches)
//! key ctrl+c             press the keys in order, release in reverse (a chord)
//! keydown shift / keyup shift
//! type Hello, world!     type text (each character pressed and released)
//! clipboard some text    send text as the viewer's clipboard
//! monitor 1              show another monitor
//! end                    end the session
//! ```
//!
//! [`parse_line`] turns a line into a [`Command`] or an error naming what was wrong; nothing
//! panics on any input.

use std::time::Duration;

use sealdesk_proto::control::{ControlMessage, EndReason, MAX_CLIPBOARD_BYTES};

/// One scripted step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Wait this long.
    Wait(Duration),
    /// Wait for the next decoded picture.
    WaitFrame,
    /// Send these control messages, in order.
    Send(Vec<ControlMessage>),
}

/// A line that is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScriptError(String);

fn err(s: impl Into<String>) -> ScriptError {
    ScriptError(s.into())
}

/// The X keysym of a key name (`Return`, `ctrl`, `F5`, `a`, `é`, …).
pub fn keysym(name: &str) -> Option<u32> {
    let named = match name.to_ascii_lowercase().as_str() {
        "return" | "enter" => 0xff0d,
        "tab" => 0xff09,
        "backspace" => 0xff08,
        "escape" | "esc" => 0xff1b,
        "delete" | "del" => 0xffff,
        "insert" => 0xff63,
        "home" => 0xff50,
        "end" => 0xff57,
        "left" => 0xff51,
        "up" => 0xff52,
        "right" => 0xff53,
        "down" => 0xff54,
        "pageup" | "page_up" | "prior" => 0xff55,
        "pagedown" | "page_down" | "next" => 0xff56,
        "space" => 0x20,
        "shift" | "shift_l" => 0xffe1,
        "shift_r" => 0xffe2,
        "ctrl" | "control" | "control_l" => 0xffe3,
        "control_r" => 0xffe4,
        "alt" | "alt_l" => 0xffe9,
        "alt_r" => 0xffea,
        "super" | "super_l" | "win" => 0xffeb,
        "super_r" => 0xffec,
        "capslock" | "caps_lock" => 0xffe5,
        _ => 0,
    };
    if named != 0 {
        return Some(named);
    }
    if let Some(n) = name
        .strip_prefix(['F', 'f'])
        .and_then(|n| n.parse::<u32>().ok())
    {
        return (1..=24).contains(&n).then(|| 0xffbe + n - 1);
    }
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(char_keysym(c)),
        _ => None,
    }
}

/// The keysym that types `c`: Latin-1 maps to itself, anything else to `0x01000000 + c`.
pub fn char_keysym(c: char) -> u32 {
    match c {
        '\n' => 0xff0d,
        '\t' => 0xff09,
        c if (' '..='~').contains(&c) || ('\u{a0}'..='\u{ff}').contains(&c) => u32::from(c),
        c => 0x0100_0000 + u32::from(c),
    }
}

fn button(name: &str) -> Result<u8, ScriptError> {
    Ok(match name {
        "left" => 1,
        "middle" => 2,
        "right" => 3,
        "back" => 8,
        "forward" => 9,
        other => {
            return Err(err(format!(
                "unknown button {other:?} (left, middle, right, back, forward)"
            )))
        }
    })
}

fn number<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, ScriptError> {
    word.ok_or_else(|| err(format!("{what} is missing")))?
        .parse()
        .map_err(|_| err(format!("{what} is not a valid number")))
}

fn duration(word: Option<&str>) -> Result<Duration, ScriptError> {
    let w = word.ok_or_else(|| err("wait: how long? (e.g. 500ms or 2s)"))?;
    let (n, unit) = match w.strip_suffix("ms") {
        Some(n) => (n, 1),
        None => (w.strip_suffix('s').unwrap_or(w), 1000),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| err(format!("wait: {w:?} is not a duration (e.g. 500ms or 2s)")))?;
    let ms = n.checked_mul(unit).filter(|ms| *ms <= 3_600_000);
    ms.map(Duration::from_millis)
        .ok_or_else(|| err("wait: at most an hour"))
}

fn pointer(x: Option<&str>, y: Option<&str>, monitor: u8) -> Result<ControlMessage, ScriptError> {
    Ok(ControlMessage::PointerMove {
        monitor,
        x: number(x, "x")?,
        y: number(y, "y")?,
    })
}

/// Parses one line. `monitor` is the monitor pointer coordinates refer to. `Ok(None)` for
/// blank lines and comments.
pub fn parse_line(line: &str, monitor: u8) -> Result<Option<Command>, ScriptError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let mut words = rest.split_whitespace();
    let send = |m: Vec<ControlMessage>| Ok(Some(Command::Send(m)));
    match verb {
        "wait" => Ok(Some(Command::Wait(duration(words.next())?))),
        "wait-frame" => Ok(Some(Command::WaitFrame)),
        "move" => send(vec![pointer(words.next(), words.next(), monitor)?]),
        "click" => {
            let mut out = Vec::new();
            let first = words.next();
            let (b, x) = match first.map(button) {
                Some(Ok(b)) => (b, words.next()),
                Some(Err(_)) | None => (1, first),
            };
            if x.is_some() {
                out.push(pointer(x, words.next(), monitor)?);
            }
            out.push(ControlMessage::PointerButton {
                button: b,
                down: true,
            });
            out.push(ControlMessage::PointerButton {
                button: b,
                down: false,
            });
            send(out)
        }
        "down" | "up" => send(vec![ControlMessage::PointerButton {
            button: button(words.next().unwrap_or("left"))?,
            down: verb == "down",
        }]),
        "wheel" => {
            let dy: i16 = number(words.next(), "notches")?;
            let dx: i16 = match words.next() {
                Some(w) => number(Some(w), "horizontal notches")?,
                None => 0,
            };
            let scale = |n: i16| {
                n.checked_mul(120)
                    .ok_or_else(|| err("wheel: too many notches"))
            };
            send(vec![ControlMessage::Wheel {
                dx: scale(dx)?,
                dy: scale(dy)?,
            }])
        }
        "key" => {
            let names: Vec<&str> = rest.split('+').map(str::trim).collect();
            let mut syms = Vec::new();
            for n in &names {
                syms.push(keysym(n).ok_or_else(|| err(format!("unknown key {n:?}")))?);
            }
            if syms.is_empty() || rest.is_empty() {
                return Err(err("key: which key? (e.g. key Return, key ctrl+c)"));
            }
            let mut out: Vec<ControlMessage> = syms
                .iter()
                .map(|&keysym| ControlMessage::Key { keysym, down: true })
                .collect();
            out.extend(syms.iter().rev().map(|&keysym| ControlMessage::Key {
                keysym,
                down: false,
            }));
            send(out)
        }
        "keydown" | "keyup" => {
            let sym = keysym(rest).ok_or_else(|| err(format!("unknown key {rest:?}")))?;
            send(vec![ControlMessage::Key {
                keysym: sym,
                down: verb == "keydown",
            }])
        }
        "type" => {
            let mut out = Vec::new();
            for c in rest.chars() {
                let keysym = char_keysym(c);
                out.push(ControlMessage::Key { keysym, down: true });
                out.push(ControlMessage::Key {
                    keysym,
                    down: false,
                });
            }
            send(out)
        }
        "clipboard" => {
            if rest.len() > MAX_CLIPBOARD_BYTES {
                return Err(err("clipboard: text too long"));
            }
            send(vec![ControlMessage::Clipboard {
                text: rest.to_owned(),
            }])
        }
        "monitor" => send(vec![ControlMessage::SelectMonitor {
            index: number(words.next(), "monitor")?,
        }]),
        "end" => send(vec![ControlMessage::End {
            reason: EndReason::UserEnded,
            text: String::new(),
        }]),
        other => Err(err(format!("unknown command {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Command {
        parse_line(line, 0).unwrap().unwrap()
    }

    #[test]
    fn commands_become_control_messages() {
        assert_eq!(cmd("wait 250ms"), Command::Wait(Duration::from_millis(250)));
        assert_eq!(cmd("wait 2s"), Command::Wait(Duration::from_secs(2)));
        assert_eq!(cmd("wait-frame"), Command::WaitFrame);
        assert_eq!(
            cmd("click right 10 20"),
            Command::Send(vec![
                ControlMessage::PointerMove {
                    monitor: 0,
                    x: 10,
                    y: 20
                },
                ControlMessage::PointerButton {
                    button: 3,
                    down: true
                },
                ControlMessage::PointerButton {
                    button: 3,
                    down: false
                },
            ])
        );
        assert_eq!(
            cmd("click 5 6"),
            Command::Send(vec![
                ControlMessage::PointerMove {
                    monitor: 0,
                    x: 5,
                    y: 6
                },
                ControlMessage::PointerButton {
                    button: 1,
                    down: true
                },
                ControlMessage::PointerButton {
                    button: 1,
                    down: false
                },
            ])
        );
        assert_eq!(
            cmd("key ctrl+c"),
            Command::Send(vec![
                ControlMessage::Key {
                    keysym: 0xffe3,
                    down: true
                },
                ControlMessage::Key {
                    keysym: 0x63,
                    down: true
                },
                ControlMessage::Key {
                    keysym: 0x63,
                    down: false
                },
                ControlMessage::Key {
                    keysym: 0xffe3,
                    down: false
                },
            ])
        );
        let Command::Send(typed) = cmd("type Hé€") else {
            panic!()
        };
        let syms: Vec<u32> = typed
            .iter()
            .filter_map(|m| match m {
                ControlMessage::Key { keysym, down: true } => Some(*keysym),
                _ => None,
            })
            .collect();
        assert_eq!(syms, vec![0x48, 0xe9, 0x0100_20ac]);
        assert_eq!(
            cmd("wheel -2"),
            Command::Send(vec![ControlMessage::Wheel { dx: 0, dy: -240 }])
        );
        assert_eq!(keysym("F12"), Some(0xffc9));
        assert_eq!(keysym("Return"), Some(0xff0d));
        assert_eq!(parse_line("  # note", 0), Ok(None));
        assert_eq!(parse_line("", 0), Ok(None));
    }

    proptest::proptest! {
        /// Whatever a person or a program types, a line is a command or an error — and every
        /// command's messages encode within the control channel's limits.
        #[test]
        fn any_line_parses_or_errs_and_commands_encode(line in ".{0,300}", words in proptest::collection::vec("[a-z0-9+_-]{0,12}", 0..5)) {
            for l in [line.clone(), words.join(" ")] {
                if let Ok(Some(Command::Send(msgs))) = parse_line(&l, 3) {
                    for m in msgs {
                        proptest::prop_assert!(m.encode().is_ok(), "{m:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_lines_are_named_errors() {
        for bad in [
            "jump 1 2",
            "move 1",
            "move x y",
            "move 70000 1",
            "wait",
            "wait soon",
            "wait 99999999999999s",
            "click sideways 1 2",
            "key",
            "key ctrl+nosuchkey",
            "wheel 999",
            "monitor 300",
            "keydown",
        ] {
            assert!(parse_line(bad, 0).is_err(), "{bad:?} parsed");
        }
        // Arbitrary bytes never panic.
        for line in [
            "\u{0}",
            "click \u{ffff} \u{1}",
            "type \u{10ffff}",
            "wheel -32768",
        ] {
            let _ = parse_line(line, 0);
        }
    }
}
