//! The guest's WASI world, built from a [`WasmJob`]: args, env, cwd, preopened directories,
//! stdio and network permission. Shared by p1 modules and p2 components.
//!
//! Stdio is the process's own fds 0/1/2 as they are (pipe, fifo, file, terminal). stdout and
//! stderr are written with plain `write(2)` on a dup of fd 1/2, never through Rust's
//! line-buffered `std::io::Stdout`, so nothing is held back when the process ends abruptly.
//! OCI mounts that are not directories (docker's /etc/hosts, /etc/resolv.conf file binds) are
//! not preopened: WASI preopens are directories, and the guest already sees such a file
//! through the "/" preopen, which is the container's root with its mounts.
//! This module must never give the guest a directory or a socket the job did not grant.

use super::{Preopen, WasmError, WasmJob};
use std::os::fd::BorrowedFd;
use wasmtime_wasi::cli::{IsTerminal, OutputFile, StdoutStream};
use wasmtime_wasi::p2::OutputStream;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A builder with everything from `job` applied.
pub(crate) fn builder(job: &WasmJob) -> Result<WasiCtxBuilder, WasmError> {
    let mut b = WasiCtxBuilder::new();
    // File operations run on the guest's thread instead of bouncing through tokio's blocking
    // pool: we run one guest per process, synchronously. Must come before the preopens.
    b.allow_blocking_current_thread(true);
    b.args(&job.args);
    for kv in &job.env {
        if let Some((k, v)) = kv.split_once('=') {
            b.env(k, v);
        }
    }
    b.initial_cwd(job.cwd.to_string_lossy());
    for p in &job.preopens {
        preopen(&mut b, p)?;
    }
    b.inherit_stdin();
    b.stdout(FdOut::new(1));
    b.stderr(FdOut::new(2));
    if job.network {
        b.inherit_network().allow_ip_name_lookup(true).allow_tcp(true).allow_udp(true);
    } else {
        // The defaults already deny every address; say it explicitly.
        b.allow_ip_name_lookup(false).allow_tcp(false).allow_udp(false);
    }
    Ok(b)
}

fn preopen(b: &mut WasiCtxBuilder, p: &Preopen) -> Result<(), WasmError> {
    // Only a mount that exists and is not a directory is skipped; a missing one is an error
    // below, as a native runtime fails on a mount it cannot make.
    if std::fs::metadata(&p.host).is_ok_and(|m| !m.is_dir()) {
        tracing::debug!("wasm preopen {}: not a directory (a file mount), reachable through /", p.guest.display());
        return Ok(());
    }
    let perms = if p.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
    let guest = p.guest.to_string_lossy();
    b.preopened_dir(&p.host, guest.as_ref(), perms).map(|_| ()).map_err(|e| WasmError::Preopen {
        guest: p.guest.clone(),
        host: p.host.clone(),
        message: super::error_chain(&e),
    })
}

/// The process's fd 1 or 2, unbuffered. A closed fd becomes a sink, as writing to a closed
/// stdout natively fails without killing the program.
#[derive(Clone)]
struct FdOut {
    file: Option<OutputFile>,
    tty: bool,
}

impl FdOut {
    fn new(fd: i32) -> FdOut {
        // SAFETY: fds 1 and 2 are borrowed only for the duration of the dup.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let tty = rustix::termios::isatty(borrowed);
        let file = borrowed.try_clone_to_owned().ok().map(|fd| OutputFile::new(std::fs::File::from(fd)));
        FdOut { file, tty }
    }
}

impl IsTerminal for FdOut {
    fn is_terminal(&self) -> bool {
        self.tty
    }
}

impl StdoutStream for FdOut {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        match &self.file {
            Some(f) => Box::new(f.clone()),
            None => Box::new(tokio::io::sink()),
        }
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        match &self.file {
            Some(f) => Box::new(f.clone()),
            None => Box::new(wasmtime_wasi::p2::pipe::SinkOutputStream),
        }
    }
}
