//! `Stats` answers in containerd's own cgroup metrics types, so `ctr task metrics` and CRI's
//! stats read them: `io.containerd.cgroups.v1.Metrics` on v1/hybrid hosts, the v2 type on
//! unified ones. The numbers come from strata's `Cgroup::stats()`.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageFull;
use strata::sandbox::cgroups::{Stats, Version};

/// An unlimited value as v1 reports it (what containerd's runc shim passes through).
const V1_UNLIMITED: u64 = 9223372036854771712;

pub fn to_any(stats: &Stats, version: Version) -> Result<Any, String> {
    match version {
        Version::V1 => pack(&v1_metrics(stats)),
        Version::V2 => pack(&v2_metrics(stats)),
    }
}

fn pack<M: MessageFull>(m: &M) -> Result<Any, String> {
    let value = m.write_to_bytes().map_err(|e| format!("encoding metrics: {e}"))?;
    Ok(Any { type_url: M::descriptor().full_name().to_string(), value, ..Default::default() })
}

fn v1_metrics(s: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit.unwrap_or(0);
    m.pids = Some(pids).into();

    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage_ns;
    usage.user = s.cpu.user_ns;
    usage.kernel = s.cpu.system_ns;
    let mut throttling = v1::Throttle::new();
    throttling.periods = s.cpu.periods;
    throttling.throttled_periods = s.cpu.throttled_periods;
    throttling.throttled_time = s.cpu.throttled_ns;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = Some(usage).into();
    cpu.throttling = Some(throttling).into();
    m.cpu = Some(cpu).into();

    let mut entry = v1::MemoryEntry::new();
    entry.usage = s.memory.usage;
    entry.limit = s.memory.limit.unwrap_or(V1_UNLIMITED);
    entry.max = s.memory.max_usage.unwrap_or(0);
    entry.failcnt = s.memory.failcnt;
    let mut memory = v1::MemoryStat::new();
    memory.usage = Some(entry).into();
    if let Some(swap) = s.memory.swap_usage {
        let mut e = v1::MemoryEntry::new();
        e.usage = swap;
        memory.swap = Some(e).into();
    }
    m.memory = Some(memory).into();

    let mut oom = v1::MemoryOomControl::new();
    oom.oom_kill = s.oom_kill_count;
    m.memory_oom_control = Some(oom).into();
    m
}

fn v2_metrics(s: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut pids = v2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit.unwrap_or(0);
    m.pids = Some(pids).into();

    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = s.cpu.usage_ns / 1000;
    cpu.user_usec = s.cpu.user_ns / 1000;
    cpu.system_usec = s.cpu.system_ns / 1000;
    cpu.nr_periods = s.cpu.periods;
    cpu.nr_throttled = s.cpu.throttled_periods;
    cpu.throttled_usec = s.cpu.throttled_ns / 1000;
    m.cpu = Some(cpu).into();

    let mut memory = v2::MemoryStat::new();
    memory.usage = s.memory.usage;
    memory.usage_limit = s.memory.limit.unwrap_or(u64::MAX);
    memory.max_usage = s.memory.max_usage.unwrap_or(0);
    memory.swap_usage = s.memory.swap_usage.unwrap_or(0);
    m.memory = Some(memory).into();

    let mut events = v2::MemoryEvents::new();
    events.max = s.memory.failcnt;
    events.oom_kill = s.oom_kill_count;
    m.memory_events = Some(events).into();
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::Message;

    #[test]
    fn v1_and_v2_carry_the_numbers_and_their_type() {
        let mut s = Stats::default();
        s.memory.usage = 4096;
        s.cpu.usage_ns = 5_000_000;
        s.pids.current = 2;
        let any = to_any(&s, Version::V1).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, V1_UNLIMITED);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        let any = to_any(&s, Version::V2).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 5000);
        assert_eq!(m.pids.current, 2);
    }
}
