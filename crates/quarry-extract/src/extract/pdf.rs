//! PDF text, page by page (pdf-extract over lopdf).

use super::{Block, ExtractError, Extracted};

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
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
    let blocks = pages
        .into_iter()
        .enumerate()
        .map(|(i, text)| Block {
            text: tidy(&text),
            page: Some(i as u32 + 1),
            heading: None,
        })
        .collect();
    Ok(Extracted {
        truncated: false,
        blocks,
        title: None,
    })
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
