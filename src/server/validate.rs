//! Checks on what clients send, beyond its JSON shape: sizes against [`crate::api::limits`],
//! ids, kinds, statuses, line ranges, paths inside a repository. Pure; every refusal names the
//! field at fault (`anchors[0].text is 300000 bytes; the limit is 262144`).

use super::error::ApiError;
use crate::api::limits::{
    MAX_ANCHORS, MAX_BODY_BYTES, MAX_NAME_BYTES, MAX_REVISION_BYTES, MAX_REVISION_FILES, MAX_SNIPPET_BYTES,
    MAX_TITLE_BYTES,
};
use crate::api::{
    Anchor, CodemarkPatch, FilePatch, Login, NewCodemark, NewReply, NewReview, NewRevision, RepoIdentity, ReviewPatch,
    ReviewRef, Verdict,
};

/// Kinds the server keeps; bookmarks are private.
pub const KINDS: [&str; 3] = ["comment", "question", "issue"];
pub const STATUSES: [&str; 2] = ["open", "resolved"];
/// A review's status as `PATCH /reviews/{id}` sets it.
pub const REVIEW_STATUSES: [&str; 2] = ["open", "closed"];
/// What a reviewer can say.
pub const VERDICTS: [&str; 2] = ["approved", "changes_requested"];
/// Git file modes a review file may have: a file, an executable, a symbolic link, a submodule.
pub const MODES: [&str; 4] = ["100644", "100755", "120000", "160000"];
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
    if let Some(r) = &c.review {
        review_ref("review", r)?;
    }
    time("created", c.created)
}

/// A review comment's link, as far as it can be checked without the review.
pub fn review_ref(field: &str, r: &ReviewRef) -> Checked {
    uuid(&format!("{field}.review"), &r.review)?;
    if r.revision == 0 {
        let f = format!("{field}.revision");
        return Err(ApiError::invalid(&f, format!("{f} is 0; revisions are numbered from 1")));
    }
    repo_path(&format!("{field}.path"), &r.path)
}

/// A path inside a repository, as a patch names it: relative, `/`-separated, no empty, `.` or
/// `..` part, no `.git` part in any case (nor its NTFS short name), no backslash or control
/// character. The same rules the client applies before a patch touches a working tree.
pub fn repo_path(field: &str, value: &str) -> Checked {
    max_bytes(field, value, MAX_NAME_BYTES)?;
    let refuse = |why: &str| Err(ApiError::invalid(field, format!("{field} `{}` {why}", clip(value))));
    if value.is_empty() {
        return refuse("is empty");
    }
    let drive = matches!(value.as_bytes(), [letter, b':', ..] if letter.is_ascii_alphabetic());
    if value.starts_with('/') || value.contains('\\') || drive {
        return refuse("is not relative to the repository's root with `/` between folders");
    }
    if value.chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    for part in value.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return refuse("has an empty, `.` or `..` part");
        }
        // Windows drops trailing dots and spaces: `.git.` and `.git ` are `.git` there.
        let bare = part.trim_end_matches(['.', ' ']);
        if bare.eq_ignore_ascii_case(".git") || bare.eq_ignore_ascii_case("git~1") {
            return refuse("is inside `.git`");
        }
    }
    Ok(())
}

fn object_id(field: &str, value: &str) -> Checked {
    if !(value.len() == 40 || value.len() == 64) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(field, format!("{field} is not an object id (40 or 64 hexadecimal digits)")));
    }
    Ok(())
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Checked {
    if !allowed.contains(&value) {
        return Err(ApiError::invalid(
            field,
            format!("{field} `{}` is not one of {}", clip(value), allowed.join(", ")),
        ));
    }
    Ok(())
}

/// A review's title: present, within [`MAX_TITLE_BYTES`].
fn review_title(field: &str, value: &str) -> Checked {
    title(field, value)?;
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, format!("{field} is empty")));
    }
    Ok(())
}

/// Reviewers as member ids, each once (whether they are members is the service's to check).
pub fn reviewers(field: &str, ids: &[String]) -> Checked {
    for (i, id) in ids.iter().enumerate() {
        let f = format!("{field}[{i}]");
        uuid(&f, id)?;
        if ids[..i].contains(id) {
            return Err(ApiError::invalid(&f, format!("{f} lists {id} a second time")));
        }
    }
    Ok(())
}

