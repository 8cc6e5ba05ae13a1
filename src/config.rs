//! Typed configuration: command-line flags, each also settable from the environment.

use std::{fmt, net::SocketAddr, str::FromStr};

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
    /// Group-commit writers (parallel write transactions); default 1 on SQLite (it has one
    /// writer anyway), 8 on PostgreSQL.
    #[arg(long, env = "OMO_WRITERS")]
    pub writers: Option<usize>,
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
            writers: None,
        }
    }
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
}
