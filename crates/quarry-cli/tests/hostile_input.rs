//! Hostile and odd input, generated here: every bad file is skipped, failed or
//! truncated with its reason, memory stays bounded, the good files are indexed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A DOCX whose document.xml inflates to `mib` MiB of spaces.
fn zip_bomb(path: &Path, mib: usize) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    z.start_file("[Content_Types].xml", opts).unwrap();
    z.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
    z.start_file("word/document.xml", opts).unwrap();
    z.write_all(b"<w:document><w:body><w:p><w:r><w:t>").unwrap();
    let block = vec![b' '; 1 << 20];
    for _ in 0..mib {
        z.write_all(&block).unwrap();
    }
    z.write_all(b"</w:t></w:r></w:p></w:body></w:document>")
        .unwrap();
    z.finish().unwrap();
}

/// Peak RSS of the largest child this process has waited for, in MiB.
fn children_peak_rss_mib() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as f64 / 1024.0 // kilobytes on Linux
}

fn reasons(report: &Value, key: &str) -> Vec<(String, String)> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let p = s["path"].as_str().unwrap();
            let name = Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, s["reason"].as_str().unwrap().to_string())
        })
        .collect()
}

fn reason_of<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r.as_str())
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn hostile_corpus_is_reported_not_fatal_and_memory_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("docs");
    std::fs::create_dir(&d).unwrap();
    let glaciers = std::fs::read(fixtures().join("corpus/glaciers.pdf")).unwrap();

    // Good files that must be indexed.
    std::fs::copy(fixtures().join("corpus/tea.txt"), d.join("tea.txt")).unwrap();
    std::fs::write(d.join("glaciers.pdf"), &glaciers).unwrap();
    // PDFs: truncated, corrupt, password-protected.
    std::fs::write(d.join("truncated.pdf"), &glaciers[..glaciers.len() / 2]).unwrap();
    let mut corrupt = b"%PDF-1.7\n".to_vec();
    corrupt.extend((0..20_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(d.join("corrupt.pdf"), corrupt).unwrap();
    std::fs::copy(
        fixtures().join("hostile/encrypted.pdf"),
        d.join("encrypted.pdf"),
    )
    .unwrap();
    // A DOCX zip bomb: 2 MiB on disk, 1 GiB inflated.
    zip_bomb(&d.join("bomb.docx"), 1024);
    // A sparse 4 GiB file (no disk used) and a .txt full of binary.
    std::fs::File::create(d.join("huge.log"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let noise: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2246822519) >> 11) as u8)
        .collect();
    std::fs::write(d.join("binary.txt"), noise).unwrap();
    // Invalid UTF-8 in mostly good text; UTF-16 LE and BE with BOMs.
    let mut bad = b"Invoice for the granite quarry. ".repeat(50);
    bad.extend([0xC3, 0x28, 0xFF, 0xFE, 0x80]);
    bad.extend(b" Paid in full.");
    std::fs::write(d.join("latin.txt"), bad).unwrap();
    let le: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            "Vertrag über die Lieferung von Granit"
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes()),
        )
        .collect();
    std::fs::write(d.join("utf16le.txt"), le).unwrap();
    let be: Vec<u8> = [0xFE, 0xFF]
        .into_iter()
        .chain(
            "Contrat de livraison de basalte"
                .encode_utf16()
                .flat_map(|u| u.to_be_bytes()),
        )
        .collect();
    std::fs::write(d.join("utf16be.txt"), be).unwrap();
    // One line of 100 MB text: indexed in part, with the reason.
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("oneline.txt")).unwrap());
        let piece = b"alpha beta gamma delta epsilon zeta eta theta iota kappa ";
        for _ in 0..(100_000_000 / piece.len()) {
            f.write_all(piece).unwrap();
        }
    }
    // Deep nesting, and symbolic-link loops.
    let mut deep = d.join("deep");
    for i in 0..120 {
        deep = deep.join(format!("level{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(
        deep.join("bottom.txt"),
        "The bottom of the well holds basalt.",
    )
    .unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&d, d.join("loop")).unwrap();
        std::os::unix::fs::symlink(d.join("deep"), deep.join("back-up")).unwrap();
    }

    let library = tmp.path().join("library");
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["index", d.to_str().unwrap(), "--json", "--follow-links"])
        .args(["--max-text-mb", "0.25"])
        .arg("--library")
        .arg(&library)
        .env(
            "QUARRY_MODELS_DIR",
            std::env::var_os("QUARRY_MODELS_DIR").expect("QUARRY_MODELS_DIR"),
        )
        .env("QUARRY_CONFIG_DIR", tmp.path().join("config"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "index failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let peak = children_peak_rss_mib();
    eprintln!("peak RSS of `quarry index` on the hostile corpus: {peak:.0} MiB");

    let indexed: Vec<String> = report["indexed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let p = e[0].as_str().unwrap();
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for good in [
        "tea.txt",
        "glaciers.pdf",
        "latin.txt",
        "utf16le.txt",
        "utf16be.txt",
        "oneline.txt",
        "bottom.txt",
    ] {
        assert!(
            indexed.contains(&good.to_string()),
            "{good} not indexed: {report}"
        );
    }
    let failed = reasons(&report, "failed");
    let skipped = reasons(&report, "skipped");
    let truncated = reasons(&report, "truncated");
    let why = |name: &str| {
        reason_of(&failed, name)
            .or_else(|| reason_of(&skipped, name))
            .unwrap_or_else(|| panic!("{name} neither failed nor skipped: {report}"))
            .to_lowercase()
    };
    assert!(
        why("encrypted.pdf").contains("encrypted"),
        "{}",
        why("encrypted.pdf")
    );
    assert!(
        why("bomb.docx").contains("zip bomb"),
        "{}",
        why("bomb.docx")
    );
    assert!(
        why("huge.log").contains("larger than"),
        "{}",
        why("huge.log")
    );
    assert!(
        why("binary.txt").contains("binary"),
        "{}",
        why("binary.txt")
    );
    assert!(!why("corrupt.pdf").is_empty());
    assert!(!why("truncated.pdf").is_empty());
    assert!(
        skipped.iter().any(|(_, r)| r.contains("loop")),
        "symbolic-link loop not reported: {skipped:?}"
    );
    assert!(
        reason_of(&truncated, "oneline.txt").is_some(),
        "oneline.txt not reported as truncated: {report}"
    );
    // 100 MB read, 1 GiB bomb refused, 4 GiB file never read: memory stays bounded.
    assert!(peak < 1500.0, "peak RSS {peak:.0} MiB");

    // The text of the odd encodings is searchable.
    let search = |q: &str| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
            .args(["search", q, "--json", "--mode", "keyword", "--library"])
            .arg(&library)
            .env(
                "QUARRY_MODELS_DIR",
                std::env::var_os("QUARRY_MODELS_DIR").unwrap(),
            )
            .env("QUARRY_CONFIG_DIR", tmp.path().join("config"))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(search("Lieferung").contains("utf16le.txt"));
    assert!(search("basalte").contains("utf16be.txt"));
    assert!(search("paid").contains("latin.txt"));
    assert!(search("well basalt").contains("bottom.txt"));
}
