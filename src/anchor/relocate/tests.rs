//! Relocation cases as fixtures: in the old text, lines starting with `> ` are anchored; the
//! snapshot shows the answer and the new text with the relocated lines marked `> `.

use expect_test::{Expect, expect};

use super::*;
use crate::anchor::Unlocatable;

/// Splits a fixture into its text and the anchored 1-based range.
fn parse(fixture: &str) -> (String, LineRange) {
    let fixture = fixture.strip_prefix('\n').unwrap_or(fixture);
    let mut text = String::new();
    let (mut first, mut last) = (None, None);
    for (i, line) in fixture.split_inclusive('\n').enumerate() {
        match line.strip_prefix("> ") {
            Some(rest) => {
                first.get_or_insert(i as u32 + 1);
                last = Some(i as u32 + 1);
                text.push_str(rest);
            }
            None => text.push_str(line),
        }
    }
    (text, LineRange::new(first.expect("fixture marks no line"), last.unwrap()))
}

fn render(found: &Result<Relocation, Unlocatable>, files: &[(&str, &str)]) -> String {
    let r = match found {
        Ok(r) => r,
        Err(e) => return format!("unknown: {e}\n"),
    };
    let mut out = format!("{} {}:{} via {:?}\n", r.status, r.path, r.lines, r.via);
    let Some((_, text)) = files.iter().find(|(p, _)| *p == r.path) else { return out };
    let mark = if r.status == Status::Deleted { "x " } else { "> " };
    for (i, line) in text.trim_start_matches('\u{FEFF}').lines().enumerate() {
        let n = i as u32 + 1;
        let prefix = if r.lines.start <= n && n <= r.lines.end { mark } else { "  " };
        out.push_str(format!("{prefix}{line}").trim_end());
        out.push('\n');
    }
    out
}

/// Relocates the anchor marked in `old` (file `a.rs`) into `new` (file `a.rs`, or gone when
/// `None`) and into `others`.
fn check_files(old: &str, new: Option<&str>, others: &[(&str, &str)], expect: Expect) {
    let (old, lines) = parse(old);
    let anchor = Anchor { commit: "c".into(), path: "a.rs".into(), lines, ..Anchor::default() };
    let old_text = Text::new(old);
    let new_text = new.map(Text::new);
    let files: Files = Arc::new(others.iter().map(|&(p, t)| (p.to_owned(), Arc::new(Text::new(t)))).collect());
    let others_fn = || files.clone();
    let src = Sources {
        old: Some(&old_text),
        new: new_text.as_ref().map(|t| ("a.rs", t)),
        map: None,
        others: Some(&others_fn),
    };
    let found = relocate(&anchor, &src);
    let mut files: Vec<(&str, &str)> = others.to_vec();
    if let Some(new) = new {
        files.insert(0, ("a.rs", new));
    }
    expect.assert_eq(&render(&found, &files));
}

fn check(old: &str, new: &str, expect: Expect) {
    check_files(old, Some(new), &[], expect)
}

