//! The eBPF backend: a tracepoint on `sched_process_exit` that filters in
//! the kernel and hands each watched death to userspace through a ring
//! buffer, read via tokio's `AsyncFd` (no polling).
//!
//! Owns the loaded program, its maps and the attachment; knows nothing of
//! what the processes are for.

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use supervisor_common::{
    names::{self, globals},
    stat, ExitRecord, SentRecord, SignalRecord, WatchEntry,
};
use tokio::io::{unix::AsyncFd, Interest};

use super::{kernel_layout::KernelLayout, tracefs, Counters, Options, Scope, Tracked};
use crate::{
    exit::{ExitEvent, ExitStatus},
    origin::{Code, OomKill, Origin, Sender, SentSignal},
    process::{self, Pid, ProcessId, StartTime},
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/supervisor-ebpf"));

pub struct EbpfBackend {
    ring: AsyncFd<RingBuf<MapData>>,
    watched: BpfHashMap<MapData, u32, WatchEntry>,
    stats: PerCpuArray<MapData, u64>,
    scope: Scope,
    tracked: Tracked,
    counters: Counters,
    /// Records were read since the drop counter was last looked at.
    drained_since_check: bool,
    /// The signal program runs: records say who sent a fatal signal.
    senders: bool,
    /// Signals as they are sent, when asked for, until taken.
    signals: Option<SignalTap>,
    /// Keeps the program loaded and attached; dropped with the backend.
    _ebpf: Ebpf,
}

impl EbpfBackend {
    pub fn open(options: &Options) -> Result<Self> {
        if OBJECT.is_empty() {
            bail!("not built into this binary (it was built with AYA_BUILD_SKIP or without bpf-linker)");
        }
        let tracefs = tracefs::ensure_mounted()?;
        let layout = KernelLayout::read(&tracefs)?;
        let ns_per_tick = process::ns_per_tick();
        let report_all = u8::from(options.scope == Scope::All);
        let report_signals = u8::from(options.report_signals);
        let tp_group_dead = match layout.tp_group_dead {
            Some(offset) if !options.ebpf_ignore_group_dead_field => offset,
            _ => u32::MAX,
        };

        let mut loader = EbpfLoader::new();
        loader
            .override_global(globals::REPORT_ALL, &report_all, true)
            .override_global(globals::REPORT_SIGNALS, &report_signals, true)
            .override_global(globals::NS_PER_TICK, &ns_per_tick, true)
            .override_global(globals::TP_GROUP_DEAD, &tp_group_dead, true)
            .override_global(globals::TASK_TGID, &layout.task_tgid, true)
            .override_global(globals::TASK_PID, &layout.task_pid, true)
            .override_global(globals::TASK_REAL_PARENT, &layout.task_real_parent, true)
            .override_global(globals::TASK_GROUP_LEADER, &layout.task_group_leader, true)
            .override_global(globals::TASK_EXIT_CODE, &layout.task_exit_code, true)
            .override_global(
                globals::TASK_START_BOOTTIME,
                &layout.task_start_boottime,
                true,
            )
            .override_global(globals::TASK_SIGNAL, &layout.task_signal, true)
            .override_global(globals::SIGNAL_FLAGS, &layout.signal_flags, true)
            .override_global(
                globals::SIGNAL_GROUP_EXIT_CODE,
                &layout.signal_group_exit_code,
                true,
            )
            .override_global(globals::SIGNAL_LIVE, &layout.signal_live, true)
            .override_global(globals::TASK_COMM, &layout.task_comm, true)
            .override_global(globals::SIGINFO_CODE, &layout.siginfo_code, true)
            .override_global(globals::SIGINFO_FIELDS, &layout.siginfo_fields, true);
        let absent = u32::MAX;
        let oom = layout.oom;
        let oom_pid = oom.map_or(absent, |o| o.pid);
        let oom_anon = oom.and_then(|o| o.anon_rss).unwrap_or(absent);
        let oom_file = oom.and_then(|o| o.file_rss).unwrap_or(absent);
        let oom_shmem = oom.and_then(|o| o.shmem_rss).unwrap_or(absent);
        loader
            .override_global(globals::TP_OOM_PID, &oom_pid, true)
            .override_global(globals::TP_OOM_ANON_RSS, &oom_anon, true)
            .override_global(globals::TP_OOM_FILE_RSS, &oom_file, true)
            .override_global(globals::TP_OOM_SHMEM_RSS, &oom_shmem, true);
        if let Some(bytes) = options.ring_bytes {
            loader.map_max_entries(names::EVENTS, bytes);
        }
        if options.report_signals {
            loader.map_max_entries(names::SENT, 256 * 1024);
        }
        let mut ebpf = loader
            .load(OBJECT)
            .context("loading the eBPF program (needs root, or CAP_BPF with CAP_PERFMON)")?;
        let program: &mut TracePoint = ebpf
            .program_mut(names::PROGRAM)
            .context("eBPF object has no exit program")?
            .try_into()?;
        program
            .load()
            .context("the kernel refused the exit program (verifier or permissions)")?;
        program
            .attach("sched", "sched_process_exit")
            .context("attaching to tracepoint sched/sched_process_exit")?;
        // Without it deaths are still reported, only not who sent them.
        let senders = attach_signal_program(&mut ebpf)
            .inspect_err(|e| log::warn!("eBPF: {e:#}; exits will not say who sent the signal"))
            .is_ok();
        if oom.is_some() {
            if let Err(e) = attach_oom_program(&mut ebpf) {
                log::warn!("eBPF: {e:#}; OOM kills are told only by the cgroup's counter");
            }
        }

        if options.report_signals && !senders {
            bail!("signals were asked for, and the signal program did not load");
        }
        let signals = if options.report_signals {
            let ring = RingBuf::try_from(ebpf.take_map(names::SENT).context("no SENT map")?)?;
            Some(SignalTap {
                ring: readable(ring)?,
                ready: Default::default(),
            })
        } else {
            None
        };
        let ring = RingBuf::try_from(ebpf.take_map(names::EVENTS).context("no EVENTS map")?)?;
        let watched =
            BpfHashMap::try_from(ebpf.take_map(names::WATCHED).context("no WATCHED map")?)?;
        let stats = PerCpuArray::try_from(ebpf.take_map(names::STATS).context("no STATS map")?)?;
        Ok(Self {
            ring: readable(ring)?,
            watched,
            stats,
            scope: options.scope,
            tracked: Tracked::default(),
            counters: Counters::default(),
            drained_since_check: false,
            senders,
            signals,
            _ebpf: ebpf,
        })
    }

    /// Whether its records say who sent a fatal signal.
    pub fn sees_senders(&self) -> bool {
        self.senders
    }

    /// The signals asked for with `Options::report_signals`, once.
    pub fn take_signals(&mut self) -> Option<SignalTap> {
        self.signals.take()
    }

    pub fn watch(&mut self, process: ProcessId) -> Result<()> {
        self.tracked.insert(process);
        let entry = WatchEntry::watching(process.start.ticks());
        self.watched
            .insert(process.pid.get(), entry, 0)
            .with_context(|| format!("adding pid {} to the kernel's watch map", process.pid))?;
        if !self.tracked.confirm_alive(process) {
            let _ = self.watched.remove(&process.pid.get());
        }
        Ok(())
    }

    pub fn unwatch(&mut self, pid: Pid) -> Result<()> {
        self.tracked.remove(pid);
        match self.watched.remove(&pid.get()) {
            // Already gone: the program removes what it reported.
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("removing pid {pid} from the kernel's watch map"))
            }
        }
    }

    pub async fn next_exit(&mut self) -> Result<ExitEvent> {
        loop {
            if let Some(event) = self.tracked.pop() {
                return Ok(event);
            }
            // Off the hot path: only once what was read has been handed
            // out, before sleeping again.
            if self.drained_since_check {
                self.drained_since_check = false;
                self.check_drops();
                continue;
            }
            let records: Vec<ExitRecord> = read_records(&mut self.ring)
                .await
                .context("waiting on the eBPF ring buffer")?;
            self.counters.delivered += records.len() as u64;
            // A sender that killed many at once is read once.
            let mut cmdlines = Cmdlines::default();
            for record in records {
                let event = event_from(&record, &mut cmdlines);
                match self.scope {
                    Scope::All => self.tracked.ready.push_back(event),
                    Scope::Watched => {
                        self.tracked.report(event);
                    }
                }
            }
            self.drained_since_check = true;
        }
    }

    /// A record the program could not reserve is a death nobody told us
    /// about: when the drop counter moves, collect the deaths the program
    /// left in the watch map instead.
    fn check_drops(&mut self) {
        let Ok(dropped) = self.stat_sum(stat::DROPPED) else {
            return;
        };
        if dropped <= self.counters.dropped {
            return;
        }
        log::warn!(
            "eBPF ring buffer overflowed: {} exit record(s) lost; collecting them from the watch map",
            dropped - self.counters.dropped
        );
        self.counters.dropped = dropped;
        self.counters.resyncs += 1;
        let lost: Vec<(u32, WatchEntry)> = self
            .watched
            .iter()
            .flatten()
            .filter(|(_, entry)| entry.lost != 0)
            .collect();
        for (tgid, entry) in lost {
            let _ = self.watched.remove(&tgid);
            let Some(pid) = Pid::new(tgid) else { continue };
            self.tracked.report(ExitEvent {
                process: Some(ProcessId {
                    pid,
                    start: StartTime::from_ticks(entry.start_ticks),
                }),
                discovered: true,
                ..ExitEvent::new(pid, ExitStatus::from_wait_status(entry.wait_status))
            });
        }
    }

    fn stat_sum(&self, index: u32) -> Result<u64> {
        let values = self.stats.get(&index, 0)?;
        Ok(values.iter().sum())
    }

    pub fn counters(&self) -> Counters {
        Counters {
            kernel_group_exits: self.stat_sum(stat::GROUP_EXITS).ok(),
            dropped: self
                .stat_sum(stat::DROPPED)
                .unwrap_or(self.counters.dropped),
            ..self.counters
        }
    }
}

