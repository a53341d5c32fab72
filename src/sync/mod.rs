//! The sync client: codemarks shared with a team server (`marginalia serve`), for the language
//! server and the CLI.
//!
//! - [`outbox`]: local changes and the requests that carry them to the server, written in one
//!   transaction, scanned for secrets first. What every command that changes a codemark calls.
//! - [`client`]: the one place that sends requests: TLS (plain `http://` only to loopback),
//!   the egress ledger, errors that say what to do.
//! - [`engine`]: pushing the outbox (exactly once, by idempotency key), pulling by cursor,
//!   following the event stream.
//! - [`reviews`]: feedback requests on the server: reads, and changes through the outbox.
//! - [`session`]: signing in and out; the token lives in the OS keychain or
//!   `MARGINALIA_TOKEN`, never in the store.
//! - [`convert`]: codemarks between the local model and the wire ([`crate::api`]).
//! - [`sse`]: Server-Sent Events, parsed incrementally.
//!
//! **Architecture invariant:** the only module that talks to the team server; it knows the server
//! only through [`crate::api`] (the code hosts are [`crate::providers`]'s).

pub mod client;
pub mod convert;
pub mod engine;
pub mod outbox;
pub mod reviews;
pub mod session;
pub mod sse;

pub use client::{Client, SyncError, Token};
