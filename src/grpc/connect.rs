//! The Connect protocol's unary calls (connectrpc.com/docs/protocol) on the gRPC port:
//! `POST /omo.v1.LedgerService/GetBalance` with `content-type: application/json` (the proto3
//! JSON mapping) or `application/proto` (the binary message), over HTTP/1.1 or HTTP/2.
//!
//! A Connect call is translated into a gRPC call and handed to the same service stack a gRPC
//! client reaches (observation, authentication, validation, the handlers), in-process: the
//! `authorization` header and every other header go along, so auth, roles, rate limits, reasons
//! and field violations are the gRPC ones by construction, not a second implementation. The
//! answer is translated back: the message (as JSON or binary), or a Connect error JSON built
//! from `grpc-status`, `grpc-message` and `grpc-status-details-bin` (each `google.rpc` detail as
//! `{"type", "value" (base64 of its bytes), "debug" (its JSON)}`).
//!
//! Why prost-reflect and not pbjson: the JSON mapping is done by transcoding through the
//! descriptor set build.rs already embeds (JSON → `DynamicMessage` → protobuf bytes, and back),
//! which needs no generated code per message and leaves the prost types (and the well-known
//! types the code uses: `prost_types::Timestamp`, …) as they are; pbjson would generate serde
//! impls for every message and swap the well-known types for its own. prost-reflect 0.16 is the
//! release built on prost 0.14, and its serde support implements the proto3 JSON mapping
//! (lowerCamel names out and both names in, int64 as strings, enums by name, Timestamp as
//! RFC 3339, default values left out).

use std::{
    future::Future,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
};

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MethodDescriptor};
use tonic::{Code, body::Body};
use tower::{Layer, Service};

use crate::proto;

/// Every omo.v1 service, and the `google.rpc` details the errors carry.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set is valid (checked by a unit test)")
});

/// The body of a Connect request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

impl Codec {
    /// The codec of a Connect unary request; `None` for anything else (gRPC, gRPC-Web, a
    /// preflight), which goes to the inner service untouched.
    fn of<B>(request: &Request<B>) -> Option<Codec> {
        if request.method() != Method::POST {
            return None;
        }
        let content_type = request.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = content_type.split(';').next()?.trim();
        if media.eq_ignore_ascii_case("application/json") {
            Some(Codec::Json)
        } else if media.eq_ignore_ascii_case("application/proto") {
            Some(Codec::Proto)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::Proto => "application/proto",
        }
    }
}

/// Serves Connect unary calls in front of the gRPC stack (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct ConnectLayer {
    max_message_bytes: usize,
}

impl ConnectLayer {
    /// A request body over `max_message_bytes` is refused, as gRPC refuses a larger message.
    pub fn new(max_message_bytes: usize) -> Self {
        ConnectLayer { max_message_bytes }
    }
}

impl<S> Layer<S> for ConnectLayer {
    type Service = Connect<S>;

