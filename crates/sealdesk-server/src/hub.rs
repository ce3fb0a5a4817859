//! Who is online, who watches whom, and each connection's bounded outbound queue.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use sealdesk_proto::{CloseReason, RoutingNumber, ServerMessage};
use tokio::sync::{mpsc, Notify};

/// The sending half of one connection's outbound queue, shared with the hub.
///
/// The queue is bounded in bytes: a push that would exceed the limit kills the
/// connection (slow reader) instead of buffering without bound.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) conn_id: u64,
    tx: mpsc::UnboundedSender<Utf8Bytes>,
    queued: AtomicUsize,
    limit: usize,
    kill_code: AtomicU16,
    kill: Notify,
}

/// The receiving half, owned by the connection task.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Utf8Bytes>,
}

/// The queue was full; the connection has been told to close.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueFull;

impl Outbox {
    pub(crate) fn new(conn_id: u64, limit: usize) -> (Arc<Self>, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                conn_id,
                tx,
                queued: AtomicUsize::new(0),
                limit,
                kill_code: AtomicU16::new(0),
                kill: Notify::new(),
            }),
            Inbox { rx },
        )
    }

    /// Queues a message, or kills the connection if its queue is full.
    pub(crate) fn push(&self, text: Utf8Bytes) -> Result<(), QueueFull> {
        let len = text.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.kill(CloseReason::SlowConsumer);
            return Err(QueueFull);
        }
        if self.tx.send(text).is_err() {
            // The connection task is gone; nothing is queued.
            self.queued.fetch_sub(len, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Asks the connection task to close with `reason` (the first reason wins).
    pub(crate) fn kill(&self, reason: CloseReason) {
        let _ =
            self.kill_code
                .compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Acquire);
        self.kill.notify_one();
    }

    /// Waits until [`Outbox::kill`] is called; returns the reason.
    pub(crate) async fn killed(&self) -> CloseReason {
        loop {
            let code = self.kill_code.load(Ordering::Acquire);
            if code != 0 {
                return CloseReason::from_code(code).unwrap_or(CloseReason::ServerError);
            }
            self.kill.notified().await;
        }
    }

    fn dequeued(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
    }
}

impl Inbox {
    /// The next queued message.
    pub(crate) async fn recv(&mut self, outbox: &Outbox) -> Option<Utf8Bytes> {
        let msg = self.rx.recv().await?;
        outbox.dequeued(msg.len());
        Some(msg)
    }
}

/// Why an envelope was not delivered (the caller decides unknown vs. offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliverError {
    Offline,
    Busy,
}

#[derive(Default)]
struct Inner {
    online: HashMap<RoutingNumber, Arc<Outbox>>,
    watchers: HashMap<RoutingNumber, HashMap<u64, Arc<Outbox>>>,
}

/// The routing table.
#[derive(Default)]
pub(crate) struct Hub {
    inner: RwLock<Inner>,
}

impl Hub {
    /// Marks `number` online at `outbox`. A previous connection of the same device is
    /// closed as replaced. Watchers are told.
    pub(crate) fn register(&self, number: RoutingNumber, outbox: Arc<Outbox>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        if let Some(old) = inner.online.insert(number, outbox) {
            old.kill(CloseReason::Replaced);
        } else {
            notify(&inner, number, true);
        }
    }

