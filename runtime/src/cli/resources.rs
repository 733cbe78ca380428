//! The resource flags `run`, `create` and `update` share (memory, CPUs, cpusets, pids),
//! parsed and checked with docker's rules and words, and `strata update` itself, which lays
//! them over a container's own.

use super::args::{ResourceArgs, UpdateArgs};
use super::containers::each;
use super::images::Ctx;
use anyhow::{bail, Result};
use strata::containers::ops;
use strata::spec::run_options::{self, RestartPolicy, RunOptions};

/// Lay the flags given over `opts` (a flag not given, or 0 where docker reads 0 as "not
/// set", leaves a value as it is), then check the result as a whole.
pub fn apply(a: &ResourceArgs, opts: &mut RunOptions) -> Result<()> {
    if let Some(memory) = a.memory.as_deref().map(run_options::parse_memory).transpose()?.flatten() {
        opts.memory = Some(memory);
    }
    let swap_given = match a.memory_swap.as_deref() {
        None => false,
        Some("-1") => {
            opts.memory_swap = Some(-1);
            true
        }
        Some(s) => match run_options::parse_bytes(s)? {
            0 => false,
            swap => {
                opts.memory_swap = Some(swap);
                true
            }
        },
    };
    if let Some(reservation) = a.memory_reservation.as_deref().map(run_options::parse_bytes).transpose()? {
        if reservation > 0 {
            opts.memory_reservation = Some(reservation);
        }
    }
    if let Some(cpus) = a.cpus.as_deref().map(run_options::parse_cpus).transpose()?.flatten() {
        opts.cpus = Some(cpus);
    }
    if let Some(shares) = a.cpu_shares {
        opts.cpu_shares = Some(shares);
    }
    // 0 is docker's "not set".
    match a.cpu_period {
        Some(p) if p < 0 => {
            bail!("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
        }
        Some(p) if p > 0 => opts.cpu_period = Some(p as u64),
        _ => {}
    }
    if let Some(q) = a.cpu_quota.filter(|q| *q != 0) {
        opts.cpu_quota = Some(q);
    }
    check_cpusets(a)?;
    if let Some(cpus) = &a.cpuset_cpus {
        opts.cpuset_cpus = Some(cpus.clone());
    }
    if let Some(mems) = &a.cpuset_mems {
        opts.cpuset_mems = Some(mems.clone());
    }
    if let Some(limit) = a.pids_limit {
        opts.pids_limit = Some(limit);
    }
    check(opts, swap_given)
}

/// docker's rules for the limits in force together.
fn check(opts: &RunOptions, swap_given: bool) -> Result<()> {
    if let Some(cpus) = opts.cpus {
        let available = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        // docker's bounds (its quota would be under the kernel's 1 ms otherwise).
        if !(0.01..=available).contains(&cpus) {
            bail!("range of CPUs is from 0.01 to {available:.2}, as there are only {available} CPUs available");
        }
    }
    if opts.cpus.is_some() && opts.cpu_period.is_some() {
        bail!("Conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    // A quota of -1 (none) does not conflict.
    if opts.cpus.is_some() && opts.cpu_quota.is_some_and(|q| q > 0) {
        bail!("Conflicting options: Nano CPUs and CPU Quota cannot both be set");
    }
    if opts.cpu_period.is_some_and(|p| !(1000..=1_000_000).contains(&p)) {
        bail!("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)");
    }
    if opts.cpu_quota.is_some_and(|q| q > 0 && q < 1000) {
        bail!("CPU cfs quota can not be less than 1ms (i.e. 1000)");
    }
    if let Some(swap) = opts.memory_swap {
        match opts.memory {
            None => bail!("You should always set the Memory limit when using Memoryswap limit, see usage"),
            Some(m) if swap != -1 && swap < m && !swap_given => bail!(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
            ),
            Some(m) if swap != -1 && swap < m => {
                bail!("Minimum memoryswap limit should be larger than memory limit, see usage")
            }
            _ => {}
        }
    }
    if let (Some(m), Some(r)) = (opts.memory, opts.memory_reservation) {
        if r > m {
            bail!("Minimum memory limit can not be less than memory reservation limit, see usage");
        }
    }
    Ok(())
}

/// `--cpuset-cpus` and `--cpuset-mems`: lists of what this host has.
fn check_cpusets(a: &ResourceArgs) -> Result<()> {
    for (flag, what, list, online) in [
        ("--cpuset-cpus", "CPUs", &a.cpuset_cpus, "/sys/devices/system/cpu/online"),
        ("--cpuset-mems", "Mems", &a.cpuset_mems, "/sys/devices/system/node/online"),
    ] {
        if let Some(list) = list {
            // A host without NUMA nodes listed has node 0.
            let online = std::fs::read_to_string(online).unwrap_or_else(|_| "0".into());
            run_options::check_cpuset(flag, what, list, &online).map_err(anyhow::Error::msg)?;
        }
    }
    Ok(())
}

/// `strata update`: the new limits are kept for the container's next starts and, if it
/// runs, written to its cgroup now; each container named is updated whole or not at all.
pub fn update(ctx: &Ctx, args: UpdateArgs) -> Result<i32> {
    let given = &args.resources;
    let any_limit = given.memory.is_some()
        || given.memory_swap.is_some()
        || given.memory_reservation.is_some()
        || given.cpus.is_some()
        || given.cpu_shares.is_some()
        || given.cpu_period.is_some()
        || given.cpu_quota.is_some()
        || given.cpuset_cpus.is_some()
        || given.cpuset_mems.is_some()
        || given.pids_limit.is_some();
    if !any_limit && args.restart.is_none() {
        // docker's words.
        bail!("you must provide one or more flags when using this command");
    }
    let restart: Option<RestartPolicy> =
        args.restart.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?;
    each(ctx, &args.containers, |c, record| {
        ops::update(c, record, |record| {
            if let Some(policy) = &restart {
                if record.auto_remove && *policy != RestartPolicy::No {
                    bail!("Restart policy cannot be updated because AutoRemove is enabled for the container");
                }
                record.options.restart = *policy;
            }
            apply(given, &mut record.options)
        })?;
        Ok(None)
    })
}
