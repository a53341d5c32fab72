//! The rules: what each kind of credential looks like, as a pattern and a check of what the
//! pattern found. Each rule yields candidates (the byte span of the secret part); `mod.rs`
//! settles overlaps between rules.
//!
//! Patterns use the `regex` crate on bytes, with Unicode off. It keeps each rule one readable
//! line instead of a hand-written matcher, runs in time linear in the text (finite automata,
//! no backtracking), and, being a dependency, is compiled with optimisations even in debug
//! builds (`[profile.dev.package."*"]`), so scanning a megabyte stays fast in tests. It was
//! already in the tree through `tracing-subscriber`'s `env-filter` (regex-automata).
//! Patterns start at a word boundary (`\b`), so `xAKIA…` is not a key; what must not follow a
//! token is checked in code (the `regex` crate has no look-ahead), and patterns never consume the
//! text after a secret, so that the next match can start right there.

use std::sync::LazyLock;

use regex::bytes::{Captures, Regex};

use super::value::{MIN_SECRET_LEN, is_placeholder, is_random, looks_like_words};

/// The secret part a rule found, as a byte range of the scanned text, before overlaps between
/// rules are settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub start: usize,
    pub end: usize,
    /// Leading bytes of the secret that are public (`ghp_`, `AKIA`) and may be shown.
    pub public: usize,
    /// A fixed-length token followed by more of its alphabet: part of something longer, unless
    /// what follows is itself a secret (`AIza…-----BEGIN PRIVATE KEY-----`). Settled with the
    /// other findings, so that redacting the one after it does not uncover it.
    pub runs_on: bool,
}

