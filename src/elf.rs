//! Reads the few ELF header fields the driver needs: the CPU architecture of a file and
//! whether it is statically linked.

use std::fmt;

/// CPU architectures the driver can name. The binfmt_misc magic decides what actually
/// runs; this only serves messages, platform checks and native detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    I386,
    Arm,
    Aarch64,
    Riscv64,
    Ppc64le,
    Ppc64,
    S390x,
    Mips,
    Mips64,
    Other(u16),
}

const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const PT_INTERP: u32 = 3;

impl Arch {
    /// The architecture of the machine the driver runs on.
    pub fn host() -> Arch {
        match std::env::consts::ARCH {
            "x86_64" => Arch::X86_64,
            "x86" => Arch::I386,
            "arm" => Arch::Arm,
            "aarch64" => Arch::Aarch64,
            "riscv64" => Arch::Riscv64,
            "powerpc64" if cfg!(target_endian = "little") => Arch::Ppc64le,
            "powerpc64" => Arch::Ppc64,
            "s390x" => Arch::S390x,
            _ => Arch::Other(0),
        }
    }

    /// Whether the host kernel runs this architecture without an interpreter.
    pub fn runs_natively_on(self, host: Arch) -> bool {
        self == host || (host == Arch::X86_64 && self == Arch::I386)
    }

    /// The architecture part of an OCI platform string (`linux/<arch>[/<variant>]`).
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::I386 => "386",
            Arch::Arm => "arm",
            Arch::Aarch64 => "arm64",
            Arch::Riscv64 => "riscv64",
            Arch::Ppc64le => "ppc64le",
            Arch::Ppc64 => "ppc64",
            Arch::S390x => "s390x",
            Arch::Mips => "mips",
            Arch::Mips64 => "mips64",
            Arch::Other(_) => "unknown",
        }
    }

    /// Parses the architecture part of an OCI platform string, accepting common aliases.
    pub fn from_oci_name(name: &str) -> Option<Arch> {
        match name {
            "amd64" | "x86_64" => Some(Arch::X86_64),
            "386" | "i386" | "i686" => Some(Arch::I386),
            "arm" | "armhf" | "armel" | "armv6l" | "armv7l" => Some(Arch::Arm),
            "arm64" | "aarch64" => Some(Arch::Aarch64),
            "riscv64" => Some(Arch::Riscv64),
            "ppc64le" | "ppc64el" => Some(Arch::Ppc64le),
            "ppc64" => Some(Arch::Ppc64),
            "s390x" => Some(Arch::S390x),
            "mips" | "mipsle" => Some(Arch::Mips),
            "mips64" | "mips64le" => Some(Arch::Mips64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::Other(machine) => write!(f, "ELF machine {machine}"),
            known => f.write_str(known.oci_name()),
        }
    }
}

/// The header fields read from an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfHeader {
    pub arch: Arch,
    pub is_64_bit: bool,
    pub little_endian: bool,
}

/// Error of reading bytes as an ELF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    Truncated,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => f.write_str("not an ELF file"),
            ElfError::Truncated => f.write_str("truncated ELF header"),
        }
    }
}

impl std::error::Error for ElfError {}

/// Parses the identification and machine fields; 20 bytes are enough.
pub fn parse_header(bytes: &[u8]) -> Result<ElfHeader, ElfError> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if bytes.len() < 20 {
        return Err(ElfError::Truncated);
    }
    let is_64_bit = bytes[4] == 2;
    let little_endian = bytes[5] != 2;
    let machine = read_u16(bytes, 18, little_endian);
    let arch = match machine {
        EM_X86_64 => Arch::X86_64,
        EM_386 => Arch::I386,
        EM_ARM => Arch::Arm,
        EM_AARCH64 => Arch::Aarch64,
        EM_RISCV if is_64_bit => Arch::Riscv64,
        EM_PPC64 if little_endian => Arch::Ppc64le,
        EM_PPC64 => Arch::Ppc64,
        EM_S390 if is_64_bit => Arch::S390x,
        EM_MIPS if is_64_bit => Arch::Mips64,
        EM_MIPS => Arch::Mips,
        other => Arch::Other(other),
    };
    Ok(ElfHeader {
        arch,
        is_64_bit,
        little_endian,
    })
}

