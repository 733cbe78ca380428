//! Device access rules (`linux.resources.devices`): v1 `devices.allow`/`devices.deny` lines, and for
//! v2 a BPF_PROG_TYPE_CGROUP_DEVICE program built from the same rules and attached to the cgroup.
//!
//! Rules are applied as given; the devices every container needs (`/dev/null`, ptys, ...) are in
//! [`default_allowed_devices`], for the caller to append after a deny-all, as runc's spec
//! conversion does.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// The devices runc allows every container after its deny-all: mknod of any node, the pseudo
/// devices, the tty and pty devices, and /dev/net/tun.
pub fn default_allowed_devices() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),    // null
        rule(C, Some(1), Some(8), "rwm"),    // random
        rule(C, Some(1), Some(7), "rwm"),    // full
        rule(C, Some(5), Some(0), "rwm"),    // tty
        rule(C, Some(1), Some(5), "rwm"),    // zero
        rule(C, Some(1), Some(9), "rwm"),    // urandom
        rule(C, Some(5), Some(1), "rwm"),    // console
        rule(C, Some(136), None, "rwm"),     // pts
        rule(C, Some(5), Some(2), "rwm"),    // ptmx
        rule(C, Some(10), Some(200), "rwm"), // net/tun
    ]
}

/// A rule checked and reduced to what the kernel matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    /// `None` for every type ("a").
    typ: Option<char>,
    major: Option<u32>,
    minor: Option<u32>,
    /// Subset of "rwm", in that order.
    access: String,
}

impl Rule {
    fn from_spec(rule: &LinuxDeviceCgroup) -> Result<Rule, CgroupError> {
        let invalid = |reason: String| CgroupError::InvalidValue { field: "linux.resources.devices", reason };
        let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some('b'),
            LinuxDeviceType::C | LinuxDeviceType::U => Some('c'),
            LinuxDeviceType::P => return Err(invalid(format!("{rule}: fifos are not subject to device rules"))),
        };
        let number = |n: Option<i64>| match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| invalid(format!("{rule}: bad device number {n}"))),
        };
        let given = rule.access().as_deref().unwrap_or("");
        if let Some(bad) = given.chars().find(|c| !"rwm".contains(*c)) {
            return Err(invalid(format!("access {given:?} has {bad:?}; only r, w and m are allowed")));
        }
        let access =
            if given.is_empty() { "rwm".to_string() } else { "rwm".chars().filter(|c| given.contains(*c)).collect() };
        Ok(Rule { allow: rule.allow(), typ, major: number(rule.major())?, minor: number(rule.minor())?, access })
    }

    fn is_all_devices(&self) -> bool {
        self.typ.is_none() && self.major.is_none() && self.minor.is_none() && self.access == "rwm"
    }

    fn line(&self, typ: char) -> String {
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        format!("{typ} {}:{} {}", number(self.major), number(self.minor), self.access)
    }
}

/// The v1 writes for one rule, as (file, line). "a" switches the whole default (the kernel ignores
/// the rest of such a line), so a rule for every type that is narrower than that becomes a "b" and
/// a "c" line.
pub(crate) fn v1_writes(rule: &LinuxDeviceCgroup) -> Result<Vec<(&'static str, String)>, CgroupError> {
    let rule = Rule::from_spec(rule)?;
    let name = if rule.allow { "devices.allow" } else { "devices.deny" };
    Ok(match rule.typ {
        _ if rule.is_all_devices() => vec![(name, "a".to_string())],
        None => vec![(name, rule.line('b')), (name, rule.line('c'))],
        Some(t) => vec![(name, rule.line(t))],
    })
}

