//! Arithmetic in a question, read out in words. Learners ask in numbers ("is 2/5 + 1/5 =
//! 3/10?", "how do i do 3/4 ÷ 1/2"), while the course explains in words ("adding fractions
//! with like denominators", "dividing by a fraction"): neither BM25 nor a small sentence model
//! sees that `1/3 + 1/4` is a sum of fractions with unlike denominators. [`describe`] reads
//! the notation (fractions, mixed numbers, decimals, percentages and the operations between
//! them) and says what it is in the words of the subject; the search appends them to the
//! question. A question with no numbers is left as it is.

/// A number as written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Whole,
    Fraction { numerator: u64, denominator: u64 },
    Mixed,
    Decimal,
    Percent,
}

/// What the question is made of, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(Num),
    Op(Op),
    /// A word that is neither a number nor an operation.
    Word,
    /// "and": between a whole number and a fraction, a mixed number ("2 and 1/2").
    And,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Divide,
    Equals,
    Compare,
}

/// The words for the arithmetic in `question`, or `None` when it has none.
pub fn describe(question: &str) -> Option<String> {
    let lower = question.to_lowercase();
    let toks = lex(&lower);
    if !toks.iter().any(|t| matches!(t, Tok::Num(_))) {
        return None;
    }
    let mut words: Vec<&str> = Vec::new();
    let nums: Vec<Num> = toks.iter().filter_map(|t| if let Tok::Num(n) = t { Some(*n) } else { None }).collect();
    let fractions: Vec<(u64, u64)> = nums
        .iter()
        .filter_map(|n| {
            if let Num::Fraction { numerator, denominator } = n { Some((*numerator, *denominator)) } else { None }
        })
        .collect();
    // an operation between two numbers, at least one of them a fraction or mixed number
    for w in toks.windows(3) {
        let [Tok::Num(a), Tok::Op(op), Tok::Num(b)] = w else { continue };
        let fractional = |n: &Num| matches!(n, Num::Fraction { .. } | Num::Mixed);
        if !fractional(a) && !fractional(b) {
            continue;
        }
        match op {
            Op::Add | Op::Subtract => {
                words.push(if *op == Op::Add { "adding fractions" } else { "subtracting fractions" });
                match (a, b) {
                    (Num::Fraction { denominator: x, .. }, Num::Fraction { denominator: y, .. }) if x == y => {
                        words.push("like denominators, the same denominator")
                    }
                    (Num::Fraction { .. }, Num::Fraction { .. }) => {
                        words.push("unlike denominators, different denominators")
                    }
                    _ => {}
                }
            }
            Op::Multiply => words.push("multiplying fractions"),
            Op::Divide => words.push("dividing fractions, dividing by a fraction"),
            Op::Equals => {
                if let (Num::Fraction { numerator: p, denominator: q }, Num::Fraction { numerator: r, denominator: s }) =
                    (a, b)
                    && !toks.iter().any(|t| matches!(t, Tok::Op(Op::Add | Op::Subtract | Op::Multiply | Op::Divide)))
                    && u128::from(*p) * u128::from(*s) == u128::from(*r) * u128::from(*q)
                {
                    words.push("equivalent fractions");
                }
            }
            Op::Compare => {}
        }
    }
    if fractions.len() + nums.iter().filter(|n| **n == Num::Mixed).count() >= 2 && toks.contains(&Tok::Op(Op::Compare))
    {
        words.push("comparing fractions");
    }
    if nums.contains(&Num::Mixed) {
        words.push("mixed numbers");
    }
    if fractions.iter().any(|(n, d)| *d > 0 && n > d) {
        words.push("improper fraction");
    }
    if nums.iter().any(|n| matches!(n, Num::Decimal | Num::Percent))
        && (!fractions.is_empty() || lower.contains("fraction"))
    {
        words.push("fractions and decimals");
    }
    if fractions.iter().any(|(_, d)| *d == 0) {
        words.push("a denominator of zero");
    }
    words.dedup();
    (!words.is_empty()).then(|| words.join(", "))
}

/// Words that are operations.
fn op_word(w: &str) -> Option<Op> {
    Some(match w {
        "plus" | "add" | "added" | "adding" | "sum" => Op::Add,
        "minus" | "subtract" | "subtracted" | "subtracting" | "take" | "takeaway" => Op::Subtract,
        "times" | "x" | "multiply" | "multiplied" | "multiplying" | "of" => Op::Multiply,
        "divided" | "divide" | "dividing" | "into" => Op::Divide,
        "equals" | "equal" | "is" | "same" => Op::Equals,
        "bigger" | "biggest" | "smaller" | "smallest" | "larger" | "largest" | "greater" | "less" | "more" | "than"
        | "order" | "compare" | "vs" | "versus" => Op::Compare,
        _ => return None,
    })
}

/// Words that are fractions ("a half", "three quarters" → 1/2, 3/4), when no digits are.
fn fraction_word(w: &str) -> Option<u64> {
    Some(match w {
        "half" | "halves" => 2,
        "third" | "thirds" => 3,
        "quarter" | "quarters" | "fourth" | "fourths" => 4,
        "fifth" | "fifths" => 5,
        "sixth" | "sixths" => 6,
        "eighth" | "eighths" => 8,
        "tenth" | "tenths" => 10,
        _ => return None,
    })
}

