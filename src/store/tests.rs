//! Tests of the store against real SQLite files in temporary directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use rusqlite::Connection;
use tempfile::TempDir;

use super::schema::{APPLICATION_ID, MIGRATIONS};
use super::*;
use crate::anchor::{Anchor, LineRange, Status};
use crate::codemark::{CachedLocation, Codemark, Kind, MarkStatus, Reply, StoredAnchor};

fn store_file(dir: &TempDir) -> PathBuf {
    dir.path().join("marginalia.db")
}

fn anchor(id: &str, path: &str, start: u32, end: u32, text: Option<&str>, pending: bool) -> StoredAnchor {
    StoredAnchor {
        id: id.to_string(),
        anchor: Anchor {
            commit: "0123456789abcdef0123456789abcdef01234567".to_string(),
            path: path.to_string(),
            lines: LineRange::new(start, end),
            text: text.map(str::to_string),
            before: vec!["fn before() {".to_string(), String::new()],
            after: vec!["}".to_string()],
        },
        pending,
    }
}

fn reply(id: &str, created: i64) -> Reply {
    Reply { id: id.to_string(), author: "Bo <bo@example.com>".to_string(), body: format!("reply {id}"), created }
}

/// A codemark with two anchors (one pending with text, one committed without) and two replies.
fn mark(id: &str, repo: &str) -> Codemark {
    Codemark {
        id: id.to_string(),
        repo: repo.to_string(),
        kind: Kind::Question,
        title: Some("Why a loop?".to_string()),
        body: "Could this be an *iterator*?\n\n```rust\nfor x in y {}\n```".to_string(),
        author: "Ann <ann@example.com>".to_string(),
        status: MarkStatus::Open,
        anchors: vec![
            anchor(&format!("{id}-a1"), "src/z.rs", 10, 14, Some("let x = 1;\nlet y = 2;"), true),
            anchor(&format!("{id}-a0"), "src/a b/ü.rs", 3, 3, None, false),
        ],
        replies: vec![reply(&format!("{id}-r1"), 2_000), reply(&format!("{id}-r2"), 3_000)],
        created: 1_000,
        updated: 1_500,
        shared: None,
        review: None,
    }
}

fn location(start: u32) -> CachedLocation {
    CachedLocation {
        status: Status::Modified,
        path: "src/moved.rs".to_string(),
        lines: LineRange::new(start, start + 2),
    }
}

/// A second connection that bypasses the store, as another program (or a damaged file) would.
fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn rows(path: &Path, table: &str) -> i64 {
    raw(path).query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[test]
fn store_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Store>();
}

#[test]
fn a_codemark_reads_back_as_it_was_saved() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    assert!(!store.read_only());
    assert_eq!(store.path(), store_file(&dir));
    let c = mark("m1", "repo-key");
    store.insert(&c).unwrap();

    let back = store.get("m1").unwrap().expect("saved codemark");
    assert_eq!(back, c);
    // Anchors keep their order even when their ids sort the other way.
    assert_eq!(back.anchors.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["m1-a1", "m1-a0"]);
    assert!(back.anchors[0].pending && !back.anchors[1].pending);
    assert_eq!(back.anchors[1].anchor.text, None);
    assert_eq!(store.get("nope").unwrap(), None);
    assert_eq!(store.count().unwrap(), 1);
}

#[test]
fn a_failed_insert_saves_nothing() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert(&mark("m1", "r")).unwrap();
    // Same anchor ids as m1: the anchors fail after the codemark row went in.
    let mut dup = mark("m1", "r");
    dup.id = "m2".to_string();
    let e = store.insert(&dup).unwrap_err();
    assert!(matches!(e, StoreError::Sql { .. }), "{e:?}");
    assert!(e.to_string().contains("could not save codemark m2"), "{e}");
    assert_eq!(store.get("m2").unwrap(), None);
    assert_eq!(store.count().unwrap(), 1);
}