/// v2: builds the device program from `rules`, attaches it to `dir`, then detaches the programs
/// attached before (an `update`), so only the new rules hold. No rules: nothing changes.
pub(crate) fn v2_apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    if rules.is_empty() {
        return Ok(());
    }
    let rules = rules.iter().map(Rule::from_spec).collect::<Result<Vec<_>, _>>()?;
    let program = bpf::program(&rules);
    let cgroup = File::open(dir).map_err(|err| CgroupError::Read { file: dir.to_path_buf(), err })?;
    let failed = |what: &str, err: io::Error| {
        CgroupError::Unsupported(format!(
            "device rules on cgroup v2: {what} for {}: {}",
            dir.display(),
            super::OsText(&err)
        ))
    };
    let old = bpf::attached(cgroup.as_raw_fd()).map_err(|e| failed("querying attached programs", e))?;
    let prog = bpf::load(&program).map_err(|e| failed("loading the device program", e))?;
    bpf::attach(cgroup.as_raw_fd(), prog.as_raw_fd()).map_err(|e| failed("attaching the device program", e))?;
    for id in old {
        // A program that vanished meanwhile is already detached.
        if let Ok(fd) = bpf::fd_by_id(id) {
            bpf::detach(cgroup.as_raw_fd(), fd.as_raw_fd()).map_err(|e| failed("detaching the old program", e))?;
        }
    }
    Ok(())
}

/// Raw bpf(2) for the four commands we need, and the program itself as eBPF instructions.
mod bpf {
    use super::*;

    const BPF_PROG_LOAD: libc::c_int = 5;
    const BPF_PROG_ATTACH: libc::c_int = 8;
    const BPF_PROG_DETACH: libc::c_int = 9;
    const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
    const BPF_PROG_QUERY: libc::c_int = 16;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;

    // bpf_cgroup_dev_ctx: access_type = (access << 16) | type; major; minor.
    const DEV_BLOCK: i32 = 1;
    const DEV_CHAR: i32 = 2;
    const ACC_MKNOD: i32 = 1;
    const ACC_READ: i32 = 2;
    const ACC_WRITE: i32 = 4;

    /// One eBPF instruction: opcode, dst/src registers, offset, immediate.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }

    const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | dst, off, imm }
    }
    const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
    const AND32_K: u8 = 0x54;
    const RSH32_K: u8 = 0x74;
    const MOV32_X: u8 = 0xbc;
    const MOV64_K: u8 = 0xb7;
    const JNE_K: u8 = 0x55;
    const JNE_X: u8 = 0x5d;
    const JEQ_K: u8 = 0x15;
    const EXIT: u8 = 0x95;

    /// The program: the last rule that matches decides (as writing them in order into v1 does);
    /// no match denies. An allow matches when it grants all the access asked for; a deny when it
    /// covers any of it.
    pub(crate) fn program(rules: &[Rule]) -> Vec<Insn> {
        let mut p = vec![
            insn(LDX_W, 2, 1, 0, 0),
            insn(AND32_K, 2, 0, 0, 0xffff), // r2 = type
            insn(LDX_W, 3, 1, 0, 0),
            insn(RSH32_K, 3, 0, 0, 16), // r3 = access
            insn(LDX_W, 4, 1, 4, 0),    // r4 = major
            insn(LDX_W, 5, 1, 8, 0),    // r5 = minor
        ];
        for rule in rules.iter().rev() {
            let mut checks = Vec::new();
            if let Some(t) = rule.typ {
                checks.push(insn(JNE_K, 2, 0, 0, if t == 'b' { DEV_BLOCK } else { DEV_CHAR }));
            }
            if rule.access != "rwm" {
                let bits = rule.access.chars().fold(0, |acc, c| {
                    acc | match c {
                        'r' => ACC_READ,
                        'w' => ACC_WRITE,
                        _ => ACC_MKNOD,
                    }
                });
                checks.push(insn(MOV32_X, 1, 3, 0, 0));
                checks.push(insn(AND32_K, 1, 0, 0, bits));
                checks.push(if rule.allow { insn(JNE_X, 1, 3, 0, 0) } else { insn(JEQ_K, 1, 0, 0, 0) });
            }
            if let Some(major) = rule.major {
                checks.push(insn(JNE_K, 4, 0, 0, major as i32));
            }
            if let Some(minor) = rule.minor {
                checks.push(insn(JNE_K, 5, 0, 0, minor as i32));
            }
            // Every check jumps past this block's verdict when the rule does not match.
            let n = checks.len();
            if n == 0 {
                // Matches everything: the verdict is final, and the verifier refuses the
                // unreachable instructions that would follow.
                p.push(insn(MOV64_K, 0, 0, 0, i32::from(rule.allow)));
                p.push(insn(EXIT, 0, 0, 0, 0));
                return p;
            }
            for (i, check) in checks.iter_mut().enumerate() {
                if check.code & 0x07 == 0x05 {
                    check.off = (n - i - 1 + 2) as i16;
                }
            }
            p.extend(checks);
            p.push(insn(MOV64_K, 0, 0, 0, i32::from(rule.allow)));
            p.push(insn(EXIT, 0, 0, 0, 0));
        }
        p.push(insn(MOV64_K, 0, 0, 0, 0));
        p.push(insn(EXIT, 0, 0, 0, 0));
        p
    }

    fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
        // SAFETY: `attr` is a #[repr(C)] prefix of union bpf_attr for `cmd`, zero-padded, and
        // lives across the call; the kernel reads (and for QUERY writes) at most size_of::<T>().
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }

    pub(crate) fn load(program: &[Insn]) -> io::Result<OwnedFd> {
        let license = c"Apache";
        let mut name = [0u8; 16];
        name[..13].copy_from_slice(b"strata_device");
        let mut attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: program.len() as u32,
            insns: program.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            expected_attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        let fd = match sys_bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // Load again with the verifier's log, so the error says what it refused.
                let mut log = vec![0u8; 64 * 1024];
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                let again = sys_bpf(BPF_PROG_LOAD, &mut attr);
                let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
                match again {
                    Ok(fd) => fd,
                    Err(e) => {
                        let last = text
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty() && !l.starts_with("processed "))
                            .unwrap_or("");
                        return Err(io::Error::new(
                            e.kind(),
                            format!("{} (verifier: {last})", super::super::OsText(&e)),
                        ));
                    }
                }
            }
            Err(e) => return Err(e),
        };
        // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    #[repr(C)]
    #[derive(Default)]
    struct Attach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }

    pub(crate) fn attach(cgroup: RawFd, prog: RawFd) -> io::Result<()> {
        let mut attr = Attach {
            target_fd: cgroup as u32,
            attach_bpf_fd: prog as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
    }

    pub(crate) fn detach(cgroup: RawFd, prog: RawFd) -> io::Result<()> {
        let mut attr = Attach {
            target_fd: cgroup as u32,
            attach_bpf_fd: prog as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_DETACH, &mut attr).map(drop)
    }

    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
    }

    /// Ids of the device programs attached to the cgroup itself.
    pub(crate) fn attached(cgroup: RawFd) -> io::Result<Vec<u32>> {
        let mut ids = vec![0u32; 64];
        let mut attr = Query {
            target_fd: cgroup as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_QUERY, &mut attr)?;
        ids.truncate(attr.prog_cnt as usize);
        Ok(ids)
    }

    #[repr(C)]
    #[derive(Default)]
    struct GetFdById {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }

    pub(crate) fn fd_by_id(id: u32) -> io::Result<OwnedFd> {
        let mut attr = GetFdById { prog_id: id, ..Default::default() };
        let fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?;
        // SAFETY: BPF_PROG_GET_FD_BY_ID returned a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    }

    #[test]
    fn v1_lines_follow_the_kernel_syntax() {
        let deny_all = spec(false, None, None, None, "rwm");
        assert_eq!(v1_writes(&deny_all).unwrap(), [("devices.deny", "a".to_string())]);
        let null = spec(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm");
        assert_eq!(v1_writes(&null).unwrap(), [("devices.allow", "c 1:3 rwm".to_string())]);
        let pts = spec(true, Some(LinuxDeviceType::C), Some(136), None, "wr");
        assert_eq!(v1_writes(&pts).unwrap(), [("devices.allow", "c 136:* rw".to_string())]);
        let any_mknod = spec(true, Some(LinuxDeviceType::A), None, None, "m");
        assert_eq!(
            v1_writes(&any_mknod).unwrap(),
            [("devices.allow", "b *:* m".to_string()), ("devices.allow", "c *:* m".to_string())]
        );
        assert!(v1_writes(&spec(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rx")).is_err());
        assert!(v1_writes(&spec(true, Some(LinuxDeviceType::P), None, None, "rwm")).is_err());
    }

    /// Runs the generated program in a tiny interpreter covering the opcodes it uses.
    fn run(program: &[bpf::Insn], typ: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access << 16) | typ) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            // Decode through the same layout the kernel reads.
            // SAFETY: Insn is #[repr(C)] of 8 bytes with no padding.
            let raw: [u8; 8] = unsafe { std::mem::transmute(program[pc]) };
            let (code, dst, src) = (raw[0], (raw[1] & 0xf) as usize, (raw[1] >> 4) as usize);
            let off = i16::from_ne_bytes([raw[2], raw[3]]) as isize;
            let imm = i32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
            pc += 1;
            let jump = |taken: bool, pc: &mut usize| {
                if taken {
                    *pc = (*pc as isize + off) as usize;
                }
            };
            if !matches!(code, 0x61 | 0x55 | 0x5d | 0x15) {
                assert_eq!(off, 0, "the kernel refuses an offset on opcode {code:#x}");
            }
            match code {
                0x61 => r[dst] = u64::from(ctx[(off / 4) as usize]),
                0x54 => r[dst] = (r[dst] as u32 & imm as u32) as u64,
                0x74 => r[dst] = ((r[dst] as u32) >> imm) as u64,
                0xbc => r[dst] = r[src] as u32 as u64,
                0xb7 => r[dst] = imm as i64 as u64,
                0x55 => jump(r[dst] != imm as i64 as u64, &mut pc),
                0x5d => jump(r[dst] != r[src], &mut pc),
                0x15 => jump(r[dst] == imm as i64 as u64, &mut pc),
                0x95 => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn device_program_gives_the_last_matching_rule_the_say() {
        let mut rules = vec![spec(false, None, None, None, "rwm")];
        rules.extend(default_allowed_devices());
        rules.push(spec(true, Some(LinuxDeviceType::B), Some(8), Some(0), "r"));
        rules.push(spec(false, Some(LinuxDeviceType::C), Some(1), Some(9), "w"));
        let rules: Vec<Rule> = rules.iter().map(|r| Rule::from_spec(r).unwrap()).collect();
        let p = bpf::program(&rules);
        let (c, b) = (2, 1);
        let (m, r, w) = (1, 2, 4);
        assert_eq!(run(&p, c, r | w, 1, 3), 1, "null rw");
        assert_eq!(run(&p, c, r | w, 136, 7), 1, "pts wildcard minor");
        assert_eq!(run(&p, c, m, 250, 1), 1, "mknod of any char device");
        assert_eq!(run(&p, c, r, 250, 1), 0, "read of an unlisted char device");
        assert_eq!(run(&p, b, r, 8, 0), 1, "sda read");
        assert_eq!(run(&p, b, r | w, 8, 0), 0, "sda write");
        assert_eq!(run(&p, c, r, 1, 9), 1, "urandom read");
        assert_eq!(run(&p, c, r | w, 1, 9), 0, "urandom write denied by the later rule");

        let allow_all = [Rule::from_spec(&spec(true, None, None, None, "rwm")).unwrap()];
        assert_eq!(run(&bpf::program(&allow_all), b, r | w, 8, 0), 1);
        assert_eq!(run(&bpf::program(&[]), c, r, 1, 3), 0);
    }
}
