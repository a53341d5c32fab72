//! Keys and sealing: the master key, per-team data keys, sealed values, lookup MACs, token
//! hashes and random secrets. **The only place that knows the cipher** (AES-256-GCM-SIV
//! through aws-lc-rs, already in the build for TLS).
//!
//! - A sealed value is `1 || nonce (12 bytes) || ciphertext || tag (16 bytes)`, sealed under the
//!   team's data key with associated data naming its place (`table.column`, team, row id), so a
//!   value copied into another row or column no longer opens.
//! - A team's data key is 32 random bytes, wrapped by the master key with the team id as
//!   associated data. The wrapped key is stored in `keys.db`, never beside the data.
//! - Lookups on sealed values use MACs, never the clear value: team names under a key derived
//!   from the master key (a team must be found before its key is known), repository keys under a
//!   key derived from the team's data key (so they die with it).
//! - Tokens and invite codes are stored only as SHA-256 hashes: they are 256 random bits, so a
//!   plain hash cannot be reversed by guessing.
//!
//! GCM-SIV rather than GCM: nonces are random (several server processes seal under one team key,
//! so no counter can be shared), and a repeated random nonce in GCM-SIV reveals at most that two
//! values were equal, where in GCM it would leak the authentication key.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::{digest, hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Bytes in every key this module makes or reads.
pub const KEY_BYTES: usize = 32;
/// What a sealed value starts with: the format's version.
const SEALED_V1: u8 = 1;
const TAG_LEN: usize = 16;

/// Why a key could not be read or a value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the master key {origin} is not a key: expected 32 bytes written as 64 hexadecimal characters or as base64 \
         ({detail})"
    )]
    BadMasterKey { origin: String, detail: String },
    #[error("cannot read the master key file {path}: {cause}")]
    ReadKeyFile { path: String, cause: std::io::Error },
    #[error("cannot write the master key file {path}: {cause}")]
    WriteKeyFile { path: String, cause: std::io::Error },
    /// The value was sealed under another key, for another place, or was altered.
    #[error("a sealed value does not open ({place}): wrong key, moved between rows, or altered")]
    Open { place: String },
    #[error("the system's random number generator failed")]
    Random,
}

/// The key that wraps every team's data key. Read from a key file or the environment; never
/// stored in a database.
#[derive(Clone)]
pub struct MasterKey {
    wrap: std::sync::Arc<RandomizedNonceKey>,
    team_name_mac: hmac::Key,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses 64 hexadecimal characters or base64 of 32 bytes (surrounding whitespace ignored).
    /// `origin` names where the text came from, for the error.
    pub fn parse(text: &str, origin: &str) -> Result<MasterKey, CryptoError> {
        let text = text.trim();
        let bad = |detail: String| CryptoError::BadMasterKey { origin: origin.to_string(), detail };
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text).ok_or_else(|| bad("not hexadecimal".into()))?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|e| bad(format!("not hexadecimal, and not base64: {e}")))?
        };
        if bytes.len() != KEY_BYTES {
            return Err(bad(format!("it holds {} bytes", bytes.len())));
        }
        Ok(MasterKey::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> MasterKey {
        let wrap = RandomizedNonceKey::new(&AES_256_GCM_SIV, &derive(bytes, b"marginalia master: wrap team keys"))
            .expect("a 32-byte key is a valid AES-256 key");
        let team_name_mac = hmac::Key::new(hmac::HMAC_SHA256, &derive(bytes, b"marginalia master: team name index"));
        MasterKey { wrap: std::sync::Arc::new(wrap), team_name_mac }
    }

    /// Reads a key file.
    pub fn read_file(path: &Path) -> Result<MasterKey, CryptoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|cause| CryptoError::ReadKeyFile { path: path.display().to_string(), cause })?;
        MasterKey::parse(&text, &format!("in {}", path.display()))
    }

    /// Makes a new random key and writes it to `path` as hex, readable by its owner only. Fails
    /// when the file exists.
    pub fn create_file(path: &Path) -> Result<MasterKey, CryptoError> {
        let bytes = random_bytes::<KEY_BYTES>()?;
        let err = |cause| CryptoError::WriteKeyFile { path: path.display().to_string(), cause };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(err)?;
        std::io::Write::write_all(&mut file, format!("{}\n", encode_hex(&bytes)).as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(MasterKey::from_bytes(&bytes))
    }

    /// A new team data key, and the same key wrapped for storage.
    pub fn new_team_key(&self, team_id: &str) -> Result<(TeamKey, Vec<u8>), CryptoError> {
        let bytes = random_bytes::<KEY_BYTES>()?;
        let wrapped = seal_with(&self.wrap, &wrap_aad(team_id), &bytes)?;
        Ok((TeamKey::from_bytes(&bytes), wrapped))
    }

    /// Opens a wrapped team key.
    pub fn unwrap_team_key(&self, team_id: &str, wrapped: &[u8]) -> Result<TeamKey, CryptoError> {
        let bytes = open_with(&self.wrap, &wrap_aad(team_id), wrapped)
            .ok_or_else(|| CryptoError::Open { place: format!("team key of {team_id}") })?;
        if bytes.len() != KEY_BYTES {
            return Err(CryptoError::Open { place: format!("team key of {team_id}") });
        }
        Ok(TeamKey::from_bytes(&bytes))
    }

    /// A team key wrapped by this master key, wrapped anew by `new` (rotating the master key).
    pub fn rewrap_team_key(&self, team_id: &str, wrapped: &[u8], new: &MasterKey) -> Result<Vec<u8>, CryptoError> {
        let bytes = open_with(&self.wrap, &wrap_aad(team_id), wrapped)
            .filter(|b| b.len() == KEY_BYTES)
            .ok_or_else(|| CryptoError::Open { place: format!("team key of {team_id}") })?;
        seal_with(&new.wrap, &wrap_aad(team_id), &bytes)
    }

    /// The lookup MAC of a team name (`serve invite --team NAME` finds its team by it).
    pub fn team_name_mac(&self, name: &str) -> Vec<u8> {
        hmac::sign(&self.team_name_mac, name.as_bytes()).as_ref().to_vec()
    }
}

