//! The audit log's rules: what an entry is, how entries are chained, and how a chain is
//! checked. Pure: the storage appends entries inside the transaction of the action they record
//! and calls [`chain_hash`]; `marginalia serve verify-audit` walks them with [`verify`].
//!
//! Each entry carries `SHA-256(previous entry's hash || canonical entry)`, the first one chaining
//! from 32 zero bytes. Editing, inserting or deleting an entry breaks every hash after it.
//! Entries hold ids and actions only, never names, emails or text.

use serde::Serialize;

/// The hash the first entry chains from.
pub const GENESIS: [u8; 32] = [0; 32];

/// What is recorded; names are stable (they are in the chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    TeamCreated,
    InviteCreated,
    /// An invite was redeemed: a member signed in for the first time.
    SignIn,
    MemberAdded,
    MemberRemoved,
    RoleChanged,
    TokenCreated,
    TokenRevoked,
    CodemarkDeleted,
    ReplyDeleted,
    /// A feedback request deleted, with its revisions and its comments.
    ReviewDeleted,
    TeamDeleted,
    Export,
    /// The operator rotated the master key (the team's key was rewrapped, its name's lookup
    /// code recomputed).
    MasterKeyRotated,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TeamCreated => "team.created",
            Action::InviteCreated => "invite.created",
            Action::SignIn => "sign-in",
            Action::MemberAdded => "member.added",
            Action::MemberRemoved => "member.removed",
            Action::RoleChanged => "member.role_changed",
            Action::TokenCreated => "token.created",
            Action::TokenRevoked => "token.revoked",
            Action::CodemarkDeleted => "codemark.deleted",
            Action::ReplyDeleted => "reply.deleted",
            Action::ReviewDeleted => "review.deleted",
            Action::TeamDeleted => "team.deleted",
            Action::Export => "export",
            Action::MasterKeyRotated => "master_key.rotated",
        }
    }
}

/// An entry as the action's code writes it, before it has a place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub team_id: String,
    /// The member who acted, or `operator` for the command line.
    pub actor_id: String,
    pub action: Action,
    pub target_id: Option<String>,
    /// Plain facts without personal data (`role=admin`).
    pub detail: String,
}

impl Draft {
    pub fn new(team_id: &str, actor_id: &str, action: Action, target_id: Option<&str>) -> Draft {
        Draft {
            team_id: team_id.into(),
            actor_id: actor_id.into(),
            action,
            target_id: target_id.map(str::to_owned),
            detail: String::new(),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Draft {
        self.detail = detail.into();
        self
    }
}

/// An entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub time: i64,
    pub team_id: String,
    pub actor_id: String,
    pub action: String,
    pub target_id: Option<String>,
    pub detail: String,
    pub hash: Vec<u8>,
}

/// The canonical bytes of an entry: a JSON array in a fixed order (serde_json escapes
/// deterministically, so one entry has exactly one encoding).
fn canonical(
    seq: i64,
    time: i64,
    team_id: &str,
    actor_id: &str,
    action: &str,
    target_id: Option<&str>,
    detail: &str,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Canonical<'a>(i64, i64, &'a str, &'a str, &'a str, Option<&'a str>, &'a str);
    serde_json::to_vec(&Canonical(seq, time, team_id, actor_id, action, target_id, detail))
        .expect("plain data serializes")
}

/// The hash an entry carries, given the previous entry's.
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    prev: &[u8],
    seq: i64,
    time: i64,
    team_id: &str,
    actor_id: &str,
    action: &str,
    target_id: Option<&str>,
    detail: &str,
) -> [u8; 32] {
    let mut bytes = prev.to_vec();
    bytes.extend(canonical(seq, time, team_id, actor_id, action, target_id, detail));
    super::crypto::sha256(&bytes)
}

/// What a walk of the chain found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        entries: u64,
    },
    /// The first entry whose hash does not follow from the entries before it (edited, or an
    /// entry before it was removed or inserted).
    Broken {
        seq: i64,
        checked: u64,
        reason: String,
    },
}

/// Walks entries in order. Sequence numbers must rise by one from the first entry's (1): a gap
/// is a deleted entry.
pub fn verify(entries: impl IntoIterator<Item = Entry>) -> Verdict {
    let mut prev = GENESIS.to_vec();
    let mut checked = 0;
    for (expected_seq, e) in (1..).zip(entries) {
        if e.seq != expected_seq {
            let reason = format!("entry {expected_seq} is missing (the next one is {})", e.seq);
            return Verdict::Broken { seq: e.seq, checked, reason };
        }
        let want =
            chain_hash(&prev, e.seq, e.time, &e.team_id, &e.actor_id, &e.action, e.target_id.as_deref(), &e.detail);
        if e.hash != want {
            let reason = "its hash does not match its content and the entry before it: it or an earlier entry was \
                          changed"
                .to_string();
            return Verdict::Broken { seq: e.seq, checked, reason };
        }
        prev = e.hash;
        checked += 1;
    }
    Verdict::Intact { entries: checked }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let hash = chain_hash(&prev, seq, 1000 + seq, "t", "m", "export", Some("x"), "");
                prev = hash.to_vec();
                Entry {
                    seq,
                    time: 1000 + seq,
                    team_id: "t".into(),
                    actor_id: "m".into(),
                    action: "export".into(),
                    target_id: Some("x".into()),
                    detail: String::new(),
                    hash: hash.to_vec(),
                }
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_is_intact() {
        assert_eq!(verify(chain(5)), Verdict::Intact { entries: 5 });
        assert_eq!(verify(Vec::new()), Verdict::Intact { entries: 0 });
    }

    #[test]
    fn an_edited_entry_is_found() {
        let mut c = chain(5);
        c[2].action = "token.created".into();
        assert!(matches!(verify(c), Verdict::Broken { seq: 3, checked: 2, .. }));
    }

    #[test]
    fn a_removed_entry_is_found_even_with_its_successors_rehashed_from_it() {
        let mut c = chain(5);
        c.remove(1);
        assert!(matches!(verify(c), Verdict::Broken { seq: 3, checked: 1, .. }));
        let mut c = chain(5);
        c.pop();
        c.remove(0);
        assert!(matches!(verify(c), Verdict::Broken { seq: 2, checked: 0, .. }));
    }
}
