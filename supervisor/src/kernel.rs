//! Facts about the running kernel that decide which mechanism to use.

/// Whether the running kernel is at least `major.minor`.
pub fn at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// The inode of the initial pid namespace, fixed by the kernel
/// (`PROC_PID_INIT_INO`).
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// `Some(why)` when this process is not in the initial pid namespace (it
/// is in a container's): the eBPF records and the proc connector's events
/// carry the pids the host sees, which are not the pids here (a process
/// that is 42 here was reported as 3653), so those mechanisms cannot be
/// used.
pub fn foreign_pid_namespace() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let ino = std::fs::metadata("/proc/self/ns/pid").ok()?.ino();
    (ino != INITIAL_PID_NAMESPACE).then(|| {
        format!("this is not the initial pid namespace (pid:[{ino}]): the kernel reports pids as the host sees them, not as they are here")
    })
}
