//! Reads the kernel's binfmt_misc registrations and decides how a foreign binary will run.
//!
//! The entry files under `/proc/sys/fs/binfmt_misc` are what the kernel applies, so the
//! driver reads them rather than `/usr/lib/binfmt.d`. An entry with the `F` flag had its
//! interpreter opened at registration and works in any container. Without `F` the kernel
//! opens the interpreter path inside the container at every exec, so the driver must
//! bind-mount a statically linked interpreter at exactly that path.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::elf::{self, Arch};

/// Mount point of binfmt_misc.
pub const DEFAULT_ROOT: &str = "/proc/sys/fs/binfmt_misc";

/// One `magic`-type registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    pub flags: String,
    pub offset: usize,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

impl Entry {
    /// Whether the kernel opened the interpreter at registration (`F`, fix-binary).
    pub fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }

    /// Whether setuid programs keep their credentials (`C`), which `sudo` needs.
    pub fn credentials(&self) -> bool {
        self.flags.contains('C')
    }

    /// Whether the entry's magic and mask match the start of a file.
    pub fn matches(&self, header: &[u8]) -> bool {
        self.magic.iter().enumerate().all(|(index, magic)| {
            let mask = self.mask.get(index).copied().unwrap_or(0xff);
            header
                .get(self.offset + index)
                .is_some_and(|byte| byte & mask == magic & mask)
        })
    }
}

/// Emulation mode of the job container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The image matches the host; no interpreter is involved.
    Native,
    /// The kernel keeps the interpreter open (`F` flag), so nothing is injected.
    FixBinary { entry: Entry },
    /// The interpreter must exist inside the container: bind-mount `host_path` read-only
    /// at `entry.interpreter`.
    Inject { entry: Entry, host_path: PathBuf },
}

impl Emulation {
    /// Returns a short description for the job log.
    pub fn describe(&self) -> String {
        match self {
            Emulation::Native => "native, no emulation".to_owned(),
            Emulation::FixBinary { entry } => format!(
                "QEMU through binfmt_misc entry `{}` with the F flag, nothing injected",
                entry.name
            ),
            Emulation::Inject { entry, host_path } => format!(
                "QEMU through binfmt_misc entry `{}` without the F flag, `{}` mounted at `{}`",
                entry.name,
                host_path.display(),
                entry.interpreter.display()
            ),
        }
    }

    pub fn entry(&self) -> Option<&Entry> {
        match self {
            Emulation::Native => None,
            Emulation::FixBinary { entry } | Emulation::Inject { entry, .. } => Some(entry),
        }
    }
}

