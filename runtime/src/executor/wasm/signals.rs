//! SIGTERM, SIGINT and SIGHUP while a guest runs: interrupt it through the epoch.
//!
//! The container's init is PID 1 of its pid namespace, where signals without a handler are
//! dropped; blocked signals are still queued, so we block the three (before any other thread
//! exists, so every later thread inherits the mask) and take them on a dedicated thread with
//! `sigwait`. That thread is ordinary code (no async-signal-safety puzzles): it records the
//! signal and advances the engine's epoch; the guest's deadline callback then stops it. A guest
//! parked in a blocking host call never reaches a deadline check, so after [`GRACE`] the thread
//! ends the process itself with `_exit(128+signal)`. This module must never run guest code.

use crate::working_set;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How long a signalled guest may take to reach a deadline check before we `_exit`.
pub(crate) const GRACE: Duration = Duration::from_millis(200);

const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The signal watcher of one run; dropping it tells the thread the guest is done.
pub(crate) struct Watcher {
    /// The signal received (0: none), read by the epoch-deadline callback.
    pub(crate) received: Arc<AtomicI32>,
    done: Arc<(Mutex<bool>, Condvar)>,
    finished: Arc<AtomicBool>,
    /// When the guest started running: the thread trims the working set a second later.
    guest_started: Arc<OnceLock<Instant>>,
}

impl Watcher {
    /// Block the signals in the calling thread and start the watcher thread.
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Watcher> {
        let set = signal_set();
        // SAFETY: plain libc calls on a sigset we own.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let received = Arc::new(AtomicI32::new(0));
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let finished = Arc::new(AtomicBool::new(false));
        let guest_started = Arc::new(OnceLock::new());
        let (engine, rec, dn, fin) = (engine.clone(), received.clone(), done.clone(), finished.clone());
        let started = guest_started.clone();
        std::thread::Builder::new().name("strata-wasm-sig".into()).spawn(move || {
            let mut trimmed = false;
            loop {
                // Until the trim: a fixed deadline a second after the guest started (checked
                // every second before it did), which no signal or EINTR moves.
                let trim_at = started.get().map(|at: &Instant| *at + working_set::IDLE);
                let waited = match (trimmed, trim_at) {
                    (true, _) => wait(&set),
                    (false, None) => wait_at_most(&set, working_set::IDLE),
                    (false, Some(at)) => wait_at_most(&set, at.saturating_duration_since(Instant::now())),
                };
                if fin.load(Ordering::SeqCst) {
                    return;
                }
                let sig = match waited {
                    Ok(sig) => sig,
                    Err(libc::EAGAIN) if trim_at.is_some_and(|at| at <= Instant::now()) => {
                        // A guest running this long gives back the code that started it.
                        trimmed = true;
                        if let Err(e) = working_set::trim_code() {
                            tracing::debug!("trimming the working set: {e}");
                        }
                        continue;
                    }
                    Err(_) => continue,
                };
                // First signal wins; later ones only re-advance the epoch.
                let _ = rec.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                engine.increment_epoch();
                let (lock, cvar) = &*dn;
                let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) =
                    cvar.wait_timeout_while(guard, GRACE, |done| !*done).unwrap_or_else(|e| e.into_inner());
                if !*guard {
                    let code = 128 + rec.load(Ordering::SeqCst);
                    // SAFETY: the guest is stuck in a host call; leave now, as the signal would
                    // have. stdout/stderr are unbuffered, so there is nothing to flush.
                    unsafe { libc::_exit(code) }
                }
                return;
            }
        })?;
        Ok(Watcher { received, done, finished, guest_started })
    }

    /// The guest starts running now (what the working-set trim counts from).
    pub(crate) fn guest_starts(&self) {
        let _ = self.guest_started.set(Instant::now());
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.finished.store(true, Ordering::SeqCst);
        let (lock, cvar) = &*self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cvar.notify_all();
        // The signals stay blocked: the caller exits right after `run` returns, and unblocking
        // now would let a late SIGTERM kill it with the default action and the wrong code.
    }
}

/// The next signal of `set`, or the errno that stopped the wait.
fn wait(set: &libc::sigset_t) -> Result<i32, i32> {
    let mut sig = 0;
    // SAFETY: `set` is a valid sigset; `sig` is a valid out pointer.
    match unsafe { libc::sigwait(set, &mut sig) } {
        0 => Ok(sig),
        errno => Err(errno),
    }
}

/// The next signal of `set` if one comes within `limit`; else the errno (EAGAIN: none came).
fn wait_at_most(set: &libc::sigset_t, limit: Duration) -> Result<i32, i32> {
    let timeout = libc::timespec { tv_sec: limit.as_secs() as libc::time_t, tv_nsec: limit.subsec_nanos() as _ };
    // SAFETY: valid sigset and timespec; no siginfo wanted.
    match unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) } {
        -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINTR)),
        sig => Ok(sig),
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}
