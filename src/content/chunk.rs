//! Markdown-aware chunking, sized in `o200k_base` tokens.

use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, MarkdownSplitter};
use tiktoken_rs::CoreBPE;

/// Chunk size and overlap, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSettings {
    pub tokens: usize,
    pub overlap: usize,
}

impl Default for ChunkSettings {
    fn default() -> Self {
        Self { tokens: 256, overlap: 32 }
    }
}

/// Splits component text into chunks along Markdown structure.
pub struct Chunker {
    splitter: MarkdownSplitter<&'static CoreBPE>,
}

impl Chunker {
    /// Fails when the overlap is not smaller than the chunk size.
    pub fn new(settings: ChunkSettings) -> Result<Self, String> {
        let config = ChunkConfig::new(settings.tokens.max(1))
            .with_overlap(settings.overlap)
            .map_err(|e| {
                format!("chunk overlap {} must be below chunk size {}: {e}", settings.overlap, settings.tokens)
            })?
            .with_sizer(tokenizer());
        Ok(Self { splitter: MarkdownSplitter::new(config) })
    }

    /// The chunks of `text`, in order, trimmed, none empty.
    pub fn split(&self, text: &str) -> Vec<String> {
        self.splitter.chunks(text).map(str::to_owned).filter(|c| !c.trim().is_empty()).collect()
    }
}

/// The shared `o200k_base` tokenizer (loaded once).
pub fn tokenizer() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// Number of `o200k_base` tokens in `text`.
pub fn count_tokens(text: &str) -> usize {
    tokenizer().encode_ordinary(text).len()
}

/// Cuts `text` to at most `max` tokens, marking the cut.
pub fn trim_to_tokens(text: &str, max: usize) -> String {
    trim_counted(text, max).0
}

/// Trims of course text seen recently, by (text, limit): every turn that shows a component or a
/// retrieved chunk trims it again, and encoding costs about 1.5 µs a token. Only course text
/// goes in (never learner data: nothing here outlives an erasure). Bounded in bytes: emptied
/// when full. Keyed by a hash, checked against the text itself.
struct Memo {
    trims: std::collections::HashMap<(u64, usize), (String, String, usize)>,
    bytes: usize,
}

/// The most bytes of text the memo holds.
const MEMO_BYTES: usize = 8 << 20;
/// Texts shorter than this are trimmed without the memo (encoding them is cheap).
const MEMO_MIN_BYTES: usize = 256;

fn memo() -> &'static std::sync::Mutex<Memo> {
    static M: std::sync::OnceLock<std::sync::Mutex<Memo>> = std::sync::OnceLock::new();
    M.get_or_init(|| std::sync::Mutex::new(Memo { trims: std::collections::HashMap::new(), bytes: 0 }))
}

fn text_key(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// [`trim_counted`] for course text (a component, a retrieved chunk): a text trimmed to the
/// same limit recently is not encoded again.
pub fn trim_course_text(text: &str, max: usize) -> (String, usize) {
    if text.len() < MEMO_MIN_BYTES || text.len() > MEMO_BYTES / 64 {
        return trim_counted(text, max);
    }
    let key = (text_key(text), max);
    if let Some((original, trimmed, n)) = memo().lock().expect("memo lock").trims.get(&key)
        && original == text
    {
        return (trimmed.clone(), *n);
    }
    let (trimmed, n) = trim_counted(text, max);
    let mut m = memo().lock().expect("memo lock");
    let size = text.len() + trimmed.len();
    if m.bytes + size > MEMO_BYTES {
        m.trims.clear();
        m.bytes = 0;
    }
    if m.trims.insert(key, (text.to_owned(), trimmed.clone(), n)).is_none() {
        m.bytes += size;
    }
    (trimmed, n)
}

/// [`trim_to_tokens`], with the tokens of the result (counted once, while trimming).
pub fn trim_counted(text: &str, max: usize) -> (String, usize) {
    // tokens average about four bytes of text, so encoding a prefix of 6 bytes per token is
    // enough to find the cut without encoding all of a long text
    let mut end = text.len().min(max.saturating_mul(6));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let bpe = tokenizer();
    let toks = bpe.encode_ordinary(&text[..end]);
    if toks.len() <= max && end == text.len() {
        return (text.to_owned(), toks.len());
    }
    const MARK: &str = " … [trimmed]";
    if toks.len() + 8 <= max {
        // the prefix fits: keep all of it
        return (format!("{}{MARK}", &text[..end]), toks.len() + 5);
    }
    // a cut inside a multi-byte character does not decode: back off a token at a time
    let mut keep = max.saturating_sub(8).min(toks.len());
    let kept = loop {
        match bpe.decode(&toks[..keep]) {
            Ok(t) => break t,
            Err(_) if keep > 0 => keep -= 1,
            Err(_) => break String::new(),
        }
    };
    (format!("{kept}{MARK}"), keep + 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_within_the_token_budget_and_cover_the_text() {
        let para = "Fractions name parts of a whole. When we divide by a fraction we ask how many of it fit. ";
        let text = format!("# Heading\n\n{}\n\n## Second\n\n{}", para.repeat(20), para.repeat(20));
        let chunker = Chunker::new(ChunkSettings { tokens: 64, overlap: 8 }).unwrap();
        let chunks = chunker.split(&text);
        assert!(chunks.len() > 4, "{}", chunks.len());
        // the memo gives what encoding gives
        for max in [5, 40, 1000] {
            assert_eq!(trim_course_text(&text, max), trim_counted(&text, max));
            assert_eq!(trim_course_text(&text, max), trim_counted(&text, max));
        }
        for c in &chunks {
            assert!(count_tokens(c) <= 64, "{} tokens", count_tokens(c));
        }
        assert!(chunks[0].starts_with("# Heading"));
    }

    #[test]
    fn overlap_not_below_size_is_refused() {
        assert!(Chunker::new(ChunkSettings { tokens: 10, overlap: 10 }).is_err());
    }

    #[test]
    fn trimming_inside_multi_byte_text_keeps_the_text() {
        let long = "分数の割り算は逆数を掛けることです。🍕🍕🍕 ".repeat(60);
        let (t, n) = trim_counted(&long, 40);
        assert!(t.len() > 40, "{t}");
        assert!(t.starts_with("分数"));
        assert!(n <= 40 && count_tokens(&t) <= 45, "{n}");
    }

    #[test]
    fn trimming_marks_the_cut() {
        let long = "word ".repeat(500);
        let t = trim_to_tokens(&long, 50);
        assert!(count_tokens(&t) <= 50, "{}", count_tokens(&t));
        assert!(t.ends_with("[trimmed]"));
        assert_eq!(trim_to_tokens("short", 50), "short");
    }
}
