//! The owner side: answering `SelectionRequest`s, with INCR for large texts.
//!
//! Requests to other clients' windows are sent unchecked: a requestor that vanished makes the
//! server answer with an X error event, which the worker ignores; the transfer then times out.

use std::sync::Arc;
use std::time::Instant;

use x11rb::protocol::xproto::{
    Atom, AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, PropMode,
    PropertyNotifyEvent, SelectionNotifyEvent, SelectionRequestEvent, Window,
    SELECTION_NOTIFY_EVENT,
};
use x11rb::wrapper::ConnectionExt as _;
use x11rb::NONE;

use super::text::{answer, Answer, Owned};
use super::worker::Ctx;
use super::{INCR_SEND_TIMEOUT, MAX_INCR_SENDS};
use crate::x11::XError;

/// One INCR transfer to a requestor: the next chunk goes when it deletes the property.
struct IncrSend {
    requestor: Window,
    property: Atom,
    type_: Atom,
    data: Arc<[u8]>,
    /// Bytes already written.
    offset: usize,
    /// When the requestor has stalled for too long.
    deadline: Instant,
}

/// The INCR transfers in progress (at most [`MAX_INCR_SENDS`]; see [`Sends::start`]).
#[derive(Default)]
pub(super) struct Sends {
    list: Vec<IncrSend>,
}

impl Sends {
    /// The earliest deadline of a transfer in progress.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.list.iter().map(|s| s.deadline).min()
    }

    /// Answer one `SelectionRequest`: write the property (or start INCR) and send the
    /// `SelectionNotify`, with property `None` when the request is refused.
    pub(super) fn on_request(
        &mut self,
        ctx: &Ctx,
        owned: Option<&Owned>,
        ev: &SelectionRequestEvent,
        now: Instant,
    ) -> Result<(), XError> {
        // ICCCM 2.2: an obsolete requestor passes None and means "use the target's name".
        let property = if ev.property == NONE {
            ev.target
        } else {
            ev.property
        };
        let answer = match owned {
            Some(owned) if ev.selection == ctx.atoms.clipboard && ev.owner == ctx.window => {
                answer(&ctx.atoms, owned, ev.target)
            }
            _ => Answer::Refuse,
        };
        let conn = &ctx.conn;
        let served = match answer {
            Answer::Refuse => false,
            Answer::Atoms(list) => {
                conn.change_property32(
                    PropMode::REPLACE,
                    ev.requestor,
                    property,
                    AtomEnum::ATOM,
                    &list,
                )?;
                true
            }
            Answer::Integer(value) => {
                conn.change_property32(
                    PropMode::REPLACE,
                    ev.requestor,
                    property,
                    AtomEnum::INTEGER,
                    &[value],
                )?;
                true
            }
            Answer::Bytes { type_, data } if data.len() <= ctx.chunk => {
                conn.change_property8(PropMode::REPLACE, ev.requestor, property, type_, &data)?;
                true
            }
            Answer::Bytes { type_, data } => {
                self.start(ctx, ev.requestor, property, type_, data, now)?;
                true
            }
        };
        let notify = SelectionNotifyEvent {
            response_type: SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: ev.time,
            requestor: ev.requestor,
            selection: ev.selection,
            target: ev.target,
            property: if served { property } else { NONE },
        };
        conn.send_event(false, ev.requestor, EventMask::NO_EVENT, notify)?;
        Ok(())
    }

    /// Start an INCR transfer (ICCCM 2.7.2). With [`MAX_INCR_SENDS`] in progress, the one
    /// that has waited longest for its requestor is dropped to make room: readers that keep
    /// up finish quickly, so that one is most likely stalled.
    fn start(
        &mut self,
        ctx: &Ctx,
        requestor: Window,
        property: Atom,
        type_: Atom,
        data: Arc<[u8]>,
        now: Instant,
    ) -> Result<(), XError> {
        // A new request for the same property replaces the old transfer.
        self.list
            .retain(|s| !(s.requestor == requestor && s.property == property));
        if self.list.len() >= MAX_INCR_SENDS {
            let oldest = self
                .list
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.deadline)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                let dropped = self.list.swap_remove(i);
                self.unselect_if_idle(ctx, dropped.requestor)?;
            }
        }
        // Watch the requestor's properties before it can see (and delete) the INCR header.
        select_property_changes(ctx, requestor, true)?;
        // The size is a lower bound; texts never exceed `u32::MAX` (`connect` caps `max_bytes`).
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        ctx.conn.change_property32(
            PropMode::REPLACE,
            requestor,
            property,
            ctx.atoms.incr,
            &[size],
        )?;
        self.list.push(IncrSend {
            requestor,
            property,
            type_,
            data,
            offset: 0,
            deadline: now + INCR_SEND_TIMEOUT,
        });
        Ok(())
    }

    /// The requestor deleted a property: if it is one of our transfers, write the next chunk
    /// (a zero-length one at the end, which finishes the transfer).
    pub(super) fn on_delete(
        &mut self,
        ctx: &Ctx,
        ev: &PropertyNotifyEvent,
        now: Instant,
    ) -> Result<(), XError> {
        let Some(index) = self
            .list
            .iter()
            .position(|s| s.requestor == ev.window && s.property == ev.atom)
        else {
            return Ok(());
        };
        let Some(send) = self.list.get_mut(index) else {
            return Ok(());
        };
        let end = send.offset.saturating_add(ctx.chunk).min(send.data.len());
        let chunk = send.data.get(send.offset..end).unwrap_or_default();
        ctx.conn.change_property8(
            PropMode::REPLACE,
            send.requestor,
            send.property,
            send.type_,
            chunk,
        )?;
        if chunk.is_empty() {
            let done = self.list.swap_remove(index);
            self.unselect_if_idle(ctx, done.requestor)?;
        } else {
            send.offset = end;
            send.deadline = now + INCR_SEND_TIMEOUT;
        }
        Ok(())
    }

    /// Drop transfers whose requestor stopped reading.
    pub(super) fn expire(&mut self, ctx: &Ctx, now: Instant) -> Result<(), XError> {
        let mut expired = Vec::new();
        self.list.retain(|s| {
            let keep = s.deadline > now;
            if !keep {
                expired.push(s.requestor);
            }
            keep
        });
        for requestor in expired {
            self.unselect_if_idle(ctx, requestor)?;
        }
        Ok(())
    }

    fn unselect_if_idle(&self, ctx: &Ctx, requestor: Window) -> Result<(), XError> {
        if self.list.iter().any(|s| s.requestor == requestor) {
            return Ok(());
        }
        select_property_changes(ctx, requestor, false)
    }
}

/// Select (or stop selecting) `PropertyNotify` on another client's window. Our own window
/// keeps its mask: it is the requestor when we fetch from ourselves.
fn select_property_changes(ctx: &Ctx, window: Window, on: bool) -> Result<(), XError> {
    if window == ctx.window {
        return Ok(());
    }
    let mask = if on {
        EventMask::PROPERTY_CHANGE
    } else {
        EventMask::NO_EVENT
    };
    // Requests are processed in order: this lands before the INCR header and the notify.
    ctx.conn
        .change_window_attributes(window, &ChangeWindowAttributesAux::new().event_mask(mask))?;
    Ok(())
}
