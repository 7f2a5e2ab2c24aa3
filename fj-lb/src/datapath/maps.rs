//! Typed access to each map, the counters summed over CPUs, and the map writes planning asks
//! for (`MapWriter`).
use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues, RingBuf},
};
use fj_lb_common::{
    Backend, Counters, FlowKey, FlowValue, FragKey, FragValue, ServiceKey, ServiceValue, Settings, Stat, TraceFilter,
    TraceRecord, VipKey, hash::vip_filter_words, map_names as names,
};

use super::{Dataplane, DataplaneError, map_err};
use crate::model::{
    addr::addr_bytes,
    balancer::{MapWriteError, MapWriter, released},
};

impl Dataplane {

    pub fn services(&mut self) -> HashMap<&mut MapData, ServiceKey, ServiceValue> {
        typed(&mut self.ebpf, names::SERVICES)
    }

    pub fn backends(&mut self) -> Array<&mut MapData, Backend> {
        typed(&mut self.ebpf, names::BACKENDS)
    }

    pub fn maglev(&mut self) -> Array<&mut MapData, u32> {
        typed(&mut self.ebpf, names::MAGLEV)
    }

    pub fn flows(&mut self) -> HashMap<&mut MapData, FlowKey, FlowValue> {
        typed(&mut self.ebpf, names::FLOWS)
    }

    /// First fragments' ports, for the fragments after them.
    pub fn fragments(&mut self) -> HashMap<&mut MapData, FragKey, FragValue> {
        typed(&mut self.ebpf, names::FRAGMENTS)
    }

    pub fn settings(&mut self) -> Array<&mut MapData, Settings> {
        typed(&mut self.ebpf, names::SETTINGS)
    }

    pub fn service_counters(&mut self) -> PerCpuArray<&mut MapData, Counters> {
        typed(&mut self.ebpf, names::SERVICE_COUNTERS)
    }

    pub fn backend_counters(&mut self) -> PerCpuArray<&mut MapData, Counters> {
        typed(&mut self.ebpf, names::BACKEND_COUNTERS)
    }

    pub fn stats_map(&mut self) -> PerCpuArray<&mut MapData, u64> {
        typed(&mut self.ebpf, names::STATS)
    }

    /// Virtual addresses to drop non-service traffic for (Accept_Mode false).
    pub fn set_not_accepted(&mut self, addrs: &[IpAddr]) -> Result<(), DataplaneError> {
        let mut map: HashMap<&mut MapData, VipKey, u8> = typed(&mut self.ebpf, names::NOT_ACCEPTED);
        for ip in addrs {
            let (addr, family) = addr_bytes(*ip);
            map.insert(VipKey { addr, family, _pad: [0; 3] }, 1, 0).map_err(map_err(names::NOT_ACCEPTED))?;
        }
        Ok(())
    }

    pub fn write_settings(&mut self, settings: Settings) -> Result<(), DataplaneError> {
        self.settings().set(0, settings, 0).map_err(map_err(names::SETTINGS))
    }

    /// The packets `fj-lb trace` reports (written before `SETTINGS_TRACE` is set).
    pub fn set_trace_filter(&mut self, filter: &TraceFilter) -> Result<(), DataplaneError> {
        let mut map: Array<&mut MapData, TraceFilter> = typed(&mut self.ebpf, names::TRACE_FILTER);
        map.set(0, filter, 0).map_err(map_err(names::TRACE_FILTER))
    }

    /// A reader of the TRACE ring buffer of its own (a duplicate of the map's descriptor), so
    /// that a trace can read it on another task while the object stays whole here for pinning
    /// and the other maps. One reader at a time: two would split the records between them.
    pub fn trace_reader(&self) -> Result<RingBuf<MapData>, DataplaneError> {
        let io = |e: std::io::Error| DataplaneError::Map {
            name: names::TRACE,
            source: MapError::SyscallError(aya::sys::SyscallError { call: "dup", io_error: e }),
        };
        let map = self.ebpf.map(names::TRACE).expect("the embedded object has every map");
        let Map::RingBuf(data) = map else { panic!("TRACE is a ring buffer") };
        use std::os::fd::AsFd as _;
        let fd = data.fd().as_fd().try_clone_to_owned().map_err(io)?;
        let data = MapData::from_fd(fd).map_err(map_err(names::TRACE))?;
        RingBuf::try_from(Map::RingBuf(data)).map_err(map_err(names::TRACE))
    }

    /// Counters summed over CPUs, by reason. `forwarded` is not counted on its own in the
    /// data path (one per-CPU update less per packet): it is the sum of the per-service packet
    /// counters, every id's, since counters are never reset and every forwarded packet counts
    /// once for its service.
    pub fn stats(&mut self) -> Result<Vec<(Stat, u64)>, DataplaneError> {
        let mut stats = sum_per_cpu(&self.stats_map(), &Stat::ALL, |s| s as u32, names::STATS)?;
        let forwarded = self.forwarded()?;
        for (s, n) in stats.iter_mut() {
            if *s == Stat::Forwarded {
                *n = forwarded;
            }
        }
        Ok(stats)
    }

