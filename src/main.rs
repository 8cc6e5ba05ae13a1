//! The `omo` command line: thin; everything it does is a library call.

use std::{process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use omo::{
    Application, Config,
    config::{DatabaseArgs, LogFormat},
    domain::{SystemClock, auth::Role},
    engine::Engine,
};

#[derive(Debug, Parser)]
#[command(
    name = "omo",
    version,
    about = "Cross-channel loyalty points and coupon engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run migrations, then serve gRPC until SIGTERM/SIGINT.
    Serve(Config),
    /// Create or upgrade the database schema, then exit.
    Migrate(DatabaseArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check every ledger invariant; exit 0 when all hold, 1 otherwise.
    Verify {
        /// A seal hash kept outside the database (printed by an earlier verify as the newest
        /// seal hash): fail unless the chain still holds that seal.
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
        /// The key the seals were made with (`omo serve --seal-key-file`): without it keyed
        /// seals' hashes cannot be checked (their links and digests still are).
        #[arg(long, env = "OMO_SEAL_KEY_FILE", value_name = "FILE")]
        seal_key_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Copy a SQLite database to a new file, online and consistent (PostgreSQL: pg_dump).
    Backup {
        /// The new file (never overwritten).
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Bulk import (JSON Lines; README "Import and export").
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Stream the journal, members or lots to a new file (JSON Lines or CSV).
    Export {
        what: omo::export::What,
        /// The new file (never overwritten).
        #[arg(long)]
        to: std::path::PathBuf,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: omo::export::Format,
        /// RFC 3339: journal entries recorded, members created, lots earned at or after it.
        #[arg(long, value_parser = parse_instant)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Run a scripted OMO story against a fresh in-process server and print the ledger.
    Demo,
    /// Load-test omo over gRPC next to two baselines; wipes its own database (see --help).
    Bench(omo::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed alone on the last line of stdout (only its hash is kept).
    Create {
        /// admin, checkout, register or app.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The store a register key is bound to.
        #[arg(long = "store")]
        store_id: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// How long the key is valid: 90d, 12h, 30m or 45s; without it the key does not expire.
        #[arg(long, value_parser = omo::keys::parse_lifetime)]
        expires_in: Option<chrono::Duration>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List every key: id, role, store, name, created, expires, last used (never a secret).
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a key by its id (from `omo keys list`); every server refuses it within 2 s.
    Revoke {
        key_id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Members with their opening balances, one JSON object a line: {external_id,
    /// identifiers[], display_name, attributes, points[] {points, expires_at}, tier_id}.
    /// Idempotent by external_id: a re-run or a resumed run adds nothing twice. Bad lines are
    /// printed `line N: field: problem` (exit 1); the other lines are imported.
    Members {
        file: std::path::PathBuf,
        /// Check every line (also against the database) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Lines per transaction: a killed run loses at most the chunk in flight.
        #[arg(long, default_value_t = omo::import::DEFAULT_CHUNK_LINES as u64,
            value_parser = clap::value_parser!(u64).range(1..=50_000))]
        chunk_lines: u64,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (2026-12-01T00:00:00Z): {e}"))
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: admin, checkout, register or app"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints a story; server logs would only interleave with it.
    let default_filter = match cli.command {
        Command::Demo | Command::Bench(_) => "warn",
        // A chunk's statements write thousands of rows: sqlx's slow-statement warnings (> 1 s)
        // would only bury the bad lines and the progress.
        Command::Import { .. } | Command::Export { .. } => "info,sqlx=error",
        _ => "info,sqlx=warn",
    };
    let log_format = match &cli.command {
        Command::Serve(config) => config.observability.log_format,
        _ => LogFormat::Text,
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr);
    omo::grpc::observe::log_every_call(log_format == LogFormat::Json);
    match log_format {
        LogFormat::Text => logs.init(),
        // One object a line: the event's fields at the top level, its span's fields under
        // "span" (the request span of a call: method, role, key_id, request_id, code, latency).
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("omo: {error}");
            let mut source = std::error::Error::source(error.as_ref());
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// The database with its migrations run.
async fn engine(database: &DatabaseArgs) -> Result<Engine, AnyError> {
    let store = omo::store::open(database.database_url.expose()).await?;
    Ok(Engine::new(store, Arc::new(SystemClock), 1))
}

/// The database brought wholly up to date: its migrations run, then the report summaries
/// rebuilt if one of them asked for it (as `omo serve` does before it serves), so that `omo
/// verify` after an upgrade compares summaries of the new shape. (`omo keys` leaves that to
/// them: a rebuild locks the summaries for as long as it takes, 20-30 s at a million members.)
async fn engine_up_to_date(database: &DatabaseArgs) -> Result<Engine, AnyError> {
    let engine = engine(database).await?;
    engine.rebuild_reports_if_wanted().await?;
    Ok(engine)
}

async fn run(cli: Cli) -> Result<ExitCode, AnyError> {
    match cli.command {
        Command::Serve(config) => {
            let app = Application::build(&config, Arc::new(SystemClock)).await?;
            let log_format = config.observability.log_format;
            // A JSON log is JSON on every line: its "omo serving" event names the address.
            if log_format == LogFormat::Text {
                eprintln!("omo listening on {}", app.local_addr());
            }
            app.run_until(shutdown_signal(log_format)).await?;
        }
        Command::Migrate(database) => {
            engine_up_to_date(&database).await?;
            println!("migrations applied");
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    role,
                    store_id,
                    name,
                    expires_in,
                    database,
                },
        } => {
            let key = engine(&database)
                .await?
                .create_api_key_expiring(role, store_id, name, expires_in)
                .await?;
            println!(
                "created {} {} key; store it now, it is not shown again:",
                if role.as_str().starts_with('a') {
                    "an"
                } else {
                    "a"
                },
                role.as_str()
            );
            println!("{key}");
        }
        Command::Keys {
            command: KeysCommand::List { database },
        } => {
            let engine = engine(&database).await?;
            let keys = engine.list_api_keys().await?;
            print!("{}", omo::keys::format_list(&keys, engine.now()));
        }
        Command::Keys {
            command: KeysCommand::Revoke { key_id, database },
        } => {
            if !engine(&database).await?.revoke_api_key(&key_id).await? {
                eprintln!("omo: no key {key_id:?}");
                return Ok(ExitCode::from(1));
            }
            println!("revoked {key_id}");
        }
        Command::Verify {
            expect_head,
            seal_key_file,
            database,
        } => {
            let seal_key = seal_key_file
                .as_deref()
                .map(omo::config::read_seal_key)
                .transpose()?;
            let url = database.database_url.expose();
            omo::store::require_existing(url)?;
            // Verify reads the database as it is: it neither migrates nor rebuilds anything.
            let pending = omo::store::pending_migrations(url).await?;
            if !pending.is_empty() {
                return Err(format!(
                    "the database is missing migrations {pending:?} of this omo: run `omo \
                     migrate` first (verify never writes to the database it checks)"
                )
                .into());
            }
            let engine = engine(&database).await?;
            if let Some(key) = seal_key {
                engine.set_seal_key(key);
            }
            let report = engine.verify_expecting(expect_head.as_deref()).await?;
            print!("{}", report.summary());
            if !report.ok() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Backup { to, database } => return backup(database, to).await,
        Command::Import {
            command:
                ImportCommand::Members {
                    file,
                    dry_run,
                    chunk_lines,
                    database,
                },
        } => {
            // Summaries rebuilt first (a fresh database asks for it): the import then adds
            // its lots to them, and a later rebuild would not discard that.
            let engine = engine_up_to_date(&database).await?;
            let started = std::time::Instant::now();
            let mut stdout = std::io::stdout();
            let report = omo::import::import_members(
                &engine,
                &file,
                dry_run,
                chunk_lines as usize,
                &mut stdout,
            )
            .await?;
            print!("{}", report.summary(started.elapsed()));
            if !report.bad_lines.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Export {
            what,
            to,
            format,
            since,
            database,
        } => {
            let engine = engine(&database).await?;
            let rows = omo::export::export(&engine, what, format, since, &to).await?;
            println!("exported {rows} rows to {}", to.display());
        }
        Command::Demo => omo::demo::run().await?,
        Command::Bench(args) => print!("{}", omo::bench::run(args).await?),
    }
    Ok(ExitCode::SUCCESS)
}

async fn backup(database: DatabaseArgs, to: std::path::PathBuf) -> Result<ExitCode, AnyError> {
    let url = database.database_url.expose().to_string();
    match tokio::task::spawn_blocking(move || omo::backup::backup(&url, &to)).await? {
        Ok(report) => {
            println!(
                "backed up {} to {} ({} pages, {} bytes)",
                report.source.display(),
                report.target.display(),
                report.pages,
                report.bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(omo::backup::BackupError::Postgres) => {
            eprintln!("omo: {}", omo::backup::POSTGRES_HINT);
            Ok(ExitCode::from(2))
        }
        Err(error) => Err(error.into()),
    }
}

async fn shutdown_signal(log_format: LogFormat) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    match log_format {
        LogFormat::Text => eprintln!("omo: shutting down"),
        LogFormat::Json => tracing::info!("shutting down"),
    }
}
