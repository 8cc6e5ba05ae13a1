//! Typed configuration: command-line flags, each also settable from the environment.

use std::{
    fmt,
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use crate::domain::{
    auth::Role,
    seal::{MIN_KEY_BYTES, SealKey},
};

/// A database URL; `Debug` hides its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if known.iter().any(|scheme| s.starts_with(scheme)) {
            Ok(DatabaseUrl(s.to_string()))
        } else {
            Err(format!("{s:?} is neither a sqlite: nor a postgres:// URL"))
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // postgres://user:secret@host/db → postgres://user:***@host/db
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &self.0[scheme_end + 3..at];
                match credentials.find(':') {
                    Some(colon) => write!(
                        f,
                        "{}{}:***{}",
                        &self.0[..scheme_end + 3],
                        &credentials[..colon],
                        &self.0[at..]
                    ),
                    None => f.write_str(&self.0),
                }
            }
            _ => f.write_str(&self.0),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite://omo.db` (embedded, the default) or `postgres://user@host/db`.
    #[arg(long, env = "OMO_DATABASE_URL", default_value = "sqlite://omo.db")]
    pub database_url: DatabaseUrl,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, env = "OMO_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// How often the background sweeper releases expired holds and matures/expires points;
    /// 0 turns it off (tests drive it by hand).
    #[arg(long, env = "OMO_SWEEP_INTERVAL_MS", default_value_t = 1000)]
    pub sweep_interval_ms: u64,
    /// How often the background sealer extends the journal's hash chain (README,
    /// "Reliability"); 0 turns it off (tests drive it by hand).
    #[arg(long, env = "OMO_SEAL_INTERVAL_MS", default_value_t = 1000)]
    pub seal_interval_ms: u64,
    /// Days a remembered idempotency outcome is kept; the sweeper deletes older ones, and a
    /// replay after that is treated as a new request. 0 keeps them for ever.
    #[arg(long, env = "OMO_IDEMPOTENCY_RETENTION_DAYS", default_value_t = 30)]
    pub idempotency_retention_days: u32,
    /// Days personal data is kept whole: the sweeper deletes older location reports and
    /// empties the raw text of older receipts (the receipt and its points stay). 0 keeps them
    /// for ever.
    #[arg(long, env = "OMO_RETENTION_DAYS", default_value_t = 90)]
    pub retention_days: u32,
    /// Days events are kept in the feed once every webhook has them: the sweeper deletes the
    /// older ones (oldest first, so the feed stays dense). 0 keeps them for ever.
    #[arg(long, env = "OMO_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u32,
    /// On SIGTERM/SIGINT, how long calls in flight may take to finish before they are cut off
    /// (health turns NOT_SERVING and new calls are refused at once).
    #[arg(long, env = "OMO_SHUTDOWN_GRACE_S", default_value_t = 30)]
    pub shutdown_grace_s: u64,
    /// TCP_NODELAY on accepted connections (on by default; `false` only to measure what
    /// Nagle's algorithm costs: README, "Benchmark").
    #[arg(long, env = "OMO_TCP_NODELAY", default_value_t = true, action = clap::ArgAction::Set, hide = true)]
    pub tcp_nodelay: bool,
    /// Group-commit writers (parallel write transactions); default 1 on SQLite (it has one
    /// writer anyway), 4 on PostgreSQL.
    #[arg(long, env = "OMO_WRITERS")]
    pub writers: Option<usize>,
    /// Serve the read-only operator dashboard (admin keys only) over HTTP/1 on this address;
    /// without it nothing listens. With --tls-cert/--tls-key it is served over TLS; without
    /// them only a loopback address is accepted (the server refuses to start otherwise).
    #[arg(long, env = "OMO_HTTP")]
    pub http: Option<SocketAddr>,
    /// The HMAC-SHA256 key of the journal's seals (at least 32 bytes, readable by its owner
    /// only), kept outside the database: whoever can write the database but has not this file
    /// cannot re-make the chain (README, "Reliability").
    #[arg(long, env = "OMO_SEAL_KEY_FILE", value_name = "FILE")]
    pub seal_key_file: Option<PathBuf>,
    /// PEM certificates that https webhook deliveries trust besides the public (Mozilla) roots:
    /// the CA of receivers on a private network.
    #[arg(long, env = "OMO_WEBHOOK_CA_FILE", value_name = "FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// Let browser pages from this origin (`https://shop.example`) call the API over gRPC-Web
    /// or Connect (CORS); repeatable, or a comma-separated list. Without it no cross-origin
    /// call is allowed.
    #[arg(
        long = "cors-origin",
        env = "OMO_CORS_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub observability: ObservabilityArgs,
}

