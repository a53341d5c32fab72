//! Checks on what clients send, beyond its JSON shape: sizes against [`crate::api::limits`],
//! ids, kinds, statuses, line ranges. Pure; every refusal names the field at fault
//! (`anchors[0].text is 300000 bytes; the limit is 262144`).

use super::error::ApiError;
use crate::api::limits::{MAX_ANCHORS, MAX_BODY_BYTES, MAX_NAME_BYTES, MAX_SNIPPET_BYTES, MAX_TITLE_BYTES};
use crate::api::{Anchor, CodemarkPatch, Login, NewCodemark, NewReply, RepoIdentity};

/// Kinds the server keeps; bookmarks are private.
pub const KINDS: [&str; 3] = ["comment", "question", "issue"];
pub const STATUSES: [&str; 2] = ["open", "resolved"];
/// Root commits listed for one repository.
pub const MAX_ROOTS: usize = 16;
/// The `Idempotency-Key` header's longest value.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

type Checked = Result<(), ApiError>;

pub fn max_bytes(field: &str, value: &str, limit: usize) -> Checked {
    if value.len() > limit {
        return Err(ApiError::TooLarge {
            message: format!("{field} is {} bytes; the limit is {limit}", value.len()),
            field: Some(field.to_string()),
        });
    }
    Ok(())
}

/// A name-like value: not empty (after trimming), within [`MAX_NAME_BYTES`], no control characters.
pub fn name(field: &str, value: &str) -> Checked {
    max_bytes(field, value, MAX_NAME_BYTES)?;
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, format!("{field} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, format!("{field} contains control characters")));
    }
    Ok(())
}

pub fn uuid(field: &str, value: &str) -> Checked {
    if uuid::Uuid::try_parse(value).is_err() {
        return Err(ApiError::invalid(field, format!("{field} is not a UUID: `{}`", clip(value))));
    }
    Ok(())
}

fn hex_commit(field: &str, value: &str) -> Checked {
    if !(value.len() == 40 || value.len() == 64) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(field, format!("{field} is not a commit id (40 or 64 hexadecimal digits)")));
    }
    Ok(())
}

pub fn kind(field: &str, value: &str) -> Checked {
    if value == "bookmark" {
        return Err(ApiError::invalid(
            field,
            "bookmarks are private: they stay in the local store and are never sent to the server",
        ));
    }
    if !KINDS.contains(&value) {
        return Err(ApiError::invalid(
            field,
            format!("{field} `{}` is not one of comment, question, issue", clip(value)),
        ));
    }
    Ok(())
}

pub fn status(field: &str, value: &str) -> Checked {
    if !STATUSES.contains(&value) {
        return Err(ApiError::invalid(field, format!("{field} `{}` is not one of open, resolved", clip(value))));
    }
    Ok(())
}

fn time(field: &str, value: i64) -> Checked {
    if value < 0 {
        return Err(ApiError::invalid(field, format!("{field} is before 1970 ({value})")));
    }
    Ok(())
}

pub fn title(field: &str, value: &str) -> Checked {
    max_bytes(field, value, MAX_TITLE_BYTES)
}

pub fn body(field: &str, value: &str) -> Checked {
    max_bytes(field, value, MAX_BODY_BYTES)
}

pub fn anchors(anchors: &[Anchor]) -> Checked {
    if anchors.len() > MAX_ANCHORS {
        return Err(ApiError::TooLarge {
            message: format!("anchors has {} entries; the limit is {MAX_ANCHORS}", anchors.len()),
            field: Some("anchors".into()),
        });
    }
    for (i, a) in anchors.iter().enumerate() {
        let f = |name: &str| format!("anchors[{i}].{name}");
        uuid(&f("id"), &a.id)?;
        hex_commit(&f("commit"), &a.commit)?;
        name(&f("path"), &a.path)?;
        if a.start == 0 {
            return Err(ApiError::invalid(f("start"), format!("{} is 0; lines are numbered from 1", f("start"))));
        }
        if a.end < a.start {
            return Err(ApiError::invalid(f("end"), format!("{} ({}) is before start ({})", f("end"), a.end, a.start)));
        }
        let text = a.text.as_deref().unwrap_or("");
        max_bytes(&f("text"), text, MAX_SNIPPET_BYTES)?;
        let context: usize = a.before.iter().chain(&a.after).map(|l| l.len() + 1).sum();
        let snippet = text.len() + context;
        if snippet > MAX_SNIPPET_BYTES {
            return Err(ApiError::TooLarge {
                message: format!(
                    "anchors[{i}]'s snippet (text, before and after) is {snippet} bytes; the limit is \
                     {MAX_SNIPPET_BYTES}"
                ),
                field: Some(format!("anchors[{i}]")),
            });
        }
    }
    Ok(())
}

