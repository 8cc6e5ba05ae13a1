//! gRPC over TLS with certificates made in the test: TLS clients get through, plaintext does not;
//! with a client CA (mutual TLS) a client without a certificate is refused.

use std::{path::Path, process::Stdio, sync::Arc, time::Duration};

use omo::{Application, Config, client::Client, domain::auth::Role, proto};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::helpers::TestApp;

crate::both_backends! {
    tls_is_served_and_plaintext_refused => tls_is_served_and_plaintext_refused,
    mutual_tls_refuses_a_client_without_a_certificate => mutual_tls_refuses_a_client_without_a_certificate,
    plaintext_off_loopback_is_warned_about => plaintext_off_loopback_is_warned_about,
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn new_pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf(vec!["localhost".into(), "127.0.0.1".into()]),
        client: leaf(vec!["register-1".into()]),
    }
}

/// A server over the test's database serving TLS (mutual when `client_ca`), and an admin key.
async fn tls_server(
    app: &TestApp,
    dir: &Path,
    pki: &Pki,
    client_ca: bool,
) -> (Application, String) {
    std::fs::create_dir_all(dir).expect("dir");
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write pem");
        path
    };
    let mut config = Config::local(&app.database_url);
    config.tls.tls_cert = Some(write("server.pem", &pki.server.0));
    config.tls.tls_key = Some(write("server.key", &pki.server.1));
    if client_ca {
        config.tls.tls_client_ca = Some(write("ca.pem", &pki.ca));
    }
    let server = Application::build(&config, Arc::new(app.clock.clone()))
        .await
        .expect("TLS server");
    let key = server
        .engine()
        .create_api_key(Role::Admin, None, "tls".into())
        .await
        .expect("key");
    (server, key)
}

fn tls_endpoint(server: &Application, pki: &Pki, with_client_cert: bool) -> Endpoint {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client.0, &pki.client.1));
    }
    Endpoint::from_shared(format!("https://{}", server.local_addr()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
}

/// A call that needs a key and reads nothing secret: GetProgram.
async fn call(client: &Client) -> Result<(), tonic::Status> {
    client
        .program()
        .get_program(proto::GetProgramRequest {})
        .await
        .map(drop)
}

/// Whether a connection and a call over `endpoint` get through.
async fn gets_through(endpoint: Endpoint, key: &str) -> bool {
    match endpoint.connect().await {
        Ok(channel) => call(&Client::from_channel(channel, key)).await.is_ok(),
        Err(_) => false,
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("omo_tls_{name}_{:016x}", rand::random::<u64>()))
}

async fn tls_is_served_and_plaintext_refused(app: &TestApp) {
    let pki = new_pki();
    let dir = temp_dir("plain");
    let (server, key) = tls_server(app, &dir, &pki, false).await;
    assert!(gets_through(tls_endpoint(&server, &pki, false), &key).await);
    let plaintext = Endpoint::from_shared(server.endpoint()).expect("endpoint");
    assert!(
        !gets_through(plaintext, &key).await,
        "plaintext reached a TLS listener"
    );
    // A client that does not trust the server's CA is refused too.
    let untrusted = Endpoint::from_shared(format!("https://{}", server.local_addr()))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(new_pki().ca))
                .domain_name("localhost"),
        )
        .expect("tls config");
    assert!(!gets_through(untrusted, &key).await);
    server.stop().await.expect("stops");
    let _ = std::fs::remove_dir_all(dir);
}

async fn mutual_tls_refuses_a_client_without_a_certificate(app: &TestApp) {
    let pki = new_pki();
    let dir = temp_dir("mutual");
    let (server, key) = tls_server(app, &dir, &pki, true).await;
    assert!(gets_through(tls_endpoint(&server, &pki, true), &key).await);
    assert!(
        !gets_through(tls_endpoint(&server, &pki, false), &key).await,
        "a client without a certificate got through"
    );
    // A certificate from another CA is no better.
    let stranger = pki_stranger_endpoint(&server, &pki);
    assert!(!gets_through(stranger, &key).await);
    server.stop().await.expect("stops");
    let _ = std::fs::remove_dir_all(dir);
}

/// A client that trusts the server but presents a certificate of another CA.
fn pki_stranger_endpoint(server: &Application, pki: &Pki) -> Endpoint {
    let other = new_pki();
    Endpoint::from_shared(format!("https://{}", server.local_addr()))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&pki.ca))
                .domain_name("localhost")
                .identity(Identity::from_pem(&other.client.0, &other.client.1)),
        )
        .expect("tls config")
}

/// What `omo serve` logs before it says where it listens.
async fn startup_log(app: &TestApp, extra: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_omo"))
        .args(["serve", "--database-url", &app.database_url])
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("omo serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push_str(&line);
            log.push('\n');
            if line.starts_with("omo listening on ") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server starts");
    let _ = child.kill().await;
    log
}

async fn plaintext_off_loopback_is_warned_about(app: &TestApp) {
    let warning = "serving without TLS on a non-loopback address";
    let open = startup_log(app, &["--listen", "0.0.0.0:0"]).await;
    assert!(open.contains(warning), "{open}");
    let local = startup_log(app, &["--listen", "127.0.0.1:0"]).await;
    assert!(!local.contains(warning), "{local}");
    let dir = temp_dir("warn");
    std::fs::create_dir_all(&dir).expect("dir");
    let pki = new_pki();
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, &pki.server.0).expect("cert");
    std::fs::write(&key, &pki.server.1).expect("key");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let tls = startup_log(
        app,
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    )
    .await;
    assert!(
        tls.contains("omo serving") && !tls.contains(warning),
        "{tls}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
