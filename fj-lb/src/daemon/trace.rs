//! `fj-lb trace`, one at a time: starting one writes the filter and sets `SETTINGS_TRACE`; a
//! task reads the TRACE ring buffer and streams each record, named, to the client; when the
//! task ends (the count reached, the client gone, a read failing) the loop clears the bit,
//! and stopping the daemon clears it too. A second trace while one runs is refused, since
//! the program has one filter and the ring buffer one reader.
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use fj_lb_common::{SETTINGS_TRACE, TraceRecord};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{Instrument as _, info, info_span, warn};

use super::Daemon;
use crate::{
    control::{Reply, Response, protocol::TraceStarted, server::Stream},
    datapath,
    report::trace::{TraceNames, Wanted, event, resolve},
};

/// The ring buffer is also read this often, whatever its readiness says: a bound on how late
/// a record can be should a wake-up be missed.
const POLL: Duration = Duration::from_millis(250);
/// Records taken from the ring buffer in one go, at most.
const BATCH: usize = 1024;

/// The trace in progress, if any, and how its task says it ended (with the trace's number, so
/// that the end of one trace never ends the next).
pub(super) struct Tracing {
    running: Option<Running>,
    started: u64,
    done_tx: mpsc::Sender<u64>,
    pub(super) done_rx: mpsc::Receiver<u64>,
}

struct Running {
    number: u64,
    /// The filters as the operator gave them, resolved again after each reload.
    wanted: Wanted,
    task: JoinHandle<()>,
    /// The names records are read by, renewed when a reload changes them.
    names: watch::Sender<TraceNames>,
    filter: String,
}

impl Tracing {
    pub(super) fn new() -> Self {
        let (done_tx, done_rx) = mpsc::channel(1);
        Self { running: None, started: 0, done_tx, done_rx }
    }

    /// The running trace's filter, in words (status shows it).
    pub(super) fn filter(&self) -> Option<String> {
        self.running.as_ref().map(|r| r.filter.clone())
    }
}

impl Daemon {
    pub(super) fn start_trace(&mut self, wanted: Wanted, count: Option<u64>, stream: Option<Stream>) -> Response<Reply> {
        let Some(stream) = stream else { return Response::err("trace streams: it needs a connection of its own") };
        // A trace that has just ended whose end the loop has not handled yet is over.
        if let Some(n) = self.trace.running.as_ref().filter(|r| r.task.is_finished()).map(|r| r.number) {
            self.on_trace_done(n);
        }
        if let Some(r) = &self.trace.running {
            return Response::err(format!("a trace is already running ({}); one at a time: stop it first", r.filter));
        }
        let resolved = match resolve(&self.balancer, &wanted) {
            Ok(r) => r,
            Err(e) => return Response::err(e),
        };
        let mut ring = match self.dp.trace_reader() {
            Ok(r) => r,
            Err(e) => return Response::err(e),
        };
        // Records a packet wrote after the last trace's reader stopped reading.
        while ring.next().is_some() {}
        if let Err(e) = self.dp.set_trace_filter(&resolved.filter) {
            return Response::err(e);
        }
        if let Err(e) = self.set_trace_bit(true) {
            return Response::err(e);
        }
        let (names, names_rx) = watch::channel(TraceNames::of(&self.balancer));
        let span = info_span!("trace", filter = %resolved.description, count);
        info!(parent: &span, "trace started");
        let done = self.trace.done_tx.clone();
        self.trace.started += 1;
        let number = self.trace.started;
        let task = tokio::spawn(
            async move {
                match pump(ring, names_rx, count, &stream).await {
                    Ok(sent) => info!(sent, "trace ended"),
                    Err(e) => {
                        warn!(error = %e, "reading the trace ring buffer failed; trace ended");
                        let _ = stream.send(Response::err(format!("reading the trace ring buffer: {e}"))).await;
                    }
                }
                drop(stream);
                let _ = done.send(number).await;
            }
            .instrument(span),
        );
        self.trace.running = Some(Running { number, wanted, task, names, filter: resolved.description.clone() });
        Response::ok(Reply::TraceStarted(TraceStarted { filter: resolved.description }))
    }

