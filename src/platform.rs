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

impl Platform {
    /// Returns the platform string in its usual form, such as `linux/arm/v6`.
    pub fn canonical(&self) -> String {
        match &self.variant {
            Some(variant) => format!("linux/{}/{variant}", self.arch),
            None => format!("linux/{}", self.arch),
        }
    }
}

/// Source of a job's effective platform, for the job log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformSource {
    Job,
    Settings,
    ImageMetadata,
    ImageFiles,
}

impl PlatformSource {
    pub fn describe(self) -> &'static str {
        match self {
            PlatformSource::Job => "from the job",
            PlatformSource::Settings => "from the settings",
            PlatformSource::ImageMetadata => "from the image metadata",
            PlatformSource::ImageFiles => "from the image's binaries",
        }
    }
}

/// Picks the platform a job runs as: the job's own request, else a settings entry for its
/// image, else the image's metadata when it agrees with the binaries, else the binaries'
/// architecture alone. A job or settings platform whose architecture the binaries lack is an
/// error, because the job would not test what it claims to.
pub fn effective_platform(
    files_arch: Arch,
    job: Option<&Platform>,
    settings: Option<&Platform>,
    metadata: Option<&Platform>,
) -> anyhow::Result<(Platform, PlatformSource)> {
    let requested = [
        (job, PlatformSource::Job),
        (settings, PlatformSource::Settings),
    ];
    for (platform, source) in requested {
        let Some(platform) = platform else { continue };
        if platform.arch != files_arch {
            bail!(
                "platform {} ({}) does not match the image's binaries, which are for {files_arch}; \
                 use an image built for {} or change the platform",
                platform.canonical(),
                source.describe(),
                platform.canonical()
            );
        }
        return Ok((platform.clone(), source));
    }
    if let Some(platform) = metadata.filter(|platform| platform.arch == files_arch) {
        return Ok((platform.clone(), PlatformSource::ImageMetadata));
    }
    let platform = Platform {
        arch: files_arch,
        variant: None,
    };
    Ok((platform, PlatformSource::ImageFiles))
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
    fn effective_platform_prefers_job() {
        let job = Platform::parse("linux/arm/v6").unwrap();
        let settings = Platform::parse("linux/arm/v7").unwrap();
        let (platform, source) =
            effective_platform(Arch::Arm, Some(&job), Some(&settings), None).unwrap();
        assert_eq!(platform.canonical(), "linux/arm/v6");
        assert_eq!(source, PlatformSource::Job);
    }

    #[test]
    fn effective_platform_rejects_wrong_arch() {
        let settings = Platform::parse("linux/arm64").unwrap();
        let error = effective_platform(Arch::Arm, None, Some(&settings), None).unwrap_err();
        assert!(
            format!("{error:#}").contains("from the settings"),
            "{error:#}"
        );
    }

    #[test]
    fn effective_platform_ignores_lying_metadata() {
        let metadata = Platform::parse("linux/amd64").unwrap();
        let (platform, source) =
            effective_platform(Arch::Arm, None, None, Some(&metadata)).unwrap();
        assert_eq!(platform.canonical(), "linux/arm");
        assert_eq!(source, PlatformSource::ImageFiles);

        let metadata = Platform::parse("linux/arm/v6").unwrap();
        let (platform, source) =
            effective_platform(Arch::Arm, None, None, Some(&metadata)).unwrap();
        assert_eq!(platform.canonical(), "linux/arm/v6");
        assert_eq!(source, PlatformSource::ImageMetadata);
    }

    #[test]
    fn platform_rejects_bad_input() {
        assert!(Platform::parse("windows/amd64").is_err());
        assert!(Platform::parse("linux/z80").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