/// A revision; `prefix` is where it sits in the request (`revision.` in a new review, nothing
/// when it is the whole body). Its patches together are at most [`MAX_REVISION_BYTES`].
pub fn revision(prefix: &str, r: &NewRevision) -> Checked {
    let f = |name: &str| format!("{prefix}{name}");
    uuid(&f("id"), &r.id)?;
    hex_commit(&f("base"), &r.base)?;
    max_bytes(&f("base_note"), &r.base_note, MAX_NAME_BYTES)?;
    if let Some(h) = &r.head {
        hex_commit(&f("head"), h)?;
    }
    if r.files.is_empty() {
        return Err(ApiError::invalid(f("files"), format!("{} is empty: a revision changes something", f("files"))));
    }
    if r.files.len() > MAX_REVISION_FILES {
        return Err(ApiError::invalid(
            f("files"),
            format!("{} has {} entries; a revision takes at most {MAX_REVISION_FILES}", f("files"), r.files.len()),
        ));
    }
    for (i, file) in r.files.iter().enumerate() {
        file_patch(&format!("{prefix}files[{i}]"), file)?;
    }
    let bytes: usize = r.files.iter().filter_map(|file| file.patch.as_ref()).map(String::len).sum();
    if bytes > MAX_REVISION_BYTES {
        return Err(ApiError::TooLarge {
            message: format!("the patches are {bytes} bytes; a revision takes at most {MAX_REVISION_BYTES}"),
            field: Some(f("files")),
        });
    }
    time(&f("created"), r.created)
}

fn file_patch(field: &str, p: &FilePatch) -> Checked {
    let f = |name: &str| format!("{field}.{name}");
    if p.old_path.is_none() && p.new_path.is_none() {
        return Err(ApiError::invalid(
            field,
            format!("{field} has neither an old_path nor a new_path: name the file on at least one side"),
        ));
    }
    for (side, path, mode, blob) in
        [("old", &p.old_path, &p.old_mode, &p.old_blob), ("new", &p.new_path, &p.new_mode, &p.new_blob)]
    {
        if let Some(path) = path {
            repo_path(&f(&format!("{side}_path")), path)?;
        }
        if let Some(mode) = mode {
            one_of(&f(&format!("{side}_mode")), mode, &MODES)?;
        }
        if let Some(blob) = blob {
            object_id(&f(&format!("{side}_blob")), blob)?;
        }
        if path.is_none() && (mode.is_some() || blob.is_some()) {
            let given = if mode.is_some() { "mode" } else { "blob" };
            return Err(ApiError::invalid(
                f(&format!("{side}_{given}")),
                format!("{} is given but the file has no {side}_path", f(&format!("{side}_{given}"))),
            ));
        }
    }
    if p.binary && p.patch.is_some() {
        return Err(ApiError::invalid(
            f("patch"),
            format!("{} is given for a binary file: binary files are listed, never sent", f("patch")),
        ));
    }
    Ok(())
}

pub fn new_review(r: &NewReview) -> Checked {
    uuid("id", &r.id)?;
    name("repo", &r.repo)?;
    review_title("title", &r.title)?;
    body("description", &r.description)?;
    reviewers("reviewers", &r.reviewers)?;
    revision("revision.", &r.revision)
}

pub fn review_patch(p: &ReviewPatch) -> Checked {
    if let Some(t) = &p.title {
        review_title("title", t)?;
    }
    if let Some(d) = &p.description {
        body("description", d)?;
    }
    if let Some(s) = &p.status {
        one_of("status", s, &REVIEW_STATUSES)?;
    }
    if let Some(r) = &p.reviewers {
        reviewers("reviewers", r)?;
    }
    Ok(())
}