pub(super) struct Rule {
    pub id: &'static str,
    pub what: &'static str,
    /// Higher wins when two candidates overlap: a GitHub token assigned to `token = "…"` is
    /// reported as a GitHub token, not as a high-entropy assignment.
    pub priority: u8,
    pattern: &'static str,
    check: fn(&[u8], &Captures) -> Option<Span>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

const SPECIFIC: u8 = 2;
const URL: u8 = 1;
const GENERIC: u8 = 0;

/// Every rule, in no particular order (overlaps are settled by priority, then position).
pub(super) static RULES: &[Rule] = &[
    Rule {
        id: "aws-access-key-id",
        what: "an AWS access key id",
        priority: SPECIFIC,
        pattern: r"\b(?:AKIA|ASIA)[A-Z0-9]{16}",
        check: |text, c| token(text, c, 0, 4, |b| b.is_ascii_alphanumeric()),
    },
    Rule {
        id: "aws-secret-access-key",
        what: "an AWS secret access key",
        priority: SPECIFIC,
        pattern: r#"(?i)\b(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)["'`]?[ \t]*(?:=>|:=|=|:)[ \t]*["'`]?([A-Za-z0-9/+]{40})"#,
        check: |text, c| token(text, c, 1, 0, |b| b.is_ascii_alphanumeric() || b"/+=".contains(&b)),
    },
    Rule {
        id: "github-token",
        what: "a GitHub token",
        priority: SPECIFIC,
        pattern: r"\bgh[pousr]_[A-Za-z0-9]{36,251}",
        check: |text, c| token(text, c, 0, 4, |b| b.is_ascii_alphanumeric()),
    },
    Rule {
        id: "github-token",
        what: "a GitHub token",
        priority: SPECIFIC,
        pattern: r"\bgithub_pat_[A-Za-z0-9_]{22,244}",
        check: |text, c| token(text, c, 0, 11, |b| b.is_ascii_alphanumeric() || b == b'_'),
    },
    Rule {
        id: "gitlab-token",
        what: "a GitLab token",
        priority: SPECIFIC,
        pattern: r"\bglpat-[A-Za-z0-9_-]{20,}",
        check: |text, c| token(text, c, 0, 6, |_| false),
    },
    Rule {
        id: "slack-token",
        what: "a Slack token",
        priority: SPECIFIC,
        pattern: r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        check: |text, c| token(text, c, 0, 5, |_| false),
    },
    Rule {
        id: "slack-webhook",
        what: "a Slack webhook URL",
        priority: SPECIFIC,
        pattern: r"\bhooks\.slack\.com/services/(T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,})",
        check: |text, c| token(text, c, 1, 0, |_| false),
    },
    Rule {
        id: "stripe-live-key",
        what: "a Stripe live key",
        priority: SPECIFIC,
        pattern: r"\b[sr]k_live_[A-Za-z0-9]{24,}",
        check: |text, c| token(text, c, 0, 8, |_| false),
    },
    Rule {
        id: "google-api-key",
        what: "a Google API key",
        priority: SPECIFIC,
        pattern: r"\bAIza[A-Za-z0-9_-]{35}",
        check: |text, c| token(text, c, 0, 4, |b| b.is_ascii_alphanumeric() || b"_-".contains(&b)),
    },
    Rule {
        id: "openai-key",
        what: "an OpenAI-style API key",
        priority: SPECIFIC,
        pattern: r"\b(sk-(?:proj-|svcacct-|admin-|ant-[a-z]+[0-9]{2}-)?)([A-Za-z0-9_-]{20,})",
        check: openai_key,
    },
    Rule {
        id: "npm-token",
        what: "an npm token",
        priority: SPECIFIC,
        pattern: r"\bnpm_[A-Za-z0-9]{36}",
        check: |text, c| token(text, c, 0, 4, |b| b.is_ascii_alphanumeric()),
    },
    Rule {
        id: "marginalia-token",
        what: "a marginalia sync token",
        priority: SPECIFIC,
        pattern: r"\bmrg_[A-Za-z0-9_-]{43}",
        check: |text, c| token(text, c, 0, 4, |b| b.is_ascii_alphanumeric() || b"_-".contains(&b)),
    },
    Rule {
        id: "jwt",
        what: "a JSON Web Token",
        priority: SPECIFIC,
        // Bounded parts (real tokens are far shorter), so a candidate refused for its header
        // can be searched inside again without going quadratic on a long run of base64.
        pattern: r"\b(eyJ[A-Za-z0-9_-]{8,4096})\.[A-Za-z0-9_-]{8,16384}\.[A-Za-z0-9_-]{1,4096}",
        check: jwt,
    },
    Rule {
        id: "private-key",
        what: "a private key",
        priority: SPECIFIC,
        pattern: r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
        check: private_key,
    },
    Rule {
        id: "url-password",
        what: "a password in a URL",
        priority: URL,
        pattern: r#"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@"'<>`]*:([^\s/?#@"'<>`]+)@"#,
        check: url_password,
    },
    Rule {
        id: "high-entropy-assignment",
        what: "a high-entropy value assigned to a secret-looking name",
        priority: GENERIC,
        // name, optional closing quote and bracket (`headers["Authorization"] = …`), operator,
        // optional auth scheme, then the value: quoted ("…", '…', `…`) or bare (`=` only as
        // base64 padding at its end).
        pattern: concat!(
            r#"(?i)\b([A-Za-z0-9_.-]*(?:pass|pwd|secret|token|auth|credential|api_?key|access_?key|private_?key)[A-Za-z0-9_.-]*)"#,
            r#"["'`]?\]?[ \t]*(?:=>|:=|=|:)[ \t]*(?:(?:bearer|basic|token)[ \t]+)?"#,
            r#"(?:"([^"\r\n]*)"|'([^'\r\n]*)'|`([^`\r\n]*)`|([A-Za-z0-9+/_.~!@#$%^*?|-]+=*))"#,
        ),
        check: assignment,
    },
];

impl Rule {
    /// Where this rule's pattern matches in `text` and its check accepts what it found.
    ///
    /// Assignments are searched again from where each one's value starts, not from its end: in
    /// `x.password=password=k9…` the first match's value is the second one's name, and the
    /// first may be refused, or lose to a token that overlaps it.
    pub(super) fn find(&'static self, regex: &Regex, text: &[u8], found: &mut Vec<(&'static Rule, Span)>) {
        let mut at = 0;
        while let Some(caps) = regex.captures_at(text, at) {
            let whole = caps.get(0).expect("group 0 is the match");
            let checked = (self.check)(text, &caps);
            let refused = checked.is_none();
            found.extend(checked.map(|span| (self, span)));
            let value = caps.iter().skip(2).flatten().last().map(|m| m.start());
            at = match value {
                Some(value) if self.priority == GENERIC && value > whole.start() => value,
                // A JWT candidate whose header is not one may hide a real token further in
                // (two run together): look again just past the refused header.
                _ if refused && self.id == "jwt" => caps.get(1).map_or(whole.end(), |h| h.end()),
                _ => whole.end(),
            };
            if at >= text.len() {
                break;
            }
        }
    }
}

