//! What the benchmarks that build a synthetic history share: a seeded generator, lines of
//! ordinary-looking code, and running git.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::process::Command;

/// xorshift64: the same history from the same seed, with no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A line of code, unique by `serial`.
pub fn line_for(rng: &mut Rng, serial: &mut u64) -> String {
    *serial += 1;
    let shapes = [
        "    let value_{} = compute(input, {});",
        "    if state.ready({}) {{ return step_{}(state); }}",
        "    total += weights[{}] * factor_{};",
        "    log::debug!(\"stage {} reached {}\");",
    ];
    let shape = shapes[rng.below(shapes.len())];
    shape.replacen("{}", &serial.to_string(), 1).replacen("{}", &(rng.next() % 997).to_string(), 1)
}

pub fn text_of(lines: &[String]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Runs git in `dir`; its stdout, or a panic with its stderr.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `count` source files in 40 folders, each an entry function of `lines` (a length drawn from
/// the range) generated lines, by path.
pub fn files(rng: &mut Rng, serial: &mut u64, count: usize, lines: Range<usize>) -> BTreeMap<String, Vec<String>> {
    let mut files = BTreeMap::new();
    for i in 0..count {
        let path = format!("src/mod{:02}/file{i:04}.rs", i % 40);
        let n = lines.start + rng.below(lines.len());
        let mut text = vec![format!("// file {i}"), format!("pub fn entry_{i}(input: &Input) -> Output {{")];
        text.extend((0..n).map(|_| line_for(rng, serial)));
        text.push("}".into());
        files.insert(path, text);
    }
    files
}
