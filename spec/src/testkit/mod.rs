//! What end-to-end tests use to start the spec binaries and talk to them.

pub mod dns;
pub mod engine;
pub mod gateway;
pub mod http;
pub mod listeners;
pub mod mocks;
pub mod nginx;
pub mod process;
pub mod stack;
pub mod world;

pub use process::{bin_path, repo_root, vectors_dir, SpecProcess};