    fn layer(&self, inner: S) -> Connect<S> {
        Connect {
            inner,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Connect<S> {
    inner: S,
    max_message_bytes: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, R> Service<Request<Body>> for Connect<S>
where
    S: Service<Request<Body>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: http_body::Body<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match Codec::of(&request) {
            None => {
                let call = self.inner.call(request);
                Box::pin(async move { call.await.map(|response| response.map(Body::new)) })
            }
            Some(codec) => {
                // The ready service is the one polled; its clone waits for the next call.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(unary(inner, request, codec, self.max_message_bytes))
            }
        }
    }
}

/// A Connect error before or instead of the gRPC call.
struct ConnectError {
    code: Code,
    message: String,
}

impl ConnectError {
    fn new(code: Code, message: impl Into<String>) -> Self {
        ConnectError {
            code,
            message: message.into(),
        }
    }
}

/// Headers that describe the Connect request itself, not the call: not passed to the gRPC
/// service.
fn is_connect_header(name: &HeaderName) -> bool {
    name == header::CONTENT_TYPE
        || name == header::CONTENT_LENGTH
        || name == header::CONTENT_ENCODING
        || name == header::ACCEPT_ENCODING
        || name == header::HOST
        || name == header::CONNECTION
        || name.as_str().starts_with("connect-")
}

async fn unary<S, R>(
    mut inner: S,
    request: Request<Body>,
    codec: Codec,
    max_message_bytes: usize,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<R>>,
    R: http_body::Body<Data = Bytes>,
    R::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let method = match unary_method(parts.uri.path(), &parts.headers) {
        Ok(method) => method,
        Err(error) => return Ok(error_response(&error, None)),
    };
    let body = match Limited::new(body, max_message_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let code = if error.is::<http_body_util::LengthLimitError>() {
                Code::ResourceExhausted
            } else {
                Code::InvalidArgument
            };
            let message = format!("reading the request body: {error}");
            return Ok(error_response(&ConnectError::new(code, message), None));
        }
    };
    let message = match codec {
        Codec::Proto => body,
        Codec::Json => match json_to_proto(&method, &body) {
            Ok(message) => message,
            Err(error) => return Ok(error_response(&error, None)),
        },
    };

    let mut grpc = Request::new(Body::new(Full::new(frame(&message))));
    *grpc.method_mut() = Method::POST;
    *grpc.uri_mut() = parts.uri;
    *grpc.version_mut() = http::Version::HTTP_2;
    // The TLS peer (a client certificate under mutual TLS) and the remote address.
    *grpc.extensions_mut() = parts.extensions;
    let headers = grpc.headers_mut();
    for (name, value) in &parts.headers {
        if !is_connect_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    if let Some(timeout) = parts
        .headers
        .get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .and_then(|ms| HeaderValue::from_str(&format!("{ms}m")).ok())
    {
        headers.insert("grpc-timeout", timeout);
    }

    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
    let response = inner.call(grpc).await?;
    let (reply, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(error) => {
            let error = ConnectError::new(
                Code::Unavailable,
                format!("reading the reply: {}", error.into()),
            );
            return Ok(error_response(&error, None));
        }
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    // A trailers-only reply (every error tonic answers) has the status in its headers.
    let status = |name: &str| reply.headers.get(name).or_else(|| trailers.get(name));
    let code = status("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    if code != Code::Ok {
        let message = status("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(percent_decode)
            .unwrap_or_default();
        let details = status("grpc-status-details-bin").and_then(|v| decode_details(v.as_bytes()));
        return Ok(error_response(
            &ConnectError::new(code, message),
            details.as_deref(),
        ));
    }
    let message = match unframe(data) {
        Some(message) => message,
        None => {
            let error = ConnectError::new(Code::Internal, "the reply was not one message");
            return Ok(error_response(&error, None));
        }
    };
    let body = match codec {
        Codec::Proto => message,
        Codec::Json => match proto_to_json(&method, message) {
            Ok(json) => json,
            Err(error) => return Ok(error_response(&error, None)),
        },
    };
    let mut response = Response::new(Body::new(Full::new(body)));
    let headers = response.headers_mut();
    // The reply's metadata as headers, its trailers (beyond the status) as `trailer-` headers.
    for (name, value) in &reply.headers {
        if !name.as_str().starts_with("grpc-") && name != header::CONTENT_TYPE {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, value) in &trailers {
        if !name.as_str().starts_with("grpc-")
            && let Ok(name) = HeaderName::from_bytes(format!("trailer-{name}").as_bytes())
        {
            headers.append(name, value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type()),
    );
    Ok(response)
}

/// The unary method a Connect path names (`/omo.v1.MemberService/CreateMember`).
fn unary_method(path: &str, headers: &HeaderMap) -> Result<MethodDescriptor, ConnectError> {
    let unknown = || ConnectError::new(Code::Unimplemented, format!("no method {path}"));
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .ok_or_else(unknown)?;
    let method = POOL
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == method))
        .ok_or_else(unknown)?;
    if method.is_client_streaming() || method.is_server_streaming() {
        return Err(ConnectError::new(
            Code::Unimplemented,
            format!("{path} streams: call it over gRPC or gRPC-Web"),
        ));
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
        && encoding != "identity"
    {
        return Err(ConnectError::new(
            Code::Unimplemented,
            "compressed requests are not supported: send content-encoding identity",
        ));
    }
    Ok(method)
}

/// A proto3 JSON request (either field name, lowerCamel or the proto's) as protobuf bytes; an
/// empty body is the empty message. Unknown fields are refused, as the JSON mapping says.
fn json_to_proto(method: &MethodDescriptor, body: &[u8]) -> Result<Bytes, ConnectError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let invalid = |e: serde_json::Error| {
        ConnectError::new(
            Code::InvalidArgument,
            format!(
                "the request is not a {} in JSON: {e}",
                method.input().name()
            ),
        )
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize_with_options(
        method.input(),
        &mut json,
        &DeserializeOptions::new(),
    )
    .map_err(invalid)?;
    json.end().map_err(invalid)?;
    Ok(message.encode_to_vec().into())
}

/// A reply message in the proto3 JSON mapping (lowerCamel names, int64 as strings, enums by
/// name, default values left out).
fn proto_to_json(method: &MethodDescriptor, message: Bytes) -> Result<Bytes, ConnectError> {
    let internal = |e: String| ConnectError::new(Code::Internal, e);
    let message =
        DynamicMessage::decode(method.output(), message).map_err(|e| internal(e.to_string()))?;
    serde_json::to_vec(&message)
        .map(Bytes::from)
        .map_err(|e| internal(e.to_string()))
}

/// A gRPC length-prefixed message, uncompressed.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    framed.freeze()
}

/// The one message of a unary gRPC reply (omo never compresses its replies).
fn unframe(mut data: Bytes) -> Option<Bytes> {
    if data.len() < 5 || data[0] != 0 {
        return None;
    }
    data.advance(1);
    let len = usize::try_from(data.get_u32()).ok()?;
    (data.len() == len).then_some(data)
}

/// `grpc-message` is percent-encoded (the gRPC HTTP/2 spec).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `details` of a Connect error, from `grpc-status-details-bin` (a base64
/// `google.rpc.Status`): each detail's type name, its bytes, and its JSON for people.
fn decode_details(header: &[u8]) -> Option<Vec<serde_json::Value>> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(
            header
                .strip_suffix(b"==")
                .or(header.strip_suffix(b"="))
                .unwrap_or(header),
        )
        .ok()?;
    let status = tonic_types::pb::Status::decode(bytes.as_slice()).ok()?;
    Some(
        status
            .details
            .into_iter()
            .map(|any| {
                let type_name = any
                    .type_url
                    .rsplit_once('/')
                    .map_or(any.type_url.as_str(), |(_, name)| name)
                    .to_string();
                let debug = POOL
                    .get_message_by_name(&type_name)
                    .and_then(|desc| DynamicMessage::decode(desc, any.value.as_slice()).ok())
                    .and_then(|message| serde_json::to_value(&message).ok());
                let mut detail = serde_json::json!({
                    "type": type_name,
                    "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
                });
                if let Some(debug) = debug {
                    detail["debug"] = debug;
                }
                detail
            })
            .collect(),
    )
}

/// Connect's name of a gRPC code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a Connect error (the protocol's table, as amended by its RFC 003).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status"),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A Connect error JSON: `{"code", "message", "details"}`.
fn error_response(error: &ConnectError, details: Option<&[serde_json::Value]>) -> Response<Body> {
    let mut json = serde_json::json!({ "code": code_name(error.code) });
    if !error.message.is_empty() {
        json["message"] = error.message.clone().into();
    }
    if let Some(details) = details.filter(|d| !d.is_empty()) {
        json["details"] = details.to_vec().into();
    }
    let body = serde_json::to_vec(&json).expect("a JSON value serializes");
    let mut response = Response::new(Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = http_status(error.code);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_pool_has_every_service_and_the_error_details() {
        for name in crate::grpc::SERVICE_NAMES {
            assert!(POOL.get_service_by_name(name).is_some(), "{name}");
        }
        assert!(POOL.get_message_by_name("google.rpc.ErrorInfo").is_some());
        assert!(POOL.get_message_by_name("google.rpc.BadRequest").is_some());
    }

    #[test]
    fn frames_round_trip_and_a_short_frame_is_refused() {
        let framed = frame(b"abc");
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 3]);
        assert_eq!(unframe(framed).as_deref(), Some(&b"abc"[..]));
        assert_eq!(unframe(Bytes::from_static(&[0, 0, 0, 0, 9, 1])), None);
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("50%25 off%3A now"), "50% off: now");
        assert_eq!(percent_decode("bad %zz"), "bad %zz");
    }

    #[test]
    fn codes_map_to_connect_names_and_http_statuses() {
        let cases = [
            (Code::InvalidArgument, "invalid_argument", 400),
            (Code::FailedPrecondition, "failed_precondition", 400),
            (Code::Unauthenticated, "unauthenticated", 401),
            (Code::PermissionDenied, "permission_denied", 403),
            (Code::NotFound, "not_found", 404),
            (Code::AlreadyExists, "already_exists", 409),
            (Code::ResourceExhausted, "resource_exhausted", 429),
            (Code::Cancelled, "canceled", 499),
            (Code::Unimplemented, "unimplemented", 501),
            (Code::Unavailable, "unavailable", 503),
        ];
        for (code, name, status) in cases {
            assert_eq!(
                (code_name(code), http_status(code).as_u16()),
                (name, status)
            );
        }
    }

    #[test]
    fn json_accepts_both_field_names_and_refuses_unknown_ones() {
        let method = unary_method("/omo.v1.LedgerService/GetBalance", &HeaderMap::new())
            .unwrap_or_else(|e| panic!("{}", e.message));
        let camel = json_to_proto(&method, br#"{"member":{"memberId":"m1"}}"#);
        let snake = json_to_proto(&method, br#"{"member":{"member_id":"m1"}}"#);
        assert!(camel.is_ok() && snake.is_ok());
        assert_eq!(camel.ok(), snake.ok());
        let unknown = json_to_proto(&method, br#"{"nope":1}"#)
            .err()
            .map(|e| e.code);
        assert_eq!(unknown, Some(Code::InvalidArgument));
        assert!(json_to_proto(&method, b"").is_ok());
    }

    #[test]
    fn unknown_and_streaming_methods_are_unimplemented() {
        let code = |path| unary_method(path, &HeaderMap::new()).err().map(|e| e.code);
        assert_eq!(
            code("/omo.v1.LedgerService/Nope"),
            Some(Code::Unimplemented)
        );
        assert_eq!(code("/nope"), Some(Code::Unimplemented));
    }
}
