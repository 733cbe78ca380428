//! `stats`: docker's live resource table (CPU %, memory usage / limit, block I/O, pids) of
//! running containers, from their cgroups. CPU % is the cgroup's CPU time over the wall time
//! between two samples a second apart, as docker's (100% is one CPU busy). Network I/O is
//! always `0B / 0B`: a strata container's network is `none` or the host's, for which docker
//! shows the same.

use super::args::StatsArgs;
use super::format;
use super::images::Ctx;
use super::template::Listing;
use anyhow::Result;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};
use strata::containers::record::ContainerRecord;
use strata::containers::status::observe;
use strata::containers::Containers;
use strata::sandbox::cgroups::Stats;

/// docker's `stats` table.
const STATS_TABLE: &str =
    r"table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// The column title of each key of a `stats` row, as docker titles them.
const STATS_TITLES: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// How far apart the two samples of one CPU % are.
const INTERVAL: Duration = Duration::from_secs(1);

pub fn stats(ctx: &Ctx, args: StatsArgs) -> Result<i32> {
    let listing = Listing::parse(&args.format, STATS_TABLE)?;
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let named: Vec<ContainerRecord> =
        args.containers.iter().map(|n| containers.resolve(n)).collect::<Result<_, _>>()?;
    let mut previous = sample(&containers, &chosen(&containers, &named, args.all)?);
    let terminal = std::io::stdout().is_terminal();
    loop {
        std::thread::sleep(INTERVAL);
        let records = chosen(&containers, &named, args.all)?;
        let now = sample(&containers, &records);
        let rows: Vec<serde_json::Value> = records
            .iter()
            .zip(&now)
            .map(|(r, s)| row(r, s.as_ref(), previous.iter().flatten().find(|p| p.id == r.id), args.no_trunc))
            .collect();
        let mut out = std::io::stdout().lock();
        if terminal && !args.no_stream {
            // A fresh screen each second, as docker's.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        listing.print(&rows, STATS_TITLES, &mut out)?;
        out.flush()?;
        if args.no_stream {
            return Ok(0);
        }
        previous = now;
    }
}

/// The named containers, or else every running one (every one with `-a`).
fn chosen(containers: &Containers, named: &[ContainerRecord], all: bool) -> Result<Vec<ContainerRecord>> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let mut records = Vec::new();
    for record in containers.list() {
        if all || observe(containers, record.clone())?.is_some_and(|o| o.is_running()) {
            records.push(record);
        }
    }
    Ok(records)
}

/// One reading of a container's cgroup; None when it does not run.
struct Sample {
    id: String,
    at: Instant,
    stats: Stats,
}

fn sample(containers: &Containers, records: &[ContainerRecord]) -> Vec<Option<Sample>> {
    let rt = containers.runtime();
    records
        .iter()
        .map(|r| {
            let state = rt.states.load(&r.id).ok()?;
            if !matches!(rt.status(&state), strata::lifecycle::state::Status::Running) {
                return None;
            }
            let stats = rt.cgroup(&state).ok()?.stats().ok()?;
            Some(Sample { id: r.id.clone(), at: Instant::now(), stats })
        })
        .collect()
}

fn row(record: &ContainerRecord, now: Option<&Sample>, before: Option<&Sample>, no_trunc: bool) -> serde_json::Value {
    let id = if no_trunc { record.id.clone() } else { record.short_id().to_string() };
    let Some(now) = now else {
        let dashes = "--";
        return json!({"Container": record.name, "ID": id, "Name": record.name, "CPUPerc": dashes,
            "MemUsage": "-- / --", "MemPerc": dashes, "NetIO": "-- / --", "BlockIO": "-- / --", "PIDs": dashes});
    };
    let cpu = before
        .map(|b| {
            let used = now.stats.cpu.usage_ns.saturating_sub(b.stats.cpu.usage_ns) as f64;
            let wall = now.at.duration_since(b.at).as_nanos().max(1) as f64;
            used / wall * 100.0
        })
        .unwrap_or(0.0);
    let memory = &now.stats.memory;
    let limit = memory.limit.unwrap_or_else(host_memory);
    // docker's usage leaves out the inactive file cache (a file the container wrote is the
    // kernel's to drop).
    let usage = memory.working_set();
    let percent = if limit > 0 { usage as f64 / limit as f64 * 100.0 } else { 0.0 };
    json!({
        "Container": record.name,
        "ID": id,
        "Name": record.name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", format::binary_size(usage), format::binary_size(limit)),
        "MemPerc": format!("{percent:.2}%"),
        "NetIO": "0B / 0B",
        "BlockIO": format!("{} / {}", format::size(now.stats.io.read_bytes), format::size(now.stats.io.write_bytes)),
        "PIDs": now.stats.pids.current.to_string(),
    })
}

/// The host's memory: the limit docker shows for a container without one.
fn host_memory() -> u64 {
    let info = rustix::system::sysinfo();
    info.totalram.saturating_mul(u64::from(info.mem_unit))
}
