//! One wrapper around every call, for both of its signals: the request's span (`method`,
//! `role`, `key_id`, `request_id`, `code`, `latency_ms`) closed by one log line, and the
//! per-RPC metrics (`omo_rpc_requests_total{method,code}`, `omo_rpc_duration_seconds{method}`).
//!
//! It is a tower layer around the whole router, so a call refused before any handler runs (an
//! unknown method, a message over the size limit) is seen too. The span is entered around the
//! whole call: the handlers' spans and events nest in it. The caller and the request id are
//! known only inside the handler; [`record_caller`] and [`record_request_id`] reach the request
//! span through a task-local. Nothing else is recorded: no API key, no member id or
//! identifier, no coordinates.
//!
//! The code is the response's `grpc-status` header: tonic answers an error `Status` as a
//! trailers-only response, with the code in its headers. A response without it is OK: its
//! code comes in the trailers after the message, and a unary handler that got that far
//! succeeded. A call dropped before it answered (the client went away, or the request timeout
//! cut it off) counts as CANCELLED, which is what its client sees.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        LazyLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use prost::Message;
use tonic::Code;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};

use crate::{domain::auth::Caller, proto};

/// Whether each call's closing line is logged at INFO (see [`log_every_call`]).
static EVERY_CALL_AT_INFO: AtomicBool = AtomicBool::new(false);

/// Logs one line per finished call at INFO (`--log-format json`); otherwise at DEBUG
/// (`RUST_LOG=omo::grpc::observe=debug` shows them).
pub fn log_every_call(at_info: bool) {
    EVERY_CALL_AT_INFO.store(at_info, Ordering::Relaxed);
}

tokio::task_local! {
    /// The span of the call this task serves.
    static REQUEST_SPAN: Span;
}

/// Records the authenticated caller's role and key id (never the key) on the request span.
pub fn record_caller(caller: &Caller) {
    let _ = REQUEST_SPAN.try_with(|span| {
        span.record("role", caller.role.as_str());
        span.record("key_id", caller.key_id.as_str());
    });
}

/// Records the client's idempotency key of a mutating call on the request span.
pub fn record_request_id(request_id: &str) {
    let _ = REQUEST_SPAN.try_with(|span| {
        span.record("request_id", request_id);
    });
}

/// Wraps the router in [`Observe`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        // The span is as loud as its closing line: at DEBUG (text mode) an INFO filter skips
        // it altogether, and the call pays nothing for it.
        macro_rules! request_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "request",
                    method,
                    role = Empty,
                    key_id = Empty,
                    request_id = Empty,
                    code = Empty,
                    latency_ms = Empty,
                )
            };
        }
        let span = if EVERY_CALL_AT_INFO.load(Ordering::Relaxed) {
            request_span!(tracing::Level::INFO)
        } else {
            request_span!(tracing::Level::DEBUG)
        };
        let finished = Finished {
            method,
            span: span.clone(),
            started: Instant::now(),
            code: None,
        };
        let call = span.in_scope(|| self.inner.call(request));
        let observed = REQUEST_SPAN.scope(span.clone(), async move {
            // Moved in whole (not just the field set below), so that it drops with the call.
            let mut finished = finished;
            let result = call.await;
            finished.code = Some(match &result {
                Ok(response) => response_code(response),
                Err(_) => Code::Unknown,
            });
            result
        });
        Box::pin(observed.instrument(span))
    }
}

/// Records a call's end when dropped: after its response, or when the call is dropped unanswered.
struct Finished {
    method: &'static str,
    span: Span,
    started: Instant,
    code: Option<Code>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let code = code_name(self.code.unwrap_or(Code::Cancelled));
        crate::metrics::rpc_finished(self.method, code, elapsed);
        self.span.record("code", code);
        self.span
            .record("latency_ms", elapsed.as_secs_f64() * 1000.0);
        let _entered = self.span.enter();
        // Health probes and reflection come every few seconds from load balancers and tools:
        // a line each would drown the calls that matter. A line per call costs (a balance read
        // served 40 % fewer calls a second with it): it is INFO where the operator asked for
        // structured logs, DEBUG otherwise.
        if self.method.starts_with("omo.") && EVERY_CALL_AT_INFO.load(Ordering::Relaxed) {
            tracing::info!("request finished");
        } else {
            tracing::debug!("request finished");
        }
    }
}

fn response_code<R>(response: &http::Response<R>) -> Code {
    response
        .headers()
        .get("grpc-status")
        .map_or(Code::Ok, |status| Code::from_bytes(status.as_bytes()))
}

/// Every method served, `/package.Service/Method` → `package.Service/Method`, read from the
/// embedded descriptors once per process.
static METHODS: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
    [
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .flat_map(|set| {
        prost_types::FileDescriptorSet::decode(set)
            .expect("embedded descriptor sets are valid")
            .file
    })
    .flat_map(|file| {
        let package = file.package().to_string();
        file.service.into_iter().flat_map(move |service| {
            let prefix = format!("{package}.{}", service.name());
            service
                .method
                .into_iter()
                .map(move |method| format!("{prefix}/{}", method.name()))
        })
    })
    .map(|name| {
        // Leaked once per process (a few dozen names): labels borrow them for ever.
        let label: &'static str = Box::leak(name.into_boxed_str());
        (format!("/{label}"), label)
    })
    .collect()
});

/// The metric label and span field of a request path: a served method's name, or `unknown`
/// (a path is chosen by the client; each new one must not become a new time series).
fn method_label(path: &str) -> &'static str {
    METHODS.get(path).copied().unwrap_or("unknown")
}

/// The canonical name of a gRPC status code, as grpc-status tables and dashboards spell it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            method_label("/omo.v1.CheckoutService/RecordSale"),
            "omo.v1.CheckoutService/RecordSale"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(method_label("/omo.v1.CheckoutService/Steal"), "unknown");
        assert_eq!(method_label("/hanako@example.com"), "unknown");
    }

    #[test]
    fn codes_come_from_the_grpc_status_header() {
        let refused = http::Response::builder()
            .header("grpc-status", "3")
            .body(())
            .expect("response");
        assert_eq!(code_name(response_code(&refused)), "INVALID_ARGUMENT");
        let answered = http::Response::new(());
        assert_eq!(code_name(response_code(&answered)), "OK");
    }
}
