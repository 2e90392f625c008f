//! Text extraction: a file becomes a list of [`Block`]s (text with the page and
//! heading it sits under), or an [`ExtractError`] saying why it was skipped.
//!
//! Formats: plain text and source code (any extension, when the content is text),
//! Markdown, HTML, PDF (page by page), DOCX, PPTX (slide = page), ODT, XLSX/ODS
//! (sheet = page), CSV, JSON, RTF, e-mail (.eml), and by OCR images (PNG,
//! JPEG, TIFF, WebP, BMP) and the scanned pages of PDFs. Extractors never panic the
//! indexer: third-party parsers run under `catch_unwind`.

mod email;
mod html;
mod image;
mod office;
mod pdf;
mod text;

use std::path::Path;

use crate::ocr::{OcrSettings, ScannedPage};

pub use text::{decode_text, looks_binary};

/// A run of text with its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The text (never empty after extraction).
    pub text: String,
    /// 1-based page (PDF page, slide, sheet index), when the format has pages.
    pub page: Option<u32>,
    /// The nearest heading above this block.
    pub heading: Option<String>,
}

/// What extraction produced.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    /// Blocks in reading order.
    pub blocks: Vec<Block>,
    /// Document title when the format has one.
    pub title: Option<String>,
    /// The text was cut at [`ExtractLimits::max_text_bytes`].
    pub truncated: bool,
    /// Pages read by OCR (indexed or reported), in page order.
    pub scanned: Vec<ScannedPage>,
}

impl Extracted {
    /// Total characters of text.
    pub fn text_len(&self) -> usize {
        self.blocks.iter().map(|b| b.text.len()).sum()
    }
}

/// Why a file yielded no text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Not a format Quarry reads, and not text.
    #[error("unsupported file type{0}")]
    Unsupported(String),
    /// Content is binary.
    #[error("binary content")]
    Binary,
    /// The file is malformed for its format.
    #[error("corrupt {format}: {reason}")]
    Corrupt {
        /// Format name.
        format: &'static str,
        /// Parser message.
        reason: String,
    },
    /// Password-protected.
    #[error("encrypted {0}; Quarry cannot read password-protected files")]
    Encrypted(&'static str),
    /// No text in it (e.g. a scanned PDF without a text layer).
    #[error("no text found{0}")]
    Empty(String),
    /// Extraction would exceed a limit (e.g. a zip bomb).
    #[error("too large: {0}")]
    TooLarge(String),
    /// An image or a scanned PDF, and OCR is off or not available.
    #[error("needs OCR: {0}")]
    NeedsOcr(String),
    /// The run was stopped while this file was being read (it is read again
    /// next time).
    #[error("stopped")]
    Stopped,
}

/// Limits applied while extracting.
#[derive(Debug, Clone, Copy)]
pub struct ExtractLimits {
    /// Most bytes of text kept from one file; the rest is dropped (and reported).
    pub max_text_bytes: usize,
    /// Most bytes decompressed from one archive member (zip-based formats).
    pub max_inflated_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_text_bytes: 64 << 20,
            max_inflated_bytes: 256 << 20,
        }
    }
}

/// The format a path is read as, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text (and anything that sniffs as text).
    Text,
    /// Markdown.
    Markdown,
    /// HTML.
    Html,
    /// PDF.
    Pdf,
    /// Word.
    Docx,
    /// PowerPoint.
    Pptx,
    /// OpenDocument text.
    Odt,
    /// Spreadsheets (xlsx, xls, ods).
    Sheet,
    /// CSV / TSV.
    Csv,
    /// JSON.
    Json,
    /// E-mail.
    Eml,
    /// Rich text.
    Rtf,
    /// An image, read by OCR.
    Image,
}

/// Extensions that are never text and never supported (skipped without reading).
const KNOWN_BINARY: &[&str] = &[
    "gif",
    "ico",
    "heic",
    "mp3",
    "mp4",
    "m4a",
    "wav",
    "flac",
    "ogg",
    "mov",
    "avi",
    "mkv",
    "webm",
    "zip",
    "gz",
    "tgz",
    "bz2",
    "xz",
    "7z",
    "rar",
    "tar",
    "exe",
    "dll",
    "so",
    "dylib",
    "o",
    "a",
    "class",
    "jar",
    "pyc",
    "wasm",
    "bin",
    "iso",
    "dmg",
    "msi",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "sqlite",
    "db",
    "parquet",
    "lance",
    "safetensors",
    "gguf",
    "onnx",
    "pt",
    "npy",
    "doc",
    "ppt",
];

impl Format {
    /// The format for a path, or `None` for a known binary type.
    pub fn for_path(path: &Path) -> Option<Format> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        Some(match ext.as_str() {
            "md" | "markdown" | "mdx" => Format::Markdown,
            "html" | "htm" | "xhtml" => Format::Html,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "pptx" => Format::Pptx,
            "odt" => Format::Odt,
            "xlsx" | "xlsm" | "xls" | "ods" => Format::Sheet,
            "csv" | "tsv" => Format::Csv,
            "json" | "jsonl" => Format::Json,
            "eml" => Format::Eml,
            "rtf" => Format::Rtf,
            "png" | "jpg" | "jpeg" | "tif" | "tiff" | "webp" | "bmp" => Format::Image,
            e if KNOWN_BINARY.contains(&e) => return None,
            _ => Format::Text,
        })
    }
}

