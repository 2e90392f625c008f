//! Turning results into terminal text or JSON.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use quarry_core::store::Hit;
use quarry_core::{IndexReport, LibraryStatus};

/// An error and its causes on one line.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn index_report(r: &IndexReport, library: &Path, verbose: bool) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "Indexed {} file(s) into {} chunks in {:.1}s ({:.2} MB/s); {} unchanged, {} removed, {} skipped, {} failed.",
        r.indexed.len(),
        r.chunks,
        secs,
        r.bytes as f64 / 1e6 / secs.max(1e-9),
        r.unchanged,
        r.removed.len(),
        r.skipped.len(),
        r.failed.len()
    );
    if r.embedded > 0 {
        println!("Embedded {} chunk(s) for meaning search.", r.embedded);
    }
    println!("Library: {}", library.display());
    if r.cancelled && r.not_reached > 0 {
        println!(
            "Stopped early: {} file(s) not reached; the next `quarry index` indexes them.",
            r.not_reached
        );
    }
    if r.pending_embeddings > 0 {
        println!(
            "{} chunk(s) are searchable by keyword and wait for their vectors; the next `quarry index` (or `quarry watch`) embeds them.",
            r.pending_embeddings
        );
    }
    if !r.failed.is_empty() {
        println!("\nFailed:");
        for f in &r.failed {
            println!("  {}: {}", f.path.display(), f.reason);
        }
    }
    if !r.truncated.is_empty() {
        println!("\nIndexed in part:");
        for f in &r.truncated {
            println!("  {}: {}", f.path.display(), f.reason);
        }
    }
    ocr_report(r, verbose);
    if let Some(advice) = &r.embedder_advice {
        println!("\nNote: {advice}");
    }
    if !r.skipped.is_empty() {
        println!("\nSkipped:");
        let mut by_reason: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
        for s in &r.skipped {
            by_reason
                .entry(s.reason.as_str())
                .or_default()
                .push(&s.path);
        }
        for (reason, paths) in by_reason {
            let shown = if verbose {
                paths.len()
            } else {
                paths.len().min(5)
            };
            for p in &paths[..shown] {
                println!("  {}: {reason}", p.display());
            }
            if paths.len() > shown {
                println!(
                    "  … and {} more: {reason} (--verbose lists them)",
                    paths.len() - shown
                );
            }
        }
    }
    if !r.removed.is_empty() {
        println!("\nRemoved (no longer on disk):");
        for p in r.removed.iter().take(if verbose { usize::MAX } else { 10 }) {
            println!("  {}", p.display());
        }
    }
}

/// What OCR did: pages read, and the scanned pages left out with why.
fn ocr_report(r: &IndexReport, verbose: bool) {
    if r.ocr_pages > 0 {
        println!(
            "Read {} scanned page(s) by OCR; search results mark them.",
            r.ocr_pages
        );
    }
    if r.ocr_problems.is_empty() {
        return;
    }
    println!("\nScanned pages not indexed:");
    let shown = if verbose { usize::MAX } else { 10 };
    for f in r.ocr_problems.iter().take(shown) {
        println!("  {}: {}", f.path.display(), f.reason);
    }
    if r.ocr_problems.len() > shown {
        println!(
            "  … and {} more (--verbose lists them)",
            r.ocr_problems.len() - shown
        );
    }
}

/// The hybrid search weight the library has learned (`quarry status`).
pub fn fusion(h: &quarry_core::retrieve::history::FusionHistory) {
    if h.questions == 0 {
        println!(
            "Search:    hybrid, vector weight {:.2} (learned from the library's searches as they come)",
            h.vector_weight()
        );
    } else {
        println!(
            "Search:    hybrid, vector weight {:.2}, learned from {} {}",
            h.vector_weight(),
            h.questions,
            if h.questions == 1 { "query" } else { "queries" }
        );
    }
}

