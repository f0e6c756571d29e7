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

#[cfg(test)]
mod tests {
    use super::*;

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
