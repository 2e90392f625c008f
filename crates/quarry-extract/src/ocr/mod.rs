//! OCR: the text of scanned pages and images, with Tesseract.
//!
//! Pixels are decoded in Rust with size limits ([`raster`] for image files,
//! [`scans`] for the page images of PDFs) before any reaches Tesseract,
//! which is opened at run time ([`tesseract`]): without it Quarry runs and
//! says that OCR is not available. Every page read by OCR is reported as a
//! [`ScannedPage`] with Tesseract's mean word confidence; a page below
//! [`OcrSettings::min_confidence`] is reported and not indexed, so noise
//! from a bad scan never passes for text.

pub(crate) mod raster;
pub(crate) mod scans;
mod tesseract;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How OCR runs.
#[derive(Debug, Clone)]
pub struct OcrSettings {
    /// Read scanned pages and images at all (`--no-ocr` turns it off).
    pub enabled: bool,
    /// Tesseract languages, `+`-separated (`eng`, `eng+deu`).
    pub langs: String,
    /// Pages whose mean word confidence (0–100) is below this are reported
    /// and not indexed.
    pub min_confidence: f32,
    /// Longest one page may take; a page past it is reported, not indexed.
    pub page_deadline: Duration,
    /// Most pages read by OCR from one file; the rest are reported.
    pub max_pages: u32,
    /// Set to stop: the page being read stops within a few words.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for OcrSettings {
    fn default() -> Self {
        OcrSettings {
            enabled: true,
            langs: "eng".into(),
            min_confidence: 40.0,
            page_deadline: Duration::from_secs(120),
            max_pages: 1000,
            cancel: None,
        }
    }
}