    /// One counter (not `forwarded`, which `stats` derives), summed over CPUs.
    pub fn stat(&mut self, stat: Stat) -> Result<u64, DataplaneError> {
        Ok(sum_per_cpu(&self.stats_map(), &[stat], |s| s as u32, names::STATS)?[0].1)
    }

    fn forwarded(&mut self) -> Result<u64, DataplaneError> {
        let counters = self.service_counters();
        let mut total = 0;
        for id in 0..counters.len() {
            total += sum_counters(&counters, id).map_err(map_err(names::SERVICE_COUNTERS))?.packets;
        }
        Ok(total)
    }

    pub fn backend_counter(&mut self, id: u32) -> Result<Counters, DataplaneError> {
        sum_counters(&self.backend_counters(), id).map_err(map_err(names::BACKEND_COUNTERS))
    }

    pub fn service_counter(&mut self, id: u32) -> Result<Counters, DataplaneError> {
        sum_counters(&self.service_counters(), id).map_err(map_err(names::SERVICE_COUNTERS))
    }
}

/// A record read from the TRACE ring buffer; `None` for one of another size (a program of
/// another layout wrote it).
pub fn trace_record(bytes: &[u8]) -> Option<TraceRecord> {
    if bytes.len() != std::mem::size_of::<TraceRecord>() {
        return None;
    }
    // The length is checked; `TraceRecord` is plain data for which any bytes are valid.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const TraceRecord) })
}

/// Each counter of `all` (at `index(counter)` in `map`) summed over CPUs.
pub(crate) fn sum_per_cpu<T: std::borrow::Borrow<MapData>, S: Copy>(
    map: &PerCpuArray<T, u64>,
    all: &[S],
    index: impl Fn(S) -> u32,
    name: &'static str,
) -> Result<Vec<(S, u64)>, DataplaneError> {
    all.iter()
        .map(|s| {
            let v: PerCpuValues<u64> = map.get(&index(*s), 0).map_err(map_err(name))?;
            Ok((*s, v.iter().sum()))
        })
        .collect()
}

fn sum_counters(map: &PerCpuArray<&mut MapData, Counters>, id: u32) -> Result<Counters, MapError> {
    let v = map.get(&id, 0)?;
    Ok(v.iter().fold(Counters::default(), |a, c| Counters {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    }))
}

fn typed<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> T
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).expect("the embedded object has every map");
    T::try_from(map).expect("map types match fj-lb-common")
}

fn write_err(map: &'static str) -> impl FnOnce(MapError) -> MapWriteError {
    move |e| MapWriteError { map, source: Box::new(e) }
}

impl MapWriter for Dataplane {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), MapWriteError> {
        self.backends().set(id, backend, 0).map_err(write_err(names::BACKENDS))
    }

    fn write_table(&mut self, base: u32, table: &[u32]) -> Result<(), MapWriteError> {
        self.write_maglev(base, table).map_err(|e| MapWriteError { map: names::MAGLEV, source: Box::new(e) })
    }

    fn set_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), MapWriteError> {
        self.services().insert(key, value, 0).map_err(write_err(names::SERVICES))
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), MapWriteError> {
        self.services().remove(key).map_err(write_err(names::SERVICES))
    }

    fn set_generation_mark(&mut self, mark: u32) -> Result<(), MapWriteError> {
        let mut backends = self.backends();
        let last = backends.len() - 1;
        // As a released id: never alive, no family, so the data path and the next daemon's id
        // adoption pass over it; only its generation counts.
        backends.set(last, released(mark), 0).map_err(write_err(names::BACKENDS))
    }

    fn set_vips(&mut self, vips: &[ServiceKey]) -> Result<(), MapWriteError> {
        let mut map: HashMap<&mut MapData, ServiceKey, u8> = typed(&mut self.ebpf, names::VIPS);
        let stale: Vec<ServiceKey> = map.keys().filter_map(Result::ok).filter(|k| !vips.contains(k)).collect();
        for k in vips {
            map.insert(k, 1, 0).map_err(write_err(names::VIPS))?;
        }
        for k in &stale {
            map.remove(k).map_err(write_err(names::VIPS))?;
        }
        let mut filter: Array<&mut MapData, u64> = typed(&mut self.ebpf, names::VIP_FILTER);
        for (i, word) in vip_filter_words(vips.iter().map(|k| &k.addr)).into_iter().enumerate() {
            let i = i as u32;
            if filter.get(&i, 0).ok() != Some(word) {
                filter.set(i, word, 0).map_err(write_err(names::VIP_FILTER))?;
            }
        }
        Ok(())
    }
}
