//! Running independent tasks on a bounded number of threads.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Applies `f` to every item on at most `jobs` threads and returns the results in item order.
/// The first error stops the handing out of further items and is returned (tasks already
/// running finish first).
pub(crate) fn run_parallel<T, R, E, F>(items: &[T], jobs: NonZeroUsize, f: F) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
    F: Fn(&T) -> Result<R, E> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let error: Mutex<Option<E>> = Mutex::new(None);
    let threads = jobs.get().min(items.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    match f(item) {
                        Ok(r) => results.lock().expect("no panics while locked")[i] = Some(r),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            error
                                .lock()
                                .expect("no panics while locked")
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().expect("threads joined") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("threads joined")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_stops_on_error() {
        let items: Vec<u32> = (0..50).collect();
        let out: Result<Vec<u32>, ()> =
            run_parallel(&items, NonZeroUsize::new(3).unwrap(), |&i| Ok(i * 2));
        assert_eq!(
            out.unwrap(),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );

        let ran = AtomicUsize::new(0);
        let out: Result<Vec<u32>, String> = run_parallel(&items, NonZeroUsize::MIN, |&i| {
            ran.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                Err(format!("item {i}"))
            } else {
                Ok(i)
            }
        });
        assert_eq!(out.unwrap_err(), "item 3");
        assert_eq!(
            ran.load(Ordering::Relaxed),
            4,
            "nothing runs after the failure"
        );

        let empty: Result<Vec<u32>, ()> = run_parallel(&[], NonZeroUsize::MIN, |&i: &u32| Ok(i));
        assert!(empty.unwrap().is_empty());
    }
}
