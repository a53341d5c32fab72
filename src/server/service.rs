//! The service layer: what each API call does, between the handlers (HTTP) and [`Storage`]
//! (rows). It authenticates tokens, scopes everything to the caller's team, enforces roles,
//! validates, seals and opens values, writes audit entries and events in the same batch as the
//! change, and answers repeated idempotency keys. No HTTP types here: the handlers translate.
//!
//! Another team's resources are looked up within the caller's team only, so they answer exactly
//! as absent ones do. Feedback requests (reviews) are in `reviews`.

mod reviews;

pub use reviews::ReviewsFor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::audit::{self, Action};
use super::crypto::{self, MasterKey, Place, TeamKey};
use super::db::{
    Batch, CodemarkRow, DbError, EventDraft, IdempotencyRow, InviteRow, MemberRow, ReplyRow, RepoRow, ReviewFilter,
    Stats, Storage, Subject, TeamRow, Thread, ThreadFilter, TokenRow, Write,
};
use super::error::ApiError;
use super::events::Notifier;
use super::validate;
use crate::api::{self, Role};

/// Prefix of every token (see [`api::Issued::token`]).
pub const TOKEN_PREFIX: &str = "mrg_";
/// Prefix of every invite code.
pub const INVITE_PREFIX: &str = "inv_";
/// Invites last this long unless asked otherwise, and at most [`MAX_INVITE_HOURS`].
pub const DEFAULT_INVITE_HOURS: u32 = 72;
pub const MAX_INVITE_HOURS: u32 = 720;
/// A token's `last_used` is written at most this often (ms): reads stay reads.
const TOUCH_EVERY_MS: i64 = 60_000;
/// The name shown for a member who was removed.
const REMOVED_MEMBER: &str = "(removed member)";
/// The actor of audit entries made from the server's command line.
pub const OPERATOR: &str = "operator";

/// Who is calling: found from the token, checked on every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub team_id: String,
    pub member_id: String,
    pub token_id: String,
    pub token_hash: Vec<u8>,
    pub role: Role,
    /// The member's name, sealed (opened only when an answer shows it).
    pub name_sealed: Vec<u8>,
}

impl Caller {
    fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.is_admin() { Ok(()) } else { Err(ApiError::Forbidden(format!("only an admin can {what}"))) }
    }
}

/// A mutation's `Idempotency-Key` and the request it belongs to (`POST /api/v1/codemarks`).
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    pub route: String,
}

/// An answer with its status (201 for a creation, 200 when a repeated key replays it...).
#[derive(Debug)]
pub struct Answer<T> {
    pub status: u16,
    pub body: T,
}