#[test]
fn of_repo_returns_only_that_repository_ordered_by_id() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    for (id, repo) in [("c", "one"), ("a", "one"), ("b", "two"), ("d", "one")] {
        store.insert(&mark(id, repo)).unwrap();
    }
    let one = store.of_repo("one").unwrap();
    assert_eq!(one.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["a", "c", "d"]);
    assert_eq!(one[1], mark("c", "one"), "each codemark comes with its own anchors and replies");
    assert_eq!(store.of_repo("two").unwrap(), [mark("b", "two")]);
    assert!(store.of_repo("three").unwrap().is_empty());
    assert_eq!(store.count().unwrap(), 4);
}

#[test]
fn get_many_returns_the_codemarks_that_exist_complete_ordered_by_id() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    for (id, repo) in [("c", "one"), ("a", "one"), ("b", "two")] {
        store.insert(&mark(id, repo)).unwrap();
    }
    let got = store.get_many(&["c", "missing", "b", "c"]).unwrap();
    assert_eq!(got, [mark("b", "two"), mark("c", "one")]);
    assert!(store.get_many(&[]).unwrap().is_empty());
    assert!(store.get_many(&["it's \"odd\""]).unwrap().is_empty(), "ids are data, never SQL");
}

#[test]
fn edit_changes_only_the_fields_given() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    let c = mark("m1", "r");
    store.insert(&c).unwrap();

    let body = Edit { body: Some("new body".to_string()), ..Edit::default() };
    assert!(store.edit("m1", &body, 5_000).unwrap());
    let got = store.get("m1").unwrap().unwrap();
    assert_eq!((got.body.as_str(), got.title.as_deref(), got.status), ("new body", c.title.as_deref(), c.status));
    assert_eq!(got.updated, 5_000);

    let resolve = Edit { title: Some(Some("Renamed".to_string())), status: Some(MarkStatus::Resolved), body: None };
    assert!(store.edit("m1", &resolve, 6_000).unwrap());
    let got = store.get("m1").unwrap().unwrap();
    assert_eq!(
        (got.body.as_str(), got.title.as_deref(), got.status),
        ("new body", Some("Renamed"), MarkStatus::Resolved)
    );

    let untitle = Edit { title: Some(None), ..Edit::default() };
    assert!(store.edit("m1", &untitle, 7_000).unwrap());
    let got = store.get("m1").unwrap().unwrap();
    assert_eq!((got.title, got.updated, got.created), (None, 7_000, c.created));
    assert_eq!(got.anchors, c.anchors);

    assert!(!store.edit("missing", &body, 8_000).unwrap());
}

#[test]
fn add_reply_appends_to_the_thread_and_bumps_updated() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert(&mark("m1", "r")).unwrap();

    assert!(store.add_reply("m1", &reply("r3", 9_000)).unwrap());
    let got = store.get("m1").unwrap().unwrap();
    assert_eq!(got.replies.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["m1-r1", "m1-r2", "r3"]);
    assert_eq!(got.replies[2], reply("r3", 9_000));
    assert_eq!(got.updated, 9_000);

    // A reply stamped earlier (another machine's clock) sorts into the thread by time and does
    // not move `updated` back.
    assert!(store.add_reply("m1", &reply("r0", 2_500)).unwrap());
    let got = store.get("m1").unwrap().unwrap();
    assert_eq!(got.replies.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["m1-r1", "r0", "m1-r2", "r3"]);
    assert_eq!(got.updated, 9_000);

    assert!(!store.add_reply("missing", &reply("r4", 10_000)).unwrap());
    assert_eq!(rows(store.path(), "replies"), 4);
}

#[test]
fn delete_removes_anchors_replies_and_locations_too() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert(&mark("gone", "r")).unwrap();
    store.insert(&mark("kept", "r")).unwrap();
    store.cache_location("gone-a1", "blob1", &location(5)).unwrap();
    store.cache_location("kept-a1", "blob1", &location(5)).unwrap();

    assert!(store.delete("gone").unwrap());
    assert!(!store.delete("gone").unwrap());
    assert_eq!(store.get("gone").unwrap(), None);
    let path = store.path();
    assert_eq!(
        [rows(path, "codemarks"), rows(path, "anchors"), rows(path, "replies"), rows(path, "locations")],
        [1, 2, 2, 1]
    );
    assert_eq!(store.get("kept").unwrap().unwrap(), mark("kept", "r"));
    assert_eq!(store.cached_location("kept-a1", "blob1").unwrap(), Some(location(5)));
}

