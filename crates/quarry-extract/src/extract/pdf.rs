//! PDF text, page by page (pdf-extract over lopdf); pages without a text
//! layer are read by OCR from their image.

use super::{Block, ExtractError, Extracted};
use crate::ocr::scans::ScannedPdf;
use crate::ocr::{OcrRun, OcrSettings};

/// A page with fewer letters and digits than this in its text layer is
/// read by OCR (a scan often carries a page number or a stamp as text).
const SCANNED_BELOW: usize = 20;

pub(super) fn extract(bytes: &[u8], ocr: &OcrSettings) -> Result<Extracted, ExtractError> {
    if !bytes.starts_with(b"%PDF")
        && !bytes[..bytes.len().min(1024)]
            .windows(4)
            .any(|w| w == b"%PDF")
    {
        return Err(ExtractError::Corrupt {
            format: "PDF",
            reason: "no %PDF header".into(),
        });
    }
    let pages = pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| {
        let reason = e.to_string();
        if reason.to_lowercase().contains("encrypt") || reason.to_lowercase().contains("decrypt") {
            ExtractError::Encrypted("PDF")
        } else {
            ExtractError::Corrupt {
                format: "PDF",
                reason,
            }
        }
    })?;
    let mut blocks: Vec<Block> = pages
        .into_iter()
        .enumerate()
        .map(|(i, text)| Block {
            text: tidy(&text),
            page: Some(i as u32 + 1),
            heading: None,
        })
        .collect();
    let scanned: Vec<u32> = blocks
        .iter()
        .filter(|b| b.text.chars().filter(|c| c.is_alphanumeric()).count() < SCANNED_BELOW)
        .filter_map(|b| b.page)
        .collect();
    let mut extracted = Extracted {
        truncated: false,
        title: None,
        scanned: Vec::new(),
        blocks: Vec::new(),
    };
    if !scanned.is_empty() {
        let all = scanned.len() == blocks.len();
        if let Some(run) = read_scanned(bytes, &scanned, ocr, all)? {
            for (page, text) in run.texts {
                blocks[page as usize - 1].text = text;
            }
            extracted.scanned = run.pages;
        }
    }
    extracted.blocks = blocks;
    Ok(extracted)
}

/// OCR of the pages without text. `None` when a few pages are scanned and
/// OCR cannot run (the text pages are still indexed); an error when every
/// page is (the file needs OCR) or the run was stopped.
fn read_scanned(
    bytes: &[u8],
    pages: &[u32],
    ocr: &OcrSettings,
    all: bool,
) -> Result<Option<OcrRun>, ExtractError> {
    if let Err(e) = super::image::ready(ocr, "a scanned PDF") {
        return if all { Err(e) } else { Ok(None) };
    }
    let pdf = ScannedPdf::parse(bytes).map_err(|reason| ExtractError::Corrupt {
        format: "PDF",
        reason,
    })?;
    let mut run = OcrRun::default();
    for (n, &page) in pages.iter().enumerate() {
        if n as u32 >= ocr.max_pages {
            let why = format!(
                "only the first {} scanned pages of a file are read by OCR: not indexed",
                ocr.max_pages
            );
            run.pages.push(crate::ocr::problem_page(page, why));
            continue;
        }
        // A page with neither text nor a page-sized image is blank, or a
        // figure: nothing to read.
        let image = match pdf.page_image(page) {
            Ok(None) => continue,
            Ok(Some(image)) => Ok(image),
            Err(why) => Err(why),
        };
        let go_on = run
            .take(page, image, ocr)
            .map_err(|e| ExtractError::NeedsOcr(e.to_string()))?;
        if !go_on {
            return Err(ExtractError::Stopped);
        }
    }
    Ok(Some(run))
}

/// pdf-extract emits many blank lines between text runs; collapse runs of 3+
/// newlines to a paragraph break.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0;
    for c in text.chars() {
        if c == '\n' {
            newlines += 1;
            if newlines <= 2 {
                out.push(c);
            }
        } else {
            newlines = 0;
            out.push(c);
        }
    }
    out.trim().to_string()
}
