//! End-to-end tests: the built driver, driven by the runner-faithful harness, against the
//! real Docker daemon and QEMU. integration/test.sh prepares the host and the images.

mod admin;
mod bad_input;
mod cancellation;
mod emulation;
mod faults;
mod helper;
mod jobs;
mod limits;
mod pool;
mod registry;
mod support;
