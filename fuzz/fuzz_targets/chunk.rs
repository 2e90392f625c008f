//! The chunker on arbitrary text in arbitrary blocks: every chunk is exactly
//! its span of the document text, spans are in order and inside the text, no
//! chunk crosses a block, and character offsets agree with byte offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_extract::chunk::{document_text, Chunker, ChunkerConfig, Whitespace};
use quarry_extract::extract::Block;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // Blocks: the input cut at form feeds, with pages and headings alternating
    // (extraction never yields an empty block).
    let blocks: Vec<Block> = text
        .split('\u{c}')
        .filter(|t| !t.is_empty())
        .enumerate()
        .map(|(i, t)| Block {
            text: t.to_string(),
            page: (i % 2 == 0).then_some(i as u32 + 1),
            heading: (i % 3 == 1).then(|| format!("Heading {i}")),
        })
        .collect();
    let config = ChunkerConfig {
        max_tokens: 1 + (shape as usize % 64),
        overlap_tokens: shape as usize % 8,
    };
    let chunker = Chunker::new(&Whitespace, config);
    let (doc, chunks) = chunker.chunk(&blocks);
    let (joined, spans) = document_text(&blocks);
    assert_eq!(doc, joined);
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(c.byte_start <= c.byte_end && c.byte_end <= doc.len());
        assert_eq!(c.text, doc[c.byte_start..c.byte_end]);
        assert_eq!(c.char_start, doc[..c.byte_start].chars().count());
        assert_eq!(c.char_end - c.char_start, c.text.chars().count());
        assert!(
            spans
                .iter()
                .any(|&(s, e)| s <= c.byte_start && c.byte_end <= e),
            "chunk {i} crosses a block"
        );
    }
});