pub fn new_codemark(c: &NewCodemark) -> Checked {
    uuid("id", &c.id)?;
    name("repo", &c.repo)?;
    kind("kind", &c.kind)?;
    if let Some(t) = &c.title {
        title("title", t)?;
    }
    body("body", &c.body)?;
    status("status", &c.status)?;
    anchors(&c.anchors)?;
    time("created", c.created)
}

pub fn patch(p: &CodemarkPatch) -> Checked {
    if let Some(b) = &p.body {
        body("body", b)?;
    }
    if let Some(Some(t)) = &p.title {
        title("title", t)?;
    }
    if let Some(s) = &p.status {
        status("status", s)?;
    }
    if let Some(a) = &p.anchors {
        anchors(a)?;
    }
    Ok(())
}

pub fn reply(r: &NewReply) -> Checked {
    uuid("id", &r.id)?;
    body("body", &r.body)?;
    time("created", r.created)
}

pub fn login(l: &Login) -> Checked {
    max_bytes("invite", &l.invite, MAX_NAME_BYTES)?;
    name("name", &l.name)?;
    if let Some(e) = &l.email {
        name("email", e)?;
        if !e.contains('@') {
            return Err(ApiError::invalid("email", "email has no `@`"));
        }
    }
    if let Some(label) = &l.token_label {
        name("token_label", label)?;
    }
    Ok(())
}

pub fn repo(r: &RepoIdentity) -> Checked {
    name("key", &r.key)?;
    if r.roots.len() > MAX_ROOTS {
        return Err(ApiError::TooLarge {
            message: format!("roots has {} entries; the limit is {MAX_ROOTS}", r.roots.len()),
            field: Some("roots".into()),
        });
    }
    for (i, root) in r.roots.iter().enumerate() {
        hex_commit(&format!("roots[{i}]"), root)?;
    }
    Ok(())
}

pub fn idempotency_key(value: &str) -> Checked {
    if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY_BYTES || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "Idempotency-Key",
            format!("the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes of text"),
        ));
    }
    Ok(())
}

/// The start of a value, for a message.
fn clip(value: &str) -> String {
    let mut end = value.len().min(40);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    if end < value.len() { format!("{}…", &value[..end]) } else { value.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> Anchor {
        Anchor {
            id: "0190a6f4-0000-7000-8000-000000000001".into(),
            commit: "a".repeat(40),
            path: "src/x.rs".into(),
            start: 1,
            end: 2,
            text: Some("x".into()),
            before: vec![],
            after: vec![],
            pending: false,
        }
    }

    fn refusal(r: Checked) -> (u16, String, Option<String>) {
        let e = r.unwrap_err();
        let body = e.body();
        (e.status().as_u16(), body.error.message, body.error.field)
    }

    #[test]
    fn an_oversized_snippet_names_its_anchor_and_the_limit() {
        let mut a = anchor();
        a.text = Some("x".repeat(300_000));
        let (status, message, field) = refusal(anchors(&[anchor(), a]));
        assert_eq!(status, 413);
        assert_eq!(message, "anchors[1].text is 300000 bytes; the limit is 262144");
        assert_eq!(field.as_deref(), Some("anchors[1].text"));

        let mut a = anchor();
        a.before = vec!["y".repeat(200_000)];
        a.after = vec!["z".repeat(100_000)];
        let (status, _, field) = refusal(anchors(&[a]));
        assert_eq!((status, field.as_deref()), (413, Some("anchors[0]")));
    }

    #[test]
    fn bookmarks_and_unknown_kinds_are_refused_with_a_reason() {
        let (status, message, field) = refusal(kind("kind", "bookmark"));
        assert_eq!((status, field.as_deref()), (422, Some("kind")));
        assert!(message.contains("private"), "{message}");
        assert!(kind("kind", "rant").is_err());
        assert!(kind("kind", "issue").is_ok());
    }

    #[test]
    fn line_ranges_commits_and_ids_are_checked() {
        let mut a = anchor();
        a.start = 0;
        assert_eq!(refusal(anchors(&[a])).2.as_deref(), Some("anchors[0].start"));
        let mut a = anchor();
        a.end = 0;
        a.start = 3;
        assert_eq!(refusal(anchors(&[a])).2.as_deref(), Some("anchors[0].end"));
        let mut a = anchor();
        a.commit = "HEAD".into();
        assert_eq!(refusal(anchors(&[a])).2.as_deref(), Some("anchors[0].commit"));
        let mut a = anchor();
        a.id = "nope".into();
        assert_eq!(refusal(anchors(&[a])).2.as_deref(), Some("anchors[0].id"));
        assert_eq!(refusal(anchors(&vec![anchor(); 17])).2.as_deref(), Some("anchors"));
    }

    #[test]
    fn names_must_be_present_and_plain() {
        assert!(name("name", "  ").is_err());
        assert!(name("name", "a\u{7}b").is_err());
        assert_eq!(refusal(name("name", &"n".repeat(2000))).0, 413);
        assert!(name("name", "Ada Lovelace").is_ok());
    }
}
