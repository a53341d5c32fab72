//! Tokens this process found valid lately, so that most requests are authenticated without a
//! statement. Kept only while this process listens for every process's changes (`follow`):
//!
//! - a change that can alter a token's answer (a token revoked, a member's role changed or the
//!   member removed, the team deleted) drops the team's entries here when its batch is
//!   committed, before the request that made it is answered, and in every other process when
//!   its `NOTIFY` arrives;
//! - while the listening connection is down (or not up yet) nothing is kept or trusted, and
//!   everything is dropped when it goes: a notification missed meanwhile cannot leave a revoked
//!   token alive;
//! - an answer read from the database is kept only if nothing was dropped while it was being
//!   read (a revocation committed meanwhile may have come too late for the read);
//! - an entry is trusted for [`MAX_AGE`] at most, whatever happens: the bound on a change made
//!   straight in the database, which no one is told of.
//!
//! Only valid tokens are kept: an unknown or revoked one is looked up each time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::server::db::AuthRow;

/// How long an answer is trusted at most.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Entries past their age are swept out when the cache has grown to this many since the last
/// sweep (tokens used once are not kept forever).
const SWEEP_AT: usize = 1024;

#[derive(Default)]
pub struct AuthCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether changes made by other processes are heard now.
    listening: bool,
    /// Moves on at each drop: a read that began before one is not kept.
    generation: u64,
    by_hash: HashMap<Vec<u8>, Entry>,
    /// Token id to hash, to record a token's use in its entry.
    hashes: HashMap<String, Vec<u8>>,
    sweep_at: usize,
}

struct Entry {
    row: AuthRow,
    /// When the read that found it began.
    read: Instant,
}

/// Taken before a token is read from the database: what was read is kept only if nothing was
/// dropped since.
#[derive(Debug)]
pub struct Ticket {
    generation: u64,
    taken: Instant,
}

impl AuthCache {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token's answer when it is known here, or a ticket to keep the one read instead.
    pub fn get(&self, hash: &[u8]) -> Result<AuthRow, Ticket> {
        let mut state = self.state();
        let now = Instant::now();
        let ticket = Ticket { generation: state.generation, taken: now };
        if !state.listening {
            return Err(ticket);
        }
        match state.by_hash.get(hash) {
            Some(e) if now.duration_since(e.read) < MAX_AGE => Ok(e.row.clone()),
            Some(_) => {
                state.forget(hash);
                Err(ticket)
            }
            None => Err(ticket),
        }
    }

    /// Keeps `row`, read after `ticket` was taken, when it is a valid token's and nothing was
    /// dropped meanwhile.
    pub fn keep(&self, ticket: Ticket, hash: &[u8], row: &AuthRow) {
        if row.token.revoked.is_some() || row.role.is_none() {
            return;
        }
        let mut state = self.state();
        if !state.listening || state.generation != ticket.generation {
            return;
        }
        if state.by_hash.len() >= state.sweep_at.max(SWEEP_AT) {
            let now = Instant::now();
            state.by_hash.retain(|_, e| now.duration_since(e.read) < MAX_AGE);
            let State { by_hash, hashes, .. } = &mut *state;
            hashes.retain(|_, h| by_hash.contains_key(h));
            state.sweep_at = state.by_hash.len() * 2;
        }
        state.hashes.insert(row.token.id.clone(), hash.to_vec());
        state.by_hash.insert(hash.to_vec(), Entry { row: row.clone(), read: ticket.taken });
    }

    /// The token's use was recorded in the database at `now`.
    pub fn touched(&self, token_id: &str, now: i64) {
        let mut state = self.state();
        let State { by_hash, hashes, .. } = &mut *state;
        if let Some(e) = hashes.get(token_id).and_then(|h| by_hash.get_mut(h)) {
            e.row.token.last_used = Some(now);
        }
    }