#[test]
fn lines_added_above_shift_the_anchor_down_intact() {
    check(
        "
fn a() {}
> fn b() {
>     work();
> }
",
        "
use std::io;

fn a() {}
fn b() {
    work();
}
",
        expect![[r#"
            intact a.rs:5-7 via Diff

              use std::io;

              fn a() {}
            > fn b() {
            >     work();
            > }
        "#]],
    );
}

#[test]
fn lines_changed_below_leave_it_intact() {
    check(
        "
> fn b() {
>     work();
> }
fn c() {}
",
        "
fn b() {
    work();
}
fn c() { more(); }
",
        expect![[r#"
            intact a.rs:2-4 via Diff

            > fn b() {
            >     work();
            > }
              fn c() { more(); }
        "#]],
    );
}

#[test]
fn a_line_edited_inside_is_modified_in_place() {
    check(
        "
fn b() {
>     let total = compute(a, b);
>     total
}
",
        "
fn b() {
    let total = compute(a, b, c);
    total
}
",
        expect![[r#"
            modified a.rs:3-4 via Diff

              fn b() {
            >     let total = compute(a, b, c);
            >     total
              }
        "#]],
    );
}

#[test]
fn every_line_edited_in_place_is_modified_not_deleted() {
    check(
        "
fn b() {
>     let total = compute(a, b);
>     log(total);
}
",
        "
fn b() {
    let total = compute(a, b, c);
    log(total, level);
}
",
        expect![[r#"
            modified a.rs:3-4 via Diff

              fn b() {
            >     let total = compute(a, b, c);
            >     log(total, level);
              }
        "#]],
    );
}

#[test]
fn a_line_inserted_inside_grows_the_range_as_modified() {
    check(
        "
> fn b() {
>     work();
> }
",
        "
fn b() {
    setup();
    work();
}
",
        expect![[r#"
            modified a.rs:2-5 via Diff

            > fn b() {
            >     setup();
            >     work();
            > }
        "#]],
    );
}

#[test]
fn deleting_the_whole_range_says_where_it_was() {
    check(
        "
fn a() {}
> fn b() {
>     work();
> }
fn c() {}
",
        "
fn a() {}
fn c() {}
",
        expect![[r#"
            deleted a.rs:3 via Diff

              fn a() {}
            x fn c() {}
        "#]],
    );
}

#[test]
fn deleting_part_of_the_range_keeps_the_rest() {
    check(
        "
> fn b() {
>     first();
>     second();
> }
",
        "
fn b() {
    first();
}
",
        expect![[r#"
            modified a.rs:2-4 via Diff

            > fn b() {
            >     first();
            > }
        "#]],
    );
}

#[test]
fn a_function_moved_down_the_file_is_found_intact() {
    check(
        "
fn a() {
    alpha();
}
> fn b() {
>     beta();
>     gamma();
> }
fn c() {
    delta();
}
fn d() {
    epsilon();
}
",
        "
fn a() {
    alpha();
}
fn c() {
    delta();
}
fn d() {
    epsilon();
}
fn b() {
    beta();
    gamma();
}
",
        expect![[r#"
            intact a.rs:11-14 via Search

              fn a() {
                  alpha();
              }
              fn c() {
                  delta();
              }
              fn d() {
                  epsilon();
              }
            > fn b() {
            >     beta();
            >     gamma();
            > }
        "#]],
    );
}

#[test]
fn moved_and_reindented_is_modified_at_the_new_place() {
    check(
        "
> fn helper() {
>     beta();
>     gamma();
> }
fn c() {
    delta();
}
",
        "
fn c() {
    delta();
}
mod inner {
    fn helper() {
        beta();
        gamma();
    }
}
",
        expect![[r#"
            modified a.rs:6-9 via Search

              fn c() {
                  delta();
              }
              mod inner {
            >     fn helper() {
            >         beta();
            >         gamma();
            >     }
              }
        "#]],
    );
}

#[test]
fn moved_and_slightly_edited_is_found_fuzzily() {
    check(
        "
> fn helper(x: u32) -> u32 {
>     let doubled = x * 2;
>     let shifted = doubled + 7;
>     shifted.pow(2)
> }
fn main() {
    run();
}
",
        "
fn main() {
    run();
}
fn helper(x: u32) -> u32 {
    let doubled = x * 2;
    let shifted = doubled + 9;
    shifted.pow(2)
}
",
        expect![[r#"
            modified a.rs:5-9 via Diff
  
              fn main() {
                  run();
              }
            > fn helper(x: u32) -> u32 {
            >     let doubled = x * 2;
            >     let shifted = doubled + 9;
            >     shifted.pow(2)
            > }
        "#]],
    );
}

#[test]
fn moved_to_another_file_is_found_there() {
    check_files(
        "
fn keep() {
    stays();
}
> fn travel() {
>     goes_elsewhere();
> }
",
        Some("fn keep() {\n    stays();\n}\n"),
        &[("b.rs", "use x;\n\nfn travel() {\n    goes_elsewhere();\n}\n")],
        expect![[r#"
            intact b.rs:3-5 via Search
              use x;

            > fn travel() {
            >     goes_elsewhere();
            > }
        "#]],
    );
}

#[test]
fn the_file_deleted_with_the_code_elsewhere_follows_the_code() {
    check_files(
        "
> fn travel() {
>     goes_elsewhere();
> }
",
        None,
        &[("b.rs", "fn travel() {\n    goes_elsewhere();\n}\n")],
        expect![[r#"
            intact b.rs:1-3 via Search
            > fn travel() {
            >     goes_elsewhere();
            > }
        "#]],
    );
}

#[test]
fn the_file_deleted_outright_is_deleted_where_it_was() {
    check_files(
        "\n> fn gone() {}\n",
        None,
        &[],
        expect![[r#"
        deleted a.rs:1 via Diff
    "#]],
    );
}

#[test]
fn duplicated_then_one_copy_edited_is_never_a_silent_intact() {
    check(
        "
> fn parse(input: &str) -> Value {
>     let tokens = lex(input);
>     build(tokens)
> }
",
        "
fn parse(input: &str) -> Value {
    let tokens = lex_strict(input);
    build(tokens)
}
fn parse(input: &str) -> Value {
    let tokens = lex(input);
    build(tokens)
}
",
        expect![[r#"
            modified a.rs:6-9 via Diff
  
              fn parse(input: &str) -> Value {
                  let tokens = lex_strict(input);
                  build(tokens)
              }
            > fn parse(input: &str) -> Value {
            >     let tokens = lex(input);
            >     build(tokens)
            > }
        "#]],
    );
}

#[test]
fn copies_in_two_other_files_are_an_ambiguous_modified() {
    check_files(
        "
> fn shared_helper(x: u32) -> u32 {
>     x.rotate_left(3) ^ 0x5bd1e995
> }
",
        Some("// emptied\n"),
        &[
            ("b.rs", "fn shared_helper(x: u32) -> u32 {\n    x.rotate_left(3) ^ 0x5bd1e995\n}\n"),
            ("c.rs", "fn shared_helper(x: u32) -> u32 {\n    x.rotate_left(3) ^ 0x5bd1e995\n}\n"),
        ],
        expect![[r#"
            modified b.rs:1-3 via Search
            > fn shared_helper(x: u32) -> u32 {
            >     x.rotate_left(3) ^ 0x5bd1e995
            > }
        "#]],
    );
}

#[test]
fn rewritten_beyond_recognition_is_deleted_where_it_was() {
    check(
        "
fn f() {
>     legacy_call(a, b);
}
",
        "
fn f() {
    0xDEADBEEF
}
",
        expect![[r#"
            deleted a.rs:3 via Diff

              fn f() {
            x     0xDEADBEEF
              }
        "#]],
    );
}

#[test]
fn whitespace_only_reformatting_is_modified_in_place() {
    check(
        "
fn f() {
>     let a = 1;
>     let b = 2;
}
",
        "
fn f() {
\tlet a = 1;
\tlet b = 2;
}
",
        expect![[r#"
            modified a.rs:3-4 via Diff

              fn f() {
            > 	let a = 1;
            > 	let b = 2;
              }
        "#]],
    );
}

#[test]
fn crlf_conversion_of_the_whole_file_is_intact() {
    check(
        "
fn a() {}
> fn b() {
>     work();
> }
",
        "\r\nfn a() {}\r\nfn b() {\r\n    work();\r\n}\r\n",
        expect![[r#"
            intact a.rs:3-5 via Diff

              fn a() {}
            > fn b() {
            >     work();
            > }
        "#]],
    );
}

#[test]
fn a_byte_order_mark_added_keeps_it_intact() {
    check(
        "\n> first();\n",
        "\u{FEFF}\nfirst();\n",
        expect![[r#"
        intact a.rs:2 via Diff

        > first();
    "#]],
    );
}

#[test]
fn losing_the_final_newline_keeps_the_last_line_intact() {
    check(
        "a();\n> b();\n",
        "a();\nb();",
        expect![[r#"
        intact a.rs:2 via Diff
          a();
        > b();
    "#]],
    );
}

#[test]
fn an_emptied_file_deletes_the_anchor() {
    check(
        "\n> something();\n",
        "",
        expect![[r#"
        deleted a.rs:1 via Diff
    "#]],
    );
}

#[test]
fn a_range_past_the_end_is_unknown_with_the_reason() {
    let anchor = Anchor { path: "a.rs".into(), lines: LineRange::new(3, 9), ..Anchor::default() };
    let old = Text::new("one\ntwo\nthree\n");
    let found = relocate(&anchor, &Sources { old: Some(&old), new: Some(("a.rs", &old)), ..Sources::default() });
    expect![[r#"
        unknown: lines 3-9 are past the end of a.rs, which has 3 lines at that commit
    "#]]
    .assert_eq(&render(&found, &[]));
}

#[test]
fn binary_files_are_unknown_with_the_reason() {
    let anchor = Anchor { path: "logo.png".into(), lines: LineRange::new(1, 1), ..Anchor::default() };
    let png = Text::from_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\n");
    let found = relocate(&anchor, &Sources { old: Some(&png), new: Some(("logo.png", &png)), ..Sources::default() });
    expect![[r#"
        unknown: logo.png is a binary file; lines mean nothing there
    "#]]
    .assert_eq(&render(&found, &[]));
}

#[test]
fn without_the_commit_the_text_finds_it() {
    let anchor = Anchor {
        path: "a.rs".into(),
        lines: LineRange::new(2, 3),
        text: Some("fn b() {\n    work();\n".into()),
        ..Anchor::default()
    };
    let new = Text::new("fn a() {}\n\n\nfn b() {\n    work();\n}\n");
    let found = relocate(&anchor, &Sources { new: Some(("a.rs", &new)), ..Sources::default() });
    assert_eq!(
        found,
        Ok(Relocation { status: Status::Intact, path: "a.rs".into(), lines: LineRange::new(4, 5), via: Via::Text })
    );
}

#[test]
fn without_the_commit_context_tells_copies_apart() {
    let anchor = Anchor {
        path: "a.rs".into(),
        lines: LineRange::new(1, 1),
        text: Some("    shared_line();".into()),
        before: vec!["fn two() {".into()],
        after: vec!["}".into()],
        ..Anchor::default()
    };
    let new = Text::new("fn one() {\n    shared_line();\n}\nfn two() {\n    shared_line();\n}\n");
    let found = relocate(&anchor, &Sources { new: Some(("a.rs", &new)), ..Sources::default() }).unwrap();
    assert_eq!((found.status, found.lines), (Status::Intact, LineRange::new(5, 5)));
}

#[test]
fn without_the_commit_or_text_it_is_unknown() {
    let anchor = Anchor { path: "a.rs".into(), lines: LineRange::new(1, 1), ..Anchor::default() };
    let new = Text::new("x\n");
    assert_eq!(
        relocate(&anchor, &Sources { new: Some(("a.rs", &new)), ..Sources::default() }),
        Err(Unlocatable::NoText)
    );
}

#[test]
fn text_anchored_before_it_was_committed_is_found_by_its_text() {
    // The anchor's commit holds other lines at 2-3: the user anchored on uncommitted edits.
    let anchor = Anchor {
        path: "a.rs".into(),
        lines: LineRange::new(2, 3),
        text: Some("    new_work();\n    more_new();\n".into()),
        ..Anchor::default()
    };
    let old = Text::new("fn b() {\n    old_work();\n}\n");
    let new = Text::new("fn b() {\n    prelude();\n    new_work();\n    more_new();\n}\n");
    let found =
        relocate(&anchor, &Sources { old: Some(&old), new: Some(("a.rs", &new)), ..Sources::default() }).unwrap();
    assert_eq!((found.status, found.lines, found.via), (Status::Intact, LineRange::new(3, 4), Via::Text));
}

#[test]
fn a_hundred_thousand_line_file_with_thousands_of_edits_relocates_every_anchor() {
    // Every 20th line edited, every 50th deleted, a line inserted every 30: 10,000+ changes.
    let old: Vec<String> = (0..100_000).map(|i| format!("    let value_{i} = compute({i}, {});", i * 7)).collect();
    let mut new: Vec<String> = Vec::new();
    for (i, line) in old.iter().enumerate() {
        if i % 30 == 0 {
            new.push(format!("    // inserted before {i}"));
        }
        if i % 50 == 0 {
            continue;
        }
        new.push(if i % 20 == 0 { format!("{line} // edited") } else { line.clone() });
    }
    let (old_t, new_t) = (Text::new(old.join("\n")), Text::new(new.join("\n")));
    let map = LineMap::new(&old_t, &new_t);
    let src = Sources { old: Some(&old_t), new: Some(("big.rs", &new_t)), map: Some(&map), others: None };
    for line in (1..100_000).step_by(997) {
        let anchor = Anchor { path: "big.rs".into(), lines: LineRange::new(line, line + 2), ..Anchor::default() };
        let r = relocate(&anchor, &src).unwrap();
        let old_lines = &old[line as usize - 1..line as usize + 2];
        let now: Vec<&str> = new_t.lines(r.lines.start as usize - 1..r.lines.end as usize).collect();
        match r.status {
            Status::Intact => assert_eq!(now, old_lines),
            Status::Modified => assert!(now.iter().any(|l| old_lines.iter().any(|o| l.starts_with(o.as_str())))),
            Status::Deleted => panic!("line {line}: nothing in this history deletes three lines in a row"),
        }
    }
}

#[test]
fn invalid_utf8_bytes_relocate_like_any_other_text() {
    // Latin-1 bytes in a file that claims nothing: replaced when decoded, never a panic, and
    // the same bytes compare equal on both sides.
    let old = Text::from_bytes(b"caf\xe9 = 1\nna\xefve = 2\nend = 3\n");
    let new = Text::from_bytes(b"header = 0\ncaf\xe9 = 1\nna\xefve = 2\nend = 3\n");
    let anchor = Anchor { path: "l1.txt".into(), lines: LineRange::new(1, 2), ..Anchor::default() };
    let found = relocate(&anchor, &Sources { old: Some(&old), new: Some(("l1.txt", &new)), ..Sources::default() });
    assert_eq!(found.map(|r| (r.status, r.lines)), Ok((Status::Intact, LineRange::new(2, 3))));
}
