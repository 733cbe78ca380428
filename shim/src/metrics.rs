//! `Stats` answers in containerd's own cgroup metrics types, so `ctr task metrics` and CRI's
//! stats read them: `io.containerd.cgroups.v1.Metrics` on v1/hybrid hosts, the v2 type on
//! unified ones. The numbers come from strata's `Cgroup::stats()`, with `memory.stat` passed
//! through field by field as containerd's own cgroups library fills it for runc's shim.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageFull;
use std::collections::BTreeMap;
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
    usage.per_cpu = s.cpu.per_cpu_ns.clone();
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
    let mut memory = v1_memory_stat(&s.memory.stat);
    memory.usage = Some(entry).into();
    if let Some(swap) = s.memory.swap_usage {
        // containerd's v1 "swap" is memory+swap (`memory.memsw.usage_in_bytes`), as runc's
        // shim reports it.
        let mut e = v1::MemoryEntry::new();
        e.usage = s.memory.usage + swap;
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

    let mut memory = v2_memory_stat(&s.memory.stat);
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

/// v1 `memory.stat`, field by field as containerd's cgroups library reads it (kubelet's
/// working set is `usage` less `total_inactive_file`; `ctr task metrics` shows `total_cache`).
fn v1_memory_stat(stat: &BTreeMap<String, u64>) -> v1::MemoryStat {
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    let mut m = v1::MemoryStat::new();
    m.cache = get("cache");
    m.rss = get("rss");
    m.rss_huge = get("rss_huge");
    m.mapped_file = get("mapped_file");
    m.dirty = get("dirty");
    m.writeback = get("writeback");
    m.pg_pg_in = get("pgpgin");
    m.pg_pg_out = get("pgpgout");
    m.pg_fault = get("pgfault");
    m.pg_maj_fault = get("pgmajfault");
    m.inactive_anon = get("inactive_anon");
    m.active_anon = get("active_anon");
    m.inactive_file = get("inactive_file");
    m.active_file = get("active_file");
    m.unevictable = get("unevictable");
    m.hierarchical_memory_limit = get("hierarchical_memory_limit");
    m.hierarchical_swap_limit = get("hierarchical_memsw_limit");
    m.total_cache = get("total_cache");
    m.total_rss = get("total_rss");
    m.total_rss_huge = get("total_rss_huge");
    m.total_mapped_file = get("total_mapped_file");
    m.total_dirty = get("total_dirty");
    m.total_writeback = get("total_writeback");
    m.total_pg_pg_in = get("total_pgpgin");
    m.total_pg_pg_out = get("total_pgpgout");
    m.total_pg_fault = get("total_pgfault");
    m.total_pg_maj_fault = get("total_pgmajfault");
    m.total_inactive_anon = get("total_inactive_anon");
    m.total_active_anon = get("total_active_anon");
    m.total_inactive_file = get("total_inactive_file");
    m.total_active_file = get("total_active_file");
    m.total_unevictable = get("total_unevictable");
    m
}

/// v2 `memory.stat` (kubelet's working set is `usage` less `inactive_file`).
fn v2_memory_stat(stat: &BTreeMap<String, u64>) -> v2::MemoryStat {
    let get = |key: &str| stat.get(key).copied().unwrap_or(0);
    let mut m = v2::MemoryStat::new();
    m.anon = get("anon");
    m.file = get("file");
    m.kernel_stack = get("kernel_stack");
    m.slab = get("slab");
    m.sock = get("sock");
    m.shmem = get("shmem");
    m.file_mapped = get("file_mapped");
    m.file_dirty = get("file_dirty");
    m.file_writeback = get("file_writeback");
    m.anon_thp = get("anon_thp");
    m.inactive_anon = get("inactive_anon");
    m.active_anon = get("active_anon");
    m.inactive_file = get("inactive_file");
    m.active_file = get("active_file");
    m.unevictable = get("unevictable");
    m.slab_reclaimable = get("slab_reclaimable");
    m.slab_unreclaimable = get("slab_unreclaimable");
    m.pgfault = get("pgfault");
    m.pgmajfault = get("pgmajfault");
    m.workingset_refault = get("workingset_refault_file") + get("workingset_refault_anon") + get("workingset_refault");
    m.workingset_activate =
        get("workingset_activate_file") + get("workingset_activate_anon") + get("workingset_activate");
    m.workingset_nodereclaim = get("workingset_nodereclaim");
    m.pgrefill = get("pgrefill");
    m.pgscan = get("pgscan");
    m.pgsteal = get("pgsteal");
    m.pgactivate = get("pgactivate");
    m.pgdeactivate = get("pgdeactivate");
    m.pglazyfree = get("pglazyfree");
    m.pglazyfreed = get("pglazyfreed");
    m.thp_fault_alloc = get("thp_fault_alloc");
    m.thp_collapse_alloc = get("thp_collapse_alloc");
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
        s.cpu.per_cpu_ns = vec![3_000_000, 2_000_000];
        s.memory.stat = [("total_cache", 8192), ("total_inactive_file", 4096), ("pgfault", 7), ("inactive_file", 2048)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let any = to_any(&s, Version::V1).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.memory.usage.limit, V1_UNLIMITED);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.cpu.usage.per_cpu, [3_000_000, 2_000_000]);
        assert_eq!((m.memory.total_cache, m.memory.total_inactive_file, m.memory.pg_fault), (8192, 4096, 7));
        let any = to_any(&s, Version::V2).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 5000);
        assert_eq!(m.pids.current, 2);
        assert_eq!((m.memory.inactive_file, m.memory.pgfault), (2048, 7));
    }
}
