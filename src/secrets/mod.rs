//! Secret scanning: finding what looks like a credential in a snippet or a diff before it leaves
//! the machine, redacting it, and saying so in one sentence.
//!
//! **Architecture invariant:** pure. Text in, findings out; no IO, no configuration, no state
//! but the compiled patterns.
//!
//! A text with findings is *held back*: the caller does not send it, shows [`describe`]'s
//! message, and lets the user send [`redact`]'s version instead, or the original after an
//! explicit override. The rules (see `rules.rs`):
//!
//! | rule | what it matches |
//! | --- | --- |
//! | `aws-access-key-id` | `AKIA`/`ASIA` + 16 upper-case letters or digits. AWS's documented example `AKIAIOSFODNN7EXAMPLE` counts: it is shaped like a key, and a scanner that trusts a word inside a key is easy to fool |
//! | `aws-secret-access-key` | 40 base64 characters assigned to `aws_secret_access_key` (any case or spelling with `_`) or `secretAccessKey` |
//! | `github-token` | `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 or more letters and digits; `github_pat_` fine-grained tokens |
//! | `gitlab-token` | `glpat-` + 20 or more |
//! | `slack-token`, `slack-webhook` | `xoxa-`, `xoxb-`, `xoxp-`, `xoxr-`, `xoxs-` tokens; `hooks.slack.com/services/T…/B…/…` |
//! | `stripe-live-key` | `sk_live_`, `rk_live_` |
//! | `google-api-key` | `AIza` + 35 |
//! | `openai-key` | `sk-` (also `sk-proj-`, `sk-ant-api03-`, …) + 20 or more that look random |
//! | `npm-token` | `npm_` + 36 |
//! | `marginalia-token` | our own sync tokens: `mrg_` + 43 base64url |
//! | `jwt` | three base64url parts whose header decodes to JSON with `alg` |
//! | `private-key` | `-----BEGIN … PRIVATE KEY-----` blocks with key material (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP) |
//! | `url-password` | the password in `scheme://user:password@host` |
//! | `high-entropy-assignment` | a value of 16 or more bytes with high entropy, assigned to a name whose words suggest a secret |
//!
//! The last rule is the only fuzzy one. Names: a word ending in `password`, `passwd`,
//! `passphrase`, `secret`, `token`, `apikey`, `accesskey`, `privatekey`, `credential(s)` or
//! `auth`; the words `pass`, `pwd`, `authorization`; or `api key`, `access key`, `private key`,
//! `signing key`, `encryption key`, `master key` (words split at `_`, `-`, `.` and camelCase).
//! Values: at least 3.5 bits of entropy per byte (3.0 for hex), and not a placeholder
//! (`xxxx`, `<your-token>`, `${VAR}`, `${{ secrets.X }}`, `changeme`, `$TOKEN`, repeated or
//! sequential characters), not made of words (identifiers, paths, URLs), and not code
//! (`get_password()`, `os.environ["X"]`, `process.env.X`). `value.rs` has the reasons for the
//! thresholds. Known misses: passphrases of plain words, and secrets under names that say nothing.
//!
//! Every rule is linear in the text: patterns are finite automata, checks look at what a pattern
//! found and a byte or two around it.

mod rules;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rules::{COMPILED, Rule, Span};

/// Something in a text that looks like a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Stable id of the rule: `aws-access-key-id`, `github-token`, `private-key`,
    /// `high-entropy-assignment`, … (the table in this module's documentation).
    pub rule: &'static str,
    /// For people: "an AWS access key id".
    pub what: &'static str,
    /// 1-based line of the secret's start in the scanned text.
    pub line: usize,
    /// 1-based column of the secret's start, in characters.
    pub column: usize,
    /// Byte offset of the secret's start in the scanned text.
    pub offset: usize,
    /// Length of the secret part in bytes.
    pub len: usize,
    /// The secret masked, such as `AKIA…MPLE`: at most a public prefix and the last four
    /// characters, and those only when at least twelve stay hidden. Never the whole secret.
    pub preview: String,
}

/// What looks like a credential in `text`, sorted by position; findings never overlap. Where
/// two rules find the same secret, the specific one wins (a GitHub token assigned to
/// `token = "…"` is a `github-token`).
pub fn scan(text: &str) -> Vec<Finding> {
    // Candidates are found leftmost first and settled by overlap; a secret hidden inside a
    // candidate that lost (two tokens run together) is found in a next round, with what was
    // kept masked out. Two rounds are enough in practice; four bound hostile input.
    let mut masked = text.as_bytes().to_vec();
    let mut kept = Kept::default();
    for _ in 0..4 {
        let before = kept.0.len();
        settle(&masked, &mut kept);
        if kept.0.len() == before {
            break;
        }
        for (_, span) in kept.0.values() {
            masked[span.start..span.end].fill(0);
        }
    }
    let mut lines = LineCursor::new(text);
    kept.0
        .into_values()
        .map(|(rule, span)| {
            let (line, column) = lines.position(span.start);
            Finding {
                rule: rule.id,
                what: rule.what,
                line,
                column,
                offset: span.start,
                len: span.end - span.start,
                preview: preview(&text[span.start..span.end], span.public, rule),
            }
        })
        .collect()
}

