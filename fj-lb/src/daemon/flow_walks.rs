//! Walks of the flow table (up to millions of entries): never on the daemon's loop, never two
//! at once, and for the metrics' entry count at most once every few seconds, whatever the
//! number of scrapers. A crowd of scrapers or `fj-lb flows` calls costs one walk, not one each.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fj_lb_common::{FlowKey, FlowValue};
use tokio::sync::Semaphore;

use crate::datapath;

/// How long a counted number of entries is served before it is counted again.
const COUNT_FRESH: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(super) struct FlowWalks {
    pin: PathBuf,
    /// One walk at a time.
    walking: Arc<Semaphore>,
    /// The last count and when it was taken.
    count: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl FlowWalks {
    pub(super) fn new(pin: PathBuf) -> Self {
        Self { pin, walking: Arc::new(Semaphore::new(1)), count: Arc::new(Mutex::new(None)) }
    }

    /// The number of entries, counted at most every COUNT_FRESH; while a walk is under way the
    /// last count stands in. Call from a blocking task.
    pub(super) fn entries(&self) -> u64 {
        let last = *self.count.lock().expect("count lock");
        if let Some((at, n)) = last
            && at.elapsed() < COUNT_FRESH
        {
            return n;
        }
        let Ok(_walk) = self.walking.try_acquire() else { return last.map_or(0, |(_, n)| n) };
        let n = datapath::count_entries(&self.pin).unwrap_or_else(|_| last.map_or(0, |(_, n)| n));
        *self.count.lock().expect("count lock") = Some((Instant::now(), n));
        n
    }

    /// Every entry, for `fj-lb flows`: waits its turn behind a walk under way. Call from a
    /// blocking task.
    pub(super) fn read(&self) -> Result<Vec<(FlowKey, FlowValue)>, aya::maps::MapError> {
        let _walk = tokio::runtime::Handle::current().block_on(self.walking.acquire()).expect("the semaphore is never closed");
        let entries = datapath::read_flows(&self.pin)?;
        *self.count.lock().expect("count lock") = Some((Instant::now(), entries.len() as u64));
        Ok(entries)
    }
}