pub fn verdict(v: &Verdict) -> Checked {
    one_of("verdict", &v.verdict, &VERDICTS)
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

    fn file(path: &str) -> FilePatch {
        FilePatch {
            old_path: Some(path.into()),
            new_path: Some(path.into()),
            old_mode: Some("100644".into()),
            new_mode: Some("100644".into()),
            old_blob: Some("b".repeat(40)),
            new_blob: Some("c".repeat(40)),
            binary: false,
            patch: Some("@@ -1,1 +1,1 @@\n-a\n+b\n".into()),
        }
    }

    fn new_revision(files: Vec<FilePatch>) -> NewRevision {
        NewRevision {
            id: "0190a6f4-0000-7000-8000-000000000002".into(),
            base: "a".repeat(40),
            base_note: "merge-base with origin/main".into(),
            head: None,
            files,
            created: 1,
        }
    }

    #[test]
    fn paths_that_could_leave_the_repository_or_reach_into_git_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            ".git/config",
            "a/.GIT/b",
            "a/.git",
            ".git./hooks/x",
            "GIT~1/config",
            "a\\..\\b",
            "C:/x",
            "a//b",
            "./a",
            "",
            "a\u{0}b",
        ] {
            let (status, message, field) = refusal(repo_path("files[3].new_path", bad));
            assert_eq!((status, field.as_deref()), (422, Some("files[3].new_path")), "{bad:?}: {message}");
        }
        for good in ["src/x.rs", ".github/workflows/ci.yml", "a/.gitignore", "git/x", "a b/c..d", "ünï/cödé", "1:2.txt"]
        {
            assert!(repo_path("p", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_revision_is_checked_file_by_file_and_its_patches_are_capped_together() {
        assert!(revision("", &new_revision(vec![file("src/x.rs")])).is_ok());
        let mut binary = file("logo.png");
        binary.binary = true;
        assert_eq!(refusal(revision("", &new_revision(vec![binary]))).2.as_deref(), Some("files[0].patch"));
        let mut mode = file("x");
        mode.new_mode = Some("100777".into());
        assert_eq!(
            refusal(revision("revision.", &new_revision(vec![mode]))).2.as_deref(),
            Some("revision.files[0].new_mode")
        );
        let mut blob = file("x");
        blob.old_blob = Some("xyz".into());
        assert_eq!(refusal(revision("", &new_revision(vec![file("y"), blob]))).2.as_deref(), Some("files[1].old_blob"));
        let mut nowhere = file("x");
        (nowhere.old_path, nowhere.new_path) = (None, None);
        assert_eq!(refusal(revision("", &new_revision(vec![nowhere]))).2.as_deref(), Some("files[0]"));
        let mut added = file("x");
        added.old_path = None;
        assert_eq!(refusal(revision("", &new_revision(vec![added]))).2.as_deref(), Some("files[0].old_mode"));
        assert_eq!(refusal(revision("", &new_revision(vec![]))).2.as_deref(), Some("files"));
        let many = vec![file("x"); MAX_REVISION_FILES + 1];
        assert_eq!(refusal(revision("", &new_revision(many))).0, 422);

        // Two files of 9 MiB each: each fits, together they do not.
        let mut big = file("big");
        big.patch = Some("+".repeat(9 << 20));
        let (status, message, field) = refusal(revision("revision.", &new_revision(vec![big.clone(), big])));
        assert_eq!((status, field.as_deref()), (413, Some("revision.files")));
        assert_eq!(message, format!("the patches are {} bytes; a revision takes at most 16777216", 18 << 20));
    }

    #[test]
    fn reviewers_are_ids_listed_once_and_verdicts_and_statuses_are_known_words() {
        let a = "0190a6f4-0000-7000-8000-00000000000a".to_string();
        let b = "0190a6f4-0000-7000-8000-00000000000b".to_string();
        assert!(reviewers("reviewers", &[a.clone(), b.clone()]).is_ok());
        assert_eq!(refusal(reviewers("reviewers", &[a.clone(), b, a])).2.as_deref(), Some("reviewers[2]"));
        assert_eq!(refusal(reviewers("reviewers", &["Bob".into()])).2.as_deref(), Some("reviewers[0]"));
        assert!(verdict(&Verdict { verdict: "approved".into() }).is_ok());
        assert_eq!(refusal(verdict(&Verdict { verdict: "lgtm".into() })).2.as_deref(), Some("verdict"));
        let p = ReviewPatch { status: Some("merged".into()), ..Default::default() };
        assert_eq!(refusal(review_patch(&p)).2.as_deref(), Some("status"));
        let p = ReviewPatch { title: Some("  ".into()), ..Default::default() };
        assert_eq!(refusal(review_patch(&p)).2.as_deref(), Some("title"));
    }

    #[test]
    fn names_must_be_present_and_plain() {
        assert!(name("name", "  ").is_err());
        assert!(name("name", "a\u{7}b").is_err());
        assert_eq!(refusal(name("name", &"n".repeat(2000))).0, 413);
        assert!(name("name", "Ada Lovelace").is_ok());
    }
}
