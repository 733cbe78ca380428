//! The builtin profile: docker's default seccomp policy (moby's `profiles/seccomp`, which
//! containers/common copies for podman), written as tables: the syscalls every container may
//! make, the groups a capability in the bounding set unlocks, and the few rules that look at
//! arguments. Anything else fails with EPERM, as under docker.
//!
//! The policy follows docker's on purpose, so that what runs under docker runs here. Names the
//! installed libseccomp does not know (newer syscalls) are skipped when the filter is compiled.
//! The wasm executor runs under this profile too: everything wasmtime needs (mmap/mprotect with
//! PROT_EXEC, madvise, signals and sigaltstack, futex, threads through `clone`) is always allowed.
//!
//! This module must never read the system: it is a pure function of the capabilities, so the
//! same container always gets the same filter.

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Allowed whatever the capabilities. `ptrace` and `process_vm_*` are here because docker
/// allows them on kernels from 4.8 (before, ptrace could get around seccomp); strata needs 5.3
/// (pidfd_open) anyway.
const ALLOWED: &str = "\
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32 \
    clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 \
    clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 \
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old \
    eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate \
    fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync \
    fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync \
    ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat \
    getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups \
    getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid \
    getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt \
    get_thread_area gettid gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init \
    inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents \
    io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule \
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listmount \
    listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise \
    map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 \
    mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 \
    mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock \
    munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause \
    pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 \
    prctl pread64 preadv preadv2 prlimit64 process_mrelease process_vm_readv process_vm_writev pselect6 \
    pselect6_time64 ptrace pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv \
    recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename renameat \
    renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo \
    rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity \
    sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler \
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam \
    sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send \
    sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 \
    setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 \
    setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area \
    set_tid_address setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack \
    signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 \
    statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create \
    timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 \
    timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill \
    truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat utimensat_time64 \
    utimes vfork vmsplice wait4 waitid waitpid write writev";

/// Allowed on this machine's architecture family only (docker's `includes.arches`).
#[cfg(target_arch = "x86_64")]
const ALLOWED_ON_THIS_ARCH: &str = "arch_prctl modify_ldt";
#[cfg(target_arch = "aarch64")]
const ALLOWED_ON_THIS_ARCH: &str =
    "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ALLOWED_ON_THIS_ARCH: &str = "";

/// The ABIs a process on this machine can use: the native one plus the 32-bit ones its CPU
/// runs (a 32-bit binary must be filtered by the same rules, not killed as an unknown ABI).
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        Vec::new()
    }
}

/// Allowed when the capability is in the bounding set: the syscalls are what the capability
/// guards in the kernel, so a container granted it can use them (docker's `includes.caps`).
const WITH_CAPABILITY: &[(Capability, &str)] = &[
    (
        Capability::SysAdmin,
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie lsm_get_self_attr \
         lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount open_tree perf_event_open quotactl \
         quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare",
    ),
    (Capability::SysBoot, "reboot"),
    (Capability::SysChroot, "chroot"),
    (Capability::SysModule, "delete_module init_module finit_module"),
    (Capability::SysPacct, "acct"),
    (Capability::SysPtrace, "kcmp pidfd_getfd process_madvise"),
    (Capability::SysRawio, "iopl ioperm"),
    (Capability::SysTime, "settimeofday stime clock_settime clock_settime64"),
    (Capability::SysTtyConfig, "vhangup"),
    (Capability::SysNice, "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    (Capability::Syslog, "syslog"),
    (Capability::Bpf, "bpf"),
    (Capability::Perfmon, "perf_event_open"),
    (Capability::DacReadSearch, "open_by_handle_at"),
];

/// The personas `personality(2)` may set: Linux, 32-bit Linux, the uname26 flag on either,
/// and 0xffffffff (which only queries). Others (e.g. ADDR_NO_RANDOMIZE) weaken protections.
const PERSONAS: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// The `clone` flags that create namespaces: without CAP_SYS_ADMIN a container may clone
/// processes and threads, but not new namespaces.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// docker's default profile for a container whose bounding set is `bounding`.
pub fn profile(bounding: &Capabilities) -> LinuxSeccomp {
    let has = |cap: Capability| bounding.contains(&cap);
    let mut rules = vec![allow(ALLOWED)];
    if !ALLOWED_ON_THIS_ARCH.is_empty() {
        rules.push(allow(ALLOWED_ON_THIS_ARCH));
    }
    rules.extend(WITH_CAPABILITY.iter().filter(|(cap, _)| has(*cap)).map(|(_, names)| allow(names)));
    rules.extend(
        PERSONAS.iter().map(|&persona| allow_if("personality", arg(0, LinuxSeccompOperator::ScmpCmpEq, persona))),
    );
    // AF_VSOCK reaches the host and its VMs, past the container's network namespace.
    rules.push(allow_if("socket", arg(0, LinuxSeccompOperator::ScmpCmpNe, libc::AF_VSOCK as u64)));
    if !has(Capability::SysAdmin) {
        // (flags & CLONE_NAMESPACE_FLAGS) == 0; the flags are argument 0 on x86 and arm.
        let no_namespaces = arg(0, LinuxSeccompOperator::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS);
        rules.push(allow_if("clone", no_namespaces));
        // clone3 passes its flags behind a pointer, which seccomp cannot read: ENOSYS makes
        // glibc (2.34+) and musl fall back to clone, whose flags the rule above checks.
        rules.push(errno("clone3", libc::ENOSYS));
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(Some(libc::EPERM as u32));
    seccomp.set_architectures(Some(architectures()));
    seccomp.set_syscalls(Some(rules));
    seccomp
}

fn allow(names: &str) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.split_whitespace().map(str::to_owned).collect());
    rule.set_action(LinuxSeccompAction::ScmpActAllow);
    rule
}

