//! `quarry ocr [FILE...]`: whether OCR is available here (Tesseract, its
//! languages), or what OCR reads from images and scanned PDFs — the text
//! of each page with Tesseract's confidence, and the pages it left out.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use quarry_core::extract::{extract_with, ExtractLimits, Extracted};
use quarry_core::ocr;
use serde_json::json;

#[derive(clap::Args)]
pub struct OcrArgs {
    /// Images (PNG, JPEG, TIFF, WebP, BMP) or PDFs to read; none: report
    /// whether OCR is available and its languages.
    files: Vec<PathBuf>,
    /// Languages of the scans, `+`-separated (`eng`, `eng+deu`).
    #[arg(long, default_value = "eng", value_name = "LANGS")]
    lang: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn ocr(args: OcrArgs) -> Result<()> {
    if args.files.is_empty() {
        return status(args.json);
    }
    let settings = super::index::ocr_settings(false, &args.lang)?;
    for path in &args.files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let extracted = extract_with(path, &bytes, &ExtractLimits::default(), &settings)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if args.json {
            println!("{}", serde_json::to_string(&page_json(path, &extracted))?);
        } else {
            print_pages(path, &extracted);
        }
    }
    Ok(())
}

fn status(as_json: bool) -> Result<()> {
    let status = ocr::status();
    if as_json {
        let v = match &status {
            Ok(s) => json!({"available": true, "version": s.version, "languages": s.languages}),
            Err(e) => json!({"available": false, "error": e.to_string()}),
        };
        println!("{v}");
        return Ok(());
    }
    match status {
        Ok(s) => println!(
            "OCR: Tesseract {}; languages: {} (`quarry index --ocr-lang` picks them).",
            s.version,
            s.languages.join(", ")
        ),
        Err(e) => println!("{e}\nImages and scanned PDF pages are reported, not read."),
    }
    Ok(())
}

/// Every page: its text (all blocks on it), and what OCR said of it.
fn page_json(path: &Path, e: &Extracted) -> serde_json::Value {
    let mut pages: std::collections::BTreeMap<u32, serde_json::Value> = Default::default();
    for b in &e.blocks {
        let page = b.page.unwrap_or(1);
        let entry = pages
            .entry(page)
            .or_insert_with(|| json!({"page": page, "text": ""}));
        let text = entry["text"].as_str().unwrap_or_default().to_string();
        entry["text"] = json!(if text.is_empty() {
            b.text.clone()
        } else {
            text + "\n\n" + &b.text
        });
    }
    for s in &e.scanned {
        let entry = pages
            .entry(s.page)
            .or_insert_with(|| json!({"page": s.page, "text": ""}));
        entry["ocr_confidence"] = json!(s.confidence);
        entry["problem"] = json!(s.problem);
    }
    json!({"path": path, "pages": pages.into_values().collect::<Vec<_>>()})
}

fn print_pages(path: &Path, e: &Extracted) {
    println!("== {}", path.display());
    let v = page_json(path, e);
    for p in v["pages"].as_array().into_iter().flatten() {
        let mut head = format!("-- page {}", p["page"]);
        if let Some(c) = p["ocr_confidence"].as_f64() {
            head.push_str(&format!(" (scanned, OCR {c:.0}%)"));
        }
        println!("{head}");
        if let Some(why) = p["problem"].as_str() {
            println!("   not indexed: {why}");
        }
        let text = p["text"].as_str().unwrap_or_default();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}
