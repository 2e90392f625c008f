//! Mutation fuzzing of every extractor and the chunker, short enough for CI:
//! real files of each format with bytes overwritten, truncated or spliced must
//! give text or a clear error — never a panic, an abort or a hang. Scanned
//! pages (an image, a fax TIFF, a PDF of JPEG pages) go through the image
//! decoders OCR reads from as well.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use quarry_core::extract::{extract_bytes, ExtractLimits};

const FILES: &[&str] = &[
    "corpus/tea.txt",
    "corpus/install.md",
    "corpus/octopus.html",
    "corpus/glaciers.pdf",
    "corpus/contract.docx",
    "corpus/review.pptx",
    "corpus/bread.odt",
    "corpus/budget.xlsx",
    "corpus/staff.csv",
    "corpus/settings.json",
    "corpus/invite.eml",
    "corpus/minutes.rtf",
    "scans/scanned-letter.png",
    "scans/fax.tiff",
    "scans/scanned-report.pdf",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite bytes at these (relative) positions.
    Flip(Vec<(f64, u8)>),
    /// Keep this fraction of the file.
    Truncate(f64),
    /// Copy a slice (start, len as fractions) to another place.
    Splice(f64, f64, f64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec((0.0..1.0f64, any::<u8>()), 1..16).prop_map(Mutation::Flip),
        (0.0..1.0f64).prop_map(Mutation::Truncate),
        (0.0..1.0f64, 0.0..0.3f64, 0.0..1.0f64).prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len.saturating_sub(1));
    match m {
        Mutation::Flip(edits) => {
            for (pos, b) in edits {
                if !out.is_empty() {
                    let i = at(*pos, out.len());
                    out[i] = *b;
                }
            }
        }
        Mutation::Truncate(f) => out.truncate((f * bytes.len() as f64) as usize),
        Mutation::Splice(start, len, to) => {
            let s = at(*start, bytes.len());
            let e = (s + (len * bytes.len() as f64) as usize).min(bytes.len());
            let piece = bytes[s..e].to_vec();
            let t = at(*to, out.len());
            out.splice(t..t, piece);
        }
    }
    out
}

/// Extract on another thread; a hang fails the test instead of stalling CI.
fn extract_with_deadline(name: &str, bytes: Vec<u8>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    let path = PathBuf::from(format!("/fuzz/{}", name.rsplit('/').next().unwrap_or(name)));
    let scanned = name.starts_with("scans/");
    std::thread::spawn(move || {
        let limits = ExtractLimits {
            max_text_bytes: 1 << 20,
            max_inflated_bytes: 8 << 20,
        };
        if scanned {
            let _ = quarry_core::ocr::decode_pages(&bytes, 4);
        }
        let r = extract_bytes(&path, &bytes, &limits);
        if let Ok(ex) = &r {
            assert!(ex.blocks.iter().all(|b| !b.text.trim().is_empty()));
            assert!(ex.text_len() <= 1 << 20);
        }
        let _ = tx.send(r.is_ok());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(_) => Ok(()),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("{name}: extraction hung")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("{name}: extractor panicked")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn mutated_files_give_text_or_an_error(file in 0..FILES.len(), m in mutation()) {
        let name = FILES[file];
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let mutated = apply(&bytes, &m);
        prop_assert!(extract_with_deadline(name, mutated).is_ok(), "{name} {m:?}");
    }

    #[test]
    fn random_bytes_give_text_or_an_error(
        file in 0..FILES.len(),
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let name = FILES[file];
        prop_assert!(extract_with_deadline(name, bytes).is_ok(), "{name}");
    }
}
