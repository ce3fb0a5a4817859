//! The requestor side: one `ConvertSelection` of CLIPBOARD and reading the answer, INCR
//! included, bounded in size and time.
//!
//! The owner is another X client and is not trusted: every size it announces is checked against
//! `max_bytes` before anything is read, the property is read with an explicit length, and each
//! step has a deadline (the worker abandons the fetch when [`Fetch::deadline`] passes).
//!
//! An INCR transfer we give up on is left as it is: the owner waits for a deletion that never
//! comes (and times out on its side). Deleting the property would make it send the next chunk,
//! into whatever fetch uses that property next; fetches also rotate through a few properties
//! so a late or stale owner does not write into the one in use.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use x11rb::protocol::xproto::{
    Atom, AtomEnum, ConnectionExt as _, GetPropertyReply, Property, PropertyNotifyEvent,
    SelectionNotifyEvent, Timestamp,
};
use x11rb::{CURRENT_TIME, NONE};

use super::text::{decode, Decoded, Encoding};
use super::worker::Ctx;
use super::{ClipboardError, Refusal};
use crate::x11::XError;

/// Who wants the text.
pub(super) enum Purpose {
    /// Another client copied something: report it on the changes channel.
    Change,
    /// A [`super::Clipboard::get_text`] call waits for it.
    Get(SyncSender<Result<Option<String>, ClipboardError>>),
}

enum Stage {
    /// `ConvertSelection` sent; waiting for the owner's `SelectionNotify`.
    AwaitNotify,
    /// The owner answered `INCR`: chunks arrive each time we delete the property.
    Incr {
        /// The type of the first chunk.
        type_: Option<Atom>,
        buf: Vec<u8>,
    },
}

/// One conversion in progress. At most one runs at a time.
pub(super) struct Fetch {
    pub(super) purpose: Purpose,
    /// Where we asked the owner to put its answer, on our window.
    property: Atom,
    /// The time passed to `ConvertSelection` (honest owners copy it into their answer).
    time: Timestamp,
    /// `UTF8_STRING`, then `STRING` if the owner refuses it.
    target: Atom,
    stage: Stage,
    /// How long the owner may take for each step.
    step_timeout: Duration,
    step_deadline: Instant,
    total_deadline: Instant,
    started: Instant,
}

/// Deadlines of a fetch.
pub(super) struct Limits {
    /// How long the owner may take for each step (the answer, each INCR chunk).
    pub(super) step: Duration,
    /// When the whole fetch must be over.
    pub(super) total: Instant,
    /// When the caller started waiting (for [`Refusal::NoAnswer`]).
    pub(super) started: Instant,
}

impl Fetch {
    /// Ask the owner for `UTF8_STRING` into `property` of our window.
    pub(super) fn start(
        ctx: &Ctx,
        purpose: Purpose,
        property: Atom,
        time: Timestamp,
        limits: Limits,
        now: Instant,
    ) -> Result<Self, XError> {
        ctx.conn.delete_property(ctx.window, property)?;
        let fetch = Self {
            purpose,
            property,
            time,
            target: ctx.atoms.utf8_string,
            stage: Stage::AwaitNotify,
            step_timeout: limits.step,
            step_deadline: now + limits.step,
            total_deadline: limits.total,
            started: limits.started,
        };
        fetch.convert(ctx)?;
        Ok(fetch)
    }

    fn convert(&self, ctx: &Ctx) -> Result<(), XError> {
        ctx.conn.convert_selection(
            ctx.window,
            ctx.atoms.clipboard,
            self.target,
            self.property,
            self.time,
        )?;
        Ok(())
    }

    /// When the worker must give up on this fetch.
    pub(super) fn deadline(&self) -> Instant {
        self.step_deadline.min(self.total_deadline)
    }

    /// Give up (the owner did not answer in time); say how long we waited.
    pub(super) fn abandon(self, ctx: &Ctx, now: Instant) -> Result<(Purpose, Refusal), XError> {
        if matches!(self.stage, Stage::AwaitNotify) {
            ctx.conn.delete_property(ctx.window, self.property)?;
        }
        let after = now.saturating_duration_since(self.started);
        Ok((self.purpose, Refusal::NoAnswer { after }))
    }

    /// The owner's answer; `Some` when the fetch is over.
    pub(super) fn on_selection_notify(
        &mut self,
        ctx: &Ctx,
        ev: &SelectionNotifyEvent,
        now: Instant,
    ) -> Result<Option<Decoded>, XError> {
        let ours = ev.requestor == ctx.window
            && ev.selection == ctx.atoms.clipboard
            && ev.target == self.target
            && (ev.property == self.property || ev.property == NONE)
            && (ev.time == self.time || ev.time == CURRENT_TIME);
        if !ours || !matches!(self.stage, Stage::AwaitNotify) {
            // Someone else's, or a late answer to a fetch we abandoned (which used another of
            // our properties, or another time).
            return Ok(None);
        }
        if ev.property == NONE {
            if self.target == ctx.atoms.utf8_string {
                self.target = AtomEnum::STRING.into();
                self.step_deadline = now + self.step_timeout;
                self.convert(ctx)?;
                return Ok(None);
            }
            return Ok(Some(Decoded::NotText));
        }
        let head = get(ctx, self.property, false, 1)?;
        if head.type_ == ctx.atoms.incr {
            let hint = head.value32().and_then(|mut v| v.next()).unwrap_or(0);
            if usize::try_from(hint).map_or(true, |hint| hint > ctx.max_bytes) {
                // Not started: the owner sends nothing until the header is deleted.
                return Ok(Some(too_large(ctx)));
            }
            // Deleting the header asks for the first chunk.
            ctx.conn.delete_property(ctx.window, self.property)?;
            self.stage = Stage::Incr {
                type_: None,
                buf: Vec::new(),
            };
            self.step_deadline = now + self.step_timeout;
            return Ok(None);
        }
        let decoded = read_whole(ctx, self.property, &head);
        ctx.conn.delete_property(ctx.window, self.property)?;
        decoded.map(Some)
    }