/// Each signal that could end a watched process, as it is sent
/// (`trace --signals`); read apart from exits, so that a reader can wait
/// on both at once.
pub struct SignalTap {
    ring: AsyncFd<RingBuf<MapData>>,
    ready: std::collections::VecDeque<SentSignal>,
}

impl SignalTap {
    /// The next signal. Cancel-safe: what was read waits in `ready`.
    pub async fn next(&mut self) -> Result<SentSignal> {
        loop {
            if let Some(signal) = self.ready.pop_front() {
                return Ok(signal);
            }
            let records: Vec<SentRecord> = read_records(&mut self.ring)
                .await
                .context("waiting on the eBPF signal ring buffer")?;
            let mut cmdlines = Cmdlines::default();
            self.ready
                .extend(records.iter().filter_map(|r| sent_from(r, &mut cmdlines)));
        }
    }
}

/// Waits until `ring` has records, and takes every whole one there.
async fn read_records<T: aya::Pod>(
    ring: &mut AsyncFd<RingBuf<MapData>>,
) -> std::io::Result<Vec<T>> {
    let mut guard = ring.readable_mut().await?;
    let ring = guard.get_inner_mut();
    let mut records = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<T>() {
            // SAFETY: the program writes whole records of this type (`Pod`:
            // any bytes are a value); the length is checked and the read
            // needs no alignment.
            records.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<T>()) });
        }
    }
    guard.clear_ready();
    Ok(records)
}

