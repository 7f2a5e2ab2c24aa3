//! Walks of the flow table (up to millions of entries): never on the daemon's loop and never two
//! at once. Scrapes that arrive while a walk is under way take the last count instead of
//! starting another, so a crowd of scrapers costs one walk at a time, not one each.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use fj_lb_common::{FlowKey, FlowValue};
use tokio::sync::Semaphore;

use crate::datapath;

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

    /// The number of entries; while another walk is under way its last count stands in. Call
    /// from a blocking task.
    pub(super) fn entries(&self) -> u64 {
        let last = *self.count.lock().expect("count lock");
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
