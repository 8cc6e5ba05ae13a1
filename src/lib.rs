//! omo: a cross-channel loyalty points and coupon engine over one double-entry ledger.
//!
//! Layers depend one way: `grpc` (the edge: parse, authorize, map errors) → `engine` (runs
//! business commands in units of work) → `domain` (pure rules and the storage port) ← `store`
//! (SQLite and PostgreSQL implementations of the port).

pub mod app;
pub mod backup;
pub mod bench;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod export;
pub mod grpc;
pub mod import;
pub mod keys;
pub mod metrics;
pub mod store;

pub use app::Application;
pub use config::Config;

/// Generated protobuf and gRPC code for package `omo.v1`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("omo.v1");

    /// The descriptor set served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/omo_descriptor.bin"));
}