impl OcrSettings {
    /// OCR turned off: images and scanned pages are reported as needing it.
    pub fn off() -> Self {
        OcrSettings {
            enabled: false,
            ..Default::default()
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Why OCR cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcrError {
    /// Tesseract is not installed (or could not be loaded).
    #[error("OCR is not available: {0}")]
    Unavailable(String),
    /// Language data is missing.
    #[error("OCR language data missing for {}: {hint} (installed: {})", missing.join(", "), installed.join(", "))]
    MissingLanguages {
        /// Requested languages without data.
        missing: Vec<String>,
        /// Languages that are installed.
        installed: Vec<String>,
        /// How to install the missing ones.
        hint: String,
    },
}

/// What OCR made of one page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScannedPage {
    /// 1-based page (1 for a single image).
    pub page: u32,
    /// Tesseract's mean word confidence, 0–100 (none when not read).
    pub confidence: Option<f32>,
    /// Why the page is not indexed (low confidence, too large, timed out,
    /// an image encoding Quarry cannot decode); `None` when it is.
    pub problem: Option<String>,
}

/// The outcome of one recognition.
pub(crate) enum Recognition {
    /// Text and mean confidence.
    Text(String, f32),
    /// The run was stopped.
    Cancelled,
    /// The page took longer than its deadline.
    TimedOut,
}

/// An 8-bit grey page image.
pub(crate) struct GreyPage {
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Resolution in dots per inch (estimated when the file does not say).
    pub dpi: u32,
}

/// The pages of one file as OCR reads them, in order.
#[derive(Default)]
pub(crate) struct OcrRun {
    /// Text of each indexed page.
    pub texts: Vec<(u32, String)>,
    /// What happened to every page OCR looked at.
    pub pages: Vec<ScannedPage>,
    /// The run was stopped before the file was done.
    pub stopped: bool,
}

impl OcrRun {
    /// Read `page` (or record why its image could not be had); false when
    /// the run is stopped and no more pages should come.
    pub(crate) fn take(
        &mut self,
        page: u32,
        image: Result<GreyPage, String>,
        settings: &OcrSettings,
    ) -> Result<bool, OcrError> {
        if settings.cancelled() {
            self.stopped = true;
            return Ok(false);
        }
        let image = match image {
            Ok(i) => i,
            Err(why) => {
                self.pages.push(problem_page(page, why));
                return Ok(true);
            }
        };
        match read_page(page, image, settings)? {
            None => {
                self.stopped = true;
                Ok(false)
            }
            Some((report, text)) => {
                if !text.is_empty() {
                    self.texts.push((page, text));
                }
                self.pages.push(report);
                Ok(true)
            }
        }
    }
}

/// What OCR is on this machine: Tesseract's version and languages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OcrStatus {
    /// Tesseract's version.
    pub version: String,
    /// Installed languages.
    pub languages: Vec<String>,
}

/// Whether OCR can run here, and with which languages.
pub fn status() -> Result<OcrStatus, OcrError> {
    Ok(OcrStatus {
        version: tesseract::version()?,
        languages: tesseract::installed_languages()?,
    })
}

/// Check that OCR can run with `langs` (a clear error naming the package
/// to install when it cannot).
pub fn check(langs: &str) -> Result<(), OcrError> {
    tesseract::check(langs)
}

/// A page's size in pixels, or why it cannot be read.
pub type DecodedPage = Result<(u32, u32), String>;

/// Decode the pages of an image file, or the page images of a PDF, as OCR
/// would see them, without running OCR: each page's size, or why it cannot
/// be read (at most `max_pages`). The extractor fuzz target drives the
/// image decoders through it.
pub fn decode_pages(bytes: &[u8], max_pages: u32) -> Result<Vec<DecodedPage>, String> {
    let mut out = Vec::new();
    if bytes.starts_with(b"%PDF") {
        let pdf = scans::ScannedPdf::parse(bytes)?;
        for page in 1..=max_pages {
            match pdf.page_image(page) {
                Err(why) if why == "no such page" => break,
                Ok(None) => {}
                r => out.push(r.map(|p| p.map_or((0, 0), |p| (p.width, p.height)))),
            }
        }
        return Ok(out);
    }
    raster::pages(bytes, max_pages, &mut |_, page| {
        out.push(page.map(|p| (p.width, p.height)));
        true
    })?;
    Ok(out)
}

/// Prepare the process for OCR; call first thing in `main`, before any
/// thread starts. Quarry reads one page per worker thread, which keeps the
/// cores busy; the OpenMP threads an OpenMP build of Tesseract (Debian's,
/// Homebrew's) starts inside each page spin against them and made OCR six
/// times slower on two cores (3.1 s against 0.54 s for two pages). Unless
/// the user set `OMP_THREAD_LIMIT`, it is set to 1 here, before Tesseract
/// (and its OpenMP runtime, which reads it once) is loaded.
pub fn prepare_process() {
    if std::env::var_os("OMP_THREAD_LIMIT").is_none() {
        std::env::set_var("OMP_THREAD_LIMIT", "1");
    }
}

/// Largest page image given to Tesseract; larger ones are scaled down
/// (a letter page at 600 dpi is 33.7 million pixels).
const MAX_OCR_PIXELS: u64 = 36_000_000;

/// Read one page. `Ok(None)` when the run was stopped; otherwise the page
/// report and its text (empty when not indexed).
pub(crate) fn read_page(
    page: u32,
    image: GreyPage,
    settings: &OcrSettings,
) -> Result<Option<(ScannedPage, String)>, OcrError> {
    let image = bounded(image);
    let cancel = settings.cancel.as_deref();
    let recognised = tesseract::recognize(
        &image.pixels,
        image.width,
        image.height,
        image.dpi,
        &settings.langs,
        settings.page_deadline,
        cancel,
    )?;
    let (text, confidence) = match recognised {
        Recognition::Cancelled => return Ok(None),
        Recognition::TimedOut => {
            let why = format!(
                "OCR took longer than {} s on this page: not indexed",
                settings.page_deadline.as_secs()
            );
            return Ok(Some((problem_page(page, why), String::new())));
        }
        Recognition::Text(t, c) => (tidy(&t), c),
    };
    let mut report = ScannedPage {
        page,
        confidence: Some(confidence),
        problem: None,
    };
    if text.chars().filter(|c| c.is_alphanumeric()).count() < 3 {
        return Ok(Some((report, String::new())));
    }
    if confidence < settings.min_confidence {
        report.problem = Some(format!(
            "OCR confidence {confidence:.0}% (below {:.0}%): not indexed",
            settings.min_confidence
        ));
        return Ok(Some((report, String::new())));
    }
    Ok(Some((report, text)))
}

/// A page that could not be read, and why.
pub(crate) fn problem_page(page: u32, why: String) -> ScannedPage {
    ScannedPage {
        page,
        confidence: None,
        problem: Some(why),
    }
}

/// The page scaled down to at most [`MAX_OCR_PIXELS`].
fn bounded(image: GreyPage) -> GreyPage {
    let pixels = image.width as u64 * image.height as u64;
    if pixels <= MAX_OCR_PIXELS {
        return image;
    }
    let scale = (MAX_OCR_PIXELS as f64 / pixels as f64).sqrt();
    let width = ((image.width as f64 * scale) as u32).max(1);
    let height = ((image.height as f64 * scale) as u32).max(1);
    let buffer = image::GrayImage::from_raw(image.width, image.height, image.pixels)
        .expect("pixels match the dimensions");
    let small = image::imageops::resize(
        &buffer,
        width,
        height,
        image::imageops::FilterType::Triangle,
    );
    GreyPage {
        pixels: small.into_raw(),
        width,
        height,
        dpi: ((image.dpi as f64 * scale) as u32).max(70),
    }
}

/// Tesseract's text made searchable: words broken across lines with a
/// hyphen are joined, runs of blank lines become one paragraph break.
pub(crate) fn tidy(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let mut out = String::with_capacity(text.len());
    let (mut blank, mut joined) = (false, false);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() && !joined {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        let next_lower = lines
            .get(i + 1)
            .and_then(|n| n.trim_start().chars().next())
            .is_some_and(char::is_lowercase);
        let mut tail = line.chars().rev();
        let hyphenated = tail.next() == Some('-') && tail.next().is_some_and(char::is_alphabetic);
        joined = hyphenated && next_lower;
        out.push_str(if joined {
            &line[..line.len() - 1]
        } else {
            line
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_joins_hyphenated_words_and_paragraphs() {
        let t = tidy("The exam-\nple shows\n\n\n\nnew para-\nGraph\n");
        assert_eq!(t, "The example shows\n\nnew para-\nGraph");
    }

    #[test]
    fn large_pages_are_scaled_down() {
        let page = GreyPage {
            pixels: vec![255; 9000 * 6000],
            width: 9000,
            height: 6000,
            dpi: 600,
        };
        let small = bounded(page);
        assert!(small.width as u64 * small.height as u64 <= MAX_OCR_PIXELS);
        assert_eq!(small.pixels.len(), (small.width * small.height) as usize);
        assert!(small.dpi < 600 && small.dpi >= 70);
    }
}
