//! Errors of the store.

use std::path::PathBuf;

use super::types::Outpoint;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database driver failed (connection, SQL, constraint, I/O).
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The data directory for the SQLite file could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `apply_block` was given a block that does not extend the chain cursor (wrong height or
    /// `prev_hash`): the caller must roll back to the fork point first.
    #[error("block {height} (prev {prev_hash}) does not extend the cursor at {cursor_height} ({cursor_hash})")]
    NotExtending {
        /// Height of the offered block.
        height: u64,
        /// `prev_hash` of the offered block.
        prev_hash: String,
        /// Height of the cursor.
        cursor_height: u64,
        /// Hash of the cursor.
        cursor_hash: String,
    },
    /// A spend effect named a bridge outpoint the store does not hold (or one already spent).
    #[error("spend of unknown or already spent bridge outpoint {0}")]
    UnknownOutpoint(Outpoint),
    /// `rollback_above` was asked to move a cursor to a height whose header is not stored.
    #[error("fork point {0} is not among the stored headers")]
    UnknownForkPoint(u64),
    /// A number does not fit the database's signed 64-bit integers.
    #[error("value {0} does not fit a signed 64-bit column")]
    OutOfRange(u64),
    /// A stored row could not be decoded (negative height, bad amount text, bad JSON, …).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A value could not be encoded (evidence JSON).
    #[error("cannot encode {0}")]
    Encode(String),
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Converts a height or id to the database's `BIGINT`.
pub(crate) fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::OutOfRange(v))
}

/// Converts a stored `BIGINT` back to an unsigned height or id.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
}