/// The rules with their patterns compiled, once per process.
pub(super) static COMPILED: LazyLock<Vec<(&'static Rule, Regex)>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|rule| {
            let pattern = format!("(?-u){}", rule.pattern);
            (rule, Regex::new(&pattern).unwrap_or_else(|e| panic!("rule {}: {e}", rule.id)))
        })
        .collect()
});

/// A token in capture `group` (its pattern starts at a word boundary, `\b`) that is not a mask
/// like `AKIAXXXXXXXXXXXXXXXX`; marked [`Span::runs_on`] when more bytes of its alphabet
/// (`run_on`) follow.
fn token(text: &[u8], caps: &Captures, group: usize, public: usize, run_on: fn(u8) -> bool) -> Option<Span> {
    let m = caps.get(group)?;
    let body = &text[m.start() + public..m.end()];
    let mut seen = [false; 256];
    let distinct = body.iter().filter(|&&b| !std::mem::replace(&mut seen[b as usize], true)).count();
    let runs_on = text.get(m.end()).is_some_and(|&b| run_on(b));
    (distinct > 3).then_some(Span { start: m.start(), end: m.end(), public, runs_on })
}

/// `sk-` keys: the part after the prefix must look random, so that `sk-learn-tutorial-notes`
/// or a CSS class is not taken for a key.
fn openai_key(_: &[u8], caps: &Captures) -> Option<Span> {
    let prefix = caps.get(1)?;
    let body = caps.get(2)?;
    let value = body.as_bytes();
    let mixed = value.iter().any(u8::is_ascii_digit) && value.iter().any(u8::is_ascii_alphabetic);
    (mixed && is_random(value) && !is_placeholder(value) && !looks_like_words(value)).then_some(Span {
        start: prefix.start(),
        end: body.end(),
        public: prefix.len(),
        runs_on: false,
    })
}

/// JWTs: the header must decode (base64url) to a JSON object with an `alg` member.
fn jwt(_: &[u8], caps: &Captures) -> Option<Span> {
    let whole = caps.get(0)?;
    let header = base64url_decode(caps.get(1)?.as_bytes())?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    header.get("alg")?;
    Some(Span { start: whole.start(), end: whole.end(), public: 3, runs_on: false })
}

