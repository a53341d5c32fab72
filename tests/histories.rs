//! Accuracy on one real history: cobra (`fixtures/histories/cobra.bundle`), its anchors relocated
//! forward to its newest commit (`cobra`, 1,000 cases) and backward to an older one
//! (`cobra-back`, 750 cases), through the built `marginalia locate --batch`, scored with the
//! evaluation's rules and hand verdicts (tests/common/histories.rs). The bounds sit just above
//! today's figures: a change that places more discussions on the wrong code, or drops more of
//! them as deleted, fails here. `cargo bench --bench histories` gives every history's figures,
//! beside the plain diff's. `HISTORIES_BIN=PATH` runs another build instead of the one cargo built.

#[path = "common/histories.rs"]
mod histories;

use std::process::Command;

use histories::{Blobs, CaseSet, Verdicts, clone_bundle, has_commit};

/// Runs `set`, prints its figures and checks them: at most `wrong`% on the wrong code, at most
/// `lost`% said deleted while their code survives, at least `right`% right.
fn check(set: &str, wrong: f64, lost: f64, right: f64) {
    let repo = clone_bundle(&histories::fixtures().join("cobra.bundle"));
    let cases = CaseSet::load(set);
    assert!(has_commit(repo.path(), &cases.to), "{set}: the target {} is not in cobra.bundle", cases.to);
    let batch = repo.path().join("cases.jsonl");
    std::fs::write(&batch, cases.batch()).unwrap();
    let out = Command::new(histories::marginalia_bin())
        .args(["locate", "--repo"])
        .arg(repo.path())
        .args(["--to", &cases.to, "--batch"])
        .arg(&batch)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("the marginalia binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers = histories::parse_answers(&String::from_utf8_lossy(&out.stdout));
    let verdicts = Verdicts::load(&histories::fixtures().join("verdicts.jsonl"), set);
    let score = histories::score(&cases, &answers, &Blobs::new(repo.path()), &verdicts);
    println!("{} ({})", score.judge_line(set), histories::marginalia_bin().display());
    for line in &score.listed {
        println!("  {line}");
    }
    let at_most = |count: usize, pct: f64| count as f64 <= pct / 100.0 * score.n as f64 + 1e-9;
    assert!(at_most(score.wrong, wrong), "{set}: {} answers on the wrong code (at most {wrong}%)", score.wrong);
    assert!(
        at_most(score.lost, lost),
        "{set}: {} answers deleted while the code survives (at most {lost}%)",
        score.lost
    );
    assert!(
        score.right as f64 >= right / 100.0 * score.n as f64 - 1e-9,
        "{set}: {:.2}% right (at least {right}%)",
        score.pct(score.right)
    );
}

#[test]
fn cobra_anchors_follow_their_code_to_the_newest_commit() {
    check("cobra", 0.3, 0.2, 99.5);
}

#[test]
fn cobra_anchors_follow_their_code_back_to_an_older_commit() {
    check("cobra-back", 0.2, 1.0, 98.9);
}
