//! marginalia: local-first code discussions for teams.
//!
//! # Code map
//!
//! - [`anchor`]: the anchor engine, the heart. Pure: texts and edits in, locations out. Lines
//!   followed version by version (`anchor/trail.rs`), two texts compared (`relocate.rs`), live
//!   edits tracked (`track.rs`).
//!   **Invariant:** it knows nothing of git, disks, async, JSON or LSP.
//! - [`git`]: reads through git2 (file text at a commit or on disk, what a range of history
//!   changed, renames, routes between commits and where a file changed on them, repository
//!   identity). **Invariant:** the only module that knows git2;
//!   it never writes.
//! - [`locate`]: relocating anchors in a repository, gluing `git` to `anchor` with the caches a
//!   batch needs: each anchor walked along its route (`locate/walk.rs`); the stable JSON Lines
//!   interface of `marginalia locate`.
//! - [`codemark`]: codemarks: the model, anchoring a selection (committed lines, or pending
//!   ones anchored to their text until a commit holds them), placing anchors in the working
//!   tree or an editor buffer. Shared by the language server and the CLI; no SQL, no LSP.
//! - [`store`]: the local store (one SQLite file, WAL, versioned migrations). **Invariant:** the
//!   only module that knows SQL, but for the sync server's own storage (`server::db`).
//! - [`sync`]: the sync client: the outbox of local changes, pushing and pulling, the event
//!   stream, signing in. **Invariant:** the only module that talks to the team server; it knows the
//!   server only through [`api`].
//! - [`lsp`]: the language server over stdio. **Invariant:** the only module that knows
//!   tower-lsp and LSP types; positions are converted at its edge (`lsp::proto`).
//! - [`api`]: the sync API's wire format (JSON shapes and limits) shared by the sync server and
//!   its clients. **Invariant:** plain data; no HTTP, SQL or crypto.
//! - [`secrets`]: secret scanning before anything leaves the machine: what in a snippet or diff
//!   looks like a credential (provider tokens, cloud keys, private keys, high-entropy
//!   assignments), redaction, and the message that holds a send back. **Invariant:** pure; no
//!   IO.
//! - [`keychain`]: provider tokens and the sync token in the OS keychain (Secret Service or the
//!   kernel keyring on Linux, the login keychain on macOS, the Credential Manager on Windows):
//!   choosing a store that works, reading, storing, deleting. Blocking. **Invariant:** the only
//!   module that knows keyring; secrets never appear in its errors, logs or `Debug` output.
//! - [`server`]: the sync server, `marginalia serve`: HTTPS JSON API, team scoping and roles,
//!   encryption at rest, the audit log, the event stream; on SQLite (one process) or PostgreSQL
//!   (several processes over one database: events, idempotency keys and rate limits shared
//!   through it). **Invariant:** the only module that knows axum and HTTP; its SQL stays in
//!   `server::db::sqlite` and `server::db::postgres`, its cipher in `server::crypto`.
//! - [`providers`]: pull requests on GitHub (and Enterprise Server), GitLab (and self-managed)
//!   and Bitbucket Cloud, talked to directly: which host and repository the remotes name, where
//!   the token comes from, pages, rate limits, errors, the egress ledger, and review threads
//!   relocated to the working copy. **Invariant:** the only module that knows the providers'
//!   APIs; a token goes only to its own host's API (never across a redirect to another origin)
//!   and never into a log, the store or the ledger.
//! - [`review`]: feedback requests: the author's changeset against a base the reviewers have,
//!   strict patches, the reviewer's rebuild checked against the author's hashes, checkout into a
//!   new folder, review comments as codemarks. No HTTP (that is [`sync`]); git through [`git`].
//! - [`transport`]: what every outbound connection shares: https only (plain http to loopback
//!   alone), no credentials in addresses, extra certificate authorities.
//! - [`check`]: `marginalia check` for CI bots: which open codemarks a change deletes, modifies
//!   or moves (relocated to both ends of the change with [`locate`]), reported as text, JSON,
//!   Markdown or SARIF, and the summary kept on the pull request through [`providers`]. Reads
//!   codemarks through [`sync`] or [`store`]; no HTTP or SQL of its own, no printing.
//! - [`cli`]: the command line. Glue: parses, calls the modules above, prints. The only place
//!   that writes to stdout.

pub mod anchor;
pub mod api;
pub mod check;
pub mod cli;
pub mod codemark;
pub mod git;
pub mod keychain;
pub mod locate;
pub mod lsp;
pub mod providers;
pub mod review;
pub mod secrets;
pub mod server;
pub mod store;
pub mod sync;
pub mod transport;
