//! How alike two lines are. Two views must agree, and the weaker one counts:
//! - characters: the Dice coefficient of their character bigrams, whitespace ignored;
//! - words: the Dice coefficient of their identifier and number tokens, each weighted by how
//!   rare it is in the texts compared (1/√lines containing it): `fn`, `self` and `input` say
//!   little, the name of the function says a lot.
//!
//! Characters alone call templated lines alike (`let a_0 = f_2(x, 224);` and
//! `let b_0 = f_4(x, 124);` share most bigrams though they share no name), and words alone
//! miss small edits inside a name. In each view, when most of the shorter line lives on inside
//! the longer one (a line split in two, an expression wrapped), a discounted overlap
//! coefficient may stand in for Dice. `compute(a, b)` and `compute(a, b, c)` score about 0.9;
//! unrelated lines near 0.

/// A line's bigrams and weighted tokens, sorted, with whitespace removed.
pub struct Shingles {
    grams: Vec<u64>,
    tokens: Vec<(u64, f32)>,
    /// The squashed line itself when it is too short to have bigrams.
    short: Option<char>,
}

impl Shingles {
    /// Every token weighs the same.
    #[cfg(test)]
    pub fn new(line: &str) -> Shingles {
        Shingles::weighted(line, &|_| 1.0)
    }

    /// Tokens weigh `weight(hash of the token)`.
    pub fn weighted(line: &str, weight: &dyn Fn(u64) -> f32) -> Shingles {
        let chars: Vec<char> = line.chars().filter(|c| !c.is_whitespace()).collect();
        let mut grams: Vec<u64> = chars.windows(2).map(|w| ((w[0] as u64) << 32) | w[1] as u64).collect();
        grams.sort_unstable();
        let mut tokens: Vec<(u64, f32)> = tokens(line).map(|t| (t, weight(t))).collect();
        tokens.sort_unstable_by_key(|&(t, _)| t);
        Shingles { grams, tokens, short: if chars.len() == 1 { Some(chars[0]) } else { None } }
    }

    fn is_blank(&self) -> bool {
        self.grams.is_empty() && self.short.is_none()
    }
}

/// Similarity in `0.0..=1.0`; 1.0 for lines equal up to whitespace.
pub fn similarity(a: &Shingles, b: &Shingles) -> f32 {
    if a.grams.is_empty() || b.grams.is_empty() {
        let same = a.grams.is_empty() && b.grams.is_empty() && a.short == b.short;
        return if same && !a.is_blank() || (a.is_blank() && b.is_blank()) { 1.0 } else { 0.0 };
    }
    let common = common_sorted(&a.grams, &b.grams) as f32;
    let (ga, gb) = (a.grams.len() as f32, b.grams.len() as f32);
    // Containment speaks for a share of a line (one half of a split), not for a fragment.
    let share = ga.min(gb) >= ga.max(gb) * MIN_OVERLAP_SHARE;
    let chars = likeness(common, ga, gb, share && a.grams.len().min(b.grams.len()) >= MIN_OVERLAP_GRAMS);
    let words = match (a.tokens.is_empty(), b.tokens.is_empty()) {
        (true, true) => 1.0, // punctuation only: the characters decide
        (false, false) => {
            let total = |t: &[(u64, f32)]| t.iter().map(|&(_, w)| w).sum::<f32>();
            let (ta, tb) = (total(&a.tokens), total(&b.tokens));
            // A contained part must carry a name that matters: a common
            // `V: Visit<'ast> + ?Sized,` sits inside many signatures, and is none of them.
            let heaviest = |t: &[(u64, f32)]| t.iter().map(|&(_, w)| w).fold(0.0, f32::max);
            let (shorter, longer) = if ta < tb { (&a.tokens, &b.tokens) } else { (&b.tokens, &a.tokens) };
            let carries_a_name = heaviest(shorter) >= 0.5 * heaviest(longer);
            let long_enough = a.tokens.len().min(b.tokens.len()) >= MIN_OVERLAP_TOKENS;
            likeness(common_weight(&a.tokens, &b.tokens), ta, tb, long_enough && carries_a_name)
        }
        _ => 0.0,
    };
    chars.min(words)
}

/// Character containment counts only when the shorter line has this share of the longer one.
const MIN_OVERLAP_SHARE: f32 = 0.25;

/// The identifier and number tokens of a line, hashed.
pub fn tokens(line: &str) -> impl Iterator<Item = u64> + '_ {
    words(line).map(super::text::hash_str)
}

/// The identifier and number tokens of a line.
pub fn words(line: &str) -> impl Iterator<Item = &str> + '_ {
    line.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|t| !t.is_empty())
}