/// Metrics and logs (README, "Metrics and logs").
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ObservabilityArgs {
    /// Serve Prometheus metrics (text format, `/metrics`) on this address; without it nothing
    /// listens and recording costs nothing.
    #[arg(long, env = "OMO_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log lines (on stderr) as readable `text` or as one `json` object a line.
    #[arg(long, env = "OMO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Limits of the gRPC server (README, "Security").
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Limits {
    /// Most calls in flight on one HTTP/2 connection; more wait for a free stream.
    #[arg(long, env = "OMO_MAX_CONCURRENT_STREAMS", default_value_t = Limits::DEFAULT.max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// A call not answered within this many milliseconds ends with CANCELLED; 0 = no limit.
    #[arg(long, env = "OMO_REQUEST_TIMEOUT_MS", default_value_t = Limits::DEFAULT.request_timeout_ms)]
    pub request_timeout_ms: u64,
    /// HTTP/2 keepalive: a PING after this many idle seconds; 0 = none.
    #[arg(long, env = "OMO_KEEPALIVE_INTERVAL_S", default_value_t = Limits::DEFAULT.keepalive_interval_s)]
    pub keepalive_interval_s: u64,
    /// HTTP/2 keepalive: the connection is closed when a PING is not answered in this many
    /// seconds.
    #[arg(long, env = "OMO_KEEPALIVE_TIMEOUT_S", default_value_t = Limits::DEFAULT.keepalive_timeout_s)]
    pub keepalive_timeout_s: u64,
    /// Largest request or response message, in bytes.
    #[arg(long, env = "OMO_MAX_MESSAGE_BYTES", default_value_t = Limits::DEFAULT.max_message_bytes)]
    pub max_message_bytes: usize,
    /// Calls per second one admin key may make (bursts of one second's worth); 0 = no limit.
    #[arg(long, env = "OMO_RATE_LIMIT_ADMIN", default_value_t = 0)]
    pub rate_limit_admin: u32,
    /// Calls per second one checkout key may make; 0 = no limit.
    #[arg(long, env = "OMO_RATE_LIMIT_CHECKOUT", default_value_t = 0)]
    pub rate_limit_checkout: u32,
    /// Calls per second one register key may make; 0 = no limit.
    #[arg(long, env = "OMO_RATE_LIMIT_REGISTER", default_value_t = 0)]
    pub rate_limit_register: u32,
    /// Calls per second one app key may make; 0 = no limit.
    #[arg(long, env = "OMO_RATE_LIMIT_APP", default_value_t = 0)]
    pub rate_limit_app: u32,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_concurrent_streams: 1024,
        request_timeout_ms: 30_000,
        keepalive_interval_s: 30,
        keepalive_timeout_s: 20,
        max_message_bytes: 1024 * 1024,
        rate_limit_admin: 0,
        rate_limit_checkout: 0,
        rate_limit_register: 0,
        rate_limit_app: 0,
    };

    /// Calls per second one key of `role` may make; 0 = no limit.
    pub fn rate_limit(&self, role: Role) -> u32 {
        match role {
            Role::Admin => self.rate_limit_admin,
            Role::Checkout => self.rate_limit_checkout,
            Role::Register => self.rate_limit_register,
            Role::App => self.rate_limit_app,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// gRPC over TLS (rustls): a PEM certificate chain and key, and optionally the CA that client
/// certificates must chain to (mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, env = "OMO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "OMO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate signed by one (mutual TLS).
    #[arg(long, env = "OMO_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl Config {
    /// A config for an in-process server on a free port (tests, demo, bench).
    pub fn local(database_url: &str) -> Self {
        Config {
            database: DatabaseArgs {
                database_url: database_url.parse().expect("a sqlite: or postgres:// URL"),
            },
            listen: "127.0.0.1:0".parse().expect("valid address"),
            sweep_interval_ms: 0,
            seal_interval_ms: 0,
            idempotency_retention_days: 30,
            retention_days: 90,
            event_retention_days: 30,
            shutdown_grace_s: 30,
            tcp_nodelay: true,
            writers: None,
            http: None,
            seal_key_file: None,
            webhook_ca_file: None,
            cors_origins: Vec::new(),
            limits: Limits::default(),
            tls: TlsArgs::default(),
            observability: ObservabilityArgs::default(),
        }
    }
}

/// Why a seal key file was refused; never shows a byte of the key.
#[derive(Debug, thiserror::Error)]
pub enum SealKeyError {
    #[error("seal key file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// As ssh refuses a private key others may read: the key is only worth what its secrecy is.
    #[error(
        "seal key file {}: permissions {mode:04o} are too open: it must be readable by its \
         owner only (chmod 600 {})", .path.display(), .path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "seal key file {}: {len} bytes; a seal key has at least {} (head -c 32 /dev/urandom \
         > FILE)", .path.display(), MIN_KEY_BYTES
    )]
    TooShort { path: PathBuf, len: usize },
}

/// Reads the seal key in `path`: its bytes as they are, refused when the file is open to its
/// group or others, or shorter than [`MIN_KEY_BYTES`].
pub fn read_seal_key(path: &Path) -> Result<SealKey, SealKeyError> {
    let read_error = |source| SealKeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    // The permissions of the file opened, not of whatever the path names a moment later.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SealKeyError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_error)?;
    let len = bytes.len();
    SealKey::new(bytes).ok_or_else(|| SealKeyError::TooShort {
        path: path.to_path_buf(),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let url: DatabaseUrl = "postgres://omo:hunter2@db:5432/omo".parse().unwrap();
        assert_eq!(format!("{url:?}"), "postgres://omo:***@db:5432/omo");
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_seal_key_file_is_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("omo_seal_key_{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, bytes: &[u8], mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let good = write("good", &[0x5a; 32], 0o600);
        let open = write("open", &[0x5a; 32], 0o644);
        let short = write("short", &[0x5a; 31], 0o400);

        let key = read_seal_key(&good).expect("a private 32-byte key");
        let too_open = read_seal_key(&open).unwrap_err().to_string();
        let too_short = read_seal_key(&short).unwrap_err().to_string();
        let missing = read_seal_key(&dir.join("missing")).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(format!("{key:?}"), "SealKey(<redacted>)");
        assert!(
            too_open.contains("permissions 0644 are too open") && too_open.contains("chmod 600"),
            "{too_open}"
        );
        assert!(
            too_short.contains("31 bytes; a seal key has at least 32"),
            "{too_short}"
        );
        assert!(matches!(missing, SealKeyError::Read { .. }), "{missing}");
    }
}
