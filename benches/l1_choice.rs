//! Why the L1 cache is quick_cache: both candidates on gatepass's access
//! pattern (2 threads, hits on a working set of cached tokens, values are
//! `Arc`s, a share of misses for unknown ids), in one run.
//!
//!     cargo bench --bench l1_choice
//!
//! Prints ns per lookup for hits and for a 10 % miss mix, and resident
//! memory per cached entry.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const THREADS: usize = 2;
const LOOKUPS_PER_THREAD: usize = 5_000_000;

/// Stand-in for a cached token: the size of gatepass's entry.
struct Entry {
    _payload: [u64; 12],
}

trait Candidate: Sync {
    fn name(&self) -> &'static str;
    fn insert(&self, key: i64, value: Arc<Entry>);
    fn get(&self, key: i64) -> Option<Arc<Entry>>;
}

struct Quick(quick_cache::sync::Cache<i64, Arc<Entry>>);
struct Moka(moka::sync::Cache<i64, Arc<Entry>>);

impl Candidate for Quick {
    fn name(&self) -> &'static str {
        "quick_cache 0.7"
    }
    fn insert(&self, key: i64, value: Arc<Entry>) {
        self.0.insert(key, value);
    }
    fn get(&self, key: i64) -> Option<Arc<Entry>> {
        self.0.get(&key)
    }
}

impl Candidate for Moka {
    fn name(&self) -> &'static str {
        "moka 0.12 (sync)"
    }
    fn insert(&self, key: i64, value: Arc<Entry>) {
        self.0.insert(key, value);
    }
    fn get(&self, key: i64) -> Option<Arc<Entry>> {
        self.0.get(&key)
    }
}

/// xorshift: cheap and deterministic per thread.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn run(cache: &dyn Candidate, working_set: i64, miss_every: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            scope.spawn(move || {
                let mut state = 0x9E37_79B9_7F4A_7C15 ^ (thread as u64 + 1);
                for _ in 0..LOOKUPS_PER_THREAD {
                    let r = next(&mut state);
                    let key = if miss_every > 0 && r.is_multiple_of(miss_every) {
                        -((r >> 8) as i64 & 0xFFFF_FFFF) - 1
                    } else {
                        (r >> 8) as i64 % working_set
                    };
                    black_box(cache.get(key));
                }
            });
        }
    });
    start.elapsed()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = status
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    println!(
        "{THREADS} threads x {LOOKUPS_PER_THREAD} lookups; ns per lookup (wall time / total lookups)"
    );
    println!("| cache | entries | hits only | 10% misses | RSS per entry |");
    println!("|---|---|---|---|---|");
    for entries in [10_000i64, 100_000, 1_000_000] {
        for which in 0..2 {
            let before = rss_bytes();
            let cache: Box<dyn Candidate> = match which {
                0 => Box::new(Quick(quick_cache::sync::Cache::new(entries as usize))),
                _ => Box::new(Moka(moka::sync::Cache::new(entries as u64))),
            };
            for key in 0..entries {
                cache.insert(
                    key,
                    Arc::new(Entry {
                        _payload: [key as u64; 12],
                    }),
                );
            }
            if which == 1 {
                // moka applies inserts asynchronously; let it settle.
                std::thread::sleep(Duration::from_millis(200));
            }
            let per_entry = rss_bytes().saturating_sub(before) / entries as u64;
            let hits = run(cache.as_ref(), entries, 0);
            let mixed = run(cache.as_ref(), entries, 10);
            let total = (THREADS * LOOKUPS_PER_THREAD) as f64;
            println!(
                "| {} | {entries} | {:.1} | {:.1} | {per_entry} B |",
                cache.name(),
                hits.as_nanos() as f64 / total,
                mixed.as_nanos() as f64 / total,
            );
        }
    }
}
