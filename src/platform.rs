//! OCI platform strings such as `linux/arm/v7`, as used by `image:docker:platform`.

use anyhow::bail;

use crate::elf::Arch;

/// A parsed platform: the architecture and an optional variant (`v6`, `v7`, `v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub arch: Arch,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `[linux/]<arch>[/<variant>]`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = text.trim().split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => bail!("invalid platform `{text}`; expected a form like `linux/arm/v7`"),
        };
        if os != "linux" {
            bail!("unsupported platform `{text}`: only `linux` platforms run in Linux containers");
        }
        let Some(arch) = Arch::from_oci_name(arch) else {
            bail!(
                "unknown architecture `{arch}` in platform `{text}`; use one of amd64, 386, \
                 arm, arm64, riscv64, ppc64le, s390x"
            );
        };
        Ok(Platform {
            arch,
            variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parses_common_forms() {
        let arm = Platform::parse("linux/arm/v6").unwrap();
        assert_eq!(arm.arch, Arch::Arm);
        assert_eq!(arm.variant.as_deref(), Some("v6"));
        assert_eq!(Platform::parse("arm64").unwrap().arch, Arch::Aarch64);
        assert_eq!(Platform::parse("linux/riscv64").unwrap().variant, None);
    }

    #[test]
    fn platform_rejects_bad_input() {
        assert!(Platform::parse("windows/amd64").is_err());
        assert!(Platform::parse("linux/z80").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
