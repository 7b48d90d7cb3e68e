//! The daemon's place in the CPU scheduler (`[daemon] scheduling`). The
//! kernel's wake-up of the daemon after an exit is most of the tail of the
//! detection latency on a busy machine: in SCHED_FIFO it is not queued
//! behind normal processes. Nothing here touches the processes it starts,
//! which the kernel puts back to normal.
/// Puts the calling thread in SCHED_FIFO at priority 1 with
/// SCHED_RESET_ON_FORK: it runs ahead of every normal process, and what it
/// starts (processes and threads alike) is normal again.
pub fn realtime() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler on the calling thread with a valid param.
    let done = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