/// Extract the text of a file whose bytes are already read, without OCR
/// (images and scanned pages are reported as needing it).
pub fn extract_bytes(
    path: &Path,
    bytes: &[u8],
    limits: &ExtractLimits,
) -> Result<Extracted, ExtractError> {
    extract_with(path, bytes, limits, &OcrSettings::off())
}

/// Extract the text of a file whose bytes are already read, reading images
/// and scanned PDF pages by OCR as `ocr` says.
pub fn extract_with(
    path: &Path,
    bytes: &[u8],
    limits: &ExtractLimits,
    ocr: &OcrSettings,
) -> Result<Extracted, ExtractError> {
    let format = Format::for_path(path).ok_or_else(|| {
        ExtractError::Unsupported(
            path.extension()
                .map(|e| format!(" .{}", e.to_string_lossy()))
                .unwrap_or_default(),
        )
    })?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match format {
        Format::Text => text::plain(bytes),
        Format::Markdown => text::markdown(bytes),
        Format::Csv => text::csv(bytes, path),
        Format::Json => text::json(bytes),
        Format::Html => html::extract(bytes),
        Format::Pdf => pdf::extract(bytes, ocr),
        Format::Image => image::extract(bytes, ocr),
        Format::Docx => office::docx(bytes, limits),
        Format::Pptx => office::pptx(bytes, limits),
        Format::Odt => office::odt(bytes, limits),
        Format::Sheet => office::sheet(bytes, path),
        Format::Eml => email::extract(bytes),
        Format::Rtf => text::rtf(bytes),
    }));
    let mut extracted = match result {
        Ok(r) => r?,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "parser panicked".into());
            return Err(ExtractError::Corrupt {
                format: format_name(format),
                reason: msg,
            });
        }
    };
    extracted.blocks.retain(|b| !b.text.trim().is_empty());
    if extracted.blocks.is_empty() {
        let hint = extracted
            .scanned
            .iter()
            .find_map(|p| {
                p.problem
                    .as_ref()
                    .map(|why| format!(" (page {}: {why})", p.page))
            })
            .unwrap_or_default();
        return Err(ExtractError::Empty(hint));
    }
    extracted.truncated = truncate_blocks(&mut extracted.blocks, limits.max_text_bytes);
    Ok(extracted)
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Text => "text",
        Format::Markdown => "Markdown",
        Format::Html => "HTML",
        Format::Pdf => "PDF",
        Format::Docx => "DOCX",
        Format::Pptx => "PPTX",
        Format::Odt => "ODT",
        Format::Sheet => "spreadsheet",
        Format::Csv => "CSV",
        Format::Json => "JSON",
        Format::Eml => "e-mail",
        Format::Rtf => "RTF",
        Format::Image => "image",
    }
}

/// Keep at most `max` bytes of text; true when something was cut.
fn truncate_blocks(blocks: &mut Vec<Block>, max: usize) -> bool {
    let mut total = 0usize;
    for i in 0..blocks.len() {
        let len = blocks[i].text.len();
        if total + len > max {
            let keep = max - total;
            let mut cut = keep;
            while cut > 0 && !blocks[i].text.is_char_boundary(cut) {
                cut -= 1;
            }
            blocks[i].text.truncate(cut);
            blocks.truncate(i + 1);
            blocks.retain(|b| !b.text.trim().is_empty());
            return true;
        }
        total += len;
    }
    false
}

/// Split Markdown-like text into blocks at `#` headings; paragraphs stay inside a
/// block (the chunker splits them).
pub(crate) fn blocks_from_markdown(text: &str, page: Option<u32>) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut heading: Option<String> = None;
    let mut current = String::new();
    let mut in_fence = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let is_heading = !in_fence
            && trimmed.starts_with('#')
            && trimmed.trim_start_matches('#').starts_with([' ', '\t'])
            && trimmed.len() - trimmed.trim_start_matches('#').len() <= 6;
        if is_heading {
            if !current.trim().is_empty() {
                blocks.push(Block {
                    text: std::mem::take(&mut current),
                    page,
                    heading: heading.clone(),
                });
            }
            current.clear();
            heading = Some(trimmed.trim_start_matches('#').trim().to_string());
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        blocks.push(Block {
            text: current,
            page,
            heading,
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_headings_split_blocks() {
        let b = blocks_from_markdown(
            "intro\n\n# One\nbody one\n\n## Two\nbody two\n```\n# not a heading\n```\n",
            None,
        );
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].heading, None);
        assert_eq!(b[1].heading.as_deref(), Some("One"));
        assert!(b[1].text.starts_with("# One"));
        assert_eq!(b[2].heading.as_deref(), Some("Two"));
        assert!(b[2].text.contains("# not a heading"));
    }

    #[test]
    fn binary_extensions_are_unsupported() {
        let e = extract_bytes(Path::new("a.mp3"), b"ID3", &ExtractLimits::default());
        assert!(matches!(e, Err(ExtractError::Unsupported(_))));
        let e = extract_bytes(Path::new("a.png"), b"\x89PNG", &ExtractLimits::default());
        assert!(matches!(e, Err(ExtractError::NeedsOcr(_))), "{e:?}");
    }

    #[test]
    fn text_is_truncated_at_limit() {
        let limits = ExtractLimits {
            max_text_bytes: 10,
            ..Default::default()
        };
        let e = extract_bytes(Path::new("a.txt"), "ééééééééééé".as_bytes(), &limits).unwrap();
        assert!(e.text_len() <= 10);
    }
}
