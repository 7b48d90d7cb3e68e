//! The records the kernel program and userspace share, byte for byte.
//!
//! Everything here is `#[repr(C)]` with explicit padding so that the layout
//! is the same for the BPF target and x86_64. This crate holds layouts and
//! the names of maps and globals, nothing that interprets them.
#![no_std]

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;

/// One process death, as the eBPF program writes it into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    /// Kernel time of the exit (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// `task_struct.start_boottime` of the exiting thread group's leader,
    /// in nanoseconds since boot; with `tgid` it names the process.
    pub start_boottime_ns: u64,
    /// Thread group id: the pid as userspace knows it.
    pub tgid: u32,
    /// The thread whose exit ended the group.
    pub tid: u32,
    /// tgid of the parent (`real_parent`) at the time of death.
    pub ppid: u32,
    /// Exit status in wait(2) form: signal in bits 0..7, core flag 0x80,
    /// exit code in bits 8..16.
    pub wait_status: u32,
    pub comm: [u8; COMM_LEN],
    /// 1 if `signal` holds who sent the signal that ended the process.
    pub has_signal: u32,
    /// 1 if the OOM killer chose it (`oom` holds what it saw).
    pub has_oom: u32,
    pub signal: SignalRecord,
    pub oom: OomRecord,
}

/// What `oom/mark_victim` saw when the OOM killer chose a watched process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomRecord {
    pub ktime_ns: u64,
    /// The victim's resident memory then, in KiB: anonymous, file-backed,
    /// shared memory.
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    /// The task whose allocation made the kernel kill (not a sender).
    pub trigger_tgid: u32,
    pub _pad: u32,
    pub trigger_comm: [u8; COMM_LEN],
}

/// Key of the signal map: the target process and the signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalKey {
    pub tgid: u32,
    pub signal: u32,
}

/// The last signal of one kind sent to a watched process, recorded in the
/// sender's context when it is sent (the sender may be gone by the time
/// the process dies, let alone when userspace reads the record).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalRecord {
    /// When it was sent (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// `start_boottime` of the target's leader: with the key's tgid, the
    /// process it was sent to (not a later one with its pid).
    pub target_start_boottime_ns: u64,
    /// `start_boottime` of the sender's leader, to tell the sender from a
    /// later process with its pid.
    pub sender_start_boottime_ns: u64,
    /// `si_addr`, for the faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
    /// SIGTRAP) the kernel raises with a positive `si_code`.
    pub addr: u64,
    /// The task that was running when the signal was generated: the
    /// sender of a `kill`, the faulting task, or whichever task the
    /// kernel was serving (an allocation, for the OOM killer).
    pub sender_tgid: u32,
    pub sender_tid: u32,
    /// Its real uid.
    pub sender_uid: u32,
    /// tgid of its parent (`real_parent`).
    pub parent_tgid: u32,
    pub signal: u32,
    /// `si_code`: `SI_USER` (0) from kill, `SI_TKILL` (-6), `SI_QUEUE`
    /// (-1), `SI_KERNEL` (0x80), or a fault's code.
    pub code: i32,
    pub sender_comm: [u8; COMM_LEN],
    pub parent_comm: [u8; COMM_LEN],
}

/// A signal that could end a traced process, as `trace --signals` is
/// told of it when it is sent (only while `REPORT_SIGNALS` is set).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentRecord {
    /// The target process (its tgid) and the thread it was sent to.
    pub target_tgid: u32,
    pub target_tid: u32,
    /// 1 if it was sent to the whole group (`kill`), 0 to one thread.
    pub group: u32,
    pub _pad: u32,
    /// The target's name (its leader's).
    pub target_comm: [u8; COMM_LEN],
    pub signal: SignalRecord,
}

/// Value of the watched-process map, keyed by tgid.
///
/// When the ring buffer is full the program cannot report a death, so it
/// leaves it here instead (`lost` = 1 with the status) before it counts the
/// drop: a userspace that sees the drop counter move finds every such death
/// in this map, exact, however far the process has got with exiting.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchEntry {
    /// Start time in clock ticks since boot, as `/proc/PID/stat` field 22
    /// reports it. 0 matches any process with this tgid.
    pub start_ticks: u64,
    /// 1 once the process died and its record could not be reserved.
    pub lost: u32,
    /// Its wait status, valid when `lost` is 1.
    pub wait_status: u32,
}

impl WatchEntry {
    pub const fn watching(start_ticks: u64) -> Self {
        Self {
            start_ticks,
            lost: 0,
            wait_status: 0,
        }
    }
}