#[test]
fn update_anchor_rewrites_it_in_place_and_forgets_its_locations() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    let c = mark("m1", "r");
    store.insert(&c).unwrap();
    store.cache_location("m1-a1", "blob1", &location(5)).unwrap();
    store.cache_location("m1-a1", "blob2", &location(6)).unwrap();
    store.cache_location("m1-a0", "blob1", &location(7)).unwrap();

    // The pending anchor is committed: new commit, lines and context, no longer pending.
    let mut promoted = c.anchors[0].clone();
    promoted.anchor.commit = "fedcba9876543210fedcba9876543210fedcba98".to_string();
    promoted.anchor.path = "src/y.rs".to_string();
    promoted.anchor.lines = LineRange::new(20, 21);
    promoted.anchor.text = None;
    promoted.anchor.before = vec![];
    promoted.anchor.after = vec!["x".to_string(), "y".to_string()];
    promoted.pending = false;
    assert!(store.update_anchor(&promoted).unwrap());

    let got = store.get("m1").unwrap().unwrap();
    assert_eq!(got.anchors, [promoted.clone(), c.anchors[1].clone()], "same place in the list");
    assert_eq!(store.cached_location("m1-a1", "blob1").unwrap(), None);
    assert_eq!(store.cached_location("m1-a1", "blob2").unwrap(), None);
    assert_eq!(store.cached_location("m1-a0", "blob1").unwrap(), Some(location(7)), "other anchors keep theirs");
    assert_eq!(got.updated, c.updated, "moving an anchor is not an edit of the discussion");

    promoted.id = "missing".to_string();
    assert!(!store.update_anchor(&promoted).unwrap());
}

#[test]
fn cache_location_replaces_what_was_remembered() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert(&mark("m1", "r")).unwrap();
    assert_eq!(store.cached_location("m1-a1", "blob").unwrap(), None);

    store.cache_location("m1-a1", "blob", &location(5)).unwrap();
    assert_eq!(store.cached_location("m1-a1", "blob").unwrap(), Some(location(5)));
    let deleted = CachedLocation { status: Status::Deleted, path: "src/z.rs".to_string(), lines: LineRange::new(9, 9) };
    store.cache_location("m1-a1", "blob", &deleted).unwrap();
    assert_eq!(store.cached_location("m1-a1", "blob").unwrap(), Some(deleted));
    assert_eq!(store.cached_location("m1-a1", "other blob").unwrap(), None);
    assert_eq!(rows(store.path(), "locations"), 1);

    // An anchor deleted meanwhile (by another process) is not an error, and nothing is kept.
    store.cache_location("no-such-anchor", "blob", &location(1)).unwrap();
    assert_eq!(rows(store.path(), "locations"), 1);
}

#[test]
fn find_ids_matches_prefixes_only_and_at_most_ten() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    for i in 0..12 {
        store.insert(&mark(&format!("01ab{i:02}"), "r")).unwrap();
    }
    store.insert(&mark("01ac00", "r")).unwrap();
    store.insert(&mark("x01ab", "r")).unwrap();

    assert_eq!(store.find_ids("01ab0").unwrap(), (0..10).map(|i| format!("01ab{i:02}")).collect::<Vec<_>>());
    assert_eq!(store.find_ids("01ab1").unwrap(), ["01ab10", "01ab11"]);
    assert_eq!(store.find_ids("01ab").unwrap().len(), 10);
    assert_eq!(store.find_ids("01ac00").unwrap(), ["01ac00"]);
    assert_eq!(store.find_ids("01ad").unwrap(), Vec::<String>::new());
    // Characters that are wildcards in SQL patterns are plain text here.
    assert_eq!(store.find_ids("01a_").unwrap(), Vec::<String>::new());
    assert_eq!(store.find_ids("01a%").unwrap(), Vec::<String>::new());
}