/// Reads every magic-type entry under `root`. A missing or unmounted directory yields an
/// error that shows how to mount it.
pub fn read_entries(root: &Path) -> anyhow::Result<Vec<Entry>> {
    let status = root.join("status");
    let global = fs::read_to_string(&status).with_context(|| {
        format!(
            "binfmt_misc is not mounted at `{}`; mount it with \
             `mount -t binfmt_misc binfmt_misc {}`",
            root.display(),
            root.display()
        )
    })?;
    if global.trim() != "enabled" {
        bail!(
            "binfmt_misc is disabled on this host; enable it with `echo 1 > {}`",
            status.display()
        );
    }

    let mut entries = Vec::new();
    let listing =
        fs::read_dir(root).with_context(|| format!("failed to list `{}`", root.display()))?;
    for item in listing {
        let item = item.with_context(|| format!("failed to list `{}`", root.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name == "status" || name == "register" {
            continue;
        }
        let Ok(text) = fs::read_to_string(item.path()) else {
            continue;
        };
        if let Some(entry) = parse_entry(&name, &text) {
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Parses one entry file; extension-type entries (no `magic` line) yield `None`.
pub fn parse_entry(name: &str, text: &str) -> Option<Entry> {
    let mut entry = Entry {
        name: name.to_owned(),
        enabled: false,
        interpreter: PathBuf::new(),
        flags: String::new(),
        offset: 0,
        magic: Vec::new(),
        mask: Vec::new(),
    };
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "enabled" => entry.enabled = true,
            "disabled" => entry.enabled = false,
            "interpreter" => entry.interpreter = PathBuf::from(value),
            "flags:" => entry.flags = value.trim().to_owned(),
            "offset" => entry.offset = value.trim().parse().ok()?,
            "magic" => entry.magic = crate::hex::decode(value.trim())?,
            "mask" => entry.mask = crate::hex::decode(value.trim())?,
            _ => {}
        }
    }
    (!entry.magic.is_empty()).then_some(entry)
}

/// Decides how a binary with `header` (the first bytes of the image's shell) will run,
/// and fails with the fix when it cannot.
pub fn plan(root: &Path, header: &[u8], arch: Arch) -> anyhow::Result<Emulation> {
    if arch.runs_natively_on(Arch::host()) {
        return Ok(Emulation::Native);
    }
    let entries = read_entries(root)?;
    let matching: Vec<&Entry> = entries
        .iter()
        .filter(|entry| entry.matches(header))
        .collect();
    let qemu_name = qemu_arch_name(arch);
    let Some(entry) = matching
        .iter()
        .find(|entry| entry.enabled)
        .or_else(|| matching.first())
        .copied()
    else {
        bail!(
            "no binfmt_misc entry on this host runs {arch} binaries; install QEMU with \
             `apt-get install qemu-user-static binfmt-support`, or register `qemu-{qemu_name}` \
             with `cross-executor binfmt install`"
        );
    };
    if !entry.enabled {
        bail!(
            "the binfmt_misc entry `{name}` for {arch} binaries is disabled; enable it with \
             `echo 1 > {root}/{name}`",
            name = entry.name,
            root = root.display()
        );
    }

    let resolved = fs::canonicalize(&entry.interpreter);
    if entry.fix_binary() {
        // The kernel keeps the interpreter open, so a path that no longer exists on the
        // host (for example one registered from inside a container) still works.
        if let Ok(host_path) = &resolved {
            check_static(host_path, entry, qemu_name)?;
        }
        return Ok(Emulation::FixBinary {
            entry: entry.clone(),
        });
    }
    let host_path = resolved.with_context(|| {
        format!(
            "the interpreter `{}` of binfmt_misc entry `{}` does not exist on this host; \
             install it with `apt-get install qemu-user-static`",
            entry.interpreter.display(),
            entry.name
        )
    })?;
    check_static(&host_path, entry, qemu_name)?;
    Ok(Emulation::Inject {
        entry: entry.clone(),
        host_path,
    })
}

fn check_static(host_path: &Path, entry: &Entry, qemu_name: &str) -> anyhow::Result<()> {
    let read_error = || format!("failed to read the interpreter `{}`", host_path.display());
    let mut bytes = read_headers(host_path).with_context(read_error)?;
    if elf::is_statically_linked(&bytes) == Err(elf::ElfError::Truncated) {
        // The program headers lie further in; read the whole file.
        bytes = fs::read(host_path).with_context(read_error)?;
    }
    let is_static = elf::is_statically_linked(&bytes).with_context(|| {
        format!(
            "the interpreter `{}` is not a valid ELF file",
            host_path.display()
        )
    })?;
    if !is_static {
        bail!(
            "the interpreter `{}` of binfmt_misc entry `{}` is dynamically linked and cannot \
             run inside a container; install the static build with \
             `apt-get install qemu-user-static` and register `/usr/bin/qemu-{qemu_name}-static`",
            host_path.display(),
            entry.name
        );
    }
    Ok(())
}

/// Reads the start of an ELF file. That covers the file header and a program header table
/// right after it, which is where static QEMU builds have it; the whole binary is about 10 MiB.
fn read_headers(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;

    let mut bytes = Vec::with_capacity(HEADER_READ_BYTES);
    fs::File::open(path)?
        .take(HEADER_READ_BYTES as u64)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Bytes read for the static-linking check.
const HEADER_READ_BYTES: usize = 64 * 1024;

/// Returns the name QEMU uses for an architecture (`qemu-<name>-static`).
pub fn qemu_arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Arm => "arm",
        Arch::Aarch64 => "aarch64",
        Arch::Riscv64 => "riscv64",
        Arch::Ppc64le => "ppc64le",
        Arch::Ppc64 => "ppc64",
        Arch::S390x => "s390x",
        Arch::I386 => "i386",
        Arch::X86_64 => "x86_64",
        Arch::Mips => "mips",
        Arch::Mips64 => "mips64",
        Arch::Other(_) => "<arch>",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARM_ENTRY: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\n\
        flags: PF\noffset 0\nmagic 7f454c4601010100000000000000000002002800\n\
        mask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn arm_header() -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..8].copy_from_slice(b"\x7fELF\x01\x01\x01\x00");
        bytes[16] = 2;
        bytes[18] = 40;
        bytes
    }

    #[test]
    fn entry_parses_debian_arm_registration() {
        let entry = parse_entry("qemu-arm", ARM_ENTRY).unwrap();
        assert!(entry.enabled);
        assert!(entry.fix_binary());
        assert!(!entry.credentials());
        assert_eq!(
            entry.interpreter,
            PathBuf::from("/usr/libexec/qemu-binfmt/arm-binfmt-P")
        );
        assert_eq!(entry.magic.len(), 20);
    }

    #[test]
    fn entry_matches_arm_header_only() {
        let entry = parse_entry("qemu-arm", ARM_ENTRY).unwrap();
        assert!(entry.matches(&arm_header()));
        let mut aarch64 = arm_header();
        aarch64[4] = 2;
        aarch64[18] = 183;
        assert!(!entry.matches(&aarch64));
        assert!(!entry.matches(b"\x7fELF"));
    }

    #[test]
    fn extension_entry_is_skipped() {
        assert_eq!(
            parse_entry("jar", "enabled\ninterpreter /x\nflags: \nextension .jar\n"),
            None
        );
    }

    fn fake_root(entry_text: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("status"), "enabled\n").unwrap();
        fs::write(root.path().join("register"), "").unwrap();
        fs::write(root.path().join("qemu-arm"), entry_text).unwrap();
        root
    }

    #[test]
    fn plan_fails_without_matching_entry() {
        let root = fake_root("enabled\ninterpreter /x\nflags: F\noffset 0\nmagic 00\n");
        let error = plan(root.path(), &arm_header(), Arch::Arm).unwrap_err();
        assert!(format!("{error:#}").contains("apt-get install qemu-user-static"));
    }

    #[test]
    fn plan_fails_for_disabled_entry() {
        let root = fake_root(&ARM_ENTRY.replace("enabled", "disabled"));
        let error = plan(root.path(), &arm_header(), Arch::Arm).unwrap_err();
        assert!(format!("{error:#}").contains("echo 1 >"), "{error:#}");
    }

    #[test]
    fn plan_fails_for_missing_interpreter_without_f() {
        let text = ARM_ENTRY.replace("flags: PF", "flags: P").replace(
            "/usr/libexec/qemu-binfmt/arm-binfmt-P",
            "/nonexistent/qemu-arm",
        );
        let root = fake_root(&text);
        let error = plan(root.path(), &arm_header(), Arch::Arm).unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/qemu-arm"),
            "{error:#}"
        );
    }

    #[test]
    fn plan_rejects_dynamic_interpreter() {
        let dynamic = std::env::current_exe().unwrap();
        let text = ARM_ENTRY.replace("flags: PF", "flags: P").replace(
            "/usr/libexec/qemu-binfmt/arm-binfmt-P",
            dynamic.to_str().unwrap(),
        );
        let root = fake_root(&text);
        let error = plan(root.path(), &arm_header(), Arch::Arm).unwrap_err();
        assert!(
            format!("{error:#}").contains("dynamically linked"),
            "{error:#}"
        );
    }

    #[test]
    fn plan_is_native_for_host_arch() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            plan(root.path(), b"", Arch::host()).unwrap(),
            Emulation::Native
        );
    }

    #[test]
    fn plan_reports_unmounted_binfmt() {
        let root = tempfile::tempdir().unwrap();
        let error = plan(root.path(), &arm_header(), Arch::Arm).unwrap_err();
        assert!(
            format!("{error:#}").contains("mount -t binfmt_misc"),
            "{error:#}"
        );
    }
}
