//! Single-flight: concurrent misses for one key share one fetch.
//!
//! The first caller for a key becomes the leader and runs the fetch; callers
//! arriving while it runs wait for the same result, error included, so a
//! burst of misses for a cold token is one database query, and a burst
//! against a dead database is one failed query rather than hundreds. If the
//! leader is cancelled (its client went away), a waiter takes over.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

#[derive(Debug)]
pub struct Flights<K, V> {
    in_flight: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Copy, V: Clone> Flights<K, V> {
    pub fn new() -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub async fn run<F, Fut>(&self, key: K, fetch: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self
            .lock()
            .entry(key)
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let value = cell.get_or_init(fetch).await.clone();
        // The first caller back retires the flight; later misses start a
        // new one and so see changes made since.
        let mut in_flight = self.lock();
        if in_flight
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            in_flight.remove(&key);
        }
        value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>>> {
        // A panic while holding this lock cannot leave the map inconsistent:
        // every critical section is a single insert or remove.
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K: Eq + Hash + Copy, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_fetch() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let flights = flights.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                flights
                    .run(7, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), 42);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // The flight is over: the next miss fetches again.
        let again = flights.run(7, || async { 43 }).await;
        assert_eq!(again, 43);
    }

    #[tokio::test]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let flights = Arc::new(Flights::<u32, u32>::new());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(1, || async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        0
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run(1, || async { 5 }).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        assert_eq!(waiter.await.unwrap(), 5);
    }
}
