//! TLS for the gRPC server (rustls through tonic, no system OpenSSL): `--tls-cert`/`--tls-key`,
//! and with `--tls-client-ca` mutual TLS, where a client without a certificate signed by that CA
//! cannot complete the handshake.

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsArgs;

/// The server's TLS configuration; None when no certificate is configured (plaintext).
pub fn server_config(args: &TlsArgs) -> Result<Option<ServerTlsConfig>, std::io::Error> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read(cert, "--tls-cert")?, read(key, "--tls-key")?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &args.tls_client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca, "--tls-client-ca")?));
    }
    Ok(Some(config))
}

/// A PEM file, or an error that names the flag (never the file's contents).
fn read(path: &Path, flag: &str) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(path).map_err(|error| {
        std::io::Error::new(error.kind(), format!("{flag} {}: {error}", path.display()))
    })
}