fn allow_if(name: &str, condition: LinuxSeccompArg) -> LinuxSyscall {
    let mut rule = allow(name);
    rule.set_args(Some(vec![condition]));
    rule
}

fn errno(name: &str, errno: i32) -> LinuxSyscall {
    let mut rule = allow(name);
    rule.set_action(LinuxSeccompAction::ScmpActErrno);
    rule.set_errno_ret(Some(errno as u32));
    rule
}

/// `value_two` is 0: what SCMP_CMP_MASKED_EQ compares the masked argument with.
fn arg(index: usize, op: LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .value_two(0u64)
        .build()
        .expect("every field is set")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sandbox::seccomp::{compile, Filter};
    use crate::spec::from_image::DEFAULT_CAPABILITIES;

    fn caps(names: &[&str]) -> Capabilities {
        names.iter().map(|n| serde_json::from_value(serde_json::json!(n)).expect("capability name")).collect()
    }

    fn docker_defaults() -> Capabilities {
        caps(DEFAULT_CAPABILITIES)
    }

    fn with(extra: &[&str]) -> Capabilities {
        let mut set = docker_defaults();
        set.extend(caps(extra));
        set
    }

    /// Syscalls the profile allows without looking at arguments.
    fn allowed(profile: &LinuxSeccomp) -> Vec<String> {
        let rules = profile.syscalls().as_deref().unwrap_or_default();
        let plain = rules.iter().filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none());
        plain.flat_map(|r| r.names().clone()).collect()
    }

    fn rules_for<'a>(profile: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        let rules = profile.syscalls().as_deref().unwrap_or_default();
        rules.iter().filter(|r| r.names().iter().any(|n| n == name)).collect()
    }

    /// The programs are search trees (faster to install); a tree must decide every system call
    /// as the list does. Both are run, for docker's capabilities and for all of them, on every
    /// syscall number of each architecture in the filter (x86_64, i386, x32) and one outside it,
    /// with the argument values the profile's rules test and their neighbours.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_search_tree_decides_every_syscall_as_the_list_does() {
        use crate::sandbox::seccomp::{decide, program_at};
        const X86_64: u32 = 0xC000_003E;
        const I386: u32 = 0x4000_0003;
        const AARCH64: u32 = 0xC000_00B7;
        const X32_BIT: u32 = 0x4000_0000;
        let all: Capabilities = WITH_CAPABILITY.iter().map(|(cap, _)| *cap).chain(docker_defaults()).collect();
        for set in [docker_defaults(), all] {
            let spec = profile(&set);
            let (list, tree) = (program_at(&spec, 1).unwrap(), program_at(&spec, 2).unwrap());
            // The interpreter reads the programs as the kernel does: read(2) is allowed, an
            // architecture outside the filter kills, and reboot(2) fails unless CAP_SYS_BOOT.
            assert_eq!(decide(&tree, X86_64, libc::SYS_read as u32, [0; 6]), libc::SECCOMP_RET_ALLOW);
            assert_eq!(decide(&tree, AARCH64, libc::SYS_read as u32, [0; 6]), libc::SECCOMP_RET_KILL_THREAD);
            let reboot = decide(&tree, X86_64, libc::SYS_reboot as u32, [0; 6]);
            assert_eq!(reboot & libc::SECCOMP_RET_ACTION_FULL == libc::SECCOMP_RET_ERRNO, set == docker_defaults());
            // The values the rules compare arguments with, and one either side of each.
            let mut values: Vec<u64> = vec![0, 1, u64::MAX, 1 << 32, 0x7E02_0000, 0x0001_0000];
            for rule in spec.syscalls().as_deref().unwrap_or_default() {
                for arg in rule.args().as_deref().unwrap_or_default() {
                    values.extend([arg.value(), arg.value().wrapping_add(1), arg.value().wrapping_sub(1)]);
                    values.extend(arg.value_two());
                }
            }
            values.sort_unstable();
            values.dedup();
            let mut checked = 0;
            // Every number the tables know, and the edges of the ranges a tree splits: past the
            // last syscall, just below and above x32's bit, the top bit, and -1 (a tracer's
            // "skip this call").
            let edges = [512, 1024, 0x3FFF_FFFF, X32_BIT + 1024, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, u32::MAX];
            let native: Vec<u32> = (0..512).chain(X32_BIT..X32_BIT + 600).chain(edges).collect();
            let compat: Vec<u32> = (0..512).chain(edges).collect();
            for (arch, numbers) in [(X86_64, native), (I386, compat), (AARCH64, (0..8).collect())] {
                for nr in numbers {
                    for &v in &values {
                        for args in [[v, 0, 0, 0, 0, 0], [0, v, 0, 0, 0, 0], [0, 0, v, 0, 0, 0], [v; 6]] {
                            let (l, t) = (decide(&list, arch, nr, args), decide(&tree, arch, nr, args));
                            assert_eq!(l, t, "arch {arch:#x} nr {nr} args {args:?}: list {l:#x}, tree {t:#x}");
                            checked += 1;
                        }
                    }
                }
            }
            assert!(checked > 100_000, "{checked}");
        }
    }

    #[test]
    fn compiles_for_any_capability_set() {
        let all: Capabilities = WITH_CAPABILITY.iter().map(|(cap, _)| *cap).chain(docker_defaults()).collect();
        for set in [Capabilities::new(), docker_defaults(), all] {
            let started = std::time::Instant::now();
            let filter = compile(&profile(&set)).expect("the builtin profile compiles");
            eprintln!("{} capabilities: {filter:?}, compiled in {:?}", set.len(), started.elapsed());
            assert!(filter.instructions() > 100, "{filter:?}");
        }
    }

    #[test]
    fn docker_shape() {
        let p = profile(&docker_defaults());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(libc::EPERM as u32));
        let archs = p.architectures().clone().unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(archs, [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]);
        }
        let names = allowed(&p);
        for name in [
            "read",
            "execve",
            "mmap",
            "mprotect",
            "madvise",
            "futex",
            "rt_sigaction",
            "sigaltstack",
            "epoll_wait",
            "eventfd2",
            "ptrace",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} is always allowed");
        }
        for name in
            ["keyctl", "add_key", "request_key", "userfaultfd", "kexec_load", "pivot_root", "swapon", "io_uring_setup"]
        {
            assert!(rules_for(&p, name).is_empty(), "{name} is never allowed");
        }
        let socket = rules_for(&p, "socket");
        assert_eq!(socket.len(), 1);
        let vsock = socket[0].args().clone().unwrap()[0];
        assert_eq!((vsock.op(), vsock.value()), (LinuxSeccompOperator::ScmpCmpNe, libc::AF_VSOCK as u64));
        let personas: Vec<u64> =
            rules_for(&p, "personality").iter().map(|r| r.args().clone().unwrap()[0].value()).collect();
        assert_eq!(personas, PERSONAS);
    }

    #[test]
    fn capability_groups_follow_the_bounding_set() {
        let default = profile(&docker_defaults());
        let names = allowed(&default);
        assert!(names.contains(&"chroot".to_string()), "CAP_SYS_CHROOT is in docker's default set");
        for gated in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "acct",
            "settimeofday",
            "vhangup",
            "iopl",
            "kcmp",
            "bpf",
            "perf_event_open",
            "syslog",
            "mbind",
            "open_by_handle_at",
            "clone3",
        ] {
            assert!(!names.iter().any(|n| n == gated), "{gated} needs a capability docker does not give");
        }
        // clone without namespace flags; clone3 says ENOSYS so that libcs fall back to clone.
        let clone = rules_for(&default, "clone");
        assert_eq!(clone.len(), 1);
        let flags = clone[0].args().clone().unwrap()[0];
        assert_eq!(
            (flags.op(), flags.value(), flags.value_two()),
            (LinuxSeccompOperator::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, Some(0))
        );
        let clone3 = rules_for(&default, "clone3");
        assert_eq!(
            (clone3[0].action(), clone3[0].errno_ret()),
            (LinuxSeccompAction::ScmpActErrno, Some(libc::ENOSYS as u32))
        );

        let admin = profile(&with(&["CAP_SYS_ADMIN"]));
        let names = allowed(&admin);
        for unlocked in ["mount", "umount2", "unshare", "setns", "sethostname", "clone", "clone3"] {
            assert!(names.iter().any(|n| n == unlocked), "{unlocked} with CAP_SYS_ADMIN");
        }
        assert_eq!(rules_for(&admin, "clone3").len(), 1, "no ENOSYS rule for clone3 with CAP_SYS_ADMIN");

        let no_chroot = profile(&caps(&["CAP_CHOWN"]));
        assert!(rules_for(&no_chroot, "chroot").is_empty());
        for (cap, syscall) in [
            ("CAP_SYS_TIME", "clock_settime"),
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_PTRACE", "kcmp"),
            ("CAP_SYS_NICE", "mbind"),
            ("CAP_SYSLOG", "syslog"),
            ("CAP_BPF", "bpf"),
            ("CAP_PERFMON", "perf_event_open"),
            ("CAP_SYS_MODULE", "finit_module"),
            ("CAP_SYS_RAWIO", "ioperm"),
            ("CAP_SYS_PACCT", "acct"),
            ("CAP_SYS_TTY_CONFIG", "vhangup"),
            ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ] {
            assert!(allowed(&profile(&with(&[cap]))).iter().any(|n| n == syscall), "{syscall} with {cap}");
        }
    }

    /// Forks; the child loads `filter` (after no_new_privs) and makes one system call; returns
    /// its result, or the negated errno. Only system calls in the child: the harness is threaded.
    pub(in crate::spec::seccomp) fn syscall_under(
        filter: &Filter,
        call: impl FnOnce() -> libc::c_long,
    ) -> libc::c_long {
        let mut pipe = [0; 2];
        // SAFETY: plain system calls; the child leaves through _exit.
        unsafe {
            assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
            let pid = libc::fork();
            if pid == 0 {
                let result: libc::c_long =
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || filter.load().is_err() {
                        libc::c_long::MIN
                    } else {
                        let rc = call();
                        if rc < 0 {
                            -(*libc::__errno_location() as libc::c_long)
                        } else {
                            rc
                        }
                    };
                libc::write(pipe[1], (&result as *const libc::c_long).cast(), size_of::<libc::c_long>());
                libc::_exit(0);
            }
            libc::close(pipe[1]);
            let mut result: libc::c_long = 0;
            let n = libc::read(pipe[0], (&mut result as *mut libc::c_long).cast(), size_of::<libc::c_long>());
            libc::close(pipe[0]);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert_eq!(n, size_of::<libc::c_long>() as isize, "the child died: status {status:#x}");
            assert_ne!(result, libc::c_long::MIN, "the filter did not load");
            result
        }
    }

    #[test]
    fn the_filter_refuses_what_docker_refuses() {
        let filter = compile(&profile(&docker_defaults())).unwrap();
        let eperm = -(libc::EPERM as libc::c_long);
        // SAFETY (all closures): raw system calls whose effects end with the forked child.
        assert!(syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_getpid) }) > 0);
        assert_eq!(syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) }), eperm);
        assert_eq!(syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0) }), eperm);
        assert_eq!(
            syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_personality, 0x0040000) }),
            eperm,
            "ADDR_NO_RANDOMIZE"
        );
        assert!(syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu32) }) >= 0);
        assert_eq!(
            syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0) }),
            eperm
        );
        assert!(
            syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0) })
                >= 0
        );
        let clone3 = syscall_under(&filter, || unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) });
        assert_eq!(clone3, -(libc::ENOSYS as libc::c_long), "clone3 says ENOSYS so that libc falls back to clone");
        let new_net = syscall_under(&filter, || unsafe {
            libc::syscall(libc::SYS_clone, libc::CLONE_NEWNET | libc::SIGCHLD, 0, 0, 0, 0)
        });
        assert_eq!(new_net, eperm, "no namespaces through clone");
        // A plain fork through clone works (the grandchild leaves at once).
        let forked = syscall_under(&filter, || unsafe {
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
            if pid == 0 {
                libc::_exit(0)
            }
            pid
        });
        assert!(forked > 0, "{forked}");
        // What wasmtime needs for compiled code: executable mappings.
        let exec_map = syscall_under(&filter, || unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as libc::c_long
        });
        assert!(exec_map > 0, "{exec_map}");

        let admin = compile(&profile(&with(&["CAP_SYS_ADMIN"]))).unwrap();
        assert_eq!(syscall_under(&admin, || unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) }), 0);
    }
}
