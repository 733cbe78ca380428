//! The Task service (containerd's task API v2 over ttrpc): one per shim process, for every
//! container of the group (pod, `io.strata.shim.group`, or the one container) the shim serves,
//! and the shim's decision to exit (see `group`). Each call maps onto strata's
//! `lifecycle`; creating processes goes through a spawn worker (see `spawn`), everything else
//! (start, kill, pause, stats, delete) is plain syscalls and file reads done here, off the
//! async threads where they may block.

use crate::events::Events;
use crate::group::{self, Busy, Grouping, Membership};
use crate::idle::IdleTrim;
use crate::process::{state_root, Container, Process};
use crate::reaper::{ExitSender, ExitWatch, Reaper};
use crate::shim_log;
use crate::spawn::job::{Job, RootfsMount};
use crate::spawn::Spawner;
use crate::stdio::{self, Io};
use crate::{metrics, rootfs};
use async_trait::async_trait;
use containerd_shim::api;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::{self, r#async::TtrpcContext, Code};
use containerd_shim::TtrpcResult;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use strata::lifecycle::{self, LifecycleError, Runtime};

/// The task service; cheap to clone (what the ttrpc server and exit watchers hold).
#[derive(Clone)]
pub struct Service(Arc<Inner>);

impl std::ops::Deref for Service {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct Inner {
    containers: Mutex<HashMap<String, Arc<Container>>>,
    spawner: Arc<Spawner>,
    reaper: Arc<Reaper>,
    events: Events,
    exit: Arc<ExitSignal>,
    /// Places held for containers about to join, and whether the shim is closing.
    membership: Mutex<Membership>,
    /// The socket the shim serves on, unlinked when it decides to exit.
    socket: PathBuf,
    /// The shim serves one container only (no pod, no group): its zygote goes after Create.
    solo: bool,
    /// Told of every call and exit, to trim the working set once they stop.
    idle: IdleTrim,
}

fn err(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

fn internal(msg: impl ToString) -> ttrpc::Error {
    err(Code::INTERNAL, msg)
}

/// A pause or resume the task's state does not allow, as runc's shim words it: `verb`
/// refused for a stopped task, one never started, or (`started`) one already as asked.
fn refusal(c: &Container, verb: &str, started: &str) -> ttrpc::Error {
    let state = if c.init.exited().is_some() {
        "a stopped container"
    } else if c.init.lock().started {
        started
    } else {
        "a task in created state"
    };
    err(Code::FAILED_PRECONDITION, format!("cannot {verb} {state}"))
}

/// containerd tells "already gone" from other failures by NotFound (errdefs).
fn lifecycle_err(e: LifecycleError) -> ttrpc::Error {
    match e {
        LifecycleError::NotRunning | LifecycleError::NotRunningId { .. } => {
            err(Code::NOT_FOUND, "process already finished")
        }
        LifecycleError::State(lifecycle::state::StateError::NotFound(_)) => err(Code::NOT_FOUND, e),
        LifecycleError::NotPaused { .. } | LifecycleError::NotStopped { .. } => err(Code::FAILED_PRECONDITION, e),
        other => internal(other),
    }
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32, ..Default::default() }
}

/// Run blocking work (file reads, waits on pidfds, the spawn protocol) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> TtrpcResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| internal(format!("blocking task: {e}")))
}

impl Service {
    pub fn new(
        spawner: Arc<Spawner>,
        reaper: Arc<Reaper>,
        events: Events,
        exit: Arc<ExitSignal>,
        socket: PathBuf,
        grouping: &Grouping,
    ) -> Service {
        let membership = Mutex::new(Membership::lingering(grouping.linger));
        let solo = grouping.solo;
        Service(Arc::new(Inner {
            containers: Mutex::default(),
            spawner,
            reaper,
            events,
            exit,
            membership,
            socket,
            solo,
            idle: IdleTrim::start(),
        }))
    }

    /// Create: what containerd asked for, spawned through a worker (`create` wraps it).
    async fn create_task(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(err(Code::UNIMPLEMENTED, "checkpoint/restore is not supported by strata"));
        }
        let id = req.id.clone();
        if self.containers.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&id) {
            return Err(err(Code::ALREADY_EXISTS, format!("container {id} already exists")));
        }
        let bundle = PathBuf::from(&req.bundle);
        let state_root = state_root(&bundle);
        let rt = Runtime::new(&state_root).map_err(internal)?;
        let mounts: Vec<RootfsMount> = req
            .rootfs
            .iter()
            .map(|m| RootfsMount { fs_type: m.type_.clone(), source: m.source.clone(), options: m.options.clone() })
            .collect();
        let io = self.io(&req.id, &req.stdin, &req.stdout, &req.stderr, req.terminal);
        let job = Job::Create { id: id.clone(), bundle: bundle.clone(), state_root, rootfs: mounts.clone() };
        let init = Arc::new(Process::new("", io.clone(), None));
        let spawned = self.spawn(job, &io).await;
        if self.solo {
            // No other container will be created here; an exec is re-exec'd.
            self.spawner.retire_zygote();
        }
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                // Whatever the worker made before the failure goes (its own failures it
                // undoes itself; a failure after it, e.g. relaying the terminal, is ours).
                let (rt, id, rootfs) = (rt.clone(), id.clone(), bundle.join("rootfs"));
                let _ = blocking(move || {
                    let _ = lifecycle::delete::delete(&rt, &id, true);
                    if !mounts.is_empty() {
                        let _ = rootfs::unmount_all(&rootfs);
                    }
                })
                .await;
                return Err(e);
            }
        };
        let pid = spawned.pid;
        {
            let mut st = init.lock();
            st.pid = pid;
            st.master = spawned.master;
            st.stdin_holder = spawned.stdin_holder;
            st.output_done = spawned.output_done;
        }
        let own_pid_namespace = crate::process::own_pid_namespace(&bundle);
        let c = Arc::new(Container {
            id: id.clone(),
            bundle,
            rt,
            mounted_rootfs: !mounts.is_empty(),
            own_pid_namespace,
            init: init.clone(),
            execs: Mutex::default(),
            start_lock: tokio::sync::Mutex::new(()),
        });
        self.containers.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), c.clone());
        shim_log::created(&id, &c.bundle);
        self.watch_exit(c, init, spawned.exit);
        self.events
            .publish(TaskCreate {
                container_id: id,
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                pid: pid as u32,
                ..Default::default()
            })
            .await;
        Ok(api::CreateTaskResponse { pid: pid as u32, ..Default::default() })
    }

    /// Exit if the shim serves no container and holds no place; else, if only places are
    /// held, check again when the oldest lapses. The socket is unlinked before the lock is
    /// let go, so a later `start` of the group starts a new shim instead of joining this one.
    fn exit_if_idle(&self) {
        let mut membership = self.membership.lock().unwrap_or_else(|e| e.into_inner());
        let has_containers = !self.containers.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        match membership.close_if_idle(has_containers, Instant::now()) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.socket);
                // containerd-shim removes the socket named by the cwd's `address` file after
                // the exit signal: by then that path may be a new shim's of the same group.
                let _ = std::env::set_current_dir("/");
                self.exit.signal();
            }
            Err(Busy::HoldingUntil(at)) => {
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    this.exit_if_idle();
                });
            }
            Err(Busy::Serving) => {}
        }
    }

    fn container(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| err(Code::NOT_FOUND, format!("container {id} not found")))
    }

    fn process(&self, id: &str, exec_id: &str) -> TtrpcResult<(Arc<Container>, Arc<Process>)> {
        let c = self.container(id)?;
        let p = c.process(exec_id).ok_or_else(|| err(Code::NOT_FOUND, format!("process {exec_id} not found")))?;
        Ok((c, p))
    }

    /// Spawn a process through a worker; register its pid with the reaper before the worker
    /// lets go of it. With a terminal, the relay starts here.
    async fn spawn(&self, job: Job, io: &Io) -> TtrpcResult<Spawned> {
        let (exit_tx, exit_rx): (ExitSender, ExitWatch) = tokio::sync::watch::channel(None);
        let io2 = io.clone();
        let spawner = self.spawner.clone();
        let reaper = self.reaper.clone();
        let what = match &job {
            Job::Create { .. } => "create",
            Job::Exec { .. } => "exec",
        };
        let (pid, console, holder, pidfd) = blocking(move || -> Result<_, String> {
            let started = std::time::Instant::now();
            let opened = stdio::open(&io2)?;
            let (ours, theirs) = if io2.terminal {
                let (a, b) = UnixStream::pair().map_err(|e| format!("console socket: {e}"))?;
                (Some(a), Some(OwnedFd::from(b)))
            } else {
                (None, None)
            };
            let pending = spawner.run(&job, opened.stdio, theirs).map_err(|e| e.to_string())?;
            reaper.watch(pending.pid, exit_tx);
            let pid = pending.pid;
            // Before the release: until then the worker holds the process (or its zombie),
            // so the pid is still this process's.
            let pidfd = rustix::process::Pid::from_raw(pid)
                .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
            pending.release();
            log::debug!("spawned {what} in {:.2}ms", started.elapsed().as_secs_f64() * 1000.0);
            // The master was sent before the worker answered: it is waiting in the socket.
            let master = match ours.map(|sock| strata::sandbox::console::recv_master(sock.as_fd())).transpose() {
                Ok(master) => master,
                Err(e) => {
                    kill_spawned(pidfd.as_ref());
                    return Err(e);
                }
            };
            Ok((pid, master, opened.stdin_holder, pidfd))
        })
        .await?
        .map_err(internal)?;
        let output_done = match console.as_ref().map(|master| stdio::relay_terminal(master, io)).transpose() {
            Ok(done) => done,
            Err(e) => {
                kill_spawned(pidfd.as_ref());
                return Err(internal(e));
            }
        };
        Ok(Spawned { pid, exit: exit_rx, master: console, stdin_holder: holder, output_done, pidfd })
    }

    /// Publish the process's exit once it happens (after its start event), with an OOM event
    /// first when the kernel's OOM killer was involved.
    fn watch_exit(&self, c: Arc<Container>, p: Arc<Process>, mut rx: ExitWatch) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(exit) = rx.wait_for(|e| e.is_some()).await.map(|e| e.expect("checked")) else { return };
            let output_done = p.lock().output_done.take();
            if let Some(done) = output_done {
                // Bounded: a process the container left behind may hold the pty open.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), done).await;
            }
            // Whether the OOM killer was involved, read before any waiter hears of the exit:
            // `ctr run --rm` deletes the container (and its cgroup) as soon as Wait returns.
            let oom = if p.exec_id.is_empty() {
                let rt = c.rt.clone();
                let id = c.id.clone();
                tokio::task::spawn_blocking(move || {
                    rt.states.load(&id).ok().and_then(|s| rt.cgroup(&s).ok()).and_then(|cg| cg.oom_killed().ok())
                })
                .await
                .ok()
                .flatten()
                .unwrap_or(false)
            } else {
                false
            };
            if p.exec_id.is_empty() && !c.own_pid_namespace {
                let (rt, id) = (c.rt.clone(), c.id.clone());
                // Killed, and gone from the cgroup, before anyone hears of the exit (`task ps`).
                let limit = std::time::Duration::from_secs(2);
                let _ = tokio::task::spawn_blocking(move || lifecycle::kill::kill_all_and_wait(&rt, &id, limit)).await;
            }
            if let Some(tx) = p.lock().exit_tx.take() {
                let _ = tx.send(Some(exit));
            }
            this.idle.touch();
            let _started = c.start_lock.lock().await;
            if oom {
                this.events.publish(TaskOOM { container_id: c.id.clone(), ..Default::default() }).await;
            }
            let pid = p.pid();
            this.events
                .publish(TaskExit {
                    container_id: c.id.clone(),
                    id: if p.exec_id.is_empty() { c.id.clone() } else { p.exec_id.clone() },
                    pid: pid as u32,
                    exit_status: exit.status,
                    exited_at: MessageField::some(timestamp(exit.at)),
                    ..Default::default()
                })
                .await;
            p.exit_published.send_replace(true);
        });
    }
}

