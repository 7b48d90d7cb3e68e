//! Offsets the eBPF programs need and cannot compute themselves: fields of
//! `task_struct`, `signal_struct` and `kernel_siginfo` from the kernel's
//! BTF, and the fields
//! of the `sched_process_exit` tracepoint record from its `format` file.
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use btf_rs::{Btf, Type};

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offsets, named after the eBPF program's globals.
#[derive(Clone, Copy, Debug)]
pub struct KernelLayout {
    pub task_tgid: u32,
    /// The thread's own id.
    pub task_pid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_exit_code: u32,
    pub task_start_boottime: u32,
    pub task_signal: u32,
    pub signal_flags: u32,
    pub signal_group_exit_code: u32,
    pub signal_live: u32,
    pub task_comm: u32,
    pub siginfo_code: u32,
    /// The `_sifields` union.
    pub siginfo_fields: u32,
    /// `None` on kernels whose tracepoint has no `group_dead` field.
    pub tp_group_dead: Option<u32>,
    /// `oom/mark_victim`'s fields (`None`: this kernel's lacks one).
    pub oom: Option<OomLayout>,
}

#[derive(Clone, Copy, Debug)]
pub struct OomLayout {
    pub pid: u32,
    pub anon_rss: Option<u32>,
    pub file_rss: Option<u32>,
    pub shmem_rss: Option<u32>,
}

impl KernelLayout {
    pub fn read(tracefs: &Path) -> Result<Self> {
        let btf = Btf::from_file(VMLINUX_BTF).with_context(|| {
            format!("reading kernel BTF from {VMLINUX_BTF} (kernel built without CONFIG_DEBUG_INFO_BTF?)")
        })?;
        let task = |m: &[&str]| member_offset(&btf, "task_struct", m);
        let signal = |m: &[&str]| member_offset(&btf, "signal_struct", m);
        let siginfo = |m: &[&str]| member_offset(&btf, "kernel_siginfo", m);
        let format = tracefs.join("events/sched/sched_process_exit/format");
        let format_text = std::fs::read_to_string(&format)
            .with_context(|| format!("reading {}", format.display()))?;
        Ok(Self {
            task_tgid: task(&["tgid"])?,
            task_pid: task(&["pid"])?,
            task_real_parent: task(&["real_parent"])?,
            task_group_leader: task(&["group_leader"])?,
            task_exit_code: task(&["exit_code"])?,
            // Renamed in 5.5.
            task_start_boottime: task(&["start_boottime", "real_start_time"])?,
            task_signal: task(&["signal"])?,
            signal_flags: signal(&["flags"])?,
            signal_group_exit_code: signal(&["group_exit_code"])?,
            signal_live: signal(&["live"])?,
            task_comm: task(&["comm"])?,
            siginfo_code: siginfo(&["si_code"])?,
            siginfo_fields: siginfo(&["_sifields"])?,
            tp_group_dead: tracepoint_field(&format_text, "group_dead"),
            oom: std::fs::read_to_string(tracefs.join("events/oom/mark_victim/format"))
                .ok()
                .and_then(|text| {
                    Some(OomLayout {
                        pid: tracepoint_field(&text, "pid")?,
                        anon_rss: tracepoint_field(&text, "anon_rss"),
                        file_rss: tracepoint_field(&text, "file_rss"),
                        shmem_rss: tracepoint_field(&text, "shmem_rss"),
                    })
                }),
        })
    }
}

/// Byte offset of the first of `names` found in struct `parent`, looking
/// through anonymous unions and structs as C does.
fn member_offset(btf: &Btf, parent: &str, names: &[&str]) -> Result<u32> {
    let ty = btf
        .resolve_types_by_name(parent)
        .with_context(|| format!("BTF has no type {parent}"))?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(_)))
        .ok_or_else(|| anyhow!("BTF has no struct {parent}"))?;
    let Type::Struct(s) = ty else { unreachable!() };
    for name in names {
        if let Some(bits) = find_member(btf, &s, name)? {
            if bits % 8 != 0 {
                bail!("{parent}.{name} is a bitfield");
            }
            return Ok(bits / 8);
        }
    }
    bail!("struct {parent} has no member {}", names.join(" or "))
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Result<Option<u32>> {
    for member in &s.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        if member_name == name {
            return Ok(Some(member.bit_offset()));
        }
        if member_name.is_empty() {
            let inner = match btf.resolve_chained_type(member)? {
                Type::Struct(inner) | Type::Union(inner) => inner,
                _ => continue,
            };
            if let Some(bits) = find_member(btf, &inner, name)? {
                return Ok(Some(member.bit_offset() + bits));
            }
        }
    }
    Ok(None)
}

/// Offset of `field` in a tracepoint `format` file, whose lines read
/// `\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;`.
fn tracepoint_field(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        let decl_name = decl.rsplit([' ', '*']).next()?;
        let decl_name = decl_name.split('[').next()?;
        if decl_name != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: sched_process_exit\nID: 318\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";

    #[test]
    fn parses_tracepoint_format() {
        assert_eq!(tracepoint_field(FORMAT, "group_dead"), Some(32));
        assert_eq!(tracepoint_field(FORMAT, "comm"), Some(8));
        assert_eq!(tracepoint_field(FORMAT, "pid"), Some(24));
        assert_eq!(tracepoint_field(FORMAT, "prio"), None);
    }
}
