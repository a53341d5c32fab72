//! How alike two lines are, from their character bigrams with whitespace ignored: the Dice
//! coefficient, or, when most of the shorter line lives on inside the longer one (a line split
//! in two, an expression wrapped), a discounted overlap coefficient. Cheap (linear in the line
//! after one sort) and forgiving of small edits: `compute(a, b)` and `compute(a, b, c)` score
//! about 0.9, unrelated lines near 0.

/// The sorted bigrams of a line with whitespace removed.
pub struct Shingles {
    grams: Vec<u64>,
    /// The squashed line itself when it is too short to have bigrams.
    short: Option<char>,
}

impl Shingles {
    pub fn new(line: &str) -> Shingles {
        let chars: Vec<char> = line.chars().filter(|c| !c.is_whitespace()).collect();
        let mut grams: Vec<u64> = chars.windows(2).map(|w| ((w[0] as u64) << 32) | w[1] as u64).collect();
        grams.sort_unstable();
        Shingles { grams, short: if chars.len() == 1 { Some(chars[0]) } else { None } }
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
    let common = common(a, b);
    let (la, lb) = (a.grams.len(), b.grams.len());
    let dice = (2 * common) as f32 / (la + lb) as f32;
    // Overlap only speaks for lines long enough that containment is not a coincidence.
    let shorter = la.min(lb);
    let overlap = if shorter >= MIN_OVERLAP_GRAMS { OVERLAP_WEIGHT * common as f32 / shorter as f32 } else { 0.0 };
    dice.max(overlap)
}

/// Containment counts for lines of at least this many bigrams.
const MIN_OVERLAP_GRAMS: usize = 6;
/// Containment is weaker evidence than likeness: a fully contained line scores this.
const OVERLAP_WEIGHT: f32 = 0.8;

fn common(a: &Shingles, b: &Shingles) -> usize {
    common_sorted(&a.grams, &b.grams)
}

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
    fn a_line_living_on_inside_a_longer_one_is_similar() {
        // Split at "xyj|tusbim...": the second half carries most of the line.
        assert!(sim("xyjtusbimzcsxdoyi", "QQ2rddpulepyweqnllgglikelatusbimzcsxdoyi") >= 0.5);
        assert!(sim("foo(bar)", "let x = foo(bar) + baz(qux);") >= 0.5);
        // Short lines do not get that benefit of the doubt.
        assert!(sim("x += 1;", "let total = x += 1; other()") < 0.5);
    }
}