/// Whether a complete ELF file has no `PT_INTERP` program header, which means it needs
/// no dynamic loader and can run inside any container.
pub fn is_statically_linked(file: &[u8]) -> Result<bool, ElfError> {
    let header = parse_header(file)?;
    let (offset_at, entry_size_at, count_at) = if header.is_64_bit {
        (32, 54, 56)
    } else {
        (28, 42, 44)
    };
    if file.len() < count_at + 2 {
        return Err(ElfError::Truncated);
    }
    let little = header.little_endian;
    let table_offset = if header.is_64_bit {
        read_u64(file, offset_at, little)
    } else {
        u64::from(read_u32(file, offset_at, little))
    };
    let entry_size = usize::from(read_u16(file, entry_size_at, little));
    let count = usize::from(read_u16(file, count_at, little));
    let table_offset = usize::try_from(table_offset).map_err(|_| ElfError::Truncated)?;

    for index in 0..count {
        let start = table_offset + index * entry_size;
        if file.len() < start + 4 {
            return Err(ElfError::Truncated);
        }
        if read_u32(file, start, little) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

fn read_u16(bytes: &[u8], at: usize, little: bool) -> u16 {
    let raw = [bytes[at], bytes[at + 1]];
    if little {
        u16::from_le_bytes(raw)
    } else {
        u16::from_be_bytes(raw)
    }
}

fn read_u32(bytes: &[u8], at: usize, little: bool) -> u32 {
    let raw = bytes[at..at + 4].try_into().expect("slice of four bytes");
    if little {
        u32::from_le_bytes(raw)
    } else {
        u32::from_be_bytes(raw)
    }
}

fn read_u64(bytes: &[u8], at: usize, little: bool) -> u64 {
    let raw = bytes[at..at + 8].try_into().expect("slice of eight bytes");
    if little {
        u64::from_le_bytes(raw)
    } else {
        u64::from_be_bytes(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, endian: u8, machine: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = class;
        bytes[5] = endian;
        let raw = if endian == 2 {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        bytes[18..20].copy_from_slice(&raw);
        bytes
    }

    #[test]
    fn header_names_common_architectures() {
        assert_eq!(parse_header(&header(1, 1, 40)).unwrap().arch, Arch::Arm);
        assert_eq!(
            parse_header(&header(2, 1, 183)).unwrap().arch,
            Arch::Aarch64
        );
        assert_eq!(
            parse_header(&header(2, 1, 243)).unwrap().arch,
            Arch::Riscv64
        );
        assert_eq!(parse_header(&header(2, 1, 21)).unwrap().arch, Arch::Ppc64le);
        assert_eq!(parse_header(&header(2, 2, 22)).unwrap().arch, Arch::S390x);
    }

    #[test]
    fn header_rejects_non_elf() {
        assert_eq!(parse_header(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert_eq!(parse_header(b"\x7fELF\x01"), Err(ElfError::Truncated));
    }

    #[test]
    fn host_binary_is_dynamically_linked() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(parse_header(&me).unwrap().arch, Arch::host());
        assert!(!is_statically_linked(&me).unwrap());
    }

    #[test]
    fn static_check_without_program_headers() {
        let bytes = header(2, 1, 62);
        assert!(is_statically_linked(&bytes).unwrap());
    }

    #[test]
    fn platform_names_round_trip() {
        for arch in [
            Arch::Arm,
            Arch::Aarch64,
            Arch::X86_64,
            Arch::Riscv64,
            Arch::Ppc64le,
        ] {
            assert_eq!(Arch::from_oci_name(arch.oci_name()), Some(arch));
        }
    }
}
