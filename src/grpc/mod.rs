//! The gRPC edge: authenticate, parse and validate each request into a domain command or query,
//! call the engine, convert the answer back. One file per service; shared conversions in
//! `convert`, the error mapping in `status`, API-key authentication in `auth`, running a command
//! for its reply in `reply`.
//!
//! Every RPC of an omo service authenticates first, then checks the caller's role (and channel
//! and store scope where the request names them), then validates (reporting every bad field at
//! once), then calls the engine. Health and reflection need no key.

use std::sync::Arc;

use tonic::{server::NamedService, service::Routes};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    engine::Engine,
    proto::{
        self, checkout_service_server::CheckoutServiceServer,
        coupon_service_server::CouponServiceServer,
        engagement_service_server::EngagementServiceServer,
        event_service_server::EventServiceServer, ledger_service_server::LedgerServiceServer,
        member_service_server::MemberServiceServer, program_service_server::ProgramServiceServer,
        report_service_server::ReportServiceServer, rule_service_server::RuleServiceServer,
        store_service_server::StoreServiceServer,
    },
};

pub mod auth;
pub mod checkout;
pub mod connect;
pub mod convert;
pub mod coupon;
pub mod engagement;
pub mod event;
pub mod ledger;
pub mod member;
pub mod observe;
pub mod paging;
pub mod program;
pub mod receipts;
pub mod reply;
pub mod report;
pub mod rule;
pub mod status;
pub mod store;
pub mod tls;

#[cfg(test)]
mod hostile;

pub use checkout::CheckoutApi;
pub use coupon::CouponApi;
pub use engagement::EngagementApi;
pub use event::EventApi;
pub use ledger::LedgerApi;
pub use member::MemberApi;
pub use program::ProgramApi;
pub use report::ReportApi;
pub use rule::RuleApi;
pub use store::StoreApi;

/// The names of the omo services, as health checks and reflection know them.
pub const SERVICE_NAMES: [&str; 10] = [
    <MemberServiceServer<MemberApi> as NamedService>::NAME,
    <StoreServiceServer<StoreApi> as NamedService>::NAME,
    <ProgramServiceServer<ProgramApi> as NamedService>::NAME,
    <LedgerServiceServer<LedgerApi> as NamedService>::NAME,
    <CheckoutServiceServer<CheckoutApi> as NamedService>::NAME,
    <CouponServiceServer<CouponApi> as NamedService>::NAME,
    <EngagementServiceServer<EngagementApi> as NamedService>::NAME,
    <ReportServiceServer<ReportApi> as NamedService>::NAME,
    <RuleServiceServer<RuleApi> as NamedService>::NAME,
    <EventServiceServer<EventApi> as NamedService>::NAME,
];

/// Every service omo serves: the eight omo.v1 services, `grpc.health.v1.Health` (overall and per
/// service, all SERVING) and server reflection v1 and v1alpha. No omo message may exceed
/// `max_message_bytes` either way. The health reporter turns them NOT_SERVING at shutdown
/// ([`report_not_serving`]).
pub async fn routes(engine: Arc<Engine>, max_message_bytes: usize) -> (Routes, HealthReporter) {
    let (reporter, health) = tonic_health::server::health_reporter();
    report_serving(&reporter).await;
    let (reflection_v1, reflection_v1alpha) = reflection();
    macro_rules! limited {
        ($server:ident, $api:expr) => {
            $server::new($api)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes)
        };
    }
    let routes = Routes::default()
        .add_service(limited!(
            MemberServiceServer,
            MemberApi::new(engine.clone())
        ))
        .add_service(limited!(StoreServiceServer, StoreApi::new(engine.clone())))
        .add_service(limited!(
            ProgramServiceServer,
            ProgramApi::new(engine.clone())
        ))
        .add_service(limited!(
            LedgerServiceServer,
            LedgerApi::new(engine.clone())
        ))
        .add_service(limited!(
            CheckoutServiceServer,
            CheckoutApi::new(engine.clone())
        ))
        .add_service(limited!(
            CouponServiceServer,
            CouponApi::new(engine.clone())
        ))
        .add_service(limited!(
            EngagementServiceServer,
            EngagementApi::new(engine.clone())
        ))
        .add_service(limited!(
            ReportServiceServer,
            ReportApi::new(engine.clone())
        ))
        .add_service(limited!(RuleServiceServer, RuleApi::new(engine.clone())))
        .add_service(limited!(EventServiceServer, EventApi::new(engine)))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    (routes, reporter)
}

/// The CORS policy for `--cors-origin`: none (no cross-origin call allowed) without origins;
/// else those origins may POST gRPC-Web and Connect calls with an API key, and read the status
/// and error details back.
pub fn cors(
    origins: &[String],
) -> Result<Option<tower_http::cors::CorsLayer>, crate::app::AppError> {
    use http::{HeaderName, HeaderValue, Method};
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|origin| {
            let origin = origin.trim().trim_end_matches('/');
            HeaderValue::from_str(origin)
                .ok()
                .filter(|_| origin.starts_with("http://") || origin.starts_with("https://"))
                .ok_or_else(|| {
                    crate::app::AppError::CorsOrigin(format!(
                        "{origin:?} is not an origin like https://shop.example"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = |names: &[&'static str]| {
        names
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect::<Vec<_>>()
    };
    Ok(Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::POST])
            .allow_headers(headers(&[
                "authorization",
                "content-type",
                "connect-protocol-version",
                "connect-timeout-ms",
                "grpc-timeout",
                "x-grpc-web",
                "x-user-agent",
            ]))
            .expose_headers(headers(&[
                "grpc-status",
                "grpc-message",
                "grpc-status-details-bin",
            ]))
            .max_age(std::time::Duration::from_secs(7200)),
    ))
}

/// Marks the server ("") and every omo service SERVING.
async fn report_serving(reporter: &HealthReporter) {
    for name in std::iter::once("").chain(SERVICE_NAMES) {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
}

/// Marks the server ("") and every omo service NOT_SERVING: a load balancer's health checks
/// and watches see it at once and send no new calls here.
pub async fn report_not_serving(reporter: &HealthReporter) {
    for name in std::iter::once("").chain(SERVICE_NAMES) {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
}

/// Reflection over the omo.v1 and health descriptors (the reflection service adds its own).
fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // The descriptor sets are compiled into the binary; a failure here is a build bug, caught by
    // the test below.
    let v1 = builder()
        .build_v1()
        .expect("embedded descriptor sets are valid");
    let v1alpha = builder()
        .build_v1alpha()
        .expect("embedded descriptor sets are valid");
    (v1, v1alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_builds_from_the_embedded_descriptors() {
        let _ = reflection();
        assert!(SERVICE_NAMES.iter().all(|name| name.starts_with("omo.v1.")));
    }
}
