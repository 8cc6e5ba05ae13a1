//! One port, four protocols: Connect JSON over HTTP/1.1, binary Connect over HTTP/2 (h2c),
//! gRPC-Web over HTTP/1.1 and gRPC, all reaching the same handlers with the same key, roles,
//! reasons and field violations (README, "Over HTTP with JSON").

use std::{io::Read, io::Write, net::SocketAddr};

use http_body_util::BodyExt;
use omo::{domain::auth::Role, proto};
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, member_ref, spawn_app_with};

crate::both_backends! {
    connect_json_creates_sells_and_reads_a_balance => connect_json_creates_sells_and_reads_a_balance,
    connect_errors_carry_codes_reasons_and_field_violations => connect_errors_carry_codes_reasons_and_field_violations,
    binary_connect_grpc_web_and_grpc_agree_on_one_port => binary_connect_grpc_web_and_grpc_agree_on_one_port,
}

/// An HTTP/1.1 reply: status, headers (lower-case names), body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request on a new connection (`connection: close`), as curl sends it.
pub fn http1(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    http1_method(addr, "POST", path, headers, body)
}

pub fn http1_method(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    stream.write_all(body).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A new admin API key (raw), for HTTP clients.
pub async fn admin_key(app: &TestApp) -> String {
    app.app()
        .engine()
        .create_api_key(Role::Admin, None, "http".into())
        .await
        .expect("key")
}

/// A Connect JSON call over HTTP/1.1.
pub fn connect_json(addr: SocketAddr, key: &str, path: &str, body: Value) -> Reply {
    let auth = format!("Bearer {key}");
    let mut headers = vec![
        ("content-type", "application/json"),
        ("connect-protocol-version", "1"),
    ];
    if !key.is_empty() {
        headers.push(("authorization", auth.as_str()));
    }
    http1(addr, path, &headers, body.to_string().as_bytes())
}

fn sale_json(request_id: &str, card: &str, total: &str) -> Value {
    // Original (snake_case) field names here, lowerCamel elsewhere: both are accepted.
    json!({
        "request_id": request_id,
        "order_id": format!("shibuya-1-{request_id}"),
        "member": {"identifier": {"kind": "card", "value": card}},
        "channel": "CHANNEL_STORE",
        "store_id": "shibuya",
        "register_id": "1",
        "receipt_no": request_id,
        "basket": {"lines": [{"line_id": "L1", "sku": "SKU-1", "category": "grocery", "quantity": 1, "amount": total}]},
    })
}

async fn connect_json_creates_sells_and_reads_a_balance(app: &TestApp) {
    let addr = app.app().local_addr();
    let key = admin_key(app).await;

    let created = connect_json(
        addr,
        &key,
        "/omo.v1.MemberService/CreateMember",
        json!({"requestId": "http-m1", "identifiers": [{"kind": "card", "value": "http-1"}], "displayName": "Hana"}),
    );
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(created.header("content-type"), Some("application/json"));
    let member = created.json()["member"].clone();
    let member_id = member["memberId"]
        .as_str()
        .expect("lowerCamel memberId")
        .to_string();
    assert_eq!(member["displayName"], "Hana");

    let sale = connect_json(
        addr,
        &key,
        "/omo.v1.CheckoutService/RecordSale",
        sale_json("http-s1", "http-1", "5000"),
    );
    assert_eq!(sale.status, 200, "{}", String::from_utf8_lossy(&sale.body));
    // The same request again (same request_id): the same reply, nothing written twice.
    let replay = connect_json(
        addr,
        &key,
        "/omo.v1.CheckoutService/RecordSale",
        sale_json("http-s1", "http-1", "5000"),
    );
    assert_eq!((replay.status, replay.json()), (200, sale.json()));

    let balance = connect_json(
        addr,
        &key,
        "/omo.v1.LedgerService/GetBalance",
        json!({"member": {"member_id": member_id}}),
    );
    assert_eq!(
        balance.status,
        200,
        "{}",
        String::from_utf8_lossy(&balance.body)
    );
    let grpc = app.balance(&member_id).await;
    assert!(
        grpc.available_points > 0,
        "the sale earned nothing: {grpc:?}"
    );
    // int64 is a JSON string in the proto3 mapping.
    assert_eq!(
        balance.json()["balance"]["availablePoints"],
        Value::String(grpc.available_points.to_string())
    );
    app.verify_ok().await;
}

async fn connect_errors_carry_codes_reasons_and_field_violations(app: &TestApp) {
    let addr = app.app().local_addr();
    let key = admin_key(app).await;
    let balance_of = |id: &str| json!({"member": {"memberId": id}});

    // No key: 401 unauthenticated.
    let anonymous = connect_json(
        addr,
        "",
        "/omo.v1.LedgerService/GetBalance",
        balance_of("x"),
    );
    assert_eq!(
        (anonymous.status, anonymous.json()["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // A register key may not adjust points: 403.
    let register = app
        .app()
        .engine()
        .create_api_key(Role::Register, Some("shibuya".into()), "http".into())
        .await
        .expect("key");
    let adjust =
        json!({"requestId": "a1", "member": {"memberId": "x"}, "points": "5", "reason": "r"});
    let denied = connect_json(
        addr,
        &register,
        "/omo.v1.LedgerService/AdjustPoints",
        adjust,
    );
    assert_eq!(
        (denied.status, denied.json()["code"].as_str()),
        (403, Some("permission_denied"))
    );

    // Bad input: 400, one field violation per bad field, in a google.rpc.BadRequest detail.
    let bad = connect_json(
        addr,
        &key,
        "/omo.v1.CheckoutService/RecordSale",
        json!({"channel": "CHANNEL_STORE", "storeId": "shibuya"}),
    );
    assert_eq!(
        (bad.status, bad.json()["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let fields = violated_fields(&bad.json());
    assert!(fields.contains(&"request_id".to_string()), "{fields:?}");
    assert!(fields.contains(&"member".to_string()), "{fields:?}");

    // Not JSON of the message: invalid_argument, nothing called.
    let garbage = connect_json(
        addr,
        &key,
        "/omo.v1.LedgerService/GetBalance",
        json!({"nope": 1}),
    );
    assert_eq!(
        (garbage.status, garbage.json()["code"].as_str()),
        (400, Some("invalid_argument"))
    );

    // A domain refusal keeps its reason: redeeming more than the balance.
    let member_id = app.member_with_points("http-e1", 10).await;
    let mut sale = sale_json("http-e-s1", "http-e1", "1000");
    sale["points_to_redeem"] = json!("500");
    let refused = connect_json(addr, &key, "/omo.v1.CheckoutService/RecordSale", sale);
    assert_eq!(
        refused.json()["code"],
        "failed_precondition",
        "{}",
        refused.json()
    );
    assert_eq!(refused.status, 400);
    assert_eq!(error_reason(&refused.json()), "INSUFFICIENT_POINTS");

    // The same request_id with another request: 409 IDEMPOTENCY_KEY_REUSED.
    let first = connect_json(
        addr,
        &key,
        "/omo.v1.CheckoutService/RecordSale",
        sale_json("http-e-s2", "http-e1", "1000"),
    );
    assert_eq!(first.status, 200, "{}", first.json());
    let reused = connect_json(
        addr,
        &key,
        "/omo.v1.CheckoutService/RecordSale",
        sale_json("http-e-s2", "http-e1", "2000"),
    );
    assert_eq!(
        (reused.status, reused.json()["code"].as_str()),
        (409, Some("already_exists"))
    );
    assert_eq!(error_reason(&reused.json()), "IDEMPOTENCY_KEY_REUSED");

    // Unknown member: 404 with its reason.
    let missing = connect_json(
        addr,
        &key,
        "/omo.v1.LedgerService/GetBalance",
        balance_of("nobody"),
    );
    assert_eq!(
        (missing.status, missing.json()["code"].as_str()),
        (404, Some("not_found"))
    );

    // An unknown method, and a streaming one: 501.
    let unknown = connect_json(addr, &key, "/omo.v1.LedgerService/Nope", json!({}));
    assert_eq!(
        (unknown.status, unknown.json()["code"].as_str()),
        (501, Some("unimplemented"))
    );

    assert!(app.available(&member_id).await >= 10);
    app.verify_ok().await;
}

/// The reason of a Connect error's `google.rpc.ErrorInfo` detail (from its debug JSON, checked
/// against its base64 bytes).
pub fn error_reason(error: &Value) -> String {
    use base64::Engine as _;
    let detail = error["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "google.rpc.ErrorInfo"))
        .unwrap_or_else(|| panic!("no ErrorInfo in {error}"));
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(detail["value"].as_str().expect("value"))
        .expect("base64 value");
    let info = tonic_types::pb::ErrorInfo::decode(bytes.as_slice()).expect("an ErrorInfo");
    assert_eq!(detail["debug"]["reason"], info.reason.as_str());
    info.reason
}

fn violated_fields(error: &Value) -> Vec<String> {
    error["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "google.rpc.BadRequest"))
        .and_then(|d| d["debug"]["fieldViolations"].as_array())
        .unwrap_or_else(|| panic!("no BadRequest in {error}"))
        .iter()
        .map(|v| v["field"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn binary_connect_grpc_web_and_grpc_agree_on_one_port(app: &TestApp) {
    let addr = app.app().local_addr();
    let key = admin_key(app).await;
    let member_id = app.member_with_points("http-b1", 70).await;
    let request = proto::GetBalanceRequest {
        member: Some(member_ref(&member_id)),
    }
    .encode_to_vec();
    let auth = format!("Bearer {key}");

    // gRPC (the test client).
    let grpc = app.balance(&member_id).await;
    assert_eq!(grpc.available_points, 70);

    // Binary Connect over HTTP/2 without TLS (h2c), through a tonic channel.
    let channel = tonic::transport::Endpoint::from_shared(app.app().endpoint())
        .unwrap()
        .connect()
        .await
        .expect("h2c");
    let mut call = http::Request::builder()
        .method("POST")
        .uri(format!(
            "{}/omo.v1.LedgerService/GetBalance",
            app.app().endpoint()
        ))
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .header("authorization", &auth)
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(request.clone()),
        )))
        .unwrap();
    *call.version_mut() = http::Version::HTTP_2;
    let reply = tower::ServiceExt::oneshot(channel, call)
        .await
        .expect("h2 reply");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "application/proto");
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    let connect = proto::GetBalanceResponse::decode(body).expect("a GetBalanceResponse");
    assert_eq!(connect.balance.as_ref(), Some(&grpc));

    // Binary Connect over HTTP/1.1.
    let reply = http1(
        addr,
        "/omo.v1.LedgerService/GetBalance",
        &[
            ("content-type", "application/proto"),
            ("authorization", &auth),
        ],
        &request,
    );
    assert_eq!(reply.status, 200);
    let http1_balance = proto::GetBalanceResponse::decode(reply.body.as_slice()).unwrap();
    assert_eq!(http1_balance.balance.as_ref(), Some(&grpc));

    // gRPC-Web over HTTP/1.1: a framed message, then a trailers frame with grpc-status 0.
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(request.len() as u32).to_be_bytes());
    framed.extend_from_slice(&request);
    let reply = http1(
        addr,
        "/omo.v1.LedgerService/GetBalance",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("authorization", &auth),
        ],
        &framed,
    );
    assert_eq!(reply.status, 200);
    let (message, trailers) = grpc_web_frames(&reply.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let web = proto::GetBalanceResponse::decode(message.as_slice()).unwrap();
    assert_eq!(web.balance.as_ref(), Some(&grpc));

    // gRPC-Web without a key: the gRPC refusal, in the trailers frame.
    let reply = http1(
        addr,
        "/omo.v1.LedgerService/GetBalance",
        &[("content-type", "application/grpc-web+proto")],
        &framed,
    );
    let status = reply
        .header("grpc-status")
        .map(str::to_string)
        .unwrap_or_else(|| grpc_web_frames(&reply.body).1);
    assert!(status.contains("16"), "unauthenticated expected: {status}");
}

/// The message and the trailers text of a gRPC-Web reply body.
fn grpc_web_frames(mut body: &[u8]) -> (Vec<u8>, String) {
    let (mut message, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = &body[5..5 + len];
        if body[0] & 0x80 != 0 {
            trailers = String::from_utf8_lossy(payload).replace(' ', "");
        } else {
            message = payload.to_vec();
        }
        body = &body[5 + len..];
    }
    (message, trailers)
}

/// CORS is off unless origins are given: a preflight from a page gets no allowance; with
/// `--cors-origin` that origin (only) does. (Several threads: the blocking HTTP/1.1 client
/// must not stall the server's runtime.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cors_allows_only_the_configured_origins() {
    let preflight = |addr, origin: &str| {
        http1_method(
            addr,
            "OPTIONS",
            "/omo.v1.LedgerService/GetBalance",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
            ],
            b"",
        )
    };
    let Some(closed) = spawn_app_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let reply = preflight(closed.app().local_addr(), "https://shop.example");
    assert_eq!(reply.header("access-control-allow-origin"), None);

    let Some(open) = spawn_app_with(Backend::Sqlite, |config| {
        config.cors_origins = vec!["https://shop.example".into()];
    })
    .await
    else {
        return;
    };
    let addr = open.app().local_addr();
    let reply = preflight(addr, "https://shop.example");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let allowed = reply
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let other = preflight(addr, "https://evil.example");
    assert_eq!(other.header("access-control-allow-origin"), None);
    // A real call from the allowed origin is answered with the allowance too.
    let key = admin_key(&open).await;
    let auth = format!("Bearer {key}");
    let call = http1(
        addr,
        "/omo.v1.StoreService/ListStores",
        &[
            ("origin", "https://shop.example"),
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        b"{}",
    );
    assert_eq!(call.status, 200, "{}", String::from_utf8_lossy(&call.body));
    assert_eq!(
        call.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
}
