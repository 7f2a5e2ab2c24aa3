//! Maglev consistent hashing (Eisenbud et al., NSDI'16) with weights, as Katran's MaglevV2
//! does it: every round each backend adds its weight to a running sum and takes its next
//! preferred slot each time the sum passes the largest weight. Pure: no I/O, no maps.
//!
//! Permutations come from the backend's identity (its address) and fixed seeds, and backends
//! are processed in a canonical order, so two LB hosts with the same config build the same table
//! whatever order the config lists the backends in.
use fj_lb_common::{NO_BACKEND, hash::bytes_hash};

const OFFSET_SEED: u32 = 0x243f_6a88;
const SKIP_SEED: u32 = 0x85a3_08d3;

/// One entry of the table's input: an identity to hash, a weight, and the value stored in the
/// slots this entry wins (the backend id in the data path).
#[derive(Debug, Clone)]
pub struct Entry {
    pub identity: Vec<u8>,
    pub weight: u32,
    pub value: u32,
}

/// Builds a table of `size` slots (a prime). Entries of weight 0 get no slot; when no entry has
/// weight, every slot is `NO_BACKEND`.
pub fn build(entries: &[Entry], size: u32) -> Vec<u32> {
    let m = size as usize;
    let mut table = vec![NO_BACKEND; m];
    let mut active: Vec<&Entry> = entries.iter().filter(|e| e.weight > 0).collect();
    if active.is_empty() || m == 0 {
        return table;
    }
    active.sort_by(|a, b| a.identity.cmp(&b.identity));
    let max_weight = active.iter().map(|e| e.weight).max().unwrap_or(1) as u64;
    let perms: Vec<(u64, u64)> = active
        .iter()
        .map(|e| {
            let offset = bytes_hash(&e.identity, OFFSET_SEED) as u64 % size as u64;
            let skip = if size > 1 {
                bytes_hash(&e.identity, SKIP_SEED) as u64 % (size as u64 - 1) + 1
            } else {
                1
            };
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; active.len()];
    let mut credit = vec![0u64; active.len()];
    let mut filled = 0usize;
    // Every round at least the heaviest entry takes a slot, so this ends after at most m rounds
    // times the number of entries; a permutation of a prime-sized table visits every slot.
    loop {
        for (i, e) in active.iter().enumerate() {
            credit[i] += e.weight as u64;
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            let (offset, skip) = perms[i];
            let slot = loop {
                let c = ((offset + next[i] * skip) % size as u64) as usize;
                next[i] += 1;
                if table[c] == NO_BACKEND {
                    break c;
                }
            };
            table[slot] = e.value;
            filled += 1;
            if filled == m {
                return table;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn backends(n: u32, weight: impl Fn(u32) -> u32) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                identity: [10, (i >> 16) as u8, (i >> 8) as u8, i as u8].to_vec(),
                weight: weight(i),
                value: i,
            })
            .collect()
    }

    fn counts(table: &[u32]) -> HashMap<u32, usize> {
        let mut c = HashMap::new();
        for v in table {
            *c.entry(*v).or_default() += 1;
        }
        c
    }

    /// Every backend's share of slots is within 1% of its share of the weight. Where 1% of a
    /// share is less than the table can express (1,000 backends get ~65 slots each), the last,
    /// partial round of the fill may give a backend up to two slots more or less.
    fn assert_spread(n: u32, weight: impl Fn(u32) -> u32 + Copy) {
        let size = 65537;
        let entries = backends(n, weight);
        let table = build(&entries, size);
        let c = counts(&table);
        assert!(!c.contains_key(&NO_BACKEND), "every slot is filled");
        let total: u64 = entries.iter().map(|e| e.weight as u64).sum();
        for e in &entries {
            let expected = size as f64 * e.weight as f64 / total as f64;
            let got = *c.get(&e.value).unwrap_or(&0) as f64;
            let tolerance = (expected * 0.01).max(2.0);
            assert!(
                (got - expected).abs() <= tolerance,
                "{n} backends: backend {} of weight {} has {got} slots, expected {expected:.1} ± {tolerance:.1}",
                e.value,
                e.weight
            );
        }
    }

    #[test]
    fn spread_follows_equal_weights() {
        for n in [3, 100, 1000] {
            assert_spread(n, |_| 100);
        }
    }

    #[test]
    fn spread_follows_unequal_weights() {
        for n in [3, 100, 1000] {
            assert_spread(n, |i| 50 + (i % 4) * 50);
        }
    }

    #[test]
    fn drained_backend_gets_no_slot() {
        let table = build(&backends(3, |i| if i == 1 { 0 } else { 100 }), 251);
        assert!(!table.contains(&1));
        assert!(table.contains(&0) && table.contains(&2));
    }

    #[test]
    fn no_weight_means_no_backend() {
        assert!(build(&backends(3, |_| 0), 13).iter().all(|v| *v == NO_BACKEND));
        assert!(build(&[], 13).iter().all(|v| *v == NO_BACKEND));
    }

    #[test]
    fn table_does_not_depend_on_config_order() {
        let mut entries = backends(20, |i| 10 + i);
        let a = build(&entries, 65537);
        entries.reverse();
        assert_eq!(a, build(&entries, 65537));
    }

    #[test]
    fn removing_one_backend_moves_few_survivor_slots() {
        for n in [3u32, 10, 100, 1000] {
            let size = 65537;
            let all = backends(n, |_| 100);
            let before = build(&all, size);
            let removed = n / 2;
            let rest: Vec<Entry> = all.iter().filter(|e| e.value != removed).cloned().collect();
            let after = build(&rest, size);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as f64;
            let bound = size as f64 * (1.0 / n as f64 + 0.01);
            assert!(moved <= bound, "{n} backends: {moved} slots moved, at most {bound:.0} allowed");
            let survivors_moved = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| **b != removed && b != a)
                .count() as f64;
            assert!(
                survivors_moved <= size as f64 * 0.01,
                "{n} backends: {survivors_moved} slots of survivors moved"
            );
        }
    }
}
