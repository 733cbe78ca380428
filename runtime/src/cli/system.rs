//! `version` and `info`: what this strata is and what it runs on, as docker prints them
//! (`--format` takes a Go template or `json`, as theirs).

use super::args::{InfoArgs, VersionArgs};
use super::format;
use super::images::Ctx;
use anyhow::Result;
use serde_json::json;
use std::io::Write;
use strata::containers::status::{observe, State};
use strata::containers::Containers;
use strata::sandbox::cgroups::{detect_version, Version};

/// The architecture as OCI and docker name it (`amd64`, `arm64`).
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version(args: VersionArgs) -> Result<i32> {
    let uname = rustix::system::uname();
    let doc = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Os": "linux",
        "Arch": oci_arch(),
        "KernelVersion": uname.release().to_string_lossy(),
        "Runtimes": ["native", "wasm"],
    });
    let text = format!(
        "strata version {}\n OS/Arch:     linux/{}\n Kernel:      {}\n Runtimes:    native (namespaces, cgroups), wasm (wasmtime: WASI p1 modules, p2 components)\n",
        env!("CARGO_PKG_VERSION"),
        oci_arch(),
        uname.release().to_string_lossy()
    );
    print(args.format.as_deref(), &doc, &text)
}

pub fn info(ctx: &Ctx, args: InfoArgs) -> Result<i32> {
    let containers = Containers::open(&ctx.root, ctx.driver)?;
    let (mut running, mut paused, mut stopped) = (0, 0, 0);
    let records = containers.list();
    for record in &records {
        match observe(&containers, record.clone())?.map(|o| o.state) {
            Some(State::Running) => running += 1,
            Some(State::Paused) => paused += 1,
            Some(_) => stopped += 1,
            None => {}
        }
    }
    let images =
        ctx.store.list()?.iter().map(|r| r.descriptor.digest.clone()).collect::<std::collections::HashSet<_>>().len();
    let cgroup = match detect_version(std::path::Path::new("/sys/fs/cgroup")) {
        Ok(Version::V1) => "1",
        Ok(Version::V2) => "2",
        Err(_) => "none",
    };
    let uname = rustix::system::uname();
    let sys = rustix::system::sysinfo();
    let memory = sys.totalram.saturating_mul(u64::from(sys.mem_unit));
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "unknown".into());
    let driver = format!("{:?}", ctx.driver).to_lowercase();
    let doc = json!({
        "Containers": records.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": driver,
        "StrataRootDir": ctx.root.path(),
        "CgroupVersion": cgroup,
        "KernelVersion": uname.release().to_string_lossy(),
        "OperatingSystem": os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": cpus,
        "MemTotal": memory,
        "Runtimes": ["native", "wasm"],
        "ServerVersion": env!("CARGO_PKG_VERSION"),
    });
    let text = format!(
        "Containers: {}\n Running: {running}\n Paused: {paused}\n Stopped: {stopped}\nImages: {images}\n\
         Server Version: {}\nStorage Driver: {driver}\nCgroup Version: {cgroup}\nRuntimes: native wasm\n\
         Kernel Version: {}\nOperating System: {os}\nOSType: linux\nArchitecture: {}\nCPUs: {cpus}\n\
         Total Memory: {}\nStrata Root Dir: {}\n",
        records.len(),
        env!("CARGO_PKG_VERSION"),
        uname.release().to_string_lossy(),
        std::env::consts::ARCH,
        format::binary_size(memory),
        ctx.root.path().display()
    );
    print(args.format.as_deref(), &doc, &text)
}

/// The text, or with `--format` the document as JSON or through a template.
fn print(format: Option<&str>, doc: &serde_json::Value, text: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match format {
        None => write!(out, "{text}")?,
        Some("json") => writeln!(out, "{doc}")?,
        Some(template) => super::template::inspected(Some(template), std::slice::from_ref(doc), &mut out)?,
    }
    Ok(0)
}