fn lex(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    let skip_spaces = |mut j: usize| {
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        j
    };
    let int_at = |j: usize| -> Option<(u64, usize)> {
        let mut k = j;
        while k < chars.len() && chars[k].is_ascii_digit() {
            k += 1;
        }
        (k > j).then(|| (chars[j..k].iter().collect::<String>().parse().unwrap_or(u64::MAX), k))
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let (whole, mut j) = int_at(i).unwrap_or((0, i));
            if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit) {
                j = int_at(j + 1).expect("a digit").1;
                let percent = chars.get(skip_spaces(j)) == Some(&'%');
                toks.push(Tok::Num(if percent { Num::Percent } else { Num::Decimal }));
                i = if percent { skip_spaces(j) + 1 } else { j };
                continue;
            }
            // a/b, with spaces around the slash allowed
            let slash = skip_spaces(j);
            if chars.get(slash) == Some(&'/')
                && let Some((denominator, end)) = int_at(skip_spaces(slash + 1))
            {
                let fraction = Num::Fraction { numerator: whole, denominator };
                // "2 1/2" and "2 and 1/2": a mixed number
                match toks.as_slice() {
                    [.., Tok::Num(Num::Whole)] => *toks.last_mut().expect("a token") = Tok::Num(Num::Mixed),
                    [.., Tok::Num(Num::Whole), Tok::And] => {
                        toks.pop();
                        *toks.last_mut().expect("a token") = Tok::Num(Num::Mixed);
                    }
                    _ => toks.push(Tok::Num(fraction)),
                }
                i = end;
                continue;
            }
            if chars.get(slash) == Some(&'%') {
                toks.push(Tok::Num(Num::Percent));
                i = slash + 1;
                continue;
            }
            toks.push(Tok::Num(Num::Whole));
            i = j;
            continue;
        }
        let op = match c {
            '+' => Some(Op::Add),
            '-' | '−' | '–' => Some(Op::Subtract),
            '*' | '×' | '·' => Some(Op::Multiply),
            '÷' | '/' => Some(Op::Divide),
            '=' => Some(Op::Equals),
            '<' | '>' | '≤' | '≥' => Some(Op::Compare),
            _ => None,
        };
        if let Some(op) = op {
            // a hyphen inside a word ("three-quarters") is not a minus
            let in_word = c == '-' && i > 0 && chars[i - 1].is_alphabetic();
            if !in_word {
                toks.push(Tok::Op(op));
            }
            i += 1;
            continue;
        }
        if c.is_alphabetic() {
            let start = i;
            // letters only: in "3x4" the x is a word of its own
            while i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '\'') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some(denominator) = fraction_word(&word) {
                // "3 quarters", "a half": one number (its numerator is not kept)
                if toks.last() == Some(&Tok::Num(Num::Whole)) {
                    toks.pop();
                }
                toks.push(Tok::Num(Num::Fraction { numerator: 1, denominator }));
            } else if let Some(op) = op_word(&word) {
                // "divided by", "take away": one operation
                if !(matches!(toks.last(), Some(Tok::Op(o)) if *o == op)) {
                    toks.push(Tok::Op(op));
                }
            } else if word == "and" {
                toks.push(Tok::And);
            } else if !matches!(word.as_str(), "by" | "away" | "to" | "it" | "the" | "a" | "an") {
                // small words between a number and an operation do not part them
                toks.push(Tok::Word);
            }
            continue;
        }
        i += 1;
    }
    toks
}

#[cfg(test)]
mod tests {
    use super::describe;

    fn has(q: &str, words: &str) -> bool {
        describe(q).is_some_and(|d| d.contains(words))
    }

    #[test]
    fn sums_say_whether_the_denominators_are_alike() {
        assert!(has("is 2/5 + 1/5 = 3/10?", "like denominators"));
        assert!(!has("is 2/5 + 1/5 = 3/10?", "unlike"));
        assert!(has("1/3 + 1/4 how", "unlike denominators"));
        assert!(has("what is 7/8 minus 1/4", "subtracting fractions, unlike"));
        assert!(has("3 / 10 plus 4 / 10", "adding fractions, like"));
    }

    #[test]
    fn products_quotients_and_mixed_numbers_are_named() {
        assert!(has("how do i do 3/4 ÷ 1/2", "dividing fractions"));
        assert!(has("3/4 divided by 1/2", "dividing fractions"));
        assert!(has("2/3 x 4/5", "multiplying fractions"));
        assert!(has("what is 1/2 of 12", "multiplying fractions"));
        assert!(has("turn 2 1/2 into a top heavy one", "mixed numbers"));
        assert!(has("3 and 3/4 take away 1 and 1/2", "mixed numbers"));
        assert!(has("3 and 3/4 take away 1 and 1/2", "subtracting fractions"));
        assert!(has("22/7 as a mixed number", "improper fraction"));
    }

    #[test]
    fn comparisons_equivalences_and_decimals_are_named() {
        assert!(has("is 4/7 > 5/9 ?", "comparing fractions"));
        assert!(has("which is bigger 3/5 or 2/3", "comparing fractions"));
        assert!(has("is 4/6 = 6/9", "equivalent fractions"));
        assert!(!has("is 4/6 = 5/9", "equivalent"));
        assert!(has("0.06 as a fraction is it 6/10", "fractions and decimals"));
        assert!(has("why cant it be 3/0", "a denominator of zero"));
    }

    #[test]
    fn questions_without_numbers_are_left_alone() {
        assert_eq!(describe("what is a denominator"), None);
        assert_eq!(describe("my password is 12 letters"), None);
        assert_eq!(describe("is mfa worth it"), None);
    }
}
