//! Feedback requests: local work sent for review without pushing, rebuilt on the reviewer's
//! side from their own git objects plus the patches, never touching their working copy.
//!
//! - [`patch`]: unified diff hunks, made and applied strictly (pure).
//! - [`changeset`]: the author's side: a revision of the working tree against a base the
//!   reviewers have; binary files listed, secrets in added lines found.
//! - [`rebuild`]: the reviewer's side: each file rebuilt and checked against the author's
//!   hashes; the unified diff; the proposed tree written into a new folder.
//!
//! - [`comment`]: a comment on a review: a codemark on the lines' text, linked to the review.
//!
//! Sending and reading them is [`crate::sync::reviews`]; comments on them are codemarks with a
//! review link.

pub mod changeset;
pub mod comment;
pub mod patch;
pub mod rebuild;
