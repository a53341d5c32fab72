//! How random a value looks: Shannon entropy, placeholders (`<your-token>`, `${VAR}`,
//! `changeme`), values made of words (identifiers, paths, URLs) and code (`get_password()`).
//! Pure functions of a string, shared by the rules.

/// Shannon entropy in bits per byte: `-Σ p·log2(p)` over the byte frequencies. At most
/// `log2(len)`, so a 16-byte value scores 4.0 at the very most.
pub(super) fn entropy(value: &[u8]) -> f64 {
    if value.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in value {
        counts[b as usize] += 1;
    }
    let n = value.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum()
}

/// Values shorter than this (in bytes) are never reported by the assignment rule.
pub(super) const MIN_SECRET_LEN: usize = 16;

/// Entropy a value must reach, in bits per byte, to count as random-looking.
///
/// Random strings of 16 bytes or more score at or above these in 95% of draws (the
/// `thresholds_are_met_by_random_values` test measures it): base62/base64 3.5 at 16 bytes, 3.8 at
/// 20 bytes; hex 3.05 at 20 bytes. Values people type score lower (`hunter2hunter2hunter2` 2.8,
/// `changeme_changeme` 2.9), but so can short identifiers and URLs, which [`looks_like_words`]
/// rules out first. Hex gets its own threshold because its alphabet has only 16 symbols.
pub(super) const MIN_ENTROPY: f64 = 3.5;
pub(super) const MIN_ENTROPY_HEX: f64 = 3.0;

/// Whether `value` is random enough to be a secret: long enough, high entropy for its alphabet.
/// Pure digits never are (their entropy is at most 3.3 bits per byte).
pub(super) fn is_random(value: &[u8]) -> bool {
    if value.len() < MIN_SECRET_LEN {
        return false;
    }
    let hex = value.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
        && value.iter().any(u8::is_ascii_digit)
        && value.iter().any(u8::is_ascii_alphabetic);
    entropy(value) >= if hex { MIN_ENTROPY_HEX } else { MIN_ENTROPY }
}

/// Obvious stand-ins for a secret: templates and variables (`${VAR}`, `{{ x }}`, `%(x)s`,
/// `$TOKEN`, `%TOKEN%`, `<your-token>`), documentation words (`changeme`, `your_api_key_here`,
/// `example`), masks (`xxxx`, `****`), our own `[redacted: …]`, runs of few distinct bytes
/// (`aaaaaaaa`, `abababab`) and sequences (`0123456789abcdef`).
pub(super) fn is_placeholder(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else { return false };
    let lower = text.to_ascii_lowercase();
    const MARKS: &[&str] = &["${", "{{", "}}", "#{", "%(", "$(", "<%", "[redacted"];
    const WORDS: &[&str] = &[
        "xxxx",
        "****",
        "....",
        "changeme",
        "change_me",
        "change-me",
        "replace",
        "your_",
        "your-",
        "yourapi",
        "yourtoken",
        "yoursecret",
        "yourpassword",
        "insert",
        "placeholder",
        "example",
        "sample",
        "dummy",
        "fake",
        "redacted",
        "todo",
        "fixme",
    ];
    if MARKS.iter().chain(WORDS).any(|w| lower.contains(w)) {
        return true;
    }
    let first = value.first().copied().unwrap_or(b' ');
    let last = value.last().copied().unwrap_or(b' ');
    let variable = first == b'$' && value.get(1).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
    let wrapped = matches!((first, last), (b'<', b'>') | (b'{', b'}') | (b'%', b'%') | (b'[', b']'));
    variable || wrapped || distinct(value) <= 3 || is_sequence(value)
}

fn distinct(value: &[u8]) -> usize {
    let mut seen = [false; 256];
    value.iter().filter(|&&b| !std::mem::replace(&mut seen[b as usize], true)).count()
}

/// At least half the neighbours are consecutive (`abcd…`, `0123…`).
fn is_sequence(value: &[u8]) -> bool {
    let steps = value.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
    value.len() > 1 && steps * 2 >= value.len() - 1
}

