//! Resource conditions (`memory` and `cpu` in a watch): a limit on what
//! a watch's processes use, checked every so often, and what it does when
//! it fires. The daemon's `conditions` samples and counts; this is only
//! what the config says and how it is checked.
use std::time::Duration;

use serde::Deserialize;

use super::values::HumanDuration;

/// A limit on what a watch's processes use, checked every `every`; it
/// fires when the use was above the limit in `times.0` of the last
/// `times.1` checks.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceCondition {
    pub resource: Resource,
    pub every: Duration,
    pub times: (u32, u32),
    pub action: ConditionAction,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resource {
    /// Resident memory, in bytes.
    Memory { above: u64 },
    /// CPU, in percent of one core, averaged over the last interval.
    Cpu { above: f64 },
}

/// What a fired condition does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionAction {
    Restart,
    Stop,
    /// Only say so (in the log and `status`).
    Notify,
}

impl ConditionAction {
    /// As the config and `status` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Stop => "stop",
            Self::Notify => "notify",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCondition<T> {
    above: T,
    every: Option<HumanDuration>,
    times: Option<(u32, u32)>,
    action: Option<ConditionAction>,
}

/// A raw condition as the daemon uses it; `key` names it in errors.
pub(super) fn condition<T>(
    raw: RawCondition<T>,
    resource: impl FnOnce(T) -> Resource,
    key: &'static str,
) -> Result<ResourceCondition, (&'static str, String)> {
    let times = raw.times.unwrap_or((3, 5));
    if times.0 == 0 || times.0 > times.1 {
        return Err((
            key,
            format!(
                "times = [{}, {}]: fire after N of the last M checks needs 1 <= N <= M",
                times.0, times.1
            ),
        ));
    }
    let every = raw.every.map_or(Duration::from_secs(10), |d| d.0);
    if every < Duration::from_millis(100) {
        return Err((key, format!("every = {every:?}: at least 100ms")));
    }
    Ok(ResourceCondition {
        resource: resource(raw.above),
        every,
        times,
        action: raw.action.unwrap_or(ConditionAction::Restart),
    })
}