    /// Trace `number`'s task ended: the data path stops tracing (unless another trace runs
    /// by now).
    pub(super) fn on_trace_done(&mut self, number: u64) {
        if self.trace.running.as_ref().is_some_and(|r| r.number == number)
            && self.trace.running.take().is_some()
            && let Err(e) = self.set_trace_bit(false)
        {
            warn!(error = %e, "clearing the trace bit failed; the data path keeps checking the trace filter");
        }
    }

    /// Stopping: the trace ends with the daemon (its client sees the stream close).
    pub(super) fn stop_trace(&mut self) {
        if let Some(r) = self.trace.running.take() {
            r.task.abort();
            if let Err(e) = self.set_trace_bit(false) {
                warn!(error = %e, "clearing the trace bit failed");
            }
        }
    }

    /// After a reload: the filters are resolved against the config now in force (a backend's
    /// id, a service's port may have changed), and records name its services and backends. A
    /// filter that no longer resolves ends the trace rather than show other packets.
    pub(super) fn trace_names_changed(&mut self) {
        let Some(r) = &self.trace.running else { return };
        match resolve(&self.balancer, &r.wanted) {
            Ok(resolved) => {
                if let Err(e) = self.dp.set_trace_filter(&resolved.filter) {
                    warn!(error = %e, "rewriting the trace filter after a reload failed; ending the trace");
                    self.stop_trace();
                    return;
                }
                r.names.send_replace(TraceNames::of(&self.balancer));
                if let Some(r) = self.trace.running.as_mut() {
                    r.filter = resolved.description;
                }
            }
            Err(e) => {
                warn!(error = %e, "after the reload the trace's filter names nothing; ending the trace");
                self.stop_trace();
            }
        }
    }

    /// Sets or clears `SETTINGS_TRACE` in the settings the daemon keeps, so that whatever
    /// rewrites them later (a reload, the virtual MAC) keeps the bit as it is.
    fn set_trace_bit(&mut self, on: bool) -> Result<(), datapath::DataplaneError> {
        let mut settings = self.settings;
        if on {
            settings.flags |= SETTINGS_TRACE;
        } else {
            settings.flags &= !SETTINGS_TRACE;
        }
        self.dp.write_settings(settings)?;
        self.settings = settings;
        Ok(())
    }
}

/// Streams the ring buffer's records as events until `count` of them were sent or the client
/// went (the stream's receiver dropped); returns how many were sent.
async fn pump(ring: RingBuf<MapData>, names: watch::Receiver<TraceNames>, count: Option<u64>, out: &Stream) -> std::io::Result<u64> {
    // SAFETY: the RingBuf owns its map's descriptor and moves into the AsyncFd, which alone
    // drops it; its `as_raw_fd` is that descriptor throughout.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
    let mut poll = tokio::time::interval(POLL);
    let mut sent = 0;
    loop {
        tokio::select! {
            _ = out.closed() => return Ok(sent),
            // Cleared before reading: a record committed after the read below catches up
            // wakes the descriptor again.
            ready = ring.readable_mut() => ready?.clear_ready(),
            _ = poll.tick() => {}
        }
        for record in drain(ring.get_mut()) {
            let e = event(&names.borrow(), &record);
            if out.send(Response::ok(Reply::Trace(e))).await.is_err() {
                return Ok(sent);
            }
            sent += 1;
            if count.is_some_and(|c| sent >= c) {
                return Ok(sent);
            }
        }
    }
}

fn drain(ring: &mut RingBuf<MapData>) -> Vec<TraceRecord> {
    let mut out = Vec::new();
    while out.len() < BATCH
        && let Some(item) = ring.next()
    {
        out.extend(datapath::trace_record(&item));
    }
    out
}