/// Dice of two (weighted) multisets, or the discounted overlap coefficient when the shorter is
/// long enough that containment is not a coincidence.
fn likeness(common: f32, a: f32, b: f32, overlap_counts: bool) -> f32 {
    let dice = 2.0 * common / (a + b);
    let overlap = if overlap_counts { OVERLAP_WEIGHT * common / a.min(b) } else { 0.0 };
    dice.max(overlap).min(1.0)
}

/// The weight two sorted weighted multisets share.
fn common_weight(a: &[(u64, f32)], b: &[(u64, f32)]) -> f32 {
    let (mut i, mut j, mut common) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += a[i].1;
                i += 1;
                j += 1;
            }
        }
    }
    common
}

/// Token containment counts for lines of at least this many tokens.
const MIN_OVERLAP_TOKENS: usize = 2;
/// Containment counts for lines of at least this many bigrams.
const MIN_OVERLAP_GRAMS: usize = 6;
/// Containment is weaker evidence than likeness: a fully contained line scores this.
const OVERLAP_WEIGHT: f32 = 0.8;

/// How many items two sorted multisets share.
pub(crate) fn common_sorted(a: &[u64], b: &[u64]) -> usize {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(a: &str, b: &str) -> f32 {
        similarity(&Shingles::new(a), &Shingles::new(b))
    }

    #[test]
    fn equal_up_to_whitespace_is_one() {
        assert_eq!(sim("let x = 1;", "let x = 1;"), 1.0);
        assert_eq!(sim("\tlet x = 1;", "    let  x=1;"), 1.0);
        assert_eq!(sim("", "   "), 1.0);
        assert_eq!(sim("}", "}"), 1.0);
    }

    #[test]
    fn small_edits_stay_similar_and_unrelated_lines_do_not() {
        assert!(sim("let total = compute(a, b);", "let total = compute(a, b, c);") > 0.85);
        assert!(sim("return left + right;", "return left - right;") > 0.7);
        assert!(sim("the quick brown fox", "0123456789") < 0.1);
        assert_eq!(sim("}", "{"), 0.0);
        assert_eq!(sim("", "x"), 0.0);
    }

    #[test]
    fn templated_lines_that_share_no_name_are_not_alike() {
        assert!(sim("let util8_0 = transform_2(input, 224);", "let fresh4_0 = transform_4(input, 124);") < 0.5);
        assert!(sim("let count = items.len();", "let total = items.len();") >= 0.5);
    }

    #[test]
    fn common_words_weigh_less_than_names() {
        // In a file of many `fn x(input: &Input) -> Output`, only the names tell lines apart.
        let common = |t: u64| ["fn", "input", "Input", "Output"].iter().any(|w| super::super::text::hash_str(w) == t);
        let weight = |t: u64| if common(t) { 1.0 / 200f32.sqrt() } else { 1.0 / 2f32.sqrt() };
        let a = Shingles::weighted("fn core10(input: &Input) -> Output {", &weight);
        let b = Shingles::weighted("fn core12(input: &Input) -> Output {", &weight);
        assert!(similarity(&a, &b) < 0.5, "{}", similarity(&a, &b));
        let c = Shingles::weighted("fn core10(input: &Input, extra: u8) -> Output {", &weight);
        assert!(similarity(&a, &c) >= 0.5, "{}", similarity(&a, &c));
    }

    #[test]
    fn a_line_living_on_inside_a_longer_one_is_similar() {
        // A call split over two lines: each half keeps most of its names.
        assert!(sim("process(alpha, beta,", "process(alpha, beta, gamma, delta)") >= 0.5);
        assert!(sim("    gamma, delta)", "process(alpha, beta, gamma, delta)") >= 0.5);
        assert!(sim("foo(bar)", "let x = foo(bar) + baz(qux);") >= 0.5);
        // Short lines do not get that benefit of the doubt.
        assert!(sim("x += 1;", "let total = x += 1; other()") < 0.5);
    }

    #[test]
    fn a_fragment_of_common_words_is_not_the_line_it_sits_in() {
        let signature = "pub fn visit_method_sig_mut<V: VisitMut + ?Sized>(_visitor: &mut V, _i: &mut MethodSig) {";
        assert!(sim("    V: VisitMut + ?Sized,", signature) < 0.5);
        let common = ["V", "Visit", "ast", "Sized", "pub", "fn"].map(super::super::text::hash_str);
        let weight = |t: u64| if common.contains(&t) { 0.03 } else { 0.33 };
        let signature = Shingles::weighted("pub fn visit_generic_param<'ast, V: Visit<'ast> + ?Sized>(", &weight);
        let fragment = Shingles::weighted("    V: Visit<'ast> + ?Sized,", &weight);
        assert!(similarity(&signature, &fragment) < 0.5);
    }
}