/// Indices into the per-CPU `STATS` array.
pub mod stat {
    /// Thread-group deaths the program saw (watched or not).
    pub const GROUP_EXITS: u32 = 0;
    /// Records written to the ring buffer.
    pub const EMITTED: u32 = 1;
    /// Records lost because the ring buffer was full.
    pub const DROPPED: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// Map and global names, shared so a typo cannot split the two sides.
pub mod names {
    pub const PROGRAM: &str = "sched_process_exit";
    pub const SIGNAL_PROGRAM: &str = "signal_generate";
    pub const OOM_PROGRAM: &str = "mark_victim";
    pub const OOM_KILLS: &str = "OOM_KILLS";
    pub const EVENTS: &str = "EVENTS";
    pub const SENT: &str = "SENT";
    pub const SIGNALS: &str = "SIGNALS";
    pub const WATCHED: &str = "WATCHED";
    pub const STATS: &str = "STATS";

    /// The kernel program's globals that userspace sets at load time
    /// (`#[no_mangle]` statics there: a name cannot come from a constant,
    /// so a test checks that each of these is in the object).
    pub mod globals {
        pub const REPORT_ALL: &str = "REPORT_ALL";
        pub const REPORT_SIGNALS: &str = "REPORT_SIGNALS";
        pub const NS_PER_TICK: &str = "NS_PER_TICK";
        pub const TP_GROUP_DEAD: &str = "TP_GROUP_DEAD";
        pub const TASK_TGID: &str = "TASK_TGID";
        pub const TASK_PID: &str = "TASK_PID";
        pub const TASK_REAL_PARENT: &str = "TASK_REAL_PARENT";
        pub const TASK_GROUP_LEADER: &str = "TASK_GROUP_LEADER";
        pub const TASK_EXIT_CODE: &str = "TASK_EXIT_CODE";
        pub const TASK_START_BOOTTIME: &str = "TASK_START_BOOTTIME";
        pub const TASK_SIGNAL: &str = "TASK_SIGNAL";
        pub const SIGNAL_FLAGS: &str = "SIGNAL_FLAGS";
        pub const SIGNAL_GROUP_EXIT_CODE: &str = "SIGNAL_GROUP_EXIT_CODE";
        pub const SIGNAL_LIVE: &str = "SIGNAL_LIVE";
        pub const TASK_COMM: &str = "TASK_COMM";
        pub const SIGINFO_CODE: &str = "SIGINFO_CODE";
        pub const SIGINFO_FIELDS: &str = "SIGINFO_FIELDS";
        pub const TP_OOM_PID: &str = "TP_OOM_PID";
        pub const TP_OOM_ANON_RSS: &str = "TP_OOM_ANON_RSS";
        pub const TP_OOM_FILE_RSS: &str = "TP_OOM_FILE_RSS";
        pub const TP_OOM_SHMEM_RSS: &str = "TP_OOM_SHMEM_RSS";

        pub const ALL: [&str; 21] = [
            REPORT_ALL,
            REPORT_SIGNALS,
            NS_PER_TICK,
            TP_GROUP_DEAD,
            TASK_TGID,
            TASK_PID,
            TASK_REAL_PARENT,
            TASK_GROUP_LEADER,
            TASK_EXIT_CODE,
            TASK_START_BOOTTIME,
            TASK_SIGNAL,
            SIGNAL_FLAGS,
            SIGNAL_GROUP_EXIT_CODE,
            SIGNAL_LIVE,
            TASK_COMM,
            SIGINFO_CODE,
            SIGINFO_FIELDS,
            TP_OOM_PID,
            TP_OOM_ANON_RSS,
            TP_OOM_FILE_RSS,
            TP_OOM_SHMEM_RSS,
        ];
    }
}

/// Capacity of the watched-process map.
pub const MAX_WATCHED: u32 = 65_536;

/// Capacity of the signal map (least recently used entries go first: a
/// process that handled a signal and lived on leaves its entry behind).
pub const MAX_SIGNALS: u32 = 16_384;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: both are plain `#[repr(C)]` integers with no padding holes
    // that could leak uninitialised memory.
    unsafe impl aya::Pod for super::ExitRecord {}
    unsafe impl aya::Pod for super::WatchEntry {}
    unsafe impl aya::Pod for super::SignalKey {}
    unsafe impl aya::Pod for super::SignalRecord {}
    unsafe impl aya::Pod for super::OomRecord {}
    unsafe impl aya::Pod for super::SentRecord {}
}
