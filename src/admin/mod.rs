//! Commands for runner admins, outside the runner's stages.

pub mod binfmt_register;
pub mod doctor;
pub mod image_import;
