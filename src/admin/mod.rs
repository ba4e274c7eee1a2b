//! Commands for runner admins, outside the runner's stages.

pub mod image_import;