    /// A property of ours changed: during INCR, a new chunk. `Some` when the fetch is over.
    pub(super) fn on_property_notify(
        &mut self,
        ctx: &Ctx,
        ev: &PropertyNotifyEvent,
        now: Instant,
    ) -> Result<Option<Decoded>, XError> {
        if ev.window != ctx.window || ev.atom != self.property || ev.state != Property::NEW_VALUE {
            return Ok(None);
        }
        let Stage::Incr { type_, buf } = &mut self.stage else {
            // Before the SelectionNotify: the owner writing its answer (or its INCR header).
            return Ok(None);
        };
        let property = self.property;
        let head = get(ctx, property, false, 0)?;
        if head.type_ == NONE {
            // Gone again: a stale notification.
            return Ok(None);
        }
        // From here on, giving up leaves the chunk in place (see the module docs).
        let Some(size) = total_size(&head) else {
            return Ok(Some(too_large(ctx)));
        };
        if size == 0 {
            // The zero-length chunk ends the transfer.
            ctx.conn.delete_property(ctx.window, property)?;
            let type_ = type_.unwrap_or(head.type_);
            return Ok(Some(decode(
                &ctx.atoms,
                type_,
                std::mem::take(buf),
                ctx.max_bytes,
            )));
        }
        if Encoding::of(&ctx.atoms, head.type_).is_none() {
            return Ok(Some(Decoded::NotText));
        }
        let problem = if head.format != 8 {
            Some("the owner sent an INCR chunk that is not 8-bit text")
        } else if type_.is_some_and(|t| t != head.type_) {
            Some("the owner changed the type of its text in the middle of an INCR transfer")
        } else {
            None
        };
        if let Some(what) = problem {
            return Ok(Some(malformed(what)));
        }
        if buf.len().saturating_add(size) > ctx.max_bytes {
            return Ok(Some(too_large(ctx)));
        }
        // Reading with delete asks for the next chunk.
        let chunk = get(ctx, property, true, words(size))?;
        if chunk.bytes_after != 0 || chunk.value.len() != size || chunk.type_ != head.type_ {
            return Ok(Some(malformed(
                "the owner changed an INCR chunk while it was being read",
            )));
        }
        buf.extend_from_slice(&chunk.value);
        *type_ = Some(head.type_);
        self.step_deadline = now + self.step_timeout;
        Ok(None)
    }
}

/// A whole (non-INCR) answer in `property` whose first bytes are `head`. The caller deletes
/// the property.
fn read_whole(ctx: &Ctx, property: Atom, head: &GetPropertyReply) -> Result<Decoded, XError> {
    if head.type_ == NONE {
        return Ok(malformed(
            "the owner announced an answer but wrote no property",
        ));
    }
    if Encoding::of(&ctx.atoms, head.type_).is_none() {
        return Ok(Decoded::NotText);
    }
    if head.format != 8 {
        return Ok(malformed("the owner's text property is not 8-bit"));
    }
    let size = match total_size(head) {
        Some(size) if size <= ctx.max_bytes => size,
        _ => {
            return Ok(Decoded::Refused(Refusal::TooLarge {
                limit: ctx.max_bytes,
            }))
        }
    };
    let full = get(ctx, property, false, words(size))?;
    if full.bytes_after != 0 || full.value.len() != size || full.type_ != head.type_ {
        return Ok(malformed(
            "the owner changed its answer while it was being read",
        ));
    }
    Ok(decode(&ctx.atoms, full.type_, full.value, ctx.max_bytes))
}

/// Read `property` of our window: `long_length` 32-bit units from the start.
fn get(
    ctx: &Ctx,
    property: Atom,
    delete: bool,
    long_length: u32,
) -> Result<GetPropertyReply, XError> {
    Ok(ctx
        .conn
        .get_property(delete, ctx.window, property, AtomEnum::ANY, 0, long_length)?
        .reply()?)
}

/// The property's whole length in bytes (what was returned plus what is left).
fn total_size(reply: &GetPropertyReply) -> Option<usize> {
    let unit = usize::from(reply.format / 8);
    let returned = usize::try_from(reply.value_len).ok()?.checked_mul(unit)?;
    returned.checked_add(usize::try_from(reply.bytes_after).ok()?)
}

/// 32-bit units that hold `bytes` (sizes are at most `max_bytes` ≤ `u32::MAX`).
fn words(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(4)).unwrap_or(u32::MAX)
}

fn malformed(what: &'static str) -> Decoded {
    Decoded::Refused(Refusal::Malformed { what })
}

fn too_large(ctx: &Ctx) -> Decoded {
    Decoded::Refused(Refusal::TooLarge {
        limit: ctx.max_bytes,
    })
}
