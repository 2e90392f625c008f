//! Image files (PNG, JPEG, TIFF with all its pages, WebP, BMP), read by OCR.

use super::{Block, ExtractError, Extracted};
use crate::ocr::{self, raster, OcrRun, OcrSettings};

pub(super) fn extract(bytes: &[u8], settings: &OcrSettings) -> Result<Extracted, ExtractError> {
    ready(settings, "an image")?;
    let mut run = OcrRun::default();
    let mut failed = None;
    raster::pages(bytes, settings.max_pages, &mut |page, image| match run
        .take(page, image, settings)
    {
        Ok(go_on) => go_on,
        Err(e) => {
            failed = Some(e);
            false
        }
    })
    .map_err(|reason| ExtractError::Corrupt {
        format: "image",
        reason,
    })?;
    finish(run, failed)
}

/// Whether OCR can run: an error saying why not (it is off, Tesseract is
/// missing, a language's data is missing) for `what` otherwise.
pub(super) fn ready(settings: &OcrSettings, what: &str) -> Result<(), ExtractError> {
    if !settings.enabled {
        return Err(ExtractError::NeedsOcr(format!("{what}, and OCR is off")));
    }
    ocr::check(&settings.langs).map_err(|e| ExtractError::NeedsOcr(format!("{what}; {e}")))
}

/// The blocks of an OCR run, page by page; stopped runs and OCR errors
/// are errors.
pub(super) fn finish(
    run: OcrRun,
    failed: Option<ocr::OcrError>,
) -> Result<Extracted, ExtractError> {
    if let Some(e) = failed {
        return Err(ExtractError::NeedsOcr(e.to_string()));
    }
    if run.stopped {
        return Err(ExtractError::Stopped);
    }
    Ok(Extracted {
        blocks: blocks(run.texts),
        title: None,
        truncated: false,
        scanned: run.pages,
    })
}

/// One block per page of OCR text.
pub(super) fn blocks(texts: Vec<(u32, String)>) -> Vec<Block> {
    texts
        .into_iter()
        .map(|(page, text)| Block {
            text,
            page: Some(page),
            heading: None,
        })
        .collect()
}