fn wrap_aad(team_id: &str) -> Vec<u8> {
    format!("marginalia team key v1:{team_id}").into_bytes()
}

/// One team's data key: seals the team's text and keys its lookup MACs.
pub struct TeamKey {
    seal: RandomizedNonceKey,
    index: hmac::Key,
}

impl fmt::Debug for TeamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TeamKey(..)")
    }
}

impl TeamKey {
    fn from_bytes(bytes: &[u8]) -> TeamKey {
        TeamKey {
            seal: RandomizedNonceKey::new(&AES_256_GCM_SIV, &derive(bytes, b"marginalia team: seal"))
                .expect("a 32-byte key is a valid AES-256 key"),
            index: hmac::Key::new(hmac::HMAC_SHA256, &derive(bytes, b"marginalia team: index")),
        }
    }

    /// Seals `clear` for one place (see [`Place`]).
    pub fn seal(&self, place: &Place<'_>, clear: &[u8]) -> Vec<u8> {
        // Sealing fails only if the system's RNG does, which nothing here can recover from.
        seal_with(&self.seal, &place.aad(), clear).expect("the system's random number generator works")
    }

    pub fn seal_str(&self, place: &Place<'_>, clear: &str) -> Vec<u8> {
        self.seal(place, clear.as_bytes())
    }

    pub fn open(&self, place: &Place<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.seal, &place.aad(), sealed).ok_or_else(|| CryptoError::Open { place: place.to_string() })
    }

    pub fn open_string(&self, place: &Place<'_>, sealed: &[u8]) -> Result<String, CryptoError> {
        let bytes = self.open(place, sealed)?;
        String::from_utf8(bytes).map_err(|_| CryptoError::Open { place: place.to_string() })
    }

    /// The lookup MAC of a value within this team (a repository key).
    pub fn index_mac(&self, what: &str, value: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(what.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        ctx.sign().as_ref().to_vec()
    }
}

/// Where a sealed value lives: bound into its associated data so it opens nowhere else.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub column: &'static str,
    pub team: &'a str,
    pub row: &'a str,
}

impl Place<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("v1\0{}\0{}\0{}", self.column, self.team, self.row).into_bytes()
    }
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of row {} in team {}", self.column, self.row, self.team)
    }
}

fn seal_with(key: &RandomizedNonceKey, aad: &[u8], clear: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut data = Vec::with_capacity(1 + NONCE_LEN + clear.len() + TAG_LEN);
    data.extend_from_slice(clear);
    let nonce = key.seal_in_place_append_tag(Aad::from(aad), &mut data).map_err(|_| CryptoError::Random)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
    out.push(SEALED_V1);
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&data);
    Ok(out)
}

