//! `cross-executor binfmt install` and `binfmt uninstall`: registers the host's static QEMU
//! interpreters in binfmt_misc with the `F` flag (and `C` on request), the registration that
//! otherwise takes a privileged helper container.
//!
//! The magic and mask select ELF executables and shared objects of one machine type. The
//! OS/ABI byte is masked out, and the lowest bit of `e_type` too, so both `ET_EXEC` (2) and
//! `ET_DYN` (3) match.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::binfmt::{self, Entry};
use crate::elf::{self, Arch};

/// Architectures `binfmt install` registers when none are named.
pub const DEFAULT_ARCHES: [&str; 5] = ["arm", "aarch64", "riscv64", "ppc64le", "s390x"];

/// Options of one `binfmt install` or `binfmt uninstall` call.
#[derive(Debug, Clone)]
pub struct BinfmtRequest {
    /// QEMU architecture names, such as `arm` or `aarch64`.
    pub arches: Vec<String>,
    /// Add the `C` flag, so setuid programs such as sudo work.
    pub credentials: bool,
    /// binfmt_misc mount point.
    pub root: PathBuf,
}

/// Registers an entry for each requested architecture; an equal entry is kept as it is.
pub fn install(request: &BinfmtRequest) -> anyhow::Result<()> {
    require_root("register binfmt_misc entries")?;
    let flags = if request.credentials { "CF" } else { "F" };
    for name in &request.arches {
        let arch = arch_from_qemu_name(name)?;
        let interpreter = find_static_qemu(name)?;
        let (magic, mask) = elf_magic(arch);
        let entry_name = format!("qemu-{name}");
        let existing = fs::read_to_string(request.root.join(&entry_name))
            .ok()
            .and_then(|text| binfmt::parse_entry(&entry_name, &text));

        if let Some(entry) = &existing {
            if is_equivalent(entry, &interpreter, flags, &magic, &mask) {
                println!(
                    "{entry_name}: already registered with flags {}",
                    entry.flags
                );
                continue;
            }
            remove_entry(&request.root, &entry_name)?;
        }
        let registration = format!(
            ":{entry_name}:M:0:{}:{}:{}:{flags}",
            escape(&magic),
            escape(&mask),
            interpreter.display()
        );
        fs::write(request.root.join("register"), registration).with_context(|| {
            format!(
                "failed to register `{entry_name}` in {}",
                request.root.display()
            )
        })?;
        println!(
            "{entry_name}: registered {} with flags {flags}",
            interpreter.display()
        );
    }
    Ok(())
}

/// Removes the `qemu-<arch>` entry of each requested architecture; a missing one is fine.
pub fn uninstall(request: &BinfmtRequest) -> anyhow::Result<()> {
    require_root("remove binfmt_misc entries")?;
    for name in &request.arches {
        arch_from_qemu_name(name)?;
        let entry_name = format!("qemu-{name}");
        if request.root.join(&entry_name).exists() {
            remove_entry(&request.root, &entry_name)?;
            println!("{entry_name}: removed");
        } else {
            println!("{entry_name}: not registered");
        }
    }
    Ok(())
}

/// Maps a QEMU architecture name to the ELF architecture it runs.
pub fn arch_from_qemu_name(name: &str) -> anyhow::Result<Arch> {
    match name {
        "arm" => Ok(Arch::Arm),
        "aarch64" => Ok(Arch::Aarch64),
        "riscv64" => Ok(Arch::Riscv64),
        "ppc64le" => Ok(Arch::Ppc64le),
        "s390x" => Ok(Arch::S390x),
        other => bail!(
            "unsupported architecture `{other}`; use one of {}",
            DEFAULT_ARCHES.join(", ")
        ),
    }
}

