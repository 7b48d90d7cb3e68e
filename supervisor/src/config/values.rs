//! The config's values that are more than TOML's types, each parsed once
//! here into what the rest of the daemon uses: durations (`"30s"`),
//! sizes (`"64MB"`), percentages, signal names, umasks, users and groups,
//! the backend and the log level. Each error says what was wrong with the
//! value; `config` adds where it was.
use std::{fmt, time::Duration};

use nix::{
    sys::signal::Signal,
    unistd::{Gid, Group, Uid, User},
};
use serde::{de, Deserialize, Deserializer};

use crate::backend::BackendChoice;

/// `"90%"` or `90`.
pub(super) struct Percent(pub(super) f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        let value = match Raw::deserialize(d)? {
            Raw::Number(n) => n,
            Raw::Text(text) => text
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| {
                    de::Error::custom(format!("'{text}' is not a percentage (e.g. \"90%\")"))
                })?,
        };
        if !(value > 0.0 && value.is_finite()) {
            return Err(de::Error::custom(format!(
                "{value}: a CPU limit is a percentage above 0"
            )));
        }
        Ok(Percent(value))
    }
}

pub(super) struct HumanDuration(pub(super) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::units::parse_duration(&text)
            .map(HumanDuration)
            .map_err(de::Error::custom)
    }
}

pub(super) struct HumanSize(pub(super) u64);

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::units::parse_size(&text)
            .map(HumanSize)
            .map_err(de::Error::custom)
    }
}

/// `memory_max`: a size the kernel can enforce, at least a page.
pub(super) struct MemoryMax(pub(super) u64);

impl<'de> Deserialize<'de> for MemoryMax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HumanSize(bytes) = HumanSize::deserialize(d)?;
        if bytes < 4096 {
            return Err(de::Error::custom(format!(
                "{bytes} bytes: a memory limit below 4KB leaves no room to start"
            )));
        }
        Ok(MemoryMax(bytes))
    }
}

/// `cpu_max`: systemd's CPUQuota, a percentage of one CPU (`"150%"` is
/// one and a half), as the CPU time it may use each 100 ms period. The
/// kernel's smallest quota is 1 ms: 1%.
pub(super) struct CpuMax(pub(super) crate::resources::CpuQuota);

impl<'de> Deserialize<'de> for CpuMax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Percent(percent) = Percent::deserialize(d)?;
        crate::resources::CpuQuota::from_percent(percent)
            .map(CpuMax)
            .map_err(de::Error::custom)
    }
}

/// `pids_max`: at least the process itself.
pub(super) struct PidsMax(pub(super) u64);

impl<'de> Deserialize<'de> for PidsMax {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            0 => Err(de::Error::custom(
                "0: no process could ever start (at least 1, the program itself)",
            )),
            n => Ok(PidsMax(n)),
        }
    }
}

/// A listener key as written: on or off, or an address.
#[derive(Deserialize)]
#[serde(untagged)]
enum Listener {
    On(bool),
    At(String),
}

/// `[daemon] metrics`: `true` (the default address), `false`, or
/// `"HOST:PORT"`.
pub(super) struct MetricsAddress(pub(super) Option<std::net::SocketAddr>);

/// Outside Prometheus's allocation for exporters (9100-9999, all taken)
/// and clear of its own ports (9090-9094).
pub const DEFAULT_METRICS: &str = "127.0.0.1:8795";

impl<'de> Deserialize<'de> for MetricsAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Listener::deserialize(d)? {
            Listener::On(false) => return Ok(Self(None)),
            Listener::On(true) => DEFAULT_METRICS.to_owned(),
            Listener::At(text) => text,
        };
        text.parse().map(|a| Self(Some(a))).map_err(|_| {
            de::Error::custom(format!(
                "'{text}' is not an address to listen on (e.g. \"{DEFAULT_METRICS}\", or true for that)"
            ))
        })
    }
}

/// `[daemon] web`: `true` (on the metrics listener), `false`, or its own
/// `"HOST:PORT"`.
pub(super) struct WebAddress(pub(super) Option<super::daemon::WebListen>);

impl<'de> Deserialize<'de> for WebAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use super::daemon::WebListen;
        match Listener::deserialize(d)? {
            Listener::On(false) => Ok(Self(None)),
            Listener::On(true) => Ok(Self(Some(WebListen::Metrics))),
            Listener::At(text) => text
                .parse()
                .map(|a| Self(Some(WebListen::Own(a))))
                .map_err(|_| {
                    de::Error::custom(format!(
                        "'{text}' is not an address to listen on (e.g. \"127.0.0.1:8796\", or true for the metrics listener)"
                    ))
                }),
        }
    }
}

