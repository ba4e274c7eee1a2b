//! One module per stage of the custom executor protocol; each has one entry function.

pub mod cleanup;
pub mod config;
pub mod gc;
pub mod pool_fill;
pub mod prepare;
pub mod run;