fn answer<T>(status: u16, body: T) -> Answer<T> {
    Answer { status, body }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An event for the changes feed: `id` (a codemark or a review) changed, or was deleted.
fn event(team_id: &str, subject: Subject, id: &str, deleted: bool) -> EventDraft {
    EventDraft { team_id: team_id.to_string(), subject, id: id.to_string(), deleted }
}

pub struct Service {
    store: Arc<dyn Storage>,
    master: MasterKey,
    notifier: Arc<dyn Notifier>,
    /// Unwrapped team keys; a deleted team's is dropped.
    keys: Mutex<HashMap<String, Arc<TeamKey>>>,
}

impl Service {
    pub fn new(store: Arc<dyn Storage>, master: MasterKey, notifier: Arc<dyn Notifier>) -> Service {
        Service { store, master, notifier, keys: Mutex::default() }
    }

    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.notifier
    }

    pub async fn stats(&self) -> Result<Stats, ApiError> {
        Ok(self.store.stats().await?)
    }

    /// Whether the storage answers now; `Err` is why not, fit for `/healthz` (no address, no
    /// user name: those go to the log).
    pub async fn health(&self) -> Result<(), String> {
        self.store.ping().await.map_err(|e| {
            tracing::warn!("health check: {e}");
            match e {
                DbError::Unavailable { cause, .. } => format!("the database does not answer: {cause}"),
                _ => "the database answers with an error (the server's log says more)".to_string(),
            }
        })
    }

    async fn team_key(&self, team_id: &str) -> Result<Arc<TeamKey>, ApiError> {
        if let Some(k) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(team_id) {
            return Ok(k.clone());
        }
        let wrapped = self
            .store
            .team_key(team_id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("team {team_id} has no data key in the key store")))?;
        let key = Arc::new(self.master.unwrap_team_key(team_id, &wrapped)?);
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(team_id.to_string(), key.clone());
        Ok(key)
    }

    // ---- authentication ------------------------------------------------------------------

    /// The caller behind an `Authorization` header's value (`None`: no header).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let Some(value) = authorization else {
            return Err(ApiError::Unauthorized(
                "no token: send `Authorization: Bearer <token>` (a token comes from POST /api/v1/login)".into(),
            ));
        };
        let token = value.strip_prefix("Bearer ").map(str::trim).unwrap_or("");
        if !crypto::is_secret_shaped(token, TOKEN_PREFIX) {
            return Err(ApiError::Unauthorized(
                "malformed token: expected `Authorization: Bearer mrg_` followed by 43 base64url characters".into(),
            ));
        }
        let hash = crypto::sha256(token.as_bytes()).to_vec();
        let caller = self.check_token(&hash).await?;
        Ok(caller)
    }

    /// Checks a token again by its hash (an event stream does, when woken).
    pub async fn check_token(&self, hash: &[u8]) -> Result<Caller, ApiError> {
        let Some(row) = self.store.auth(hash).await? else {
            return Err(ApiError::Unauthorized("unknown token: it was never issued, or its team was deleted".into()));
        };
        if row.token.revoked.is_some() {
            return Err(ApiError::Unauthorized("this token was revoked; sign in again with a new invite".into()));
        }
        let Some(role) = row.role else {
            return Err(ApiError::Unauthorized("this token was revoked: its member was removed from the team".into()));
        };
        let now = now_ms();
        if row.token.last_used.is_none_or(|t| now - t > TOUCH_EVERY_MS)
            && let Err(e) = self.store.touch_token(&row.token.id, now).await
        {
            tracing::warn!("could not record a token's use: {e}");
        }
        Ok(Caller {
            team_id: row.token.team_id,
            member_id: row.token.member_id,
            token_id: row.token.id,
            token_hash: hash.to_vec(),
            role,
            name_sealed: row.name_sealed.unwrap_or_default(),
        })
    }

    // ---- idempotency -----------------------------------------------------------------------

    /// The record of an earlier request with this key, if any; refuses a key reused for another
    /// request.
    async fn replayed(&self, caller: &Caller, idem: Option<&Idempotency>) -> Result<Option<IdempotencyRow>, ApiError> {
        let Some(idem) = idem else { return Ok(None) };
        let Some(row) = self.store.idempotency(&caller.team_id, &caller.member_id, &idem.key).await? else {
            return Ok(None);
        };
        if row.route != idem.route {
            return Err(ApiError::Conflict(format!(
                "this Idempotency-Key was used for `{}`; a key belongs to one request",
                row.route
            )));
        }
        Ok(Some(row))
    }

    fn idempotency_row(
        caller: &Caller,
        idem: Option<&Idempotency>,
        status: u16,
        id: Option<&str>,
    ) -> Option<IdempotencyRow> {
        idem.map(|i| IdempotencyRow {
            team_id: caller.team_id.clone(),
            member_id: caller.member_id.clone(),
            key: i.key.clone(),
            route: i.route.clone(),
            status,
            resource_id: id.map(str::to_owned),
            created: now_ms(),
        })
    }

    /// Commits a batch and wakes the team's listeners. `Some` is the record of a concurrent
    /// request with the same key that committed first (nothing was done).
    async fn commit(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        batch: Batch,
    ) -> Result<Option<IdempotencyRow>, DbError> {
        let team_id = caller.team_id.clone();
        match self.store.commit(batch).await {
            Ok(committed) => {
                for (team, seq) in committed.events {
                    self.notifier.notify(&team, seq);
                }
                Ok(None)
            }
            Err(DbError::IdempotencyReplay) => {
                let key = &idem.expect("only a batch with a key can be a replay").key;
                let row = self.store.idempotency(&team_id, &caller.member_id, key).await?;
                row.map(Some).ok_or(DbError::IdempotencyReplay)
            }
            Err(e) => Err(e),
        }
    }

    fn batch(&self, writes: Vec<Write>) -> Batch {
        Batch { writes, time: now_ms(), ..Batch::default() }
    }

    // ---- teams and invites -----------------------------------------------------------------

    fn open_team(&self, key: &TeamKey, row: &TeamRow) -> Result<api::Team, ApiError> {
        let name = key.open_string(&Place { column: "teams.name", team: &row.id, row: &row.id }, &row.name_sealed)?;
        Ok(api::Team { id: row.id.clone(), name, created: row.created })
    }

    async fn team_of(&self, caller: &Caller) -> Result<api::Team, ApiError> {
        let row = self
            .store
            .team(&caller.team_id)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("unknown token: its team was deleted".into()))?;
        let key = self.team_key(&caller.team_id).await?;
        self.open_team(&key, &row)
    }

    pub async fn team(&self, caller: &Caller) -> Result<api::Team, ApiError> {
        self.team_of(caller).await
    }

    /// An invite made from the server's command line, creating the team on first use. Without a
    /// role, the invite is for an admin while the team has no admin, and for a member after.
    pub async fn operator_invite(
        &self,
        team_name: &str,
        role: Option<Role>,
        ttl_hours: Option<u32>,
    ) -> Result<(api::Invite, api::Team, bool), ApiError> {
        validate::name("team", team_name)?;
        let mac = self.master.team_name_mac(team_name);
        let now = now_ms();
        let (team, created) = match self.store.team_by_name_mac(&mac).await? {
            Some(row) => (row, false),
            None => {
                let id = new_id();
                let (key, wrapped) = self.master.new_team_key(&id)?;
                let name_sealed = key.seal_str(&Place { column: "teams.name", team: &id, row: &id }, team_name);
                // The key first: a team never exists without its key (a key without its team is
                // swept at the next start).
                self.store.put_team_key(&id, wrapped, now).await?;
                let row = TeamRow { id: id.clone(), name_sealed, name_mac: mac, created: now };
                let mut batch = self.batch(vec![Write::InsertTeam(row.clone())]);
                batch.audit.push(audit::Draft::new(&id, OPERATOR, Action::TeamCreated, Some(&id)));
                self.store.commit(batch).await?;
                self.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Arc::new(key));
                (row, true)
            }
        };
        let role = match role {
            Some(r) => r,
            None if self.store.members(&team.id).await?.iter().any(|m| m.role == Role::Admin) => Role::Member,
            None => Role::Admin,
        };
        let invite = self.insert_invite(&team.id, OPERATOR, role, ttl_hours, None).await?;
        let key = self.team_key(&team.id).await?;
        Ok((invite, self.open_team(&key, &team)?, created))
    }

    async fn insert_invite(
        &self,
        team_id: &str,
        actor: &str,
        role: Role,
        ttl_hours: Option<u32>,
        idempotency: Option<IdempotencyRow>,
    ) -> Result<api::Invite, ApiError> {
        let hours = ttl_hours.unwrap_or(DEFAULT_INVITE_HOURS);
        if hours == 0 || hours > MAX_INVITE_HOURS {
            return Err(ApiError::invalid(
                "ttl_hours",
                format!("ttl_hours is {hours}; it must be 1 to {MAX_INVITE_HOURS}"),
            ));
        }
        let code = crypto::new_secret(INVITE_PREFIX);
        let now = now_ms();
        let expires = now + i64::from(hours) * 3_600_000;
        let row = InviteRow {
            hash: crypto::sha256(code.as_bytes()).to_vec(),
            team_id: team_id.to_string(),
            role,
            created: now,
            expires,
            used: None,
        };
        let mut batch = self.batch(vec![Write::InsertInvite(row)]);
        batch.audit.push(
            audit::Draft::new(team_id, actor, Action::InviteCreated, None).detail(format!("role={}", role.as_str())),
        );
        batch.idempotency = idempotency;
        match self.store.commit(batch).await {
            Ok(_) => Ok(api::Invite { code, role, expires }),
            Err(DbError::IdempotencyReplay) => Err(already_shown("invite")),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_invite(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        new: api::NewInvite,
    ) -> Result<Answer<api::Invite>, ApiError> {
        caller.require_admin("invite people")?;
        if self.replayed(caller, idem).await?.is_some() {
            return Err(already_shown("invite"));
        }
        let record = Self::idempotency_row(caller, idem, 201, None);
        let invite = self.insert_invite(&caller.team_id, &caller.member_id, new.role, new.ttl_hours, record).await?;
        Ok(answer(201, invite))
    }

    /// `POST /login`: redeems an invite, creates the member and their first token.
    pub async fn login(&self, login: api::Login) -> Result<Answer<api::Issued>, ApiError> {
        validate::login(&login)?;
        if !crypto::is_secret_shaped(&login.invite, INVITE_PREFIX) {
            return Err(ApiError::Unauthorized(
                "malformed invite code: expected `inv_` followed by 43 base64url characters".into(),
            ));
        }
        let hash = crypto::sha256(login.invite.as_bytes()).to_vec();
        let now = now_ms();
        let Some(invite) = self.store.invite(&hash).await? else {
            return Err(ApiError::Unauthorized("unknown invite code: ask an admin of the team for one".into()));
        };
        if invite.used.is_some() {
            return Err(ApiError::Unauthorized(
                "this invite code was used already; invites are single use: ask an admin for a new one".into(),
            ));
        }
        if invite.expires <= now {
            return Err(ApiError::Unauthorized("this invite code has expired: ask an admin for a new one".into()));
        }
        let team_id = invite.team_id.clone();
        let key = self.team_key(&team_id).await?;
        let member_id = new_id();
        let member = MemberRow {
            id: member_id.clone(),
            team_id: team_id.clone(),
            name_sealed: key.seal_str(&Place { column: "members.name", team: &team_id, row: &member_id }, &login.name),
            email_sealed: login
                .email
                .as_deref()
                .map(|e| key.seal_str(&Place { column: "members.email", team: &team_id, row: &member_id }, e)),
            role: invite.role,
            joined: now,
        };
        let label = login.token_label.clone().unwrap_or_else(|| "login".into());
        let (token, token_row) = self.new_token(&key, &team_id, &member_id, &label, now);
        let mut batch = self.batch(vec![
            Write::RedeemInvite { hash, now },
            Write::InsertMember(member.clone()),
            Write::InsertToken(token_row.clone()),
        ]);
        batch.audit = vec![
            audit::Draft::new(&team_id, &member_id, Action::SignIn, Some(&member_id)),
            audit::Draft::new(&team_id, &member_id, Action::MemberAdded, Some(&member_id))
                .detail(format!("role={}", invite.role.as_str())),
            audit::Draft::new(&team_id, &member_id, Action::TokenCreated, Some(&token_row.id)),
        ];
        match self.store.commit(batch).await {
            Ok(_) => {}
            Err(DbError::InviteGone) => {
                return Err(ApiError::Unauthorized("this invite code was used already or has expired".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let team_row =
            self.store.team(&team_id).await?.ok_or_else(|| ApiError::NotFound("the team was deleted".into()))?;
        Ok(answer(
            201,
            api::Issued {
                token,
                info: self.open_token(&key, &token_row)?,
                team: self.open_team(&key, &team_row)?,
                member: self.open_member(&key, &member)?,
            },
        ))
    }

    /// `DELETE /team`: every row of the team, then its key.
    pub async fn delete_team(&self, caller: &Caller) -> Result<(), ApiError> {
        caller.require_admin("delete the team")?;
        let mut batch = self.batch(vec![Write::DeleteTeam { team_id: caller.team_id.clone() }]);
        batch.audit.push(audit::Draft::new(
            &caller.team_id,
            &caller.member_id,
            Action::TeamDeleted,
            Some(&caller.team_id),
        ));
        match self.store.commit(batch).await {
            Ok(_) | Err(DbError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.delete_team_key(&caller.team_id).await?;
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&caller.team_id);
        self.notifier.close(&caller.team_id);
        tracing::info!("team {} deleted, and its data key destroyed", caller.team_id);
        Ok(())
    }

    // ---- members -----------------------------------------------------------------------------

    fn open_member(&self, key: &TeamKey, m: &MemberRow) -> Result<api::Member, ApiError> {
        let place = |column| Place { column, team: &m.team_id, row: &m.id };
        Ok(api::Member {
            id: m.id.clone(),
            name: key.open_string(&place("members.name"), &m.name_sealed)?,
            email: m.email_sealed.as_ref().map(|e| key.open_string(&place("members.email"), e)).transpose()?,
            role: m.role,
            joined: m.joined,
        })
    }

    async fn member_of(&self, caller: &Caller, member_id: &str) -> Result<api::Member, ApiError> {
        let row = self.store.member(&caller.team_id, member_id).await?.ok_or_else(|| member_not_found(member_id))?;
        let key = self.team_key(&caller.team_id).await?;
        self.open_member(&key, &row)
    }

    pub async fn me(&self, caller: &Caller) -> Result<api::Me, ApiError> {
        let key = self.team_key(&caller.team_id).await?;
        let token = self
            .store
            .token(&caller.team_id, &caller.token_id)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))?;
        Ok(api::Me {
            team: self.team_of(caller).await?,
            member: self.member_of(caller, &caller.member_id).await?,
            token: self.open_token(&key, &token)?,
        })
    }

    pub async fn members(&self, caller: &Caller) -> Result<Vec<api::Member>, ApiError> {
        let key = self.team_key(&caller.team_id).await?;
        self.store.members(&caller.team_id).await?.iter().map(|m| self.open_member(&key, m)).collect()
    }

    pub async fn set_role(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        member_id: &str,
        patch: api::MemberPatch,
    ) -> Result<Answer<api::Member>, ApiError> {
        caller.require_admin("change roles")?;
        if let Some(done) = self.replayed(caller, idem).await? {
            return Ok(answer(done.status, self.member_of(caller, member_id).await?));
        }
        let mut batch = self.batch(vec![Write::SetRole {
            team_id: caller.team_id.clone(),
            member_id: member_id.to_string(),
            role: patch.role,
        }]);
        batch.audit.push(
            audit::Draft::new(&caller.team_id, &caller.member_id, Action::RoleChanged, Some(member_id))
                .detail(format!("role={}", patch.role.as_str())),
        );
        batch.idempotency = Self::idempotency_row(caller, idem, 200, Some(member_id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => member_not_found(member_id),
            DbError::LastAdmin => last_admin(),
            e => e.into(),
        })?;
        let status = done.map_or(200, |r| r.status);
        self.notifier.poke(&caller.team_id);
        Ok(answer(status, self.member_of(caller, member_id).await?))
    }

    /// Removes a member (an admin, or a member leaving) and revokes their tokens.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        member_id: &str,
    ) -> Result<(), ApiError> {
        if member_id != caller.member_id {
            caller.require_admin("remove other members")?;
        }
        if self.replayed(caller, idem).await?.is_some() {
            return Ok(());
        }
        let mut batch = self.batch(vec![Write::DeleteMember {
            team_id: caller.team_id.clone(),
            member_id: member_id.to_string(),
            now: now_ms(),
        }]);
        batch.audit.push(audit::Draft::new(&caller.team_id, &caller.member_id, Action::MemberRemoved, Some(member_id)));
        // A member removing themself loses their records with them: nothing to record.
        if member_id != caller.member_id {
            batch.idempotency = Self::idempotency_row(caller, idem, 204, Some(member_id));
        }
        self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => member_not_found(member_id),
            DbError::LastAdmin => last_admin(),
            e => e.into(),
        })?;
        self.notifier.poke(&caller.team_id);
        Ok(())
    }

    // ---- tokens -----------------------------------------------------------------------------

    fn new_token(&self, key: &TeamKey, team_id: &str, member_id: &str, label: &str, now: i64) -> (String, TokenRow) {
        let token = crypto::new_secret(TOKEN_PREFIX);
        let id = new_id();
        let label_sealed = key.seal_str(&Place { column: "tokens.label", team: team_id, row: &id }, label);
        let row = TokenRow {
            id,
            team_id: team_id.to_string(),
            member_id: member_id.to_string(),
            hash: crypto::sha256(token.as_bytes()).to_vec(),
            label_sealed,
            created: now,
            last_used: None,
            revoked: None,
        };
        (token, row)
    }

    fn open_token(&self, key: &TeamKey, t: &TokenRow) -> Result<api::TokenInfo, ApiError> {
        Ok(api::TokenInfo {
            id: t.id.clone(),
            member_id: t.member_id.clone(),
            label: key.open_string(&Place { column: "tokens.label", team: &t.team_id, row: &t.id }, &t.label_sealed)?,
            created: t.created,
            last_used: t.last_used,
            revoked: t.revoked,
        })
    }

    /// The caller's tokens; an admin sees the whole team's.
    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<api::TokenInfo>, ApiError> {
        let key = self.team_key(&caller.team_id).await?;
        let only = (!caller.is_admin()).then_some(caller.member_id.as_str());
        self.store.tokens(&caller.team_id, only).await?.iter().map(|t| self.open_token(&key, t)).collect()
    }

    pub async fn create_token(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        new: api::NewToken,
    ) -> Result<Answer<api::Issued>, ApiError> {
        validate::name("label", &new.label)?;
        if self.replayed(caller, idem).await?.is_some() {
            return Err(already_shown("token"));
        }
        let key = self.team_key(&caller.team_id).await?;
        let (token, row) = self.new_token(&key, &caller.team_id, &caller.member_id, &new.label, now_ms());
        let mut batch = self.batch(vec![Write::InsertToken(row.clone())]);
        batch.audit.push(audit::Draft::new(&caller.team_id, &caller.member_id, Action::TokenCreated, Some(&row.id)));
        batch.idempotency = Self::idempotency_row(caller, idem, 201, Some(&row.id));
        if self.commit(caller, idem, batch).await?.is_some() {
            return Err(already_shown("token"));
        }
        Ok(answer(
            201,
            api::Issued {
                token,
                info: self.open_token(&key, &row)?,
                team: self.team_of(caller).await?,
                member: self.member_of(caller, &caller.member_id).await?,
            },
        ))
    }

    /// Revokes one of the caller's tokens, or (an admin) anyone's in the team.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        token_id: &str,
    ) -> Result<(), ApiError> {
        if self.replayed(caller, idem).await?.is_some() {
            return Ok(());
        }
        let token = self.store.token(&caller.team_id, token_id).await?.ok_or_else(|| token_not_found(token_id))?;
        if token.member_id != caller.member_id {
            caller.require_admin("revoke other members' tokens")?;
        }
        let mut batch = self.batch(vec![Write::RevokeToken {
            team_id: caller.team_id.clone(),
            token_id: token_id.to_string(),
            now: now_ms(),
        }]);
        batch.audit.push(audit::Draft::new(&caller.team_id, &caller.member_id, Action::TokenRevoked, Some(token_id)));
        if token_id != caller.token_id {
            batch.idempotency = Self::idempotency_row(caller, idem, 204, Some(token_id));
        }
        self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => token_not_found(token_id),
            e => e.into(),
        })?;
        self.notifier.poke(&caller.team_id);
        Ok(())
    }

    // ---- repositories ------------------------------------------------------------------------

    fn repo_id(key: &TeamKey, repo_key: &str) -> String {
        let mac = key.index_mac("repos.key", repo_key);
        let bytes: [u8; 16] = mac[..16].try_into().expect("a MAC is 32 bytes");
        uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
    }

    fn repo_row(&self, key: &TeamKey, team_id: &str, identity: &api::RepoIdentity, now: i64) -> RepoRow {
        let id = Self::repo_id(key, &identity.key);
        let roots = serde_json::to_vec(&identity.roots).expect("strings serialize");
        RepoRow {
            key_sealed: key.seal_str(&Place { column: "repos.key", team: team_id, row: &id }, &identity.key),
            roots_sealed: key.seal(&Place { column: "repos.roots", team: team_id, row: &id }, &roots),
            id,
            team_id: team_id.to_string(),
            created: now,
        }
    }

    fn open_repo(&self, key: &TeamKey, r: &RepoRow) -> Result<api::Repository, ApiError> {
        let place = |column| Place { column, team: &r.team_id, row: &r.id };
        let roots = key.open(&place("repos.roots"), &r.roots_sealed)?;
        Ok(api::Repository {
            id: r.id.clone(),
            key: key.open_string(&place("repos.key"), &r.key_sealed)?,
            roots: serde_json::from_slice(&roots).map_err(|e| ApiError::Internal(format!("repository roots: {e}")))?,
            created: r.created,
        })
    }

    pub async fn repos(&self, caller: &Caller) -> Result<Vec<api::Repository>, ApiError> {
        let key = self.team_key(&caller.team_id).await?;
        self.store.repos(&caller.team_id).await?.iter().map(|r| self.open_repo(&key, r)).collect()
    }

    /// `PUT /repos`: idempotent by key (the first registration's roots are kept).
    pub async fn put_repo(&self, caller: &Caller, identity: api::RepoIdentity) -> Result<api::Repository, ApiError> {
        validate::repo(&identity)?;
        let key = self.team_key(&caller.team_id).await?;
        let row = self.repo_row(&key, &caller.team_id, &identity, now_ms());
        self.store.commit(self.batch(vec![Write::InsertRepo(row.clone())])).await?;
        let stored = self.store.repo(&caller.team_id, &row.id).await?.unwrap_or(row);
        self.open_repo(&key, &stored)
    }

    // ---- codemarks ---------------------------------------------------------------------------

    fn open_thread(&self, key: &TeamKey, t: &Thread) -> Result<api::Codemark, ApiError> {
        let c = &t.codemark;
        let place = |column| Place { column, team: &c.team_id, row: &c.id };
        let name = |sealed: &Option<Vec<u8>>, member: &str| -> Result<String, ApiError> {
            match sealed {
                Some(s) => Ok(key.open_string(&Place { column: "members.name", team: &c.team_id, row: member }, s)?),
                None => Ok(REMOVED_MEMBER.to_string()),
            }
        };
        let anchors = key.open(&place("codemarks.anchors"), &c.anchors_sealed)?;
        let replies = t
            .replies
            .iter()
            .map(|(r, author)| {
                Ok(api::Reply {
                    id: r.id.clone(),
                    author: name(author, &r.author_id)?,
                    author_id: Some(r.author_id.clone()),
                    body: key
                        .open_string(&Place { column: "replies.body", team: &r.team_id, row: &r.id }, &r.body_sealed)?,
                    created: r.created,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(api::Codemark {
            id: c.id.clone(),
            repo: key
                .open_string(&Place { column: "repos.key", team: &c.team_id, row: &c.repo_id }, &t.repo_key_sealed)?,
            kind: c.kind.clone(),
            title: c.title_sealed.as_ref().map(|s| key.open_string(&place("codemarks.title"), s)).transpose()?,
            body: key.open_string(&place("codemarks.body"), &c.body_sealed)?,
            author: name(&t.author_name_sealed, &c.author_id)?,
            author_id: Some(c.author_id.clone()),
            status: c.status.clone(),
            anchors: serde_json::from_slice(&anchors)
                .map_err(|e| ApiError::Internal(format!("codemark anchors: {e}")))?,
            replies,
            created: c.created,
            updated: c.updated,
            review: self.open_review_ref(key, c)?,
        })
    }

    /// A review comment's link; its sealed copy must agree with the review id in the clear.
    fn open_review_ref(&self, key: &TeamKey, c: &CodemarkRow) -> Result<Option<api::ReviewRef>, ApiError> {
        let Some(sealed) = &c.review_sealed else { return Ok(None) };
        let place = Place { column: "codemarks.review", team: &c.team_id, row: &c.id };
        let link: api::ReviewRef = serde_json::from_slice(&key.open(&place, sealed)?)
            .map_err(|e| ApiError::Internal(format!("codemark {}'s review link: {e}", c.id)))?;
        if c.review_id.as_deref() != Some(link.review.as_str()) {
            return Err(ApiError::Internal(format!("codemark {}'s review link does not match its row", c.id)));
        }
        Ok(Some(link))
    }

    async fn thread(&self, caller: &Caller, id: &str) -> Result<Thread, ApiError> {
        let filter = ThreadFilter { ids: Some(vec![id.to_string()]), ..ThreadFilter::default() };
        self.store.threads(&caller.team_id, filter).await?.pop().ok_or_else(|| codemark_not_found(id))
    }

    pub async fn codemark(&self, caller: &Caller, id: &str) -> Result<api::Codemark, ApiError> {
        let thread = self.thread(caller, id).await?;
        let key = self.team_key(&caller.team_id).await?;
        self.open_thread(&key, &thread)
    }

    /// The team's codemarks, or one repository's (an unknown key has none).
    pub async fn codemarks(&self, caller: &Caller, repo: Option<&str>) -> Result<Vec<api::Codemark>, ApiError> {
        let key = self.team_key(&caller.team_id).await?;
        let filter = ThreadFilter { repo_id: repo.map(|r| Self::repo_id(&key, r)), ..ThreadFilter::default() };
        self.store.threads(&caller.team_id, filter).await?.iter().map(|t| self.open_thread(&key, t)).collect()
    }

    fn seal_anchors(key: &TeamKey, team_id: &str, id: &str, anchors: &[api::Anchor]) -> Vec<u8> {
        let json = serde_json::to_vec(anchors).expect("anchors serialize");
        key.seal(&Place { column: "codemarks.anchors", team: team_id, row: id }, &json)
    }

    /// The codemark a replayed request's record points at, as it is now.
    async fn replay_codemark(&self, caller: &Caller, done: IdempotencyRow) -> Result<Answer<api::Codemark>, ApiError> {
        let id = done.resource_id.unwrap_or_default();
        match self.codemark(caller, &id).await {
            Ok(c) => Ok(answer(done.status, c)),
            Err(ApiError::NotFound(_)) => {
                Err(ApiError::NotFound(format!("codemark {id} was made by this request, then deleted")))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn create_codemark(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        new: api::NewCodemark,
    ) -> Result<Answer<api::Codemark>, ApiError> {
        if let Some(done) = self.replayed(caller, idem).await? {
            return self.replay_codemark(caller, done).await;
        }
        validate::new_codemark(&new)?;
        if let Some(link) = &new.review {
            self.check_review_ref(caller, link).await?;
        }
        let key = self.team_key(&caller.team_id).await?;
        let team = &caller.team_id;
        let now = now_ms();
        let repo = self.repo_row(&key, team, &api::RepoIdentity { key: new.repo.clone(), roots: vec![] }, now);
        let place = |column| Place { column, team, row: &new.id };
        let review_sealed = new.review.as_ref().map(|link| {
            key.seal(&place("codemarks.review"), &serde_json::to_vec(link).expect("a review link serializes"))
        });
        let row = CodemarkRow {
            team_id: team.clone(),
            id: new.id.clone(),
            repo_id: repo.id.clone(),
            kind: new.kind.clone(),
            status: new.status.clone(),
            author_id: caller.member_id.clone(),
            title_sealed: new.title.as_deref().map(|t| key.seal_str(&place("codemarks.title"), t)),
            body_sealed: key.seal_str(&place("codemarks.body"), &new.body),
            anchors_sealed: Self::seal_anchors(&key, team, &new.id, &new.anchors),
            created: new.created,
            updated: new.created,
            review_id: new.review.as_ref().map(|link| link.review.clone()),
            review_sealed,
        };
        let mut batch = self.batch(vec![Write::InsertRepo(repo), Write::InsertCodemark(row)]);
        batch.events.push(event(team, Subject::Codemark, &new.id, false));
        batch.idempotency = Self::idempotency_row(caller, idem, 201, Some(&new.id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::Exists => ApiError::Conflict(format!("codemark {} exists already", new.id)),
            // The review was deleted since it was checked.
            DbError::NotFound => match &new.review {
                Some(link) => reviews::missing_review_ref(&link.review),
                None => DbError::NotFound.into(),
            },
            e => e.into(),
        })?;
        if let Some(record) = done {
            return self.replay_codemark(caller, record).await;
        }
        // The codemark is what was sent, by the caller: no need to read it back.
        let author =
            key.open_string(&Place { column: "members.name", team, row: &caller.member_id }, &caller.name_sealed)?;
        Ok(answer(
            201,
            api::Codemark {
                id: new.id,
                repo: new.repo,
                kind: new.kind,
                title: new.title,
                body: new.body,
                author,
                author_id: Some(caller.member_id.clone()),
                status: new.status,
                anchors: new.anchors,
                replies: Vec::new(),
                created: new.created,
                updated: new.created,
                review: new.review,
            },
        ))
    }

    pub async fn patch_codemark(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        id: &str,
        patch: api::CodemarkPatch,
    ) -> Result<Answer<api::Codemark>, ApiError> {
        if let Some(done) = self.replayed(caller, idem).await? {
            return self.replay_codemark(caller, done).await;
        }
        let thread = self.thread(caller, id).await?;
        validate::patch(&patch)?;
        let changes_content = patch.body.is_some() || patch.title.is_some() || patch.anchors.is_some();
        if changes_content && thread.codemark.author_id != caller.member_id && !caller.is_admin() {
            return Err(ApiError::Forbidden(
                "only its author or an admin can edit a codemark's body, title or anchors; anyone can change its status"
                    .into(),
            ));
        }
        let key = self.team_key(&caller.team_id).await?;
        let team = &caller.team_id;
        let place = |column| Place { column, team, row: id };
        let mut batch = self.batch(vec![Write::UpdateCodemark {
            team_id: team.clone(),
            id: id.to_string(),
            title_sealed: patch
                .title
                .as_ref()
                .map(|t| t.as_deref().map(|t| key.seal_str(&place("codemarks.title"), t))),
            body_sealed: patch.body.as_deref().map(|b| key.seal_str(&place("codemarks.body"), b)),
            status: patch.status.clone(),
            anchors_sealed: patch.anchors.as_deref().map(|a| Self::seal_anchors(&key, team, id, a)),
            updated: now_ms(),
        }]);
        batch.events.push(event(team, Subject::Codemark, id, false));
        batch.idempotency = Self::idempotency_row(caller, idem, 200, Some(id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => codemark_not_found(id),
            e => e.into(),
        })?;
        if let Some(record) = done {
            return self.replay_codemark(caller, record).await;
        }
        Ok(answer(200, self.codemark(caller, id).await?))
    }

    pub async fn delete_codemark(&self, caller: &Caller, idem: Option<&Idempotency>, id: &str) -> Result<(), ApiError> {
        if self.replayed(caller, idem).await?.is_some() {
            return Ok(());
        }
        let thread = self.thread(caller, id).await?;
        if thread.codemark.author_id != caller.member_id && !caller.is_admin() {
            return Err(ApiError::Forbidden("only its author or an admin can delete a codemark".into()));
        }
        let team = &caller.team_id;
        let mut batch = self.batch(vec![Write::DeleteCodemark { team_id: team.clone(), id: id.to_string() }]);
        batch.events.push(event(team, Subject::Codemark, id, true));
        batch.audit.push(audit::Draft::new(team, &caller.member_id, Action::CodemarkDeleted, Some(id)));
        batch.idempotency = Self::idempotency_row(caller, idem, 204, Some(id));
        self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => codemark_not_found(id),
            e => e.into(),
        })?;
        Ok(())
    }

    pub async fn add_reply(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        codemark_id: &str,
        new: api::NewReply,
    ) -> Result<Answer<api::Codemark>, ApiError> {
        if let Some(done) = self.replayed(caller, idem).await? {
            return self.replay_codemark(caller, done).await;
        }
        validate::reply(&new)?;
        let key = self.team_key(&caller.team_id).await?;
        let team = &caller.team_id;
        let row = ReplyRow {
            team_id: team.clone(),
            id: new.id.clone(),
            codemark_id: codemark_id.to_string(),
            author_id: caller.member_id.clone(),
            body_sealed: key.seal_str(&Place { column: "replies.body", team, row: &new.id }, &new.body),
            created: new.created,
        };
        let touch = Write::UpdateCodemark {
            team_id: team.clone(),
            id: codemark_id.to_string(),
            title_sealed: None,
            body_sealed: None,
            status: None,
            anchors_sealed: None,
            updated: new.created,
        };
        let mut batch = self.batch(vec![Write::InsertReply(row), touch]);
        batch.events.push(event(team, Subject::Codemark, codemark_id, false));
        batch.idempotency = Self::idempotency_row(caller, idem, 201, Some(codemark_id));
        let done = self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => codemark_not_found(codemark_id),
            DbError::Exists => ApiError::Conflict(format!("reply {} exists already", new.id)),
            e => e.into(),
        })?;
        if let Some(record) = done {
            return self.replay_codemark(caller, record).await;
        }
        Ok(answer(201, self.codemark(caller, codemark_id).await?))
    }

    pub async fn delete_reply(
        &self,
        caller: &Caller,
        idem: Option<&Idempotency>,
        codemark_id: &str,
        reply_id: &str,
    ) -> Result<(), ApiError> {
        if self.replayed(caller, idem).await?.is_some() {
            return Ok(());
        }
        let thread = self.thread(caller, codemark_id).await?;
        let reply_missing = || ApiError::NotFound(format!("no reply {reply_id} on codemark {codemark_id}"));
        let (reply, _) = thread.replies.iter().find(|(r, _)| r.id == reply_id).ok_or_else(reply_missing)?;
        if reply.author_id != caller.member_id && !caller.is_admin() {
            return Err(ApiError::Forbidden("only its author or an admin can delete a reply".into()));
        }
        let team = &caller.team_id;
        let mut batch = self.batch(vec![
            Write::DeleteReply {
                team_id: team.clone(),
                codemark_id: codemark_id.to_string(),
                id: reply_id.to_string(),
            },
            Write::UpdateCodemark {
                team_id: team.clone(),
                id: codemark_id.to_string(),
                title_sealed: None,
                body_sealed: None,
                status: None,
                anchors_sealed: None,
                updated: now_ms(),
            },
        ]);
        batch.events.push(event(team, Subject::Codemark, codemark_id, false));
        batch.audit.push(audit::Draft::new(team, &caller.member_id, Action::ReplyDeleted, Some(reply_id)));
        batch.idempotency = Self::idempotency_row(caller, idem, 204, Some(reply_id));
        self.commit(caller, idem, batch).await.map_err(|e| match e {
            DbError::NotFound => reply_missing(),
            e => e.into(),
        })?;
        Ok(())
    }

    // ---- changes, export, audit -------------------------------------------------------------

    /// Events after `after`, at most `limit`, each codemark and review once (at its latest
    /// event), carrying it as it is now (or as deleted, when it is gone).
    pub async fn changes(&self, caller: &Caller, after: i64, limit: usize) -> Result<api::Changes, ApiError> {
        let mut rows = self.store.events(&caller.team_id, after, limit + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let cursor = rows.last().map_or(after, |r| r.seq);
        let latest: HashMap<(Subject, &str), i64> = rows.iter().map(|r| ((r.subject, r.id.as_str()), r.seq)).collect();
        let kept: Vec<_> = rows.iter().filter(|r| latest[&(r.subject, r.id.as_str())] == r.seq).collect();
        let ids_of = |subject: Subject| -> Vec<String> {
            kept.iter().filter(|r| r.subject == subject).map(|r| r.id.clone()).collect()
        };
        let (codemark_ids, review_ids) = (ids_of(Subject::Codemark), ids_of(Subject::Review));
        let key = self.team_key(&caller.team_id).await?;
        let threads = if codemark_ids.is_empty() {
            Vec::new()
        } else {
            let filter = ThreadFilter { ids: Some(codemark_ids), ..ThreadFilter::default() };
            self.store.threads(&caller.team_id, filter).await?
        };
        let reviews = if review_ids.is_empty() {
            Vec::new()
        } else {
            self.store
                .reviews(&caller.team_id, ReviewFilter { ids: Some(review_ids), ..ReviewFilter::default() })
                .await?
        };
        let mut live_codemarks: HashMap<String, api::Codemark> = HashMap::new();
        for t in &threads {
            live_codemarks.insert(t.codemark.id.clone(), self.open_thread(&key, t)?);
        }
        let mut live_reviews: HashMap<String, api::Review> = HashMap::new();
        for r in &reviews {
            live_reviews.insert(r.review.id.clone(), self.open_review(&key, r)?);
        }
        let events = kept
            .into_iter()
            .map(|r| api::Event {
                cursor: r.seq.to_string(),
                change: match r.subject {
                    Subject::Codemark => match live_codemarks.remove(&r.id) {
                        Some(codemark) => api::Change::Codemark { codemark },
                        None => api::Change::CodemarkDeleted { id: r.id.clone() },
                    },
                    Subject::Review => match live_reviews.remove(&r.id) {
                        Some(review) => api::Change::Review { review },
                        None => api::Change::ReviewDeleted { id: r.id.clone() },
                    },
                },
            })
            .collect();
        Ok(api::Changes { events, cursor: cursor.to_string(), more })
    }

    /// Everything the server holds about the caller (audited).
    pub async fn export(&self, caller: &Caller) -> Result<api::Export, ApiError> {
        let key = self.team_key(&caller.team_id).await?;
        let tokens = self.store.tokens(&caller.team_id, Some(&caller.member_id)).await?;
        let filter = ThreadFilter { author_id: Some(caller.member_id.clone()), ..ThreadFilter::default() };
        let threads = self.store.threads(&caller.team_id, filter).await?;
        let own: std::collections::HashSet<&str> = threads.iter().map(|t| t.codemark.id.as_str()).collect();
        let member = self.member_of(caller, &caller.member_id).await?;
        let replies = self
            .store
            .replies_by(&caller.team_id, &caller.member_id)
            .await?
            .into_iter()
            .filter(|(r, _)| !own.contains(r.codemark_id.as_str()))
            .map(|(r, _)| {
                let place = Place { column: "replies.body", team: &r.team_id, row: &r.id };
                Ok(api::ExportedReply {
                    codemark_id: r.codemark_id.clone(),
                    reply: api::Reply {
                        id: r.id.clone(),
                        author: member.name.clone(),
                        author_id: Some(r.author_id.clone()),
                        body: key.open_string(&place, &r.body_sealed)?,
                        created: r.created,
                    },
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let reviews = self
            .store
            .reviews(
                &caller.team_id,
                ReviewFilter { author_id: Some(caller.member_id.clone()), ..ReviewFilter::default() },
            )
            .await?;
        let export = api::Export {
            exported: now_ms(),
            team: self.team_of(caller).await?,
            member,
            tokens: tokens.iter().map(|t| self.open_token(&key, t)).collect::<Result<_, _>>()?,
            codemarks: threads.iter().map(|t| self.open_thread(&key, t)).collect::<Result<_, _>>()?,
            replies,
            reviews: reviews.iter().map(|r| self.open_review(&key, r)).collect::<Result<_, _>>()?,
        };
        let mut batch = self.batch(Vec::new());
        batch.audit.push(audit::Draft::new(
            &caller.team_id,
            &caller.member_id,
            Action::Export,
            Some(&caller.member_id),
        ));
        self.store.commit(batch).await?;
        Ok(export)
    }

    /// The team's audit entries (admins only).
    pub async fn audit(&self, caller: &Caller, after: i64, limit: usize) -> Result<Vec<api::AuditEntry>, ApiError> {
        caller.require_admin("read the audit log")?;
        Ok(self
            .store
            .audit(Some(&caller.team_id), after, limit)
            .await?
            .into_iter()
            .map(|e| api::AuditEntry {
                seq: e.seq,
                time: e.time,
                actor_id: e.actor_id,
                action: e.action,
                target_id: e.target_id,
                detail: e.detail,
            })
            .collect())
    }
}

fn already_shown(what: &str) -> ApiError {
    ApiError::Conflict(format!(
        "this Idempotency-Key made a {what} already; its secret was shown once and is not kept: ask for a new {what} \
         with a new key"
    ))
}

fn member_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no member {id} in this team"))
}

fn token_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no token {id} in this team"))
}

fn codemark_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no codemark {id} in this team"))
}

fn last_admin() -> ApiError {
    ApiError::Conflict("this is the team's last admin: make another member admin first".into())
}