/// Decodes unpadded base64url; `None` on any other byte.
fn base64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in input {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Bytes of base64 a key body must have: a header alone (a PEM parser's constant, a comment
/// about keys) is not a key.
const MIN_KEY_BODY: usize = 32;

/// PEM private keys, from `-----BEGIN … PRIVATE KEY-----` through the key material to the
/// `-----END …-----` that follows it. A block cut short (a snippet that ends inside the key) runs
/// to the end of its material. Keys in string literals with `\n` escapes (service-account JSON)
/// are one line. Linear: the material is read once, and nothing past it.
fn private_key(text: &[u8], caps: &Captures) -> Option<Span> {
    let header = caps.get(0)?;
    let mut end = header.end() + key_material_len(&text[header.end()..]);
    let body = &text[header.end()..end];
    let base64 = body.iter().filter(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)).count();
    if base64 < MIN_KEY_BODY {
        return None;
    }
    let gap = text[end..].iter().take_while(|b| b.is_ascii_whitespace()).count();
    let rest = &text[end + gap..];
    if rest.starts_with(b"-----END") {
        let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
        if let Some(close) = line[8..].windows(5).position(|w| w == b"-----") {
            end += gap + 8 + close + 5;
        }
    }
    Some(Span { start: header.start(), end, public: 0, runs_on: false })
}

/// Length of the key material after a header: base64, whitespace, `\n` escapes, quotes and
/// string concatenation, and whole PEM header lines (`Proc-Type:`, `DEK-Info:`, `Comment:`).
/// Trailing whitespace is left out.
fn key_material_len(text: &[u8]) -> usize {
    let is_material = |b: &u8| b.is_ascii_alphanumeric() || b"+/=\\\"',;".contains(b) || b.is_ascii_whitespace();
    let mut at = 0;
    let mut line_start = true;
    while at < text.len() {
        if line_start {
            let indent = text[at..].iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
            let line = &text[at + indent..];
            if [&b"Proc-Type:"[..], b"DEK-Info:", b"Comment:"].iter().any(|h| line.starts_with(h)) {
                at += indent + line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
                continue;
            }
        }
        if !is_material(&text[at]) {
            break;
        }
        line_start = text[at] == b'\n';
        at += 1;
    }
    at - text[..at].iter().rev().take_while(|b| b.is_ascii_whitespace()).count()
}

/// `scheme://user:password@host`: the password, unless it is a placeholder (`${DB_PASSWORD}`,
/// `<password>`) or one of the words that stand for one in examples (`password`, `pass`).
fn url_password(text: &[u8], caps: &Captures) -> Option<Span> {
    let whole = caps.get(0)?;
    // A host must follow; it is checked here rather than matched, so that a URL right after
    // this one (`…@a://…`) can still be found.
    let host = &text[whole.end()..];
    let ipv6 = host.first() == Some(&b'[') && host.get(1).is_some_and(|b| b.is_ascii_hexdigit() || *b == b':');
    if !(host.first().is_some_and(u8::is_ascii_alphanumeric) || ipv6) {
        return None;
    }
    let password = caps.get(1)?;
    let value = password.as_bytes();
    let lower = value.to_ascii_lowercase();
    const STAND_INS: &[&[u8]] = &[b"password", b"pass", b"passwd", b"pwd", b"secret", b"pw", b"x"];
    if STAND_INS.contains(&lower.as_slice()) || is_placeholder(value) || value.starts_with(b"$") {
        return None;
    }
    Some(Span { start: password.start(), end: password.end(), public: 0, runs_on: false })
}

/// `name = "value"`, `name: value`, `NAME=value`, `"name": "value"`: the name must suggest a
/// secret and the value must look random (see [`is_random`]) and be neither a placeholder nor
/// code (`get_password()`, `os.environ["X"]`, `settings.API_KEY`, `process.env.X`).
fn assignment(text: &[u8], caps: &Captures) -> Option<Span> {
    let (value, bare) = match (2..=4).find_map(|i| caps.get(i)) {
        Some(quoted) => (quoted, false),
        None => (caps.get(5)?, true),
    };
    // `"Bearer <token>"`: the scheme is not part of the secret.
    let scheme = [&b"bearer "[..], b"basic ", b"token "]
        .iter()
        .find(|s| value.as_bytes().len() > s.len() && value.as_bytes()[..s.len()].eq_ignore_ascii_case(s))
        .map_or(0, |s| s.len());
    let (start, end) = (value.start() + scheme, value.end());
    let bytes = &text[start..end];
    let name = caps.get(1)?;
    // `[redacted: github-token]="…"`: our own mark is not a name.
    if bytes.len() < MIN_SECRET_LEN
        || text[..name.start()].ends_with(b"[redacted: ")
        || !names_a_secret(name.as_bytes())
    {
        return None;
    }
    if bare {
        // A bare value followed by a call, an index or a generic is code: `get_password()`,
        // `os.environ["TOKEN"]`, `Option<Token>`.
        let next = text[value.end()..].iter().find(|b| !matches!(b, b' ' | b'\t'));
        if next.is_some_and(|b| b"([{<".contains(b)) {
            return None;
        }
    }
    if !is_random(bytes) || is_placeholder(bytes) || looks_like_words(bytes) {
        return None;
    }
    Some(Span { start, end, public: 0, runs_on: false })
}

/// Whether a name suggests a secret, judged on its words (`dbPassword`, `API_KEY`,
/// `client-secret`, `x-auth-token`, `oauth`), so that `author`, `tokenizer`, `bypass` and
/// `max_tokens` do not.
fn names_a_secret(name: &[u8]) -> bool {
    // Words that name a secret when they end a word: `password`, `dbpassword`, `githubtoken`.
    const ENDINGS: &[&str] = &[
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "accesskey",
        "privatekey",
        "credential",
        "credentials",
        "auth",
    ];
    // Words that do only on their own.
    const WHOLE: &[&str] = &["pass", "pwd", "authorization"];
    // Pairs of words: `api_key`, `private-key`.
    const PAIRS: &[(&str, &str)] = &[
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
    ];
    let words = name_words(name);
    words.iter().any(|w| ENDINGS.iter().any(|e| w.ends_with(e)) || WHOLE.contains(&w.as_str()))
        || words.windows(2).any(|p| PAIRS.contains(&(p[0].as_str(), p[1].as_str())))
}

/// A name's words, lower-cased: split at non-alphanumerics and camelCase humps.
fn name_words(name: &[u8]) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for &b in name {
        if (!b.is_ascii_alphanumeric() || (b.is_ascii_uppercase() && prev_lower)) && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        if b.is_ascii_alphanumeric() {
            current.push(b.to_ascii_lowercase() as char);
        }
        prev_lower = b.is_ascii_lowercase() || b.is_ascii_digit();
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}