    /// Marks `number` offline if `conn_id` still holds it; tells watchers.
    pub(crate) fn unregister(&self, number: RoutingNumber, conn_id: u64) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        if inner.online.get(&number).map(|o| o.conn_id) == Some(conn_id) {
            inner.online.remove(&number);
            notify(&inner, number, false);
        }
    }

    /// Queues `text` for `to`.
    pub(crate) fn deliver(&self, to: RoutingNumber, text: Utf8Bytes) -> Result<(), DeliverError> {
        let outbox = {
            let Ok(inner) = self.inner.read() else {
                return Err(DeliverError::Offline);
            };
            inner.online.get(&to).cloned()
        };
        match outbox {
            None => Err(DeliverError::Offline),
            Some(o) => o.push(text).map_err(|_| DeliverError::Busy),
        }
    }

    /// Replaces the watch set of `outbox`'s connection; returns the current presence
    /// of the new set.
    pub(crate) fn watch(
        &self,
        outbox: &Arc<Outbox>,
        old: &HashSet<RoutingNumber>,
        new: &HashSet<RoutingNumber>,
    ) -> (Vec<RoutingNumber>, Vec<RoutingNumber>) {
        let Ok(mut inner) = self.inner.write() else {
            return (vec![], new.iter().copied().collect());
        };
        for n in old.difference(new) {
            remove_watcher(&mut inner, *n, outbox.conn_id);
        }
        for n in new.difference(old) {
            inner
                .watchers
                .entry(*n)
                .or_default()
                .insert(outbox.conn_id, outbox.clone());
        }
        let (mut online, mut offline): (Vec<_>, Vec<_>) =
            new.iter().partition(|n| inner.online.contains_key(n));
        online.sort_unstable();
        offline.sort_unstable();
        (online, offline)
    }

    /// Drops every watch of a closing connection.
    pub(crate) fn unwatch_all(&self, conn_id: u64, numbers: &HashSet<RoutingNumber>) {
        if let Ok(mut inner) = self.inner.write() {
            for n in numbers {
                remove_watcher(&mut inner, *n, conn_id);
            }
        }
    }

    /// Devices online now.
    pub(crate) fn online_count(&self) -> usize {
        self.inner.read().map(|i| i.online.len()).unwrap_or(0)
    }

    /// Asks every registered connection to close (server shutdown).
    pub(crate) fn kill_all(&self, reason: CloseReason) {
        if let Ok(inner) = self.inner.read() {
            for o in inner.online.values() {
                o.kill(reason);
            }
        }
    }
}

fn remove_watcher(inner: &mut Inner, number: RoutingNumber, conn_id: u64) {
    if let Some(w) = inner.watchers.get_mut(&number) {
        w.remove(&conn_id);
        if w.is_empty() {
            inner.watchers.remove(&number);
        }
    }
}

fn notify(inner: &Inner, number: RoutingNumber, online: bool) {
    let Some(watchers) = inner.watchers.get(&number) else {
        return;
    };
    let msg = ServerMessage::Presence {
        online: if online { vec![number] } else { vec![] },
        offline: if online { vec![] } else { vec![number] },
    };
    let text = Utf8Bytes::from(msg.encode());
    for w in watchers.values() {
        // A watcher that cannot keep up is killed by `push`.
        let _ = w.push(text.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: u32) -> RoutingNumber {
        RoutingNumber::new(u64::from(x)).unwrap()
    }

    #[tokio::test]
    async fn queue_is_bounded_in_bytes_and_kills_slow_readers() {
        let (o, mut inbox) = Outbox::new(1, 100);
        assert!(o.push("a".repeat(60).into()).is_ok());
        assert!(o.push("b".repeat(60).into()).is_err());
        assert_eq!(o.killed().await, CloseReason::SlowConsumer);
        assert_eq!(inbox.recv(&o).await.unwrap().len(), 60);
        assert!(o.push("c".repeat(60).into()).is_ok());
    }

    #[tokio::test]
    async fn presence_is_pushed_to_watchers() {
        let hub = Hub::default();
        let (watcher, mut inbox) = Outbox::new(1, 10_000);
        let set: HashSet<_> = [n(200_000_000)].into();
        let (on, off) = hub.watch(&watcher, &HashSet::new(), &set);
        assert!(on.is_empty() && off == vec![n(200_000_000)]);
        let (peer, _peer_inbox) = Outbox::new(2, 10_000);
        hub.register(n(200_000_000), peer.clone());
        let msg = inbox.recv(&watcher).await.unwrap();
        assert!(
            msg.as_str().contains(r#""online":[200000000]"#),
            "{}",
            msg.as_str()
        );
        // A stale unregister (another connection id) changes nothing.
        hub.unregister(n(200_000_000), 99);
        assert_eq!(hub.online_count(), 1);
        hub.unregister(n(200_000_000), 2);
        let msg = inbox.recv(&watcher).await.unwrap();
        assert!(msg.as_str().contains(r#""offline":[200000000]"#));
        hub.unwatch_all(1, &set);
        hub.register(n(200_000_000), peer);
        assert!(inbox.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_newer_connection_replaces_the_older() {
        let hub = Hub::default();
        let (a, _ia) = Outbox::new(1, 1000);
        let (b, _ib) = Outbox::new(2, 1000);
        hub.register(n(300_000_000), a.clone());
        hub.register(n(300_000_000), b);
        assert_eq!(a.killed().await, CloseReason::Replaced);
        hub.unregister(n(300_000_000), 1);
        assert_eq!(hub.online_count(), 1);
    }
}
