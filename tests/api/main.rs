//! Black-box tests: every test starts the real gRPC server on port 0 over a fresh database and
//! talks to it as a client would. Each scenario runs on SQLite and on PostgreSQL.

mod helpers;

mod admin;
mod auth;
mod backup;
mod batching;
mod bench;
mod caps;
mod checkout;
mod concurrency;
mod coupons;
mod crash;
mod dashboard;
mod events;
mod faults;
mod geo;
mod http;
mod idempotency;
mod import;
mod keys;
mod lifecycle;
mod limits;
mod members;
mod metrics;
mod model;
mod paging;
mod points;
mod privacy;
mod receipts;
mod recipes;
mod replicas;
mod reports;
mod rules;
mod security;
mod shutdown;
mod sweeper;
mod tiers;
mod tls;
mod typescript;
mod validation;
mod verify;
mod webhooks;
