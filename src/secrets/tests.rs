//! Scanning cases as fixtures: each text is scanned, and the snapshot lists the findings
//! (`line:column rule preview (bytes)`) and the redacted text. The tokens here are random
//! strings of the right shape, never real credentials.

use std::fmt::Write as _;

use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;

/// Scans `text`, renders findings and the redacted text, and checks what must hold for every
/// text: findings sorted and apart, previews that never show a whole secret, and nothing left
/// to find after redaction.
fn check(text: &str, expect: Expect) {
    let findings = scan(text);
    let mut out = String::new();
    for f in &findings {
        writeln!(out, "{}:{} {} {} ({} bytes)", f.line, f.column, f.rule, f.preview, f.len).unwrap();
    }
    assert_invariants(text, &findings);
    if findings.is_empty() {
        out.push_str("no findings\n");
    } else {
        out.push_str("---\n");
        // Carriage returns shown, so that snapshots keep them.
        out.push_str(&redact(text).0.replace('\r', "\\r"));
    }
    expect.assert_eq(&out);
}

fn assert_invariants(text: &str, findings: &[Finding]) {
    for pair in findings.windows(2) {
        assert!(pair[0].offset + pair[0].len <= pair[1].offset, "overlap or disorder: {pair:?}");
    }
    for f in findings {
        let secret = &text[f.offset..f.offset + f.len];
        assert!(!f.preview.contains(secret), "preview {} shows the whole secret", f.preview);
    }
    let (redacted, again) = redact(text);
    assert_eq!(&again, findings);
    assert_eq!(scan(&redacted), vec![], "left after redaction:\n{redacted}");
    if findings.is_empty() {
        assert_eq!(redacted, text);
    }
}