/// `[daemon] web_token`: long enough not to be guessed, and only what an
/// `Authorization: Bearer` header can carry.
pub(super) struct RawToken(pub(super) super::daemon::WebToken);

/// Shorter tokens can be guessed over the network.
const TOKEN_MIN: usize = 16;

impl<'de> Deserialize<'de> for RawToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // Never quoted back: it is a secret.
        if text.len() < TOKEN_MIN {
            return Err(de::Error::custom(format!(
                "a token of {} characters is too short to keep a network out (at least {TOKEN_MIN})",
                text.len()
            )));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(de::Error::custom(
                "the token may hold only printable ASCII without spaces (what an Authorization header carries)",
            ));
        }
        Ok(Self(super::daemon::WebToken::new(text)))
    }
}

/// The eBPF ring buffer's size: a power of two, at least a page.
pub(super) struct RingSize(pub(super) u32);

impl<'de> Deserialize<'de> for RingSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HumanSize(bytes) = HumanSize::deserialize(d)?;
        match u32::try_from(bytes) {
            Ok(bytes) if bytes.is_power_of_two() && bytes >= 4096 => Ok(RingSize(bytes)),
            _ => Err(de::Error::custom(format!(
                "{bytes} bytes: the ring buffer must be a power of two from 4KB to 2GB"
            ))),
        }
    }
}

pub(super) struct SignalName(pub(super) Signal);

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::units::parse_signal(&text)
            .map(SignalName)
            .map_err(de::Error::custom)
    }
}

/// An `oom_score_adj`: -1000 (never killed for memory) to 1000 (first).
pub(super) struct OomScoreAdj(pub(super) i16);

impl<'de> Deserialize<'de> for OomScoreAdj {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        i16::try_from(value)
            .ok()
            .filter(|v| (-1000..=1000).contains(v))
            .map(OomScoreAdj)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "{value} is not an oom_score_adj: it is from -1000 (never chosen by the OOM killer) to 1000 (chosen first)"
                ))
            })
    }
}

pub(super) struct Umask(pub(super) u32);

impl<'de> Deserialize<'de> for Umask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        octal(&text, 0o777).map(Umask).ok_or_else(|| {
            de::Error::custom(format!("'{text}' is not an octal umask like \"022\""))
        })
    }
}

/// `"022"` or `"0o022"`, at most `max`.
fn octal(text: &str, max: u32) -> Option<u32> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= max)
}

/// A directory's mode, in octal with its setgid and sticky bits (`"2755"`).
pub(super) struct DirMode(pub(super) u32);

impl<'de> Deserialize<'de> for DirMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        octal(&text, 0o7777).map(DirMode).ok_or_else(|| {
            de::Error::custom(format!("'{text}' is not an octal mode like \"0755\""))
        })
    }
}

/// A user by name or number, resolved at parse time.
pub(super) struct UserSpec(pub(super) User);

impl<'de> Deserialize<'de> for UserSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = NameOrId::deserialize(d)?;
        let found = match &spec {
            NameOrId::Id(id) => User::from_uid(Uid::from_raw(*id)),
            NameOrId::Name(name) => User::from_name(name),
        };
        match found {
            Ok(Some(user)) => Ok(UserSpec(user)),
            Ok(None) => Err(de::Error::custom(format!("no such user: {spec}"))),
            Err(e) => Err(de::Error::custom(format!("looking up user {spec}: {e}"))),
        }
    }
}

pub(super) struct GroupSpec(pub(super) Group);

impl<'de> Deserialize<'de> for GroupSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = NameOrId::deserialize(d)?;
        let found = match &spec {
            NameOrId::Id(id) => Group::from_gid(Gid::from_raw(*id)),
            NameOrId::Name(name) => Group::from_name(name),
        };
        match found {
            Ok(Some(group)) => Ok(GroupSpec(group)),
            Ok(None) => Err(de::Error::custom(format!("no such group: {spec}"))),
            Err(e) => Err(de::Error::custom(format!("looking up group {spec}: {e}"))),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NameOrId {
    Id(u32),
    Name(String),
}

impl fmt::Display for NameOrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(name) => write!(f, "'{name}'"),
        }
    }
}

pub(super) struct RawBackend(pub(super) BackendChoice);

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(RawBackend).map_err(de::Error::custom)
    }
}

pub(super) struct LogLevel(pub(super) String);

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => Ok(LogLevel(text)),
            _ => Err(de::Error::custom(format!(
                "unknown log level '{text}' (error, warn, info, debug or trace)"
            ))),
        }
    }
}