#[test]
fn migrations_run_once_and_reopening_keeps_the_data() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    Store::open(&path).unwrap().insert(&mark("m1", "r")).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get("m1").unwrap(), Some(mark("m1", "r")));

    let conn = raw(&path);
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).unwrap();
    assert_eq!(app, APPLICATION_ID);
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn connections_enforce_foreign_keys() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    let on: bool = store.conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
    assert!(on);
    let sync: i64 = store.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
    assert_eq!(sync, 1, "NORMAL");
}

#[test]
fn a_store_from_a_newer_marginalia_is_refused_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    Store::open(&path).unwrap().insert(&mark("m1", "r")).unwrap();
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    let before = fs::read(&path).unwrap();

    let e = Store::open(&path).err().expect("refused");
    match &e {
        StoreError::NewerSchema { path: p, found: 99, known } => {
            assert_eq!((p, *known), (&path, MIGRATIONS.len() as i64));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = e.to_string();
    for part in ["newer marginalia", "upgrade marginalia", "MARGINALIA_DATA_DIR", &path.display().to_string()] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let junk: Vec<u8> = (0..8192)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    fs::write(&path, &junk).unwrap();

    let e = Store::open(&path).err().expect("refused");
    assert!(matches!(&e, StoreError::Corrupt { path: p, .. } if *p == path), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("is not a marginalia store or is damaged"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(fs::read(&path).unwrap(), junk);
}

#[test]
fn another_programs_database_is_refused_and_left_untouched() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    raw(&path).execute_batch("CREATE TABLE bookmarks (url TEXT); INSERT INTO bookmarks VALUES ('x');").unwrap();
    let before = fs::read(&path).unwrap();

    let e = Store::open(&path).err().expect("refused");
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("another program"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn an_unreadable_value_is_an_error_naming_its_row() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert(&mark("m1", "r")).unwrap();
    store.cache_location("m1-a1", "blob", &location(5)).unwrap();
    let conn = raw(store.path());

    conn.execute("UPDATE locations SET status = 'lost'", []).unwrap();
    let e = store.cached_location("m1-a1", "blob").unwrap_err();
    assert!(matches!(e, StoreError::BadRow { .. }) && e.to_string().contains("anchor m1-a1"), "{e}");

    conn.execute("UPDATE anchors SET start_line = 0 WHERE id = 'm1-a0'", []).unwrap();
    let e = store.get("m1").unwrap_err();
    assert!(matches!(e, StoreError::BadRow { .. }) && e.to_string().contains("anchor m1-a0 of codemark m1"), "{e}");

    conn.execute("UPDATE codemarks SET kind = 'rant'", []).unwrap();
    let e = store.of_repo("r").unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, StoreError::BadRow { .. }), "{e:?}");
    assert!(message.contains("codemark m1") && message.contains("unknown kind `rant`"), "{message}");
}

/// Restores write permission on drop, so a failing test still lets its temp dir be removed.
#[cfg(unix)]
struct Writable(Vec<PathBuf>);

#[cfg(unix)]
impl Drop for Writable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        for p in &self.0 {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
        }
    }
}

#[cfg(unix)]
#[test]
fn a_read_only_store_reads_and_refuses_writes_by_name() {
    use std::os::unix::fs::PermissionsExt;
    // (file, directory) made read-only.
    for (file_ro, dir_ro) in [(true, false), (true, true), (false, true)] {
        let dir = TempDir::new().unwrap();
        let path = store_file(&dir);
        Store::open(&path).unwrap().insert(&mark("m1", "r")).unwrap();
        let _restore = Writable(vec![dir.path().to_path_buf(), path.clone()]);
        if file_ro {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        }
        if dir_ro {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
        }
        let probe = if file_ro { fs::OpenOptions::new().append(true).open(&path).is_ok() } else { false }
            || (dir_ro && fs::write(dir.path().join("probe"), b"").is_ok());
        if probe {
            // Running as root: permissions do not bind, so there is nothing to test.
            return;
        }
        let case = format!("file read-only: {file_ro}, directory read-only: {dir_ro}");

        let store = Store::open(&path).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(store.read_only(), "{case}");
        assert_eq!(store.get("m1").unwrap(), Some(mark("m1", "r")), "{case}");
        assert_eq!(store.of_repo("r").unwrap().len(), 1, "{case}");
        assert_eq!(store.cached_location("m1-a1", "blob").unwrap(), None, "{case}");
        assert_eq!(store.count().unwrap(), 1, "{case}");
        store.data_version().unwrap();
        let e = store.insert(&mark("m2", "r")).unwrap_err();
        assert!(matches!(&e, StoreError::ReadOnly { path: p } if *p == path), "{case}: {e:?}");
        assert!(e.to_string().contains("is read-only") && e.to_string().contains(&path.display().to_string()));
        assert!(matches!(store.delete("m1"), Err(StoreError::ReadOnly { .. })), "{case}");
        assert!(matches!(store.cache_location("m1-a1", "b", &location(1)), Err(StoreError::ReadOnly { .. })));
    }
}

