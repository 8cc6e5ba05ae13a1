//! `omo backup`: an online, consistent copy of a SQLite database, taken while the server runs.
//!
//! SQLite's online backup API copies every page of the database inside one read transaction
//! (one step of all pages): in WAL mode that transaction reads one snapshot and blocks no
//! writer, so the copy is the database as of one commit, whatever the server does meanwhile.
//! The copy is written beside the target and renamed into place only once it is complete and
//! has passed SQLite's own check, so a failed or interrupted backup never leaves a half file
//! under the target name. The copy holds every member's data, so it is readable by its owner
//! only (mode 0600), from the moment it is created.
//!
//! PostgreSQL has its own tool for this (`pg_dump -Fc`, restored with `pg_restore`): omo does
//! not reimplement it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::{
    Connection, OpenFlags,
    backup::{Backup, StepResult},
};
use sqlx::sqlite::SqliteConnectOptions;

/// What `omo backup` tells an operator who points it at PostgreSQL.
pub const POSTGRES_HINT: &str = "omo backup copies SQLite databases only; back up PostgreSQL \
with its own tools: pg_dump -Fc -f omo.dump DATABASE_URL, restored into a new database with \
pg_restore --no-owner -d NEW_DATABASE_URL omo.dump (see the README's Backup section)";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{POSTGRES_HINT}")]
    Postgres,
    #[error("{0}")]
    Unsupported(String),
    #[error("{0} exists already; choose a new file (a backup never overwrites one)")]
    TargetExists(PathBuf),
    /// The target's folder is missing: said before anything is written, naming the folder
    /// (not the `.partial` file SQLite would have failed to create in it).
    #[error("the folder {0} does not exist; create it first (mkdir -p {0})")]
    NoTargetFolder(PathBuf),
    #[error("the backup failed its integrity check: {0}")]
    Corrupt(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub source: PathBuf,
    pub target: PathBuf,
    pub pages: i32,
    pub bytes: u64,
}

/// Copies the database at `database_url` to a new file `to`. Blocks: call it off the async
/// runtime (`spawn_blocking`).
pub fn backup(database_url: &str, to: &Path) -> Result<BackupReport, BackupError> {
    let source = sqlite_path(database_url)?;
    if to.exists() {
        return Err(BackupError::TargetExists(to.to_path_buf()));
    }
    if let Some(folder) = to.parent().filter(|f| !f.as_os_str().is_empty())
        && !folder.is_dir()
    {
        return Err(BackupError::NoTargetFolder(folder.to_path_buf()));
    }
    let partial = partial_path(to);
    let result = copy(&source, &partial);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let pages = result?;
    std::fs::rename(&partial, to)?;
    Ok(BackupReport {
        source,
        target: to.to_path_buf(),
        pages,
        bytes: std::fs::metadata(to)?.len(),
    })
}

/// The file behind a `sqlite:` URL; PostgreSQL and in-memory databases cannot be copied here.
fn sqlite_path(database_url: &str) -> Result<PathBuf, BackupError> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Err(BackupError::Postgres);
    }
    if database_url.contains(":memory:") || database_url.contains("mode=memory") {
        return Err(BackupError::Unsupported(
            "an in-memory database has no file to back up".into(),
        ));
    }
    let options = SqliteConnectOptions::from_str(database_url)
        .map_err(|e| BackupError::Unsupported(format!("{database_url:?}: {e}")))?;
    let path = options.get_filename().to_path_buf();
    if !path.exists() {
        return Err(BackupError::Unsupported(format!(
            "no database at {}",
            path.display()
        )));
    }
    Ok(path)
}

fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    to.with_file_name(name)
}

/// Creates `path` empty, readable and writable by its owner only; SQLite then writes the copy
/// into it (an empty file is an empty database) and gives its journal the same mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// All pages in one step (one read snapshot), then SQLite's quick check of the copy.
fn copy(source: &Path, partial: &Path) -> Result<i32, BackupError> {
    let _ = std::fs::remove_file(partial);
    create_private(partial)?;
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The server's writer may hold the write lock for a moment; a reader only waits for it
    // when the WAL must be recovered.
    from.busy_timeout(std::time::Duration::from_secs(30))?;
    let mut to = Connection::open(partial)?;
    let pages = {
        let backup = Backup::new(&from, &mut to)?;
        // -1: every page in one step, i.e. in one read transaction of the source.
        let mut attempts = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked if attempts < 300 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => {
                    return Err(BackupError::Unsupported(format!(
                        "the database stayed unavailable for the backup ({other:?})"
                    )));
                }
            }
        }
        backup.progress().pagecount
    };
    let check: String = to.query_row("pragma quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(BackupError::Corrupt(check));
    }
    // Closing the last connection folds any WAL into the file; then it is synced to disk
    // before the rename makes it the backup.
    drop(to);
    std::fs::File::open(partial)?.sync_all()?;
    Ok(pages)
}
