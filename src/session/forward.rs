//! Carries the TCP tracker's output to the sessions on another thread.
//!
//! Reading, decoding and TCP tracking run on one thread, TDS decoding, diagnosis and report
//! writing on another. [`Forwarder`] is the tracker's sink on the first thread: it copies each
//! event (and the stream bytes it carries) into a batch; [`replay`] feeds a batch to the
//! [`Sessions`] on the second thread in the same order, so the report is exactly what a single
//! thread would write. Batches are bounded and recycled, so memory stays flat.

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use super::exchanges::ExchangeEvent;
use super::Sessions;
use crate::capture::FrameRef;
use crate::tcp::{ConnId, Direction, StreamEvent, StreamEventKind, StreamSink, TcpFacts};
use crate::time::Timestamp;

/// Stream bytes per batch before it is sent.
const BATCH_BYTES: usize = 256 * 1024;
/// Events per batch before it is sent.
const BATCH_EVENTS: usize = 4096;

/// One tracker output, with stream bytes as a range into the batch's buffer.
enum Event {
    Open {
        conn: ConnId,
        client: SocketAddr,
        server: SocketAddr,
    },
    Stream {
        conn: ConnId,
        dir: Direction,
        frame: FrameRef,
        ts: Timestamp,
        kind: Kind,
    },
    Close(Box<TcpFacts>),
    /// A UDP exchange event, kept in capture order with the TCP events.
    Exchange(Box<ExchangeEvent>),
    /// Every input was read; the last frame's time. Connections closed after this are the
    /// ones still open when the capture stopped.
    CaptureEnd(Timestamp),
}

enum Kind {
    Data { start: usize, len: usize },
    Gap(u64),
    Fin,
    Rst,
}

/// A run of events and the bytes they carry.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    events: Vec<Event>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.events.clear();
    }
}

/// The tracker's sink on the reading thread: fills batches and sends them on.
pub struct Forwarder {
    current: Batch,
    to_sessions: SyncSender<Batch>,
    recycled: Receiver<Batch>,
    /// The other side has gone (it failed writing the report): stop doing work for it.
    pub closed: bool,
}

impl Forwarder {
    pub fn new(to_sessions: SyncSender<Batch>, recycled: Receiver<Batch>) -> Self {
        Forwarder {
            current: Batch::default(),
            to_sessions,
            recycled,
            closed: false,
        }
    }

    /// Carries a UDP exchange event in order with the stream events.
    /// Every input was read; `last` is the capture's last frame time.
    pub fn on_capture_end(&mut self, last: Timestamp) {
        self.current.events.push(Event::CaptureEnd(last));
    }

    pub fn on_exchange(&mut self, ev: ExchangeEvent) {
        self.current.events.push(Event::Exchange(Box::new(ev)));
    }

    /// Sends the current batch if it is big enough (or `force`), taking a recycled one back.
    pub fn flush(&mut self, force: bool) {
        let full =
            self.current.bytes.len() >= BATCH_BYTES || self.current.events.len() >= BATCH_EVENTS;
        if self.closed || self.current.events.is_empty() || !(force || full) {
            return;
        }
        let next = match self.recycled.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Batch::default(),
        };
        let batch = std::mem::replace(&mut self.current, next);
        if self.to_sessions.send(batch).is_err() {
            self.closed = true;
        }
    }
}

impl StreamSink for Forwarder {
    fn on_open(&mut self, conn: ConnId, client: SocketAddr, server: SocketAddr) {
        self.current.events.push(Event::Open {
            conn,
            client,
            server,
        });
    }

    fn on_event(&mut self, ev: StreamEvent<'_>) {
        let kind = match ev.kind {
            StreamEventKind::Data(bytes) => {
                let start = self.current.bytes.len();
                self.current.bytes.extend_from_slice(bytes);
                Kind::Data {
                    start,
                    len: bytes.len(),
                }
            }
            StreamEventKind::Gap { len } => Kind::Gap(len),
            StreamEventKind::Fin => Kind::Fin,
            StreamEventKind::Rst => Kind::Rst,
        };
        self.current.events.push(Event::Stream {
            conn: ev.conn,
            dir: ev.dir,
            frame: ev.frame,
            ts: ev.ts,
            kind,
        });
    }

    fn on_close(&mut self, facts: TcpFacts) {
        self.current.events.push(Event::Close(Box::new(facts)));
    }
}

/// Feeds a batch's events to the sessions, in order, leaving the batch empty for reuse;
/// exchange events go to `exchanges`, in order.
pub fn replay(batch: &mut Batch, sessions: &mut Sessions, exchanges: &mut Vec<ExchangeEvent>) {
    let bytes = &batch.bytes;
    for ev in batch.events.drain(..) {
        match ev {
            Event::Open {
                conn,
                client,
                server,
            } => sessions.on_open(conn, client, server),
            Event::Stream {
                conn,
                dir,
                frame,
                ts,
                kind,
            } => {
                let kind = match kind {
                    Kind::Data { start, len } => {
                        StreamEventKind::Data(bytes.get(start..start + len).unwrap_or_default())
                    }
                    Kind::Gap(len) => StreamEventKind::Gap { len },
                    Kind::Fin => StreamEventKind::Fin,
                    Kind::Rst => StreamEventKind::Rst,
                };
                sessions.on_event(StreamEvent {
                    conn,
                    dir,
                    frame,
                    ts,
                    kind,
                });
            }
            Event::Close(facts) => sessions.on_close(*facts),
            Event::Exchange(ev) => exchanges.push(*ev),
            Event::CaptureEnd(ts) => sessions.on_capture_end(ts),
        }
    }
    batch.bytes.clear();
}