/// Whether `value` reads as words rather than random characters: identifiers (`get_password`,
/// `settings.API_KEY`, `someVariableName2`), paths, URLs and phrases. Split at separators and
/// camelCase humps, every piece must be letters with at most four trailing digits (`v1`,
/// `python3`, `oauth2`) or a short number, and at least half the value must be pieces of three or
/// more letters that could be words (shaped `word`, `Word` or `WORD`, a vowel, no five consonants
/// in a row; short pieces like `https` may lack vowels but do not count). Random strings break
/// into pieces with digits inside (`kq3mz`), mixed case (`XUtn`) or letter runs no word has.
pub(super) fn looks_like_words(value: &[u8]) -> bool {
    let mut wordy = 0;
    for piece in pieces(value) {
        let letters = piece.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let digits = piece.len() - letters;
        if !piece[letters..].iter().all(u8::is_ascii_digit) || digits > 4 {
            return false;
        }
        match word_shape(&piece[..letters]) {
            Shape::Word if letters >= 3 => wordy += piece.len(),
            Shape::Word | Shape::Short => {}
            Shape::Random => return false,
        }
    }
    wordy * 2 >= value.len()
}

/// Splits at anything but letters and digits, and before an upper-case letter that follows a
/// lower-case one (`someVariableName2` → `some`, `Variable`, `Name2`). Not between a digit and a
/// letter: identifiers rarely do that, and random strings (`JBSWY3DPEHPK3PXP`) would fall apart
/// into word-sized pieces.
fn pieces(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut out = Vec::new();
    for i in 0..=value.len() {
        let boundary = match value.get(i) {
            None => true,
            Some(b) if !b.is_ascii_alphanumeric() => true,
            Some(b) if b.is_ascii_uppercase() => i > 0 && value[i - 1].is_ascii_lowercase(),
            Some(_) => false,
        };
        if boundary {
            if i > start {
                out.push(&value[start..i]);
            }
            start = if value.get(i).is_some_and(u8::is_ascii_alphanumeric) { i } else { i + 1 };
        }
    }
    out.into_iter()
}

enum Shape {
    /// Could be a word: `word`, `Word` or `WORD`, with a vowel and no five consonants in a row.
    Word,
    /// Not a word, but short enough for an abbreviation (`https`, `tcp`, `xz`).
    Short,
    /// Mixed case no identifier writes (`XUtn`), or six or more letters no word has.
    Random,
}

fn word_shape(letters: &[u8]) -> Shape {
    let Some(tail) = letters.get(1..) else { return Shape::Short };
    let shaped = tail.iter().all(u8::is_ascii_lowercase) || letters.iter().all(u8::is_ascii_uppercase);
    if !shaped {
        return Shape::Random;
    }
    let vowel = |b: &u8| matches!(b.to_ascii_lowercase(), b'a' | b'e' | b'i' | b'o' | b'u' | b'y');
    let mut run = 0;
    let mut longest = 0;
    for b in letters {
        run = if vowel(b) { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    match (letters.iter().any(vowel) && longest < 5, letters.len() <= 5) {
        (true, _) => Shape::Word,
        (false, true) => Shape::Short,
        (false, false) => Shape::Random,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_random_strings_are_told_apart() {
        for words in [
            "get_password_from_env",
            "settings.API_KEY",
            "someVariableName2",
            "TOKEN_FROM_ENV",
            "https://api.example.com/v1/tokens",
            "/usr/local/bin/python3",
            "dev-secret-key-not-for-prod",
            "correct horse battery staple",
            "application/json",
        ] {
            assert!(looks_like_words(words.as_bytes()), "{words} should read as words");
        }
        for random in [
            "Kx9Ab2Mn7Qw3Er5Ty8",
            "d41d8cd98f00b204e9800998ecf8427e",
            "s3cr3t-passw0rd-f0r-db",
            "ya29.a0AfH6SMBxQzT3kP9vLm2",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "qwhdkxmzptbvlrcn",
        ] {
            assert!(!looks_like_words(random.as_bytes()), "{random} should not read as words");
        }
    }

    #[test]
    fn placeholders() {
        for p in ["${DB_PASSWORD}", "<your-token>", "changeme", "$GITHUB_TOKEN", "%API_KEY%", "aaaaaaaaaaaaaaaa"] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        assert!(is_placeholder(b"0123456789abcdef"));
        assert!(!is_placeholder(b"Tr0ub4dor&3xyzzy!"));
    }
}
