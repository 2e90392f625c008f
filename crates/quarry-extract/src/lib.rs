//! Quarry's document reading, apart from the engine: [`extract`] turns a
//! file's bytes into text blocks with their pages and headings (or says why
//! it cannot), and [`chunk`] cuts those blocks into token-aware chunks with
//! provenance; [`ocr`] reads scanned pages and images with Tesseract. It depends on no index and no model, so it builds in seconds
//! and is fuzzed on its own (`fuzz/`); `quarry-core` re-exports both modules.

#![warn(missing_docs)]

pub mod chunk;
pub mod extract;
pub mod ocr;