/// One round: every rule's candidates in `bytes`, added to `kept` where they are apart from
/// what it holds.
fn settle(bytes: &[u8], kept: &mut Kept) {
    let mut candidates: Vec<(&'static Rule, Span)> = Vec::new();
    for (rule, regex) in COMPILED.iter() {
        rule.find(regex, bytes, &mut candidates);
    }
    // Settle overlaps: higher priority first, then earlier, then longer.
    candidates.sort_by_key(|(rule, span)| (std::cmp::Reverse(rule.priority), span.start, std::cmp::Reverse(span.end)));
    let (runs_on, candidates): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|(_, span)| span.runs_on);
    for (rule, span) in candidates {
        kept.add(rule, span, |_| true);
    }
    // A token that runs on into a secret found right after it is a token after all; right to
    // left, so that a chain of them is settled in one sweep.
    let mut runs_on = runs_on;
    runs_on.sort_by_key(|(_, span)| std::cmp::Reverse(span.start));
    for (rule, span) in runs_on {
        kept.add(rule, span, |next| next.is_some_and(|n| n.start == span.end));
    }
}

/// Findings kept so far, apart from each other, by start.
#[derive(Default)]
struct Kept(BTreeMap<usize, (&'static Rule, Span)>);

impl Kept {
    /// Keeps `span` unless it overlaps one kept already or `next_ok` refuses the span that would
    /// follow it.
    fn add(&mut self, rule: &'static Rule, span: Span, next_ok: impl Fn(Option<&Span>) -> bool) {
        let before = self.0.range(..=span.start).next_back().map(|(_, (_, k))| k);
        let after = self.0.range(span.start..).next().map(|(_, (_, k))| k);
        let apart = before.is_none_or(|k| k.end <= span.start) && after.is_none_or(|k| k.start >= span.end);
        if apart && next_ok(after) {
            self.0.insert(span.start, (rule, span));
        }
    }
}

/// `text` with every secret part replaced by `[redacted: <rule>]`, the rest byte for byte as it
/// was, and the findings (positions in the original text). A redacted private key block becomes
/// one line, so later line numbers move up.
pub fn redact(text: &str) -> (String, Vec<Finding>) {
    let findings = scan(text);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in &findings {
        out.push_str(&text[at..f.offset]);
        write!(out, "[redacted: {}]", f.rule).expect("writing to a String");
        at = f.offset + f.len;
    }
    out.push_str(&text[at..]);
    (out, findings)
}

/// One message for people about why a text is held back, naming each line and what is on it:
/// `held back: line 3 has an AWS access key id (AKIA…MPLE); line 7 has a GitHub token
/// (ghp_…x2Qa) and a private key (BEGIN RSA PRIVATE KEY…)`. At most [`DESCRIBED_LINES`] lines
/// are named; the rest are counted. Empty findings give `nothing looks like a secret`.
pub fn describe(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "nothing looks like a secret".to_owned();
    }
    let mut lines: Vec<(usize, Vec<&Finding>)> = Vec::new();
    for f in findings {
        match lines.last_mut() {
            Some((line, on_it)) if *line == f.line => on_it.push(f),
            _ => lines.push((f.line, vec![f])),
        }
    }
    let mut out = String::from("held back: ");
    for (i, (line, on_it)) in lines.iter().take(DESCRIBED_LINES).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let things: Vec<String> = on_it.iter().map(|f| format!("{} ({})", f.what, f.preview)).collect();
        write!(out, "line {line} has {}", join_and(&things)).expect("writing to a String");
    }
    let rest: usize = lines.iter().skip(DESCRIBED_LINES).map(|(_, on_it)| on_it.len()).sum();
    if rest > 0 {
        let s = if rest == 1 { "" } else { "s" };
        write!(out, "; and {rest} more secret{s} further down").expect("writing to a String");
    }
    out
}

/// How many lines [`describe`] names before it only counts.
pub const DESCRIBED_LINES: usize = 5;

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Characters of a secret that always stay hidden when its end is shown.
const HIDDEN: usize = 12;

/// The secret masked: its public prefix (`ghp_`), `…`, and its last four characters when at
/// least [`HIDDEN`] characters stay hidden. Private keys show their header's label instead.
fn preview(secret: &str, public: usize, rule: &Rule) -> String {
    if rule.id == "private-key" {
        // `-----BEGIN RSA PRIVATE KEY-----…`: the label between the dashes, nothing after.
        let label = secret.trim_start_matches('-').split("-----").next().unwrap_or("");
        return format!("{label}…");
    }
    let chars: Vec<char> = secret.chars().collect();
    let public = secret[..public].chars().count();
    let tail = if chars.len() >= public + HIDDEN + 4 { 4 } else { 0 };
    let head: String = chars[..public].iter().collect();
    let end: String = chars[chars.len() - tail..].iter().collect();
    format!("{head}…{end}")
}

/// Turns increasing byte offsets into (line, column) in one pass over the text.
struct LineCursor<'t> {
    text: &'t str,
    at: usize,
    line: usize,
    /// Characters between the start of the line and `at`.
    column: usize,
}

impl<'t> LineCursor<'t> {
    fn new(text: &'t str) -> Self {
        LineCursor { text, at: 0, line: 1, column: 0 }
    }

    /// 1-based line and character column of `offset`; offsets must not decrease.
    fn position(&mut self, offset: usize) -> (usize, usize) {
        let skipped = &self.text[self.at..offset];
        match skipped.rfind('\n') {
            Some(last) => {
                self.line += skipped.bytes().filter(|&b| b == b'\n').count();
                self.column = skipped[last + 1..].chars().count();
            }
            None => self.column += skipped.chars().count(),
        }
        self.at = offset;
        (self.line, self.column + 1)
    }
}