#[test]
fn a_store_opened_for_reading_refuses_every_write() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    let c = mark("m1", "r");
    Store::open(&path).unwrap().insert(&c).unwrap();
    let before = fs::read(&path).unwrap();
    for access in [Access::ReadOnly, Access::Immutable] {
        let store = Store::open_as(&path, access).unwrap();
        assert!(store.read_only());
        assert_eq!(store.get("m1").unwrap().as_ref(), Some(&c));
        let read_only = |r: Result<bool, StoreError>| matches!(r, Err(StoreError::ReadOnly { .. }));
        assert!(matches!(store.insert(&mark("m2", "r")), Err(StoreError::ReadOnly { .. })));
        assert!(read_only(store.add_reply("m1", &reply("x", 1))));
        assert!(read_only(store.edit("m1", &Edit::default(), 1)));
        assert!(read_only(store.delete("m1")));
        assert!(read_only(store.update_anchor(&c.anchors[0])));
        assert!(matches!(store.cache_location("m1-a1", "b", &location(1)), Err(StoreError::ReadOnly { .. })));
    }
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn an_empty_read_only_file_cannot_be_set_up() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    fs::write(&path, b"").unwrap();
    let e = Store::open_as(&path, Access::ReadOnly).err().expect("refused");
    assert!(matches!(e, StoreError::OutdatedReadOnly { found: 0, .. }), "{e:?}");
    assert_eq!(fs::read(&path).unwrap(), b"");
}

#[test]
fn two_processes_writing_at_once_lose_nothing() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    let start = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|name| {
            let (path, start) = (path.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait(); // both create and migrate the new file at the same moment
                let store = Store::open(&path).unwrap();
                for i in 0..200 {
                    store.insert(&mark(&format!("{name}-{i:03}"), name)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 400);
    assert_eq!(store.of_repo("left").unwrap().len(), 200);
    assert_eq!(rows(&path, "anchors"), 800);
}

/// Regression: switching a new file to WAL answers "busy" at once, without the busy timeout, so
/// editors started together failed to open the store.
#[test]
fn editors_opening_a_new_store_together_all_get_it() {
    for _ in 0..20 {
        let dir = TempDir::new().unwrap();
        let path = store_file(&dir);
        let start = Arc::new(Barrier::new(8));
        let editors: Vec<_> = (0..8)
            .map(|i| {
                let (path, start) = (path.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let store = Store::open(&path).unwrap();
                    store.insert(&mark(&format!("m{i}"), "r")).unwrap();
                    store.of_repo("r").unwrap();
                })
            })
            .collect();
        for e in editors {
            e.join().unwrap();
        }
        assert_eq!(Store::open(&path).unwrap().count().unwrap(), 8);
    }
}

#[test]
fn data_version_moves_for_other_writers_only() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    let editor = Store::open(&path).unwrap();
    let cli = Store::open(&path).unwrap();

    let v0 = editor.data_version().unwrap();
    assert_eq!(editor.data_version().unwrap(), v0, "stable while nothing happens");
    cli.insert(&mark("m1", "r")).unwrap();
    let v1 = editor.data_version().unwrap();
    assert_ne!(v1, v0, "another connection committed");
    editor.insert(&mark("m2", "r")).unwrap();
    editor.edit("m2", &Edit::default(), 5).unwrap();
    assert_eq!(editor.data_version().unwrap(), v1, "our own writes do not count");
    let ours = cli.data_version().unwrap();
    raw(&path).execute("DELETE FROM replies WHERE id = 'm1-r1'", []).unwrap();
    assert_ne!(cli.data_version().unwrap(), ours, "any other connection counts");
}

