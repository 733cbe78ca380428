//! The seccomp profile of a wasm compiler child (`strata pull`/`load`'s, and a container's at
//! create): an allow list of what a compile does once its input is open, and nothing else. A
//! compiler taken over by a crafted module gets EPERM for everything that would reach other
//! processes, files, the network or the kernel's larger surfaces, and cannot make memory
//! executable (the compile only serializes code; it never loads it).
//!
//! Measured (strace of `strata load` of the examples, components included): after the filter,
//! a compile makes only read, write, mmap, munmap, mprotect, brk, rt_sigaction, sigaltstack and
//! exit_group; the rest below is what a Rust process may need on its way (locks, randomness,
//! time, a panic's abort, the compiler child's own report of what it may do).

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// Allowed whatever their arguments.
const ALLOWED: &str = "
    read readv pread64 write writev pwrite64 lseek fstat
    munmap mremap madvise brk
    rt_sigaction rt_sigprocmask rt_sigreturn sigaltstack
    futex sched_yield getrandom clock_gettime clock_getres gettimeofday nanosleep clock_nanosleep
    getpid gettid getuid getgid geteuid getegid capget
    exit exit_group restart_syscall
";

/// The profile for a compiler child whose pid is `own_pid`.
pub fn profile(own_pid: u32) -> LinuxSeccomp {
    let mut rules = vec![allow(ALLOWED, Vec::new())];
    // Memory, never executable.
    let not_exec = || arg(2, LinuxSeccompOperator::ScmpCmpMaskedEq, libc::PROT_EXEC as u64, 0);
    rules.push(allow("mmap mprotect", vec![not_exec()]));
    // Its own abort (SIGABRT through tgkill), no one else.
    rules.push(allow("tgkill", vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, u64::from(own_pid), 0)]));
    // Reading its own state (the child reports it); no prctl that sets anything.
    for option in [libc::PR_GET_SECCOMP, libc::PR_GET_NO_NEW_PRIVS, libc::PR_GET_DUMPABLE] {
        rules.push(allow("prctl", vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, option as u64, 0)]));
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(Some(libc::EPERM as u32));
    seccomp.set_syscalls(Some(rules));
    seccomp
}

fn allow(names: &str, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.split_whitespace().map(str::to_owned).collect());
    rule.set_action(LinuxSeccompAction::ScmpActAllow);
    if !args.is_empty() {
        rule.set_args(Some(args));
    }
    rule
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .value_two(value_two)
        .op(op)
        .build()
        .expect("all fields set")
}

#[cfg(test)]
mod tests {
    use super::super::default::tests::syscall_under;
    use super::*;
    use crate::sandbox::seccomp::compile;

    #[test]
    fn the_compiler_may_compute_but_reach_nothing() {
        // Built for pid 1: the forked test child is someone else, as any other process is.
        let filter = compile(&profile(1)).unwrap();
        let eperm = -(libc::EPERM as libc::c_long);
        // SAFETY (all): plain system calls in the forked child, with valid arguments.
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let rw = unsafe {
            syscall_under(&filter, || {
                libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, anon, -1, 0) as libc::c_long
            })
        };
        assert!(rw > 0, "plain memory: {rw}");
        let exec = unsafe {
            syscall_under(&filter, || {
                libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_EXEC, anon, -1, 0) as libc::c_long
            })
        };
        assert_eq!(exec, eperm, "executable memory");
        assert!(unsafe { syscall_under(&filter, || libc::getrandom(std::ptr::null_mut(), 0, 0) as libc::c_long) } >= 0);
        for (what, rc) in [
            ("openat", unsafe {
                syscall_under(&filter, || {
                    libc::openat(libc::AT_FDCWD, c"/etc/hostname".as_ptr(), libc::O_RDONLY) as libc::c_long
                })
            }),
            ("socket", unsafe {
                syscall_under(&filter, || libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) as libc::c_long)
            }),
            ("fork", unsafe { syscall_under(&filter, || libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0)) }),
            ("kill", unsafe { syscall_under(&filter, || libc::kill(1, 0) as libc::c_long) }),
            ("tgkill of another", unsafe { syscall_under(&filter, || libc::syscall(libc::SYS_tgkill, 2, 2, 0)) }),
            ("shmget", unsafe {
                syscall_under(&filter, || libc::shmget(libc::IPC_PRIVATE, 4096, 0o600) as libc::c_long)
            }),
            ("statx", unsafe {
                syscall_under(&filter, || {
                    libc::syscall(libc::SYS_statx, libc::AT_FDCWD, c"/".as_ptr(), 0, 0, std::ptr::null_mut::<u8>())
                })
            }),
            ("prctl set", unsafe {
                syscall_under(&filter, || libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) as libc::c_long)
            }),
        ] {
            assert_eq!(rc, eperm, "{what}");
        }
    }
}
