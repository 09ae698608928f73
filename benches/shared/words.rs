//! The generated corpora's vocabulary and a small seeded generator, shared by the benches.
#![allow(dead_code)]

/// Words of the sample courses' kind, for generated text.
pub const WORDS: &[&str] = &[
    "fraction",
    "numerator",
    "denominator",
    "equivalent",
    "common",
    "multiple",
    "divide",
    "multiply",
    "reciprocal",
    "decimal",
    "percent",
    "whole",
    "part",
    "pizza",
    "recipe",
    "measure",
    "compare",
    "greater",
    "smaller",
    "simplify",
    "phishing",
    "password",
    "manager",
    "factor",
    "authentication",
    "report",
    "incident",
    "email",
    "link",
    "attachment",
    "sender",
    "domain",
    "urgent",
    "invoice",
    "vendor",
    "device",
    "laptop",
    "update",
    "classify",
    "confidential",
    "learner",
    "example",
    "explain",
    "because",
    "therefore",
    "step",
    "first",
    "next",
    "finally",
    "check",
    "answer",
    "question",
    "reason",
    "pattern",
    "rule",
    "number",
    "line",
    "model",
    "picture",
    "share",
    "group",
    "equal",
];

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
    pub fn sentence(&mut self) -> String {
        let n = 8 + self.next() % 10;
        let mut s: Vec<&str> = (0..n).map(|_| WORDS[self.next() % WORDS.len()]).collect();
        let first = s[0].to_owned();
        let cap = first[..1].to_uppercase() + &first[1..];
        s[0] = &cap;
        format!("{}.", s.join(" "))
    }
}