#[test]
fn data_dir_prefers_the_environment_then_the_platform() {
    let platform = Some(PathBuf::from("/home/u/.local/share"));
    assert_eq!(data_dir_from(Some("/elsewhere".into()), platform.clone()).unwrap(), PathBuf::from("/elsewhere"));
    assert_eq!(data_dir_from(None, platform.clone()).unwrap(), PathBuf::from("/home/u/.local/share/marginalia"));
    assert_eq!(data_dir_from(Some("".into()), platform).unwrap(), PathBuf::from("/home/u/.local/share/marginalia"));
    let e = data_dir_from(None, None).unwrap_err();
    assert!(matches!(e, StoreError::NoDataDir) && e.to_string().contains("MARGINALIA_DATA_DIR"), "{e}");
}

#[test]
fn a_data_directory_that_cannot_be_made_is_named() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let wanted = file.join("marginalia");
    let e = Store::open_in(&wanted).err().expect("refused");
    assert!(matches!(&e, StoreError::CreateDir { path, .. } if *path == wanted), "{e:?}");
    assert!(e.to_string().contains(&wanted.display().to_string()), "{e}");

    let made = dir.path().join("new").join("deeper");
    let store = Store::open_in(&made).unwrap();
    assert_eq!(store.path(), made.join("marginalia.db"));
}

#[cfg(unix)]
#[test]
fn immutable_uris_escape_what_uris_reserve() {
    let uri = immutable_uri(Path::new("/tmp/a b/50%?#x.db"));
    assert_eq!(uri, "file:///tmp/a%20b/50%25%3F%23x.db?immutable=1");
}

fn outgoing(key: &str, codemark: &str, op: &str) -> Outgoing {
    Outgoing {
        key: key.to_string(),
        server: "https://team.example".to_string(),
        codemark_id: codemark.to_string(),
        op: op.to_string(),
        method: "POST".to_string(),
        path: format!("/codemarks/{codemark}"),
        body: Some(r#"{"x":1}"#.to_string()),
        code_bytes: 12,
        held: None,
        note: None,
    }
}

fn keys(store: &Store) -> Vec<String> {
    store.outbox("https://team.example").unwrap().into_iter().map(|q| q.out.key).collect()
}

#[test]
fn settings_are_set_read_listed_and_removed() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    assert_eq!(store.setting("sync.server").unwrap(), None);
    store.set_setting("sync.server", Some("https://a")).unwrap();
    store.set_setting("sync.server", Some("https://b")).unwrap();
    store.set_setting("sync.cursor", Some("7")).unwrap();
    store.set_setting("other", Some("x")).unwrap();
    assert_eq!(store.setting("sync.server").unwrap().as_deref(), Some("https://b"));
    assert_eq!(
        store.settings_under("sync.").unwrap(),
        [("sync.cursor".to_string(), "7".to_string()), ("sync.server".to_string(), "https://b".to_string())]
    );
    store.set_setting("sync.server", None).unwrap();
    assert_eq!(store.setting("sync.server").unwrap(), None);
}

#[test]
fn a_change_and_its_outbox_rows_are_saved_together_or_not_at_all() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert_queued(&mark("m1", "r"), &[outgoing("k1", "m1", "create")]).unwrap();
    // The same key twice: the outbox refuses it, and the codemark is not saved either.
    let e = store.insert_queued(&mark("m2", "r"), &[outgoing("k1", "m2", "create")]);
    assert!(e.is_err());
    assert_eq!(store.get("m2").unwrap(), None);
    assert!(store.add_reply_queued("m1", &reply("r9", 9_000), &[outgoing("k2", "m1", "reply")]).unwrap());
    let edit = Edit { body: Some("new".into()), ..Edit::default() };
    assert!(store.edit_queued("m1", &edit, 10_000, &[outgoing("k3", "m1", "edit")]).unwrap());
    assert!(!store.edit_queued("nope", &edit, 10_000, &[outgoing("k4", "nope", "edit")]).unwrap());
    assert_eq!(keys(&store), ["k1", "k2", "k3"], "oldest first, nothing for a missing codemark");
    assert!(store.has_outgoing("m1").unwrap());
    assert!(store.outbox("https://elsewhere").unwrap().is_empty(), "each server has its own");
}

