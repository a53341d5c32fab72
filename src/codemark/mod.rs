//! Codemarks: the model, and the operations the language server and the command line share.
//!
//! - [`model`]: what a codemark is (plain data).
//! - [`places`]: anchoring a selection, placing anchors in the working tree or an editor
//!   buffer, and promoting anchors on uncommitted lines once a commit holds them.

pub mod model;
pub mod places;

pub use model::{CachedLocation, Codemark, Kind, MarkStatus, Reply, ReviewLink, StoredAnchor, new_id, now_ms, rfc3339};
pub use places::{
    AnchorError, LocationCache, NO_COMMIT, anchor_selection, author, locate_in_text, locate_in_worktree,
    promote_pending, repo_key,
};
