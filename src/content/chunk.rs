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
        for c in &chunks {
            assert!(count_tokens(c) <= 64, "{} tokens", count_tokens(c));
        }
        assert!(chunks[0].starts_with("# Heading"));
    }

    #[test]
    fn overlap_not_below_size_is_refused() {
        assert!(Chunker::new(ChunkSettings { tokens: 10, overlap: 10 }).is_err());
    }
}