#[test]
fn deleting_a_codemark_that_never_reached_the_server_leaves_nothing_to_send() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert_queued(&mark("unsent", "r"), &[outgoing("k1", "unsent", "create")]).unwrap();
    store.add_reply_queued("unsent", &reply("r9", 9_000), &[outgoing("k2", "unsent", "reply")]).unwrap();
    assert!(store.delete_queued("unsent", &[outgoing("k3", "unsent", "delete")]).unwrap());
    assert!(keys(&store).is_empty());

    store.insert_queued(&mark("sent", "r"), &[outgoing("k4", "sent", "create")]).unwrap();
    let seq = store.outbox("https://team.example").unwrap()[0].seq;
    store.outbox_sent(seq).unwrap();
    assert!(store.delete_queued("sent", &[outgoing("k5", "sent", "delete")]).unwrap());
    assert_eq!(keys(&store), ["k5"]);
    assert!(!store.delete_queued("sent", &[outgoing("k6", "sent", "delete")]).unwrap());
}

#[test]
fn failures_are_counted_held_ones_wait_and_released_ones_may_change_their_body() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    let mut held = outgoing("k1", "m1", "create");
    held.held = Some("line 2 has an AWS access key id".into());
    store.insert_queued(&mark("m1", "r"), &[held, outgoing("k2", "m1", "edit")]).unwrap();
    let q = store.outbox("https://team.example").unwrap();
    store.outbox_failed(q[1].seq, "server unreachable", false).unwrap();
    store.outbox_failed(q[1].seq, "422: body is too long", true).unwrap();
    let q = store.outbox("https://team.example").unwrap();
    assert_eq!((q[1].attempts, q[1].last_error.as_deref()), (2, Some("422: body is too long")));
    assert_eq!(q[1].out.held.as_deref(), Some("422: body is too long"));

    assert!(store.outbox_release(q[0].seq, Some((r#"{"redacted":1}"#, 3)), Some("redacted")).unwrap());
    let q = store.outbox("https://team.example").unwrap();
    assert_eq!(
        (q[0].out.held.as_deref(), q[0].out.body.as_deref(), q[0].out.code_bytes, q[0].out.note.as_deref()),
        (None, Some(r#"{"redacted":1}"#), 3, Some("redacted"))
    );
    assert!(store.outbox_drop(q[1].seq).unwrap());
    assert!(!store.outbox_drop(q[1].seq).unwrap());
    assert_eq!(keys(&store), ["k1"]);
}

#[test]
fn changes_from_the_server_are_taken_with_their_cursor_but_never_over_our_waiting_ones() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    store.insert(&mark("theirs", "r1")).unwrap();
    store.cache_location("theirs-a0", "blob", &location(3)).unwrap();
    store.cache_location("theirs-a1", "blob", &location(4)).unwrap();
    store.insert_queued(&mark("ours", "r2"), &[outgoing("k1", "ours", "edit")]).unwrap();
    store.insert(&mark("gone", "r3")).unwrap();

    let mut changed = mark("theirs", "r1");
    changed.body = "edited by a teammate".into();
    changed.anchors[0].anchor.lines = LineRange::new(11, 15); // this one moved
    changed.anchors.push(anchor("theirs-a2", "src/new.rs", 1, 2, Some("x"), false));
    changed.replies.truncate(1);
    let mut stale = mark("ours", "r2");
    stale.body = "the server's older version".into();
    let new = mark("new", "r4");
    let touched = store
        .apply_incoming(
            "https://team.example",
            &[
                Incoming::Upsert(changed.clone()),
                Incoming::Upsert(stale),
                Incoming::Delete("gone".into()),
                Incoming::Upsert(new.clone()),
                Incoming::Delete("never-here".into()),
            ],
            ("sync.cursor", "42"),
        )
        .unwrap();
    assert_eq!(touched, ["r1", "r3", "r4"]);
    assert_eq!(store.setting("sync.cursor").unwrap().as_deref(), Some("42"));
    let got = store.get("theirs").unwrap().unwrap();
    assert_eq!((got.body.as_str(), got.shared.as_deref()), ("edited by a teammate", Some("https://team.example")));
    assert_eq!(got.anchors, changed.anchors);
    assert_eq!(got.replies, changed.replies);
    assert_eq!(store.cached_location("theirs-a1", "blob").unwrap(), None, "the moved anchor forgets");
    assert_eq!(store.cached_location("theirs-a0", "blob").unwrap(), Some(location(3)), "the unchanged one keeps");
    assert_eq!(store.get("ours").unwrap().unwrap().body, mark("ours", "r2").body, "ours waits for the outbox");
    assert_eq!(store.get("gone").unwrap(), None);
    assert_eq!(store.get("new").unwrap().unwrap().anchors, new.anchors);
}

#[test]
fn the_egress_ledger_records_before_sending_and_completes_with_the_answer() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    let e = Egress {
        at: 1_000,
        destination: "https://team.example:443".into(),
        method: "POST".into(),
        endpoint: "/api/v1/codemarks".into(),
        subject: Some("m1".into()),
        code_bytes: 120,
        body_bytes: 400,
        status: None,
        note: None,
    };
    let id = store.egress_begin(&e).unwrap();
    store.egress_begin(&Egress { code_bytes: 0, endpoint: "/api/v1/changes".into(), ..e.clone() }).unwrap();
    store.egress_answered(id, 201).unwrap();
    let all = store.egress(10, false).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].endpoint, "/api/v1/changes", "newest first");
    assert_eq!(store.egress(10, true).unwrap(), [Egress { status: Some(201), ..e }]);
}

#[test]
fn a_store_of_the_first_version_is_upgraded_with_its_codemarks() {
    let dir = TempDir::new().unwrap();
    let path = store_file(&dir);
    let conn = raw(&path);
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO codemarks (id, repo, kind, title, body, author, status, created, updated)
         VALUES ('old', 'r', 'comment', NULL, 'from version 1', 'A', 'open', 1, 2)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    let old = store.get("old").unwrap().unwrap();
    assert_eq!((old.body.as_str(), old.shared), ("from version 1", None));
    assert!(store.outbox_all().unwrap().is_empty());
}

#[test]
fn the_change_counter_moves_for_codemarks_and_not_for_caches_or_the_outbox() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&store_file(&dir)).unwrap();
    let mut last = store.codemarks_version().unwrap();
    let mut moved = |store: &Store| {
        let now = store.codemarks_version().unwrap();
        let m = now != last;
        last = now;
        m
    };
    store.insert(&mark("m1", "r")).unwrap();
    assert!(moved(&store));
    store.cache_location("m1-a1", "blob", &location(1)).unwrap();
    store.set_setting("sync.cursor", Some("3")).unwrap();
    assert!(!moved(&store), "a remembered location or a setting is not a codemark change");
    store.insert_queued(&mark("m2", "r"), &[]).unwrap();
    assert!(moved(&store));
    let id = store.egress_begin(&Egress {
        at: 1,
        destination: "d".into(),
        method: "GET".into(),
        endpoint: "/".into(),
        subject: None,
        code_bytes: 0,
        body_bytes: 0,
        status: None,
        note: None,
    });
    store.egress_answered(id.unwrap(), 200).unwrap();
    assert!(!moved(&store), "caches, settings and the ledger are not codemark changes");
    store.add_reply("m1", &reply("r5", 5)).unwrap();
    assert!(moved(&store));
    let mut a = mark("m1", "r").anchors[0].clone();
    a.pending = false;
    store.update_anchor(&a).unwrap();
    assert!(moved(&store));
    store.delete("m2").unwrap();
    assert!(moved(&store));
}
