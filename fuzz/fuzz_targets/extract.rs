//! Every extractor on arbitrary bytes: the first byte picks the file type (so
//! one corpus covers all formats), the rest is the file. Extraction must end
//! with text or an error, never a panic, a hang or unbounded memory, and the
//! text it keeps stays within its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarry_extract::extract::{extract_bytes, ExtractLimits};

const EXTENSIONS: &[&str] = &[
    "txt", "md", "html", "pdf", "docx", "pptx", "odt", "xlsx", "ods", "csv", "json", "eml", "rtf",
    "rs", "dat", "png", "jpg", "tiff", "webp", "bmp",
];

fuzz_target!(|data: &[u8]| {
    // Third-party parsers (pdf-extract above all) panic on bad input, and the
    // extractor turns such a panic into an error for that one file: that is
    // its contract. libfuzzer-sys's panic hook would abort on the caught
    // panic; a quiet hook leaves them to the extractor, while a panic that
    // escapes `extract_bytes` still aborts (libfuzzer-sys aborts on any
    // unwinding out of the target) and is reported as a crash.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[pick as usize % EXTENSIONS.len()];
    let path = std::path::PathBuf::from(format!("fuzz.{ext}"));
    let limits = ExtractLimits {
        max_text_bytes: 1 << 20,
        max_inflated_bytes: 8 << 20,
    };
    // Images (and the page images of PDFs) are decoded as OCR would see
    // them; OCR itself is not run.
    if matches!(ext, "png" | "jpg" | "tiff" | "webp" | "bmp" | "pdf") {
        let _ = quarry_extract::ocr::decode_pages(bytes, 4);
    }
    if let Ok(extracted) = extract_bytes(&path, bytes, &limits) {
        // The kept text respects the limit (a little slack for the last block).
        assert!(extracted.text_len() <= limits.max_text_bytes + (64 << 10));
    }
});