/// Returns the magic and mask of the first 20 ELF header bytes of `arch` executables.
pub fn elf_magic(arch: Arch) -> (Vec<u8>, Vec<u8>) {
    let (class, big_endian, machine): (u8, bool, u16) = match arch {
        Arch::Arm => (1, false, 40),
        Arch::Aarch64 => (2, false, 183),
        Arch::Riscv64 => (2, false, 243),
        Arch::Ppc64le => (2, false, 21),
        Arch::S390x => (2, true, 22),
        Arch::Ppc64 => (2, true, 21),
        Arch::I386 => (1, false, 3),
        Arch::X86_64 => (2, false, 62),
        Arch::Mips => (1, true, 8),
        Arch::Mips64 => (2, true, 8),
        Arch::Other(machine) => (2, false, machine),
    };
    let order = |value: u16| {
        if big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    };
    let mut magic = vec![
        0x7f,
        b'E',
        b'L',
        b'F',
        class,
        if big_endian { 2 } else { 1 },
        1,
    ];
    magic.extend([0u8; 9]);
    magic.extend(order(2));
    magic.extend(order(machine));

    let mut mask = vec![0xff; 7];
    mask.push(0x00);
    mask.extend([0xff; 8]);
    mask.extend(order(0xfffe));
    mask.extend([0xff, 0xff]);
    (magic, mask)
}

/// Finds `qemu-<name>-static`, or a static `qemu-<name>`, in /usr/bin or /usr/local/bin.
fn find_static_qemu(name: &str) -> anyhow::Result<PathBuf> {
    let candidates = ["/usr/bin", "/usr/local/bin"].iter().flat_map(|dir| {
        [
            Path::new(dir).join(format!("qemu-{name}-static")),
            Path::new(dir).join(format!("qemu-{name}")),
        ]
    });
    for candidate in candidates {
        let Ok(bytes) = fs::read(&candidate) else {
            continue;
        };
        if elf::is_statically_linked(&bytes).unwrap_or(false) {
            return Ok(candidate);
        }
    }
    bail!(
        "no statically linked QEMU for `{name}` in /usr/bin or /usr/local/bin; install it with \
         `apt-get install qemu-user-static`"
    )
}

fn is_equivalent(
    entry: &Entry,
    interpreter: &Path,
    flags: &str,
    magic: &[u8],
    mask: &[u8],
) -> bool {
    // The kernel shows `O` along with `C`, which implies it.
    let mut registered: Vec<char> = entry.flags.chars().filter(|flag| *flag != 'O').collect();
    let mut requested: Vec<char> = flags.chars().collect();
    registered.sort_unstable();
    requested.sort_unstable();
    entry.enabled
        && entry.interpreter == interpreter
        && registered == requested
        && entry.magic == magic
        && entry.mask == mask
}

fn remove_entry(root: &Path, name: &str) -> anyhow::Result<()> {
    fs::write(root.join(name), "-1")
        .with_context(|| format!("failed to remove binfmt_misc entry `{name}`"))
}

fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\x{byte:02x}")).collect()
}

/// Fails unless the process runs as root, which writing to binfmt_misc needs.
fn require_root(action: &str) -> anyhow::Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if effective_uid != Some("0") {
        bail!("only root can {action}; run the command with sudo or as root");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_matches_debian_arm_registration() {
        let (magic, mask) = elf_magic(Arch::Arm);
        assert_eq!(
            escape(&magic).replace("\\x", ""),
            "7f454c4601010100000000000000000002002800"
        );
        assert_eq!(
            escape(&mask).replace("\\x", ""),
            "ffffffffffffff00fffffffffffffffffeffffff"
        );
    }

    #[test]
    fn magic_of_big_endian_s390x() {
        let (magic, mask) = elf_magic(Arch::S390x);
        assert_eq!(&magic[16..20], &[0, 2, 0, 22]);
        assert_eq!(&mask[16..18], &[0xff, 0xfe]);
    }

    #[test]
    fn unknown_arch_is_rejected() {
        let error = arch_from_qemu_name("z80").unwrap_err();
        assert!(format!("{error:#}").contains("aarch64"));
    }
}
