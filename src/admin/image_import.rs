//! `cross-executor image import`: turns a root filesystem archive into a local image whose
//! metadata names the right architecture and variant.
//!
//! Docker before 23.0 ignores `docker import --platform` and labels the image with the
//! host's architecture. This command instead writes an image archive in the format of
//! `docker save` (one layer, a config with `architecture` and `variant`, a manifest) and
//! sends it to the daemon's load endpoint, which keeps the config as written.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::docker::Docker;
use crate::platform::Platform;

/// PATH of the imported image, the usual Debian default.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Imports `rootfs` (a tar archive, optionally gzip-compressed) as `tag` for `platform`.
pub async fn run(rootfs: &Path, platform: &str, tag: &str) -> anyhow::Result<()> {
    let platform = Platform::parse(platform)?;
    if tag.trim().is_empty() || tag.contains(char::is_whitespace) {
        bail!("invalid image tag `{tag}`; use a form like `raspbian:bookworm`");
    }
    let work = tempfile::tempdir().context("failed to create a temporary directory")?;
    let archive_path = work.path().join("image.tar");
    build_archive(rootfs, &platform, tag, &archive_path)?;

    let docker = Docker::connect().await?;
    docker.load_image_archive(&archive_path).await?;
    println!(
        "Imported {} as {tag} ({})",
        rootfs.display(),
        platform.canonical()
    );
    Ok(())
}

/// Writes a `docker save` style archive with one layer made from `rootfs`.
fn build_archive(
    rootfs: &Path,
    platform: &Platform,
    tag: &str,
    output: &Path,
) -> anyhow::Result<()> {
    let work = output
        .parent()
        .context("the archive path has a parent directory")?;
    let layer_path = work.join("layer.tar");
    let diff_id = decompress_layer(rootfs, &layer_path)?;

    let mut config = json!({
        "architecture": platform.arch.oci_name(),
        "os": "linux",
        "config": { "Env": [DEFAULT_PATH], "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created_by": format!("cross-executor image import {}", rootfs.display()) }],
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    let config_bytes = serde_json::to_vec(&config).context("failed to encode the image config")?;
    let config_name = format!(
        "{}.json",
        crate::hex::encode(&Sha256::digest(&config_bytes))
    );
    let layer_name = format!("{diff_id}/layer.tar");
    let manifest = json!([{ "Config": config_name, "RepoTags": [tag], "Layers": [layer_name] }]);
    let manifest_bytes = serde_json::to_vec(&manifest).context("failed to encode the manifest")?;

    let file =
        File::create(output).with_context(|| format!("failed to create `{}`", output.display()))?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    append_bytes(&mut builder, &config_name, &config_bytes)?;
    append_bytes(&mut builder, "manifest.json", &manifest_bytes)?;
    let mut layer = File::open(&layer_path)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(layer.metadata()?.len());
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, &layer_name, &mut layer)
        .context("failed to write the image archive")?;
    builder
        .into_inner()
        .and_then(|mut writer| writer.flush())
        .context("failed to write the image archive")
}

/// Copies the root filesystem as an uncompressed tar into `layer` and returns its SHA-256
/// in hex, which is the layer's diff id.
fn decompress_layer(rootfs: &Path, layer: &Path) -> anyhow::Result<String> {
    let mut input = BufReader::new(
        File::open(rootfs).with_context(|| format!("failed to open `{}`", rootfs.display()))?,
    );
    let mut magic = [0u8; 2];
    let gzip = input.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
    input.rewind()?;
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    };

    let mut output = BufWriter::new(File::create(layer)?);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut first_block = true;
    loop {
        let count = reader
            .read(&mut buffer)
            .with_context(|| format!("failed to read `{}`", rootfs.display()))?;
        if count == 0 {
            break;
        }
        if first_block && count >= 262 && &buffer[257..262] != b"ustar" {
            bail!(
                "`{}` is not a tar archive (or a gzip-compressed one) of a root filesystem",
                rootfs.display()
            );
        }
        first_block = false;
        hasher.update(&buffer[..count]);
        output.write_all(&buffer[..count])?;
    }
    if first_block {
        bail!("`{}` is empty", rootfs.display());
    }
    output.flush()?;
    Ok(crate::hex::encode(&hasher.finalize()))
}

fn append_bytes(
    builder: &mut tar::Builder<BufWriter<File>>,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, name, bytes)
        .context("failed to write the image archive")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_tar(directory: &Path) -> std::path::PathBuf {
        let path = directory.join("rootfs.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "etc/hello", &b"hi\n"[..])
            .unwrap();
        builder.finish().unwrap();
        path
    }

    #[test]
    fn archive_carries_platform_and_tag() {
        let directory = tempfile::tempdir().unwrap();
        let rootfs = rootfs_tar(directory.path());
        let output = directory.path().join("image.tar");
        let platform = Platform::parse("linux/arm/v6").unwrap();
        build_archive(&rootfs, &platform, "pi:zero", &output).unwrap();

        let mut archive = tar::Archive::new(File::open(&output).unwrap());
        let mut config = None;
        let mut manifest = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut text = String::new();
            if name.ends_with(".json") {
                entry.read_to_string(&mut text).unwrap();
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                if name == "manifest.json" {
                    manifest = Some(value);
                } else {
                    config = Some(value);
                }
            }
        }
        let config = config.unwrap();
        assert_eq!(config["architecture"], "arm");
        assert_eq!(config["variant"], "v6");
        assert_eq!(manifest.unwrap()[0]["RepoTags"][0], "pi:zero");
    }

    #[test]
    fn non_tar_input_is_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let rootfs = directory.path().join("rootfs.tar");
        std::fs::write(&rootfs, vec![b'x'; 4096]).unwrap();
        let error = build_archive(
            &rootfs,
            &Platform::parse("linux/arm64").unwrap(),
            "x:y",
            &directory.path().join("image.tar"),
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("not a tar archive"),
            "{error:#}"
        );
    }
}
