//! The seccomp profile of a wasm compiler child (`strata pull`/`load`'s, and a container's at
//! create): everything a compile does is allowed (memory, reading its input, writing its output
//! and log), and what a compiler taken over by a crafted module would need to reach anything
//! else is refused: new processes and namespaces, exec, opening or changing files, sockets,
//! signals to other processes, ptrace, and the kernel's larger attack surfaces (bpf, io_uring,
//! keyrings, userfaultfd, perf).

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall};

/// Refused with EPERM.
const DENIED: &str = "
    clone clone3 fork vfork execve execveat unshare setns
    mount umount2 pivot_root chroot move_mount open_tree fsopen fsmount fsconfig fspick mount_setattr
    ptrace process_vm_readv process_vm_writev process_madvise kcmp
    kill tkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_open pidfd_getfd pidfd_send_signal
    socket socketpair connect bind listen accept accept4 sendto sendmsg sendmmsg
    open openat openat2 creat memfd_create name_to_handle_at open_by_handle_at
    mkdir mkdirat rmdir unlink unlinkat rename renameat renameat2 link linkat symlink symlinkat
    chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat truncate ftruncate mknod mknodat
    utime utimes utimensat futimesat setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr
    setuid setgid setreuid setregid setresuid setresgid setgroups setfsuid setfsgid capset
    bpf perf_event_open keyctl add_key request_key userfaultfd
    io_uring_setup io_uring_enter io_uring_register
    init_module finit_module delete_module kexec_load kexec_file_load reboot swapon swapoff
    acct quotactl syslog sethostname setdomainname settimeofday clock_settime adjtimex
";

/// The profile for a compiler child whose pid is `own_pid` (it may still signal itself: an
/// abort raises SIGABRT with tgkill).
pub fn profile(own_pid: u32) -> LinuxSeccomp {
    let mut deny = LinuxSyscall::default();
    deny.set_names(DENIED.split_whitespace().map(str::to_owned).collect());
    deny.set_action(LinuxSeccompAction::ScmpActErrno);
    deny.set_errno_ret(Some(libc::EPERM as u32));
    let mut other_process = LinuxSyscall::default();
    other_process.set_names(vec!["tgkill".to_owned()]);
    other_process.set_action(LinuxSeccompAction::ScmpActErrno);
    other_process.set_errno_ret(Some(libc::EPERM as u32));
    let not_self = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(u64::from(own_pid))
        .op(LinuxSeccompOperator::ScmpCmpNe)
        .build()
        .expect("all fields set");
    other_process.set_args(Some(vec![not_self]));
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
    seccomp.set_syscalls(Some(vec![deny, other_process]));
    seccomp
}