fn readable(ring: RingBuf<MapData>) -> Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as
    // the AsyncFd that wraps it exists.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("registering a ring buffer with tokio")
}

fn attach_signal_program(ebpf: &mut Ebpf) -> Result<()> {
    let program: &mut RawTracePoint = ebpf
        .program_mut(names::SIGNAL_PROGRAM)
        .context("the eBPF object has no signal program")?
        .try_into()?;
    program
        .load()
        .context("the kernel refused the signal program (verifier or permissions)")?;
    program
        .attach("signal_generate")
        .context("attaching to raw tracepoint signal_generate")?;
    Ok(())
}

fn attach_oom_program(ebpf: &mut Ebpf) -> Result<()> {
    let program: &mut TracePoint = ebpf
        .program_mut(names::OOM_PROGRAM)
        .context("the eBPF object has no OOM program")?
        .try_into()?;
    program
        .load()
        .context("the kernel refused the OOM program (verifier or permissions)")?;
    program
        .attach("oom", "mark_victim")
        .context("attaching to tracepoint oom/mark_victim")?;
    Ok(())
}

/// A kernel string: up to its first NUL.
fn text(bytes: &[u8]) -> String {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

/// How much of a sender's command line is read.
const CMDLINE_LIMIT: usize = 4096;

/// Senders' command lines read for one batch of records.
#[derive(Default)]
struct Cmdlines(std::collections::HashMap<ProcessId, Option<String>>);

impl Cmdlines {
    fn of(&mut self, sender: ProcessId) -> Option<String> {
        self.0
            .entry(sender)
            .or_insert_with(|| process::cmdline(sender, CMDLINE_LIMIT))
            .clone()
    }
}

fn origin_from(record: &SignalRecord, cmdlines: &mut Cmdlines) -> Option<Origin> {
    let pid = Pid::new(record.sender_tgid)?;
    let start = StartTime::from_boottime_ns(record.sender_start_boottime_ns);
    let code = Code::from_raw(record.code);
    Some(Origin {
        signal: record.signal as i32,
        code,
        sender: Sender {
            pid,
            tid: Pid::new(record.sender_tid).unwrap_or(pid),
            uid: record.sender_uid,
            comm: text(&record.sender_comm),
            parent: Pid::new(record.parent_tgid).map(|p| (p, text(&record.parent_comm))),
            start,
            // Read while the sender may still run (a shell that sent it and
            // exited is gone by now, and says so by having none).
            cmdline: code
                .from_a_process()
                .then(|| cmdlines.of(ProcessId { pid, start }))
                .flatten(),
        },
        addr: matches!(code, Code::Fault(_)).then_some(record.addr),
        sent_ns: record.ktime_ns,
    })
}

fn sent_from(record: &SentRecord, cmdlines: &mut Cmdlines) -> Option<SentSignal> {
    let pid = Pid::new(record.target_tgid)?;
    Some(SentSignal {
        pid,
        tid: Pid::new(record.target_tid).unwrap_or(pid),
        group: record.group != 0,
        comm: text(&record.target_comm),
        signal: record.signal.signal as i32,
        origin: origin_from(&record.signal, cmdlines)?,
        kernel_ns: record.signal.ktime_ns,
    })
}

fn event_from(record: &ExitRecord, cmdlines: &mut Cmdlines) -> ExitEvent {
    let pid = Pid::new(record.tgid).unwrap_or_else(|| Pid::new(u32::MAX).expect("nonzero"));
    ExitEvent {
        process: Some(ProcessId {
            pid,
            start: StartTime::from_boottime_ns(record.start_boottime_ns),
        }),
        tid: Pid::new(record.tid),
        ppid: Pid::new(record.ppid),
        comm: Some(text(&record.comm)),
        kernel_ns: Some(record.ktime_ns),
        origin: (record.has_signal != 0)
            .then(|| origin_from(&record.signal, cmdlines))
            .flatten(),
        oom: (record.has_oom != 0).then(|| OomKill {
            anon_rss: record.oom.anon_rss_kb * 1024,
            file_rss: record.oom.file_rss_kb * 1024,
            shmem_rss: record.oom.shmem_rss_kb * 1024,
            trigger: Pid::new(record.oom.trigger_tgid).map(|p| (p, text(&record.oom.trigger_comm))),
        }),
        ..ExitEvent::new(pid, ExitStatus::from_wait_status(record.wait_status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each global userspace overrides must be a symbol of the object, or
    /// the loader would fail at run time on a renamed static.
    #[test]
    fn every_global_userspace_sets_is_in_the_object() {
        if OBJECT.is_empty() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "the eBPF object was not built into this test binary");
            eprintln!("SKIPPED: built without the eBPF object (AYA_BUILD_SKIP or no bpf-linker)");
            return;
        }
        for name in globals::ALL {
            let symbol = [b"\0", name.as_bytes(), b"\0"].concat();
            assert!(
                OBJECT.windows(symbol.len()).any(|w| w == symbol),
                "{name} is not a symbol of the eBPF object"
            );
        }
    }
}
