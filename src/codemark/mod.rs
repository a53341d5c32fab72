//! Codemarks: the model, and the operations the language server and the command line share.
//!
//! - [`model`]: what a codemark is (plain data).

pub mod model;

pub use model::{CachedLocation, Codemark, Kind, MarkStatus, Reply, StoredAnchor, new_id, now_ms, rfc3339};