fn open_with(key: &RandomizedNonceKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEALED_V1 {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).ok()?;
    let mut data = sealed[1 + NONCE_LEN..].to_vec();
    let clear_len = key.open_in_place(nonce, Aad::from(aad), &mut data).ok()?.len();
    data.truncate(clear_len);
    Some(data)
}

/// A sub-key for one purpose, so one secret never serves two.
fn derive(secret: &[u8], purpose: &[u8]) -> [u8; KEY_BYTES] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), purpose);
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(tag.as_ref());
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// `N` bytes from the system's secure random number generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    rand::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// A new secret: `prefix` and 256 random bits in base64url (43 characters).
pub fn new_secret(prefix: &str) -> String {
    let bytes = random_bytes::<32>().expect("the system's random number generator works");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `text` has the shape of a secret made by [`new_secret`] with this prefix.
pub fn is_secret_shaped(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 43 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::parse(&"ab".repeat(32), "in a test").unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_own_place() {
        let (key, _) = master().new_team_key("t1").unwrap();
        let here = Place { column: "codemarks.body", team: "t1", row: "c1" };
        let sealed = key.seal_str(&here, "the body");
        assert_eq!(key.open_string(&here, &sealed).unwrap(), "the body");
        let other_row = Place { row: "c2", ..here };
        assert!(key.open(&other_row, &sealed).is_err(), "moved to another row");
        let other_column = Place { column: "codemarks.title", ..here };
        assert!(key.open(&other_column, &sealed).is_err(), "moved to another column");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(&here, &altered).is_err(), "altered");
        assert_ne!(key.seal_str(&here, "the body"), sealed, "nonces are random");
    }

    #[test]
    fn a_team_key_unwraps_only_with_its_master_and_team() {
        let m = master();
        let (key, wrapped) = m.new_team_key("t1").unwrap();
        let place = Place { column: "x", team: "t1", row: "r" };
        let sealed = key.seal_str(&place, "v");
        let again = m.unwrap_team_key("t1", &wrapped).unwrap();
        assert_eq!(again.open_string(&place, &sealed).unwrap(), "v");
        assert!(m.unwrap_team_key("t2", &wrapped).is_err(), "another team's id");
        let other = MasterKey::parse(&"cd".repeat(32), "x").unwrap();
        assert!(other.unwrap_team_key("t1", &wrapped).is_err(), "another master key");
    }

    #[test]
    fn a_rewrapped_team_key_opens_with_the_new_master_only_and_seals_as_before() {
        let (old, new) = (master(), MasterKey::parse(&"cd".repeat(32), "x").unwrap());
        let (key, wrapped) = old.new_team_key("t1").unwrap();
        let place = Place { column: "x", team: "t1", row: "r" };
        let sealed = key.seal_str(&place, "kept");
        let rewrapped = old.rewrap_team_key("t1", &wrapped, &new).unwrap();
        assert!(old.unwrap_team_key("t1", &rewrapped).is_err());
        let again = new.unwrap_team_key("t1", &rewrapped).unwrap();
        assert_eq!(again.open_string(&place, &sealed).unwrap(), "kept", "the data key itself is unchanged");
        assert!(new.rewrap_team_key("t1", &wrapped, &old).is_err(), "only the master that wrapped it rewraps it");
    }

    #[test]
    fn master_keys_are_read_as_hex_or_base64_and_anything_else_is_refused() {
        let hex = "0f".repeat(32);
        let b64 = STANDARD.encode([0x0fu8; 32]);
        assert_eq!(master_mac(&hex), master_mac(&b64));
        let short = MasterKey::parse("abcd", "in MARGINALIA_MASTER_KEY").unwrap_err().to_string();
        assert!(short.contains("in MARGINALIA_MASTER_KEY") && short.contains("2 bytes"), "{short}");
        assert!(MasterKey::parse("not a key!", "x").is_err());
    }

    fn master_mac(text: &str) -> Vec<u8> {
        MasterKey::parse(text, "x").unwrap().team_name_mac("team")
    }

    #[test]
    fn secrets_have_their_documented_shape() {
        let t = new_secret("mrg_");
        assert_eq!(t.len(), 4 + 43);
        assert!(is_secret_shaped(&t, "mrg_"));
        assert!(!is_secret_shaped(&t[..40], "mrg_"));
        assert!(!is_secret_shaped(&t, "inv_"));
        assert_eq!(decode_hex(&encode_hex(&[0, 255, 16])).unwrap(), vec![0, 255, 16]);
    }
}