#[test]
fn aws_keys() {
    check(
        r#"
let id = "ASIAQRCLRI1QZJ865UFR";
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
{"SecretAccessKey": "hx2jIclHkCiHp6bR1IqfEouHgxzNNAL5wIScGebc"}
"#,
        expect![[r#"
            2:11 aws-access-key-id ASIA…5UFR (20 bytes)
            3:21 aws-access-key-id AKIA…MPLE (20 bytes)
            4:25 aws-secret-access-key …EKEY (40 bytes)
            5:22 aws-secret-access-key …Gebc (40 bytes)
            ---

            let id = "[redacted: aws-access-key-id]";
            aws_access_key_id = [redacted: aws-access-key-id]
            aws_secret_access_key = [redacted: aws-secret-access-key]
            {"SecretAccessKey": "[redacted: aws-secret-access-key]"}
        "#]],
    );
}

#[test]
fn aws_lookalikes_are_not_keys() {
    check(
        r#"
masked = "AKIAXXXXXXXXXXXXXXXX"
longer = "AKIAIOSFODNN7EXAMPLE2"
inside = "XAKIAIOSFODNN7EXAMPLE"
lower  = "akiaiosfodnn7example"
"#,
        expect![[r#"
            no findings
        "#]],
    );
}

#[test]
fn provider_tokens() {
    check(
        r#"
GITHUB_TOKEN=ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d
git clone https://gho_KLzdocJ2isAjIhKtJ0RlgLKOmxgJTeKdNnFR@github.com/o/r
fine = "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"
gitlab: glpat-c7Tvo-hBKqFYY-kv5ZJr
slack = 'xoxb-684656321223-3079244026859-Ku8iS2G8NPRVdD53X83RZJzz'
hook: https://hooks.slack.com/services/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
Stripe::api_key = "sk_live_zzgEOzdmenCkhvMdgaKjIg8x"; other = "rk_live_Nbe3nNyjOq9wMxEhh2FDEEtfjgVvVq"
maps(key="AIza9ucAUsdMlHUvTCQCyEZDz-TddJ8HyS5SUkC")
//registry.npmjs.org/:_authToken=npm_1id6Vw5DQL05HA064GiIjHGb3CXlMaXZjljE
"#,
        expect![[r#"
            2:14 github-token ghp_…OL8d (40 bytes)
            3:19 github-token gho_…NnFR (40 bytes)
            4:9 github-token github_pat_…y4Qw (93 bytes)
            5:9 gitlab-token glpat-…5ZJr (26 bytes)
            6:10 slack-token xoxb-…ZJzz (56 bytes)
            7:40 slack-webhook …o4gf (44 bytes)
            8:20 stripe-live-key sk_live_…Ig8x (32 bytes)
            8:64 stripe-live-key rk_live_…VvVq (38 bytes)
            9:11 google-api-key AIza…SUkC (39 bytes)
            10:34 npm-token npm_…jljE (40 bytes)
            ---

            GITHUB_TOKEN=[redacted: github-token]
            git clone https://[redacted: github-token]@github.com/o/r
            fine = "[redacted: github-token]"
            gitlab: [redacted: gitlab-token]
            slack = '[redacted: slack-token]'
            hook: https://hooks.slack.com/services/[redacted: slack-webhook]
            Stripe::api_key = "[redacted: stripe-live-key]"; other = "[redacted: stripe-live-key]"
            maps(key="[redacted: google-api-key]")
            //registry.npmjs.org/:_authToken=[redacted: npm-token]
        "#]],
    );
}

#[test]
fn openai_style_keys_need_entropy() {
    check(
        r#"
client = OpenAI(api_key="sk-proj-goEmvnEN5N1aE6PwZPf1Qh6yYTWmE4lBYOvfZ8UzDzV8fUkk")
OPENAI_API_KEY=sk-ibjL5DZPjN0MEQ7wjJJibaZUPgHV7iB3m03nbqnsGpWLuqIA
docs = "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
css = "task-list-item-checkbox-container-wrapper"
pip install sk-learn-tutorial-notebooks-2024
"#,
        expect![[r#"
            2:26 openai-key sk-proj-…fUkk (56 bytes)
            3:16 openai-key sk-…uqIA (51 bytes)
            ---

            client = OpenAI(api_key="[redacted: openai-key]")
            OPENAI_API_KEY=[redacted: openai-key]
            docs = "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            css = "task-list-item-checkbox-container-wrapper"
            pip install sk-learn-tutorial-notebooks-2024
        "#]],
    );
}

#[test]
fn marginalia_tokens_and_jwts() {
    check(
        r#"
Authorization: Bearer mrg_phP9nhFyJfm5di4PzJ59FHz5r1pY4OjE2jBMptUsGr7
const jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
no_alg = "eyJmb28iOiJiYXIiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw"
short = "mrg_phP9nhFyJfm5di4PzJ59FHz5r1pY4OjE2jBMptU"
"#,
        expect![[r#"
            2:23 marginalia-token mrg_…sGr7 (47 bytes)
            3:14 jwt eyJ…sw5c (155 bytes)
            ---

            Authorization: Bearer [redacted: marginalia-token]
            const jwt = "[redacted: jwt]";
            no_alg = "eyJmb28iOiJiYXIiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw"
            short = "mrg_phP9nhFyJfm5di4PzJ59FHz5r1pY4OjE2jBMptU"
        "#]],
    );
}

#[test]
fn private_keys() {
    check(
        r#"
-----BEGIN RSA PRIVATE KEY-----
EqV8ib8HDy88YtDtXbiufMdI8X2Y4rUmer/BH3M1XS0DRdJuPnBIKpi99lSi0tcL
21pffWQJEeNajnez0LHtfROUrWW6XnI3EM3HMRb1OcWrhQ7TTJ+chcVG6MOwUxOV
-----END RSA PRIVATE KEY-----
after
"#,
        expect![[r#"
            2:1 private-key BEGIN RSA PRIVATE KEY… (191 bytes)
            ---

            [redacted: private-key]
            after
        "#]],
    );
    check(
        r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nHMWndqNCIEPx3mnPQC4vkRB5ICpeyOxJRkSq1LI7S1L10e0tza93Ce6KRDiKpFfe\n-----END PRIVATE KEY-----\n", "client_email": "x@y.iam.gserviceaccount.com"}"#,
        expect![[r#"
            1:45 private-key BEGIN PRIVATE KEY… (120 bytes)
            ---
            {"type": "service_account", "private_key": "[redacted: private-key]\n", "client_email": "x@y.iam.gserviceaccount.com"}"#]],
    );
    check(
        r#"
    key = """
    -----BEGIN ENCRYPTED PRIVATE KEY-----
    Proc-Type: 4,ENCRYPTED
    DEK-Info: AES-128-CBC,3F17F5316E2BAC89

    z3gb9pvMEc0goRqG9hTCzppvEJqa+ZgIFI2g8Pahqfpgi9el+OuOjSXXMUHyQ2pq
"#,
        expect![[r#"
            3:5 private-key BEGIN ENCRYPTED PRIVATE KEY… (177 bytes)
            ---

                key = """
                [redacted: private-key]
        "#]],
    );
    check(
        r#"
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
-----END OPENSSH PRIVATE KEY-----
"#,
        expect![[r#"
            2:1 private-key BEGIN OPENSSH PRIVATE KEY… (140 bytes)
            ---

            [redacted: private-key]
        "#]],
    );
}

#[test]
fn key_headers_without_key_material_are_not_keys() {
    check(
        r#"
const HEADER: &str = "-----BEGIN PRIVATE KEY-----";
if line.starts_with("-----BEGIN RSA PRIVATE KEY-----") { parse(rest) }
-----BEGIN PUBLIC KEY-----
EqV8ib8HDy88YtDtXbiufMdI8X2Y4rUmer/BH3M1XS0DRdJuPnBIKpi99lSi0tcL
-----END PUBLIC KEY-----
"#,
        expect![[r#"
            no findings
        "#]],
    );
}

#[test]
fn urls_with_passwords() {
    check(
        r#"
DATABASE_URL=postgres://app:Zq3v9LxT2p@db.internal:5432/app
redis = "redis://:s3cr3tValue9@cache:6379/0"
docs: postgres://user:password@localhost/db and https://user:${DB_PASSWORD}@host/
mail: mailto:someone@example.com, ssh: git@github.com:o/r.git, http://[::1]:8080/
"#,
        expect![[r#"
            2:29 url-password … (10 bytes)
            3:19 url-password … (12 bytes)
            ---

            DATABASE_URL=postgres://app:[redacted: url-password]@db.internal:5432/app
            redis = "redis://:[redacted: url-password]@cache:6379/0"
            docs: postgres://user:password@localhost/db and https://user:${DB_PASSWORD}@host/
            mail: mailto:someone@example.com, ssh: git@github.com:o/r.git, http://[::1]:8080/
        "#]],
    );
}

#[test]
fn high_entropy_assignments() {
    check(
        r#"
password = "NBTxaQWk8J#zF#alHlsZ"
export DB_PASSWORD='P@ssw0rd!2024Spring'
client_secret: UGJmGEp7CgQ0PBQFI14zGtSn
    "apiKey": "7a64cb14028d512c9791e558e08baa71",
const authToken = `hx2jIclHkCiHp6bR1IqfEouHgx`;
headers["Authorization"] = "Basic QmFzaWMgdXNlcjpwYXNzd29yZA=="
--secret=s3cr3t-passw0rd-f0r-db
  db-password: cGFzc3dvcmQxMjM0NTY3OA==
"#,
        expect![[r#"
            2:13 high-entropy-assignment …HlsZ (20 bytes)
            3:21 high-entropy-assignment …ring (19 bytes)
            4:16 high-entropy-assignment …GtSn (24 bytes)
            5:16 high-entropy-assignment …aa71 (32 bytes)
            6:20 high-entropy-assignment …uHgx (26 bytes)
            7:35 high-entropy-assignment …ZA== (28 bytes)
            8:10 high-entropy-assignment …r-db (22 bytes)
            9:16 high-entropy-assignment …OA== (24 bytes)
            ---

            password = "[redacted: high-entropy-assignment]"
            export DB_PASSWORD='[redacted: high-entropy-assignment]'
            client_secret: [redacted: high-entropy-assignment]
                "apiKey": "[redacted: high-entropy-assignment]",
            const authToken = `[redacted: high-entropy-assignment]`;
            headers["Authorization"] = "Basic [redacted: high-entropy-assignment]"
            --secret=[redacted: high-entropy-assignment]
              db-password: [redacted: high-entropy-assignment]
        "#]],
    );
}

#[test]
fn assignments_that_are_not_secrets() {
    check(
        r#"
password = get_password()
token = os.environ["API_TOKEN"]
api_key = process.env.OPENAI_API_KEY
secret = settings.SECRET_KEY_FROM_ENVIRONMENT
token: ${{ secrets.GITHUB_TOKEN }}
password: "${DB_PASSWORD}"
api_key = "<your-api-key-goes-here>"
API_KEY=your_api_key_here
password = "changeme_changeme"
secret = "xxxxxxxxxxxxxxxxxxxxxxxx"
token = "0123456789abcdef0123"
auth_url = "https://auth.example.com/oauth2/token"
token_path: /var/run/secrets/kubernetes.io/serviceaccount/token
password_field = "password_confirmation_input"
author = "Ada Lovelace <ada@example.com> 8f14e45fceea167a5a36"
max_tokens = 4096
tokenizer = "bert-base-multilingual-uncased-v2"
let token: Option<AccessTokenResponse> = None;
if password == "Zq3v9LxT2pWm8Kd4Rb7N" { }
let api_key = env::var("API_KEY")?;
password_hash = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt())
checksum = "9807af0e638c12e753aa1b4e601791bf2a8f71274023c8bbeec12fc149950857"
    Token string `json:"access_token,omitempty"`
<input type="password" name="password" autocomplete="current-password">
export GITHUB_TOKEN=<your token>
"token_type": "Bearer", "password": "",
secretKeyRef: {name: db-credentials, key: password}
"#,
        expect![[r#"
            no findings
        "#]],
    );
}

#[test]
fn lookalikes_in_unrelated_names() {
    check(
        r#"
commit = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
id: 550e8400-e29b-41d4-a716-446655440000
icon = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
integrity="sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="
"#,
        expect![[r#"
            no findings
        "#]],
    );
}

#[test]
fn secret_names_with_lookalike_values_are_flagged() {
    // A git sha or a UUID assigned to a secret's name is taken for a secret: some services use
    // hex strings and UUIDs as API keys (Heroku's are UUIDs).
    check(
        r#"
token = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
HEROKU_API_KEY=550e8400-e29b-41d4-a716-446655440000
"#,
        expect![[r#"
            2:10 high-entropy-assignment …0709 (40 bytes)
            3:16 high-entropy-assignment …0000 (36 bytes)
            ---

            token = "[redacted: high-entropy-assignment]"
            HEROKU_API_KEY=[redacted: high-entropy-assignment]
        "#]],
    );
}

#[test]
fn columns_count_characters_and_lines_count_from_one() {
    check(
        "héllo → wörld\n\tπ = \"ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d\"\r\n",
        expect![[r#"
            2:7 github-token ghp_…OL8d (40 bytes)
            ---
            héllo → wörld
            	π = "[redacted: github-token]"\r
        "#]],
    );
}

#[test]
fn describe_names_lines_and_what_is_on_them() {
    let text = "a = AKIAIOSFODNN7EXAMPLE\n\nb = ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d c = npm_1id6Vw5DQL05HA064GiIjHGb3CXlMaXZjljE\n";
    expect!["held back: line 1 has an AWS access key id (AKIA…MPLE); line 3 has a GitHub token (ghp_…OL8d) and an npm token (npm_…jljE)"].assert_eq(&describe(&scan(text)));
    expect![[r#"nothing looks like a secret"#]].assert_eq(&describe(&[]));
    let many: String = (0..8).map(|i| format!("k{i} = AKIAIOSFODNN7EXAMPL{i}\n")).collect();
    expect!["held back: line 1 has an AWS access key id (AKIA…MPL0); line 2 has an AWS access key id (AKIA…MPL1); line 3 has an AWS access key id (AKIA…MPL2); line 4 has an AWS access key id (AKIA…MPL3); line 5 has an AWS access key id (AKIA…MPL4); and 3 more secrets further down"].assert_eq(&describe(&scan(&many)));
}

/// The thresholds against random values of each alphabet (fixed seed): how many of 1,000
/// random values of each length a secret-named assignment reports.
#[test]
fn thresholds_are_met_by_random_values() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabets = [
        ("base62", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
        ("base64", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
        ("hex", "0123456789abcdef"),
        ("base32", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
    ];
    let mut out = String::new();
    for (name, alphabet) in alphabets {
        let alphabet = alphabet.as_bytes();
        write!(out, "{name:>6}:").unwrap();
        for len in [16, 20, 24, 32, 40] {
            let found = (0..1000)
                .filter(|_| {
                    let value: String =
                        (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize] as char).collect();
                    !scan(&format!("api_key = \"{value}\"\n")).is_empty()
                })
                .count();
            write!(out, " {len}:{found:>4}").unwrap();
        }
        out.push('\n');
    }
    expect![[r#"
        base62: 16: 948 20: 999 24:1000 32:1000 40:1000
        base64: 16: 960 20: 996 24:1000 32:1000 40:1000
           hex: 16: 851 20: 965 24: 995 32:1000 40:1000
        base32: 16: 720 20: 925 24: 996 32:1000 40:1000
    "#]]
    .assert_eq(&out);
}

/// Ordinary source code (this crate's own) holds nothing that looks like a secret; a megabyte of
/// it is scanned in one pass per rule.
#[test]
fn a_megabyte_of_ordinary_code_has_no_findings() {
    let sources = [
        include_str!("../anchor/relocate.rs"),
        include_str!("../anchor/search.rs"),
        include_str!("../lsp/mod.rs"),
        include_str!("../store/codemarks.rs"),
        include_str!("../api.rs"),
        include_str!("../git/mod.rs"),
    ];
    let mut text = String::new();
    while text.len() < 1 << 20 {
        for s in sources {
            text.push_str(s);
        }
    }
    assert_eq!(scan(&text), vec![]);
}

/// Bits of text that scanning must handle: code, near-secrets and real-shaped ones.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~\n\t]{0,40}",
        "[A-Za-z0-9_=:\"'` .\\-]{0,60}",
        "(password|token|api_key|secret|AUTH)[ ]?(=|:|=>)[ ]?[\"'`]?[A-Za-z0-9+/=_#@!\\-]{0,30}[\"'`]?",
        "(AKIA|ghp_|github_pat_|glpat-|xoxb-|sk_live_|AIza|sk-|npm_|mrg_|eyJ)[A-Za-z0-9_\\-]{0,50}",
        "[a-z]{2,8}://[a-z]{0,6}:[A-Za-z0-9$]{0,12}@[a-z.]{0,10}",
        Just("-----BEGIN RSA PRIVATE KEY-----\n".to_owned()),
        Just("EqV8ib8HDy88YtDtXbiufMdI8X2Y4rUmer/BH3M1XS0DRdJuPnBIKpi99lSi0tcL\n".to_owned()),
        Just("-----END RSA PRIVATE KEY-----".to_owned()),
        Just("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fw".to_owned()),
        Just("[redacted: github-token]".to_owned()),
        "[éπ→]{0,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Redaction changes only what scanning finds, and leaves nothing to find.
    #[test]
    fn redaction_leaves_nothing_to_find(parts in prop::collection::vec(fragment(), 0..12)) {
        let text = parts.concat();
        let findings = scan(&text);
        assert_invariants(&text, &findings);
    }
}

#[test]
fn regression_a_token_running_on_into_another_secret_is_still_found() {
    // Redacting the key after it used to uncover the Google key, which seemed to run on.
    check(
        "AIza0_-a_a-a0_0000AAA-0Aa0_aaA__-AA0aaa-----BEGIN RSA PRIVATE KEY-----\nEqV8ib8HDy88YtDtXbiufMdI8X2Y4rUmer/BH3M1XS0DRdJuPnBIKpi99lSi0tcL\n",
        expect![[r#"
            1:1 google-api-key AIza…0aaa (39 bytes)
            1:40 private-key BEGIN RSA PRIVATE KEY… (96 bytes)
            ---
            [redacted: google-api-key][redacted: private-key]
        "#]],
    );
}

#[test]
fn regression_an_assignment_inside_a_refused_value_is_found() {
    // The first match's value (`password=`) is the second assignment's name.
    check(
        "x.token=password=Zq3v9LxT2pWm8Kd4Rb7N\n",
        expect![[r#"
        1:18 high-entropy-assignment …Rb7N (20 bytes)
        ---
        x.token=password=[redacted: high-entropy-assignment]
    "#]],
    );
    // The first value loses to the JWT inside it; the assignment after it still counts.
    check(
        "password=`eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpassword=password=`01#!_\"2' =\"3a\"A\"4`",
        expect![[r#"
            1:11 jwt eyJ…word (81 bytes)
            1:103 high-entropy-assignment …"A"4 (17 bytes)
            ---
            password=`[redacted: jwt]=password=`[redacted: high-entropy-assignment]`"#]],
    );
}

#[test]
fn regression_a_url_right_after_another_is_found() {
    // The first URL's host used to be consumed by its match, hiding the second URL's scheme.
    check(
        "aa://a:Aab9zz@aa://a:0dAa77@a",
        expect![[r#"
        1:8 url-password … (6 bytes)
        1:22 url-password … (6 bytes)
        ---
        aa://a:[redacted: url-password]@aa://a:[redacted: url-password]@a"#]],
    );
}

#[test]
fn regression_a_token_hidden_inside_a_candidate_that_lost_is_found() {
    // The key block takes the first token's header; the rest of that token runs on into the
    // next one, which was dropped with the candidate that overlapped the key, until redaction
    // uncovered it.
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fw";
    for text in [
        format!("-----BEGIN RSA PRIVATE KEY-----\n{jwt}{jwt}AKIA-{jwt}"),
        format!("-----BEGIN RSA PRIVATE KEY-----\n{jwt}AKIA-{jwt}"),
    ] {
        let findings = scan(&text);
        assert_invariants(&text, &findings);
        assert_eq!(findings.iter().filter(|f| f.rule == "jwt").count(), 1, "{text}");
    }
}
