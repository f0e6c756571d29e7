//! The CPU priority of bulk work. Capturing what crawls write and storing
//! it is work by the megabyte that can wait a moment; an answer to a
//! request cannot. So the threads that do bulk work run at a lower
//! priority (a higher nice value): on a machine whose cores are all busy
//! (crawls, clients, the daemon), the answers get the CPU first, and with a
//! core free, bulk work runs at full speed.

/// How much lower: a thread at nice +10 gets about a tenth of the CPU a
/// thread at the daemon's own nice value gets when both want one core,
/// which is still several times what capturing a fast crawl needs.
const BULK_NICE_STEP: i32 = 10;

/// The highest nice value Linux has.
const LOWEST_PRIORITY: i32 = 19;

/// Lowers the calling thread's priority, and only its own: on Linux each
/// thread has a nice value of its own.
pub fn lower_this_thread() {
    let lowered = rustix::process::getpriority_process(None)
        .map(|nice| (nice + BULK_NICE_STEP).min(LOWEST_PRIORITY))
        .and_then(|nice| rustix::process::setpriority_process(None, nice));
    if let Err(error) = lowered {
        // Only the priority is lost: the work is done all the same.
        tracing::debug!(%error, "cannot lower the priority of a bulk thread");
    }
}

/// Hands the core to a thread that wants it, if one does. Bulk threads
/// call it between small pieces of their work (a block of records stored,
/// a hundred lines parsed): the scheduler lets a thread it picks run for a
/// whole slice (a millisecond or more), low priority or not, and an
/// answer's thread woken meanwhile waits for the slice to end. Between
/// pieces it waits a tenth of that; with nobody waiting, a yield costs a
/// system call. Measured: `schedule.json` while four crawls stream kept
/// 88, 92, 97 and 98 % of its idle rate in four runs with the yields, and
/// 90–91 % in four runs without.
pub fn let_others_run() {
    std::thread::yield_now();
}

/// `items`, with [`let_others_run`] after every `every` of them (each,
/// for 0).
pub fn yielding<I: Iterator>(items: I, every: usize) -> impl Iterator<Item = I::Item> {
    let every = every.max(1);
    items.enumerate().map(move |(number, item)| {
        if number % every == every - 1 {
            let_others_run();
        }
        item
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yielding_gives_every_item_in_order() {
        let items: Vec<u32> = yielding(0..10, 3).collect();
        assert_eq!(items, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn lowers_the_calling_thread_only() {
        let own = rustix::process::getpriority_process(None).unwrap();
        let lowered = std::thread::spawn(|| {
            lower_this_thread();
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (own + BULK_NICE_STEP).min(LOWEST_PRIORITY));
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), own);
    }
}