/// runc's `ProcessDetails { exec_id }` (containerd.runc.v1), which `ctr task ps` shows for
/// an exec's pid; one string field, encoded by hand (the protos crate does not carry it).
fn process_details(exec_id: &str) -> containerd_shim::protos::protobuf::well_known_types::any::Any {
    let mut value = vec![0x0a]; // field 1, length-delimited
    let mut len = exec_id.len();
    while len >= 0x80 {
        value.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    value.push(len as u8);
    value.extend_from_slice(exec_id.as_bytes());
    containerd_shim::protos::protobuf::well_known_types::any::Any {
        type_url: "containerd.runc.v1.ProcessDetails".into(),
        value,
        ..Default::default()
    }
}

/// SIGKILL for a process spawned for a Create or Exec that then failed (its terminal could
/// not be relayed): it must not run on unseen.
fn kill_spawned(pidfd: Option<&OwnedFd>) {
    if let Some(fd) = pidfd {
        let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
    }
}

/// A process a worker spawned: its pid and exit (from the reaper), and its terminal or
/// stdin holder.
struct Spawned {
    pid: i32,
    exit: ExitWatch,
    master: Option<OwnedFd>,
    stdin_holder: Option<OwnedFd>,
    output_done: Option<tokio::sync::oneshot::Receiver<()>>,
    pidfd: Option<OwnedFd>,
}

impl Service {
    /// A process's stdio; `id` is whose it is (the container's or the exec's id).
    fn io(&self, id: &str, stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Io {
        Io {
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal,
            id: id.into(),
            namespace: self.events.namespace().to_string(),
        }
    }
}

#[async_trait]
impl Task for Service {
    async fn create(&self, ctx: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        self.idle.touch();
        let id = req.id.clone();
        let created = self.create_task(ctx, req).await;
        // Created (and so in `containers`) or failed: either way the place held is done with.
        self.membership.lock().unwrap_or_else(|e| e.into_inner()).release(&id);
        created
    }

    async fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        self.idle.touch();
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        log::debug!("start {} {}", req.id, req.exec_id);
        let _started = c.start_lock.lock().await;
        if p.exec_id.is_empty() {
            let (rt, id) = (c.rt.clone(), c.id.clone());
            let started = blocking(move || lifecycle::start::start(&rt, &id)).await?;
            if let Err(e) = started {
                // Say how the init ended, when it did (its exit is being reported meanwhile).
                let mut rx = p.exit.clone();
                let wait = tokio::time::timeout(std::time::Duration::from_secs(1), rx.wait_for(|e| e.is_some()));
                if let Ok(Ok(exit)) = wait.await {
                    let status = exit.map(|e| e.status).unwrap_or(0);
                    return Err(internal(format!("{e}: its init exited with status {status} before start")));
                }
                return Err(lifecycle_err(e));
            }
            let pid = {
                let mut st = p.lock();
                st.started = true;
                st.stdin_holder = None;
                st.pid
            };
            self.events.publish(TaskStart { container_id: c.id.clone(), pid: pid as u32, ..Default::default() }).await;
            return Ok(api::StartResponse { pid: pid as u32, ..Default::default() });
        }
        if p.lock().started {
            return Err(err(Code::FAILED_PRECONDITION, format!("exec {} already started", p.exec_id)));
        }
        let spec = p.spec.clone().ok_or_else(|| err(Code::FAILED_PRECONDITION, "exec has no process spec"))?;
        let job = Job::Exec { id: c.id.clone(), state_root: state_root(&c.bundle), process: spec };
        let spawned = self.spawn(job, &p.io).await?;
        let pid = spawned.pid;
        {
            let mut st = p.lock();
            st.pid = pid;
            st.started = true;
            st.master = spawned.master;
            st.output_done = spawned.output_done;
            st.pidfd = spawned.pidfd;
        }
        self.watch_exit(c.clone(), p.clone(), spawned.exit);
        self.events
            .publish(TaskExecStarted {
                container_id: c.id.clone(),
                exec_id: p.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            })
            .await;
        Ok(api::StartResponse { pid: pid as u32, ..Default::default() })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        self.idle.touch();
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.exited();
        let (pid, started) = {
            let st = p.lock();
            (st.pid, st.started)
        };
        let status = if exit.is_some() {
            api::Status::STOPPED
        } else if !started {
            api::Status::CREATED
        } else if p.exec_id.is_empty() {
            let (rt, id) = (c.rt.clone(), c.id.clone());
            let paused = blocking(move || rt.states.load(&id).map(|s| rt.status(&s))).await?;
            match paused {
                Ok(lifecycle::state::Status::Paused) => api::Status::PAUSED,
                _ => api::Status::RUNNING,
            }
        } else {
            api::Status::RUNNING
        };
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: c.bundle.display().to_string(),
            pid: pid as u32,
            status: status.into(),
            stdin: p.io.stdin.clone(),
            stdout: p.io.stdout.clone(),
            stderr: p.io.stderr.clone(),
            terminal: p.io.terminal,
            exit_status: exit.map(|e| e.status).unwrap_or(0),
            exited_at: exit.map(|e| MessageField::some(timestamp(e.at))).unwrap_or_default(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        self.idle.touch();
        let (_c, p) = self.process(&req.id, &req.exec_id)?;
        let mut rx = p.exit.clone();
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| err(Code::NOT_FOUND, "the process was deleted before it ran"))?
            .ok_or_else(|| internal("no exit"))?;
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        // `all` after the init's exit still reaches what is left in its cgroup, as runc's.
        if p.exited().is_some() && !(req.all && p.exec_id.is_empty()) {
            return Err(err(Code::NOT_FOUND, "process already finished"));
        }
        let signal = req.signal as i32;
        if p.exec_id.is_empty() {
            let (rt, id, all) = (c.rt.clone(), c.id.clone(), req.all);
            blocking(move || -> Result<(), LifecycleError> {
                lifecycle::kill::kill(&rt, &id, signal, all)?;
                // A frozen process dies only once thawed.
                if signal == libc::SIGKILL {
                    if let Ok(state) = rt.states.load(&id) {
                        if rt.status(&state) == lifecycle::state::Status::Paused {
                            let _ = rt
                                .cgroup(&state)
                                .and_then(|cg| cg.thaw().map_err(|e| LifecycleError::Cgroup(e.to_string())));
                        }
                    }
                }
                Ok(())
            })
            .await?
            .map_err(lifecycle_err)?;
            return Ok(api::Empty::default());
        }
        let mut pid = p.pid();
        if pid <= 0 {
            // A Start in flight holds the lock until the pid is known: wait for it.
            let _started = c.start_lock.lock().await;
            pid = p.pid();
        }
        if pid <= 0 {
            return Err(err(Code::FAILED_PRECONDITION, "process not created"));
        }
        let st = p.lock();
        let Some(pidfd) = &st.pidfd else {
            return Err(internal(format!("exec {} has no pidfd", p.exec_id)));
        };
        // SAFETY: pidfd_send_signal(2) with a pidfd we own and no siginfo.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if sent != 0 {
            return Err(err(Code::NOT_FOUND, format!("process already finished: {}", std::io::Error::last_os_error())));
        }
        Ok(api::Empty::default())
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        self.idle.touch();
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        if !p.exec_id.is_empty() {
            let (started, pid) = {
                let st = p.lock();
                (st.started, st.pid)
            };
            let exit = p.exited();
            if started && exit.is_none() {
                return Err(err(Code::FAILED_PRECONDITION, format!("exec {} is still running", p.exec_id)));
            }
            c.execs.lock().unwrap_or_else(|e| e.into_inner()).remove(&p.exec_id);
            return Ok(api::DeleteResponse {
                pid: pid as u32,
                exit_status: exit.map(|e| e.status).unwrap_or(0),
                exited_at: exit.map(|e| MessageField::some(timestamp(e.at))).unwrap_or_default(),
                ..Default::default()
            });
        }
        let started = p.lock().started;
        if started && p.exited().is_none() {
            return Err(err(Code::FAILED_PRECONDITION, format!("cannot delete running task {}", c.id)));
        }
        // A created (never started) container: delete kills its waiting init.
        let (rt, id, bundle, mounted) = (c.rt.clone(), c.id.clone(), c.bundle.clone(), c.mounted_rootfs);
        blocking(move || -> Result<(), String> {
            let deleted = lifecycle::delete::delete(&rt, &id, true);
            let unmounted = if mounted { rootfs::unmount_all(&bundle.join("rootfs")) } else { Ok(()) };
            let _ = std::fs::remove_dir(state_root(&bundle));
            match deleted {
                Ok(()) | Err(LifecycleError::State(lifecycle::state::StateError::NotFound(_))) => unmounted,
                Err(e) => Err(e.to_string()),
            }
        })
        .await?
        .map_err(internal)?;
        // The init is gone now; its exit comes from the reaper.
        let mut rx = p.exit.clone();
        let exit = rx.wait_for(|e| e.is_some()).await.ok().and_then(|e| *e);
        // /tasks/exit first (its publisher may wait for an exec's Start or an OOM event).
        let mut published = p.exit_published.subscribe();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), published.wait_for(|done| *done)).await;
        {
            let mut containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
            containers.remove(&c.id);
            shim_log::deleted(&c.id, containers.values().map(|o| (o.id.as_str(), o.bundle.as_path())));
        }
        let pid = p.pid() as u32;
        let exit_status = exit.map(|e| e.status).unwrap_or(0);
        let exited_at = timestamp(exit.map(|e| e.at).unwrap_or_else(SystemTime::now));
        self.events
            .publish(TaskDelete {
                container_id: c.id.clone(),
                pid,
                exit_status,
                exited_at: MessageField::some(exited_at.clone()),
                id: c.id.clone(),
                ..Default::default()
            })
            .await;
        Ok(api::DeleteResponse { pid, exit_status, exited_at: MessageField::some(exited_at), ..Default::default() })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        let c = self.container(&req.id)?;
        if c.init.exited().is_some() {
            return Err(err(Code::FAILED_PRECONDITION, format!("container {} is not running", c.id)));
        }
        let spec: serde_json::Value = serde_json::from_slice(&req.spec.value)
            .map_err(|e| err(Code::INVALID_ARGUMENT, format!("exec process spec: {e}")))?;
        let io = self.io(&req.exec_id, &req.stdin, &req.stdout, &req.stderr, req.terminal);
        {
            let mut execs = c.execs.lock().unwrap_or_else(|e| e.into_inner());
            if execs.contains_key(&req.exec_id) {
                return Err(err(Code::ALREADY_EXISTS, format!("exec {} already exists", req.exec_id)));
            }
            execs.insert(req.exec_id.clone(), Arc::new(Process::new(&req.exec_id, io, Some(spec))));
        }
        self.events
            .publish(TaskExecAdded { container_id: c.id.clone(), exec_id: req.exec_id.clone(), ..Default::default() })
            .await;
        Ok(api::Empty::default())
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        self.idle.touch();
        let c = self.container(&req.id)?;
        let (rt, id) = (c.rt.clone(), c.id.clone());
        let pids = blocking(move || lifecycle::ops::pids(&rt, &id)).await?.map_err(lifecycle_err)?;
        let execs: HashMap<i32, String> = c
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .filter(|(pid, _)| *pid > 0)
            .collect();
        let processes = pids
            .into_iter()
            .map(|pid| containerd_shim::protos::types::task::ProcessInfo {
                pid: pid as u32,
                info: execs.get(&pid).map(|exec_id| process_details(exec_id)).into(),
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse { processes, ..Default::default() })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        let c = self.container(&req.id)?;
        if !c.init.lock().started {
            // runc's shim refuses a created task (runc itself would freeze it).
            return Err(refusal(&c, "pause", "a paused container"));
        }
        let (rt, id) = (c.rt.clone(), c.id.clone());
        let paused = blocking(move || lifecycle::ops::pause(&rt, &id)).await?;
        paused.map_err(|e| match e {
            LifecycleError::NotRunningId { .. } => refusal(&c, "pause", "a paused container"),
            e => lifecycle_err(e),
        })?;
        self.events.publish(TaskPaused { container_id: c.id.clone(), ..Default::default() }).await;
        Ok(api::Empty::default())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        let c = self.container(&req.id)?;
        let (rt, id) = (c.rt.clone(), c.id.clone());
        let resumed = blocking(move || lifecycle::ops::resume(&rt, &id)).await?;
        resumed.map_err(|e| match e {
            LifecycleError::NotPaused { .. } => refusal(&c, "resume", "a running container"),
            e => lifecycle_err(e),
        })?;
        self.events.publish(TaskResumed { container_id: c.id.clone(), ..Default::default() }).await;
        Ok(api::Empty::default())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        let c = self.container(&req.id)?;
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&req.resources.value)
            .map_err(|e| err(Code::INVALID_ARGUMENT, format!("resources: {e}")))?;
        let (rt, id) = (c.rt.clone(), c.id.clone());
        blocking(move || lifecycle::ops::update(&rt, &id, &resources)).await?.map_err(lifecycle_err)?;
        Ok(api::Empty::default())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        self.idle.touch();
        let c = self.container(&req.id)?;
        let (rt, id) = (c.rt.clone(), c.id.clone());
        let any = blocking(move || -> Result<_, String> {
            let state = rt.states.load(&id).map_err(|e| e.to_string())?;
            let cg = rt.cgroup(&state).map_err(|e| e.to_string())?;
            let stats = cg.stats().map_err(|e| e.to_string())?;
            metrics::to_any(&stats, cg.version())
        })
        .await?
        .map_err(internal)?;
        Ok(api::StatsResponse { stats: MessageField::some(any), ..Default::default() })
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        let (_c, p) = self.process(&req.id, &req.exec_id)?;
        let st = p.lock();
        let master = st.master.as_ref().ok_or_else(|| err(Code::FAILED_PRECONDITION, "process has no terminal"))?;
        stdio::resize(master, req.width, req.height).map_err(internal)?;
        Ok(api::Empty::default())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        let (_c, p) = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            p.lock().stdin_holder = None;
        }
        Ok(api::Empty::default())
    }

    async fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        self.idle.touch();
        if let Some(id) = req.id.strip_prefix(group::JOIN_PREFIX) {
            // A `start` of our group asks us to hold a place for container `id`.
            if !self.membership.lock().unwrap_or_else(|e| e.into_inner()).hold(id, Instant::now()) {
                return Err(err(Code::UNAVAILABLE, "the shim is shutting down"));
            }
            // Should containerd never create it, the place lapses and an idle shim exits.
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(group::HOLD).await;
                this.exit_if_idle();
            });
        }
        let task_pid = self.container(&req.id).map(|c| c.init.pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: task_pid as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    /// As at create: the gRPC code for a method not implemented, not the generated NotFound.
    async fn checkpoint(&self, _ctx: &TtrpcContext, _req: api::CheckpointTaskRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        Err(err(Code::UNIMPLEMENTED, "checkpoint/restore is not supported by strata"))
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        self.idle.touch();
        // A group's shim serves its other containers until the last one is deleted.
        self.exit_if_idle();
        Ok(api::Empty::default())
    }
}