    /// Something changed that can alter the answer for the team's tokens.
    pub fn forget_team(&self, team_id: &str) {
        let mut state = self.state();
        state.generation += 1;
        let State { by_hash, hashes, .. } = &mut *state;
        by_hash.retain(|_, e| e.row.token.team_id != team_id);
        hashes.retain(|_, h| by_hash.contains_key(h));
    }

    /// Whether other processes' changes are heard from now on. Either way, what was kept is
    /// dropped: kept while listening, it may miss what was said while not; and nothing is kept
    /// while not listening, but a read that began then may have missed a change told before
    /// listening began.
    pub fn listening(&self, yes: bool) {
        let mut state = self.state();
        state.listening = yes;
        state.generation += 1;
        state.by_hash.clear();
        state.hashes.clear();
    }
}

impl State {
    fn forget(&mut self, hash: &[u8]) {
        if let Some(e) = self.by_hash.remove(hash) {
            self.hashes.remove(&e.row.token.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Role;
    use crate::server::db::TokenRow;

    fn row(team: &str, id: &str) -> AuthRow {
        AuthRow {
            token: TokenRow {
                id: id.into(),
                team_id: team.into(),
                member_id: "m".into(),
                hash: id.as_bytes().to_vec(),
                label_sealed: vec![],
                created: 0,
                last_used: None,
                revoked: None,
            },
            role: Some(Role::Member),
            name_sealed: None,
        }
    }

    fn read(cache: &AuthCache, team: &str, id: &str) -> bool {
        match cache.get(id.as_bytes()) {
            Ok(_) => true,
            Err(ticket) => {
                cache.keep(ticket, id.as_bytes(), &row(team, id));
                false
            }
        }
    }

    #[test]
    fn nothing_is_kept_until_listening_and_everything_is_dropped_when_listening_stops() {
        let cache = AuthCache::default();
        assert!(!read(&cache, "t", "a"));
        assert!(!read(&cache, "t", "a"), "not kept while not listening");
        cache.listening(true);
        assert!(!read(&cache, "t", "a"));
        assert!(read(&cache, "t", "a"), "kept while listening");
        cache.listening(false);
        cache.listening(true);
        assert!(!read(&cache, "t", "a"), "dropped when listening stopped");
    }

    #[test]
    fn a_change_drops_its_teams_tokens_and_a_read_that_began_before_it() {
        let cache = AuthCache::default();
        cache.listening(true);
        read(&cache, "t", "a");
        read(&cache, "u", "b");
        let Err(ticket) = cache.get(b"c") else { panic!("c is not known yet") };
        cache.forget_team("t");
        cache.keep(ticket, b"c", &row("t", "c"));
        assert!(!read(&cache, "t", "a"), "the team's token was dropped");
        assert!(read(&cache, "u", "b"), "another team's stays");
        assert!(!read(&cache, "t", "c"), "a read that began before the change was not kept");
    }

    #[test]
    fn revoked_tokens_and_removed_members_are_not_kept_and_a_use_is_recorded_in_the_entry() {
        let cache = AuthCache::default();
        cache.listening(true);
        let mut revoked = row("t", "a");
        revoked.token.revoked = Some(1);
        cache.keep(cache.get(b"a").unwrap_err(), b"a", &revoked);
        let mut removed = row("t", "b");
        removed.role = None;
        cache.keep(cache.get(b"b").unwrap_err(), b"b", &removed);
        assert!(cache.get(b"a").is_err() && cache.get(b"b").is_err());
        read(&cache, "t", "c");
        cache.touched("c", 42);
        assert_eq!(cache.get(b"c").unwrap().token.last_used, Some(42));
    }

    #[test]
    fn an_entry_is_trusted_for_its_age_at_most() {
        let cache = AuthCache::default();
        cache.listening(true);
        let Err(mut ticket) = cache.get(b"a") else { panic!() };
        ticket.taken = ticket.taken.checked_sub(MAX_AGE).expect("the machine has been up for a minute");
        cache.keep(ticket, b"a", &row("t", "a"));
        assert!(cache.get(b"a").is_err());
    }
}