/// The "not in your documents" floor of the library (`quarry status`).
pub fn relevance_floor(f: &quarry_core::answer::floor::LibraryFloor, floor: f32, registry: f32) {
    let why = match &f.baseline {
        None => "the embedder's; checked against the library at its first question".to_string(),
        Some(b) if floor == registry => format!(
            "the embedder's; unrelated questions score {:.2} here, 90% of them under {:.2}",
            b.median, b.p90
        ),
        Some(b) => format!(
            "the library's: unrelated questions score {:.2} here, above the embedder's {registry:.2}",
            b.median
        ),
    };
    println!(
        "Relevance: questions under similarity {floor:.2} are not about the documents ({why})"
    );
    let (n, under) = (f.recent.len(), f.under(floor));
    if n > 0 {
        println!("           {under} of the last {n} questions scored under it");
    }
    if n >= 20 && under * 100 > 15 * n {
        println!(
            "           declined unless a passage shared their rare words; if they were about the \
             documents, ask them with a lower --min-similarity (answers then come from weaker matches)"
        );
    }
}

pub fn status(s: &LibraryStatus) {
    println!("Library:   {}", s.library.display());
    println!("Embedder:  {} ({} dims)", s.embedder, s.dim);
    println!("Folders:");
    for f in &s.folders {
        println!("  {}", f.display());
    }
    println!(
        "Documents: {} indexed, {} failed, {} skipped (not text)",
        s.documents, s.failed, s.skipped
    );
    println!(
        "Chunks:    {} (keyword index: {})",
        s.chunks, s.keyword_chunks
    );
    if s.pending_embeddings > 0 {
        let ready = s.chunks.saturating_sub(s.pending_embeddings);
        println!(
            "Vectors:   {ready} of {} chunks ({:.1}%); {} searchable by keyword only until `quarry index` embeds them",
            s.chunks,
            100.0 * ready as f64 / s.chunks.max(1) as f64,
            s.pending_embeddings
        );
    }
    println!("On disk:   {}", human_bytes(s.size_bytes));
    if !s.failures.is_empty() {
        println!("Failed documents:");
        for (p, why) in &s.failures {
            println!("  {p}: {why}");
        }
    }
}

fn highlight(snippet: &str, ranges: &[std::ops::Range<usize>], tty: bool) -> String {
    let (open, close) = if tty {
        ("\x1b[1;33m", "\x1b[0m")
    } else {
        ("", "")
    };
    let mut out = String::new();
    let mut last = 0;
    for r in ranges {
        if r.start < last || r.end > snippet.len() {
            continue;
        }
        out.push_str(&snippet[last..r.start]);
        out.push_str(open);
        out.push_str(&snippet[r.start..r.end]);
        out.push_str(close);
        last = r.end;
    }
    out.push_str(&snippet[last..]);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn hits(hits: &[Hit], took: Duration) {
    let tty = std::io::stdout().is_terminal();
    if hits.is_empty() {
        println!("No results.");
        return;
    }
    for (i, h) in hits.iter().enumerate() {
        let mut loc = String::new();
        if let Some(p) = h.page {
            loc.push_str(&format!(" · p.{p}"));
        }
        if let Some(c) = h.ocr_confidence {
            loc.push_str(&format!(" · scanned page, OCR {c:.0}%"));
        }
        if let Some(hd) = &h.heading {
            loc.push_str(&format!(" · {hd}"));
        }
        println!("{:>2}. {}{loc}  (score {:.4})", i + 1, h.path, h.score);
        if let Some((s, ranges)) = &h.snippet {
            println!("    {}", highlight(s, ranges, tty));
        }
    }
    println!("({} results in {} ms)", hits.len(), took.as_millis());
}

/// Hits as `--json` prints them: the same view the HTTP API and the app send.
pub fn hits_json(hits: &[Hit]) -> Vec<quarry_app::views::HitView> {
    hits.iter().map(Into::into).collect()
}

/// Progress of a whole-document reading on stderr: one line rewritten in
/// place on a terminal (and cleared at the end), the start alone otherwise.
pub fn reading_progress(done: usize, total: usize) {
    let tty = std::io::stderr().is_terminal();
    if done < total {
        if tty {
            eprint!("\r\x1b[2K[reading part {} of {total}…]", done + 1);
        } else if done == 0 {
            eprintln!("[reading {total} parts]");
        }
    } else if tty {
        eprint!("\r\x1b[2K");
    }
}
