//! Scanned documents over the real binary and real Tesseract: images and
//! image-only PDFs (JPEG pages, CCITT G4 fax TIFFs) rendered from the
//! Apache License's text (`bench/ocr/scans.py fixtures`) are read by OCR,
//! close to their source text, found by search at their page and labelled
//! as scanned with their confidence; hostile images (huge, truncated, 500
//! pages, JBIG2, a pure-noise scan) are reported with their reason; OCR
//! can be turned off, and a missing language names its package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/scans")
}

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn quarry(&self, library: &str, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quarry"));
        command.args(args);
        // `quarry ocr` reads files, not a library.
        if args[0] != "ocr" {
            command.arg("--library").arg(self.tmp.path().join(library));
        }
        command
            .env(
                "QUARRY_MODELS_DIR",
                std::env::var_os("QUARRY_MODELS_DIR").expect("QUARRY_MODELS_DIR"),
            )
            .env("QUARRY_CONFIG_DIR", self.tmp.path().join("config"))
            .output()
            .unwrap()
    }

    fn json(&self, library: &str, args: &[&str]) -> Value {
        let out = self.quarry(library, args);
        assert!(
            out.status.success(),
            "quarry {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn docs(&self) -> PathBuf {
        self.tmp.path().join("docs")
    }
}

fn truth() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("truth.json")).unwrap()).unwrap()
}

/// Levenshtein distance over characters.
fn edits(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j + 1] + 1)
                    .min(cur[j] + 1)
                    .min(prev[j] + usize::from(ca != cb)),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

fn words(s: &str) -> Vec<char> {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .collect()
}

/// A one-page PDF whose page is one image XObject with `dict` and `data`.
fn image_pdf(path: &Path, filter: &str, width: i64, height: i64, data: Vec<u8>) {
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages = doc.new_object_id();
    let image = doc.add_object(Stream::new(
        dictionary! {"Type" => "XObject", "Subtype" => "Image", "Width" => width,
        "Height" => height, "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
        "Filter" => filter},
        data,
    ));
    let content = doc.add_object(Stream::new(
        dictionary! {},
        b"q 612 0 0 792 0 0 cm /Im0 Do Q".to_vec(),
    ));
    let page = doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages,
    "Contents" => content, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    "Resources" => dictionary! {"XObject" => dictionary! {"Im0" => image}}});
    doc.objects.insert(
        pages,
        Object::Dictionary(
            dictionary! {"Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1},
        ),
    );
    let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages});
    doc.trailer.set("Root", catalog);
    doc.save(path).unwrap();
}

/// The hostile images of issue 19, written into `d`.
fn hostile(d: &Path) {
    // 20,000 × 20,000 pixels (a 50 KB file).
    let f = std::fs::File::create(d.join("huge.png")).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 20_000, 20_000);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::One);
    let mut w = enc.write_header().unwrap();
    let mut stream = w.stream_writer().unwrap();
    let row = vec![0xffu8; 2500];
    for _ in 0..20_000 {
        std::io::Write::write_all(&mut stream, &row).unwrap();
    }
    stream.finish().unwrap();
    drop(w);
    // A JPEG cut in the middle.
    let mut jpeg = Vec::new();
    let img = image::GrayImage::from_fn(640, 480, |x, y| image::Luma([((x * y) % 251) as u8]));
    image::DynamicImage::ImageLuma8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(d.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    // 500 blank pages in one TIFF.
    let f = std::fs::File::create(d.join("pages.tiff")).unwrap();
    let mut tiff = tiff::encoder::TiffEncoder::new(std::io::BufWriter::new(f)).unwrap();
    let blank = vec![255u8; 200 * 100];
    for _ in 0..500 {
        tiff.write_image::<tiff::encoder::colortype::Gray8>(200, 100, &blank)
            .unwrap();
    }
    // A JBIG2 page, and a page image larger than Quarry reads.
    image_pdf(&d.join("jbig2.pdf"), "JBIG2Decode", 2550, 3300, vec![0; 64]);
    image_pdf(
        &d.join("poster.pdf"),
        "DCTDecode",
        30_000,
        38_824,
        vec![0; 64],
    );
}

fn failures(report: &Value) -> Vec<(String, String)> {
    report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = Path::new(f["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, f["reason"].as_str().unwrap().to_string())
        })
        .collect()
}

fn reason<'a>(failed: &'a [(String, String)], name: &str) -> &'a str {
    failed
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r.as_str())
        .unwrap_or_else(|| panic!("{name} did not fail: {failed:?}"))
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn scans_are_read_found_at_their_page_and_labelled_and_hostile_images_are_reported() {
    let env = Env::new();
    let d = env.docs();
    std::fs::create_dir(&d).unwrap();
    for f in [
        "scanned-letter.png",
        "scanned-report.pdf",
        "fax.tiff",
        "noise.png",
    ] {
        std::fs::copy(fixtures().join(f), d.join(f)).unwrap();
    }
    std::fs::copy(fixtures().join("../corpus/tea.txt"), d.join("tea.txt")).unwrap();
    hostile(&d);
    let report = env.json("lib", &["index", d.to_str().unwrap(), "--json"]);
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let peak_mib = usage.ru_maxrss as f64 / 1024.0;
    eprintln!("peak RSS of `quarry index` on the scans and hostile images: {peak_mib:.0} MiB");
    // Decoding is capped at 512 MiB a page and one page is held per worker.
    assert!(peak_mib < 2048.0, "peak RSS {peak_mib:.0} MiB");
    let failed = failures(&report);
    // Every page of the three scans is read and indexed.
    assert_eq!(report["ocr_pages"], 5, "{report}");
    assert_eq!(report["indexed"].as_array().unwrap().len(), 4, "{report}");
    assert!(reason(&failed, "noise.png").contains("OCR confidence"));
    assert!(reason(&failed, "huge.png").contains("20000×20000"));
    assert!(!reason(&failed, "truncated.jpg").is_empty());
    assert!(reason(&failed, "pages.tiff").contains("no text"));
    assert!(reason(&failed, "jbig2.pdf").contains("JBIG2"));
    assert!(reason(&failed, "poster.pdf").contains("30000×38824"));

    // A sentence from page 2 of the report finds that page, labelled.
    let truth = truth();
    let page2 = truth["scanned-report.pdf"]["2"].as_str().unwrap();
    let line = page2.lines().find(|l| l.len() > 60).unwrap();
    let hits = env.json("lib", &["search", line, "--json", "-k", "3"]);
    let top = &hits[0];
    assert!(
        top["path"]
            .as_str()
            .unwrap()
            .ends_with("scanned-report.pdf"),
        "{hits}"
    );
    assert_eq!(top["page"], 2, "{hits}");
    assert!(top["ocr_confidence"].as_f64().unwrap() > 80.0, "{hits}");
    // A passage of a text document is not labelled.
    let hits = env.json(
        "lib",
        &["search", "Darjeeling gardens planted", "--json", "-k", "1"],
    );
    assert!(
        hits[0]["path"].as_str().unwrap().ends_with("tea.txt"),
        "{hits}"
    );
    assert!(hits[0].get("ocr_confidence").is_none(), "{hits}");

    // What OCR reads is within 3% of the source characters, page by page.
    for (file, pages) in truth.as_object().unwrap() {
        let out = env.json("lib", &["ocr", "--json", d.join(file).to_str().unwrap()]);
        for (page, want) in pages.as_object().unwrap() {
            let got = out["pages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| {
                    p["page"].as_u64().map(|n| n.to_string()).as_deref() == Some(page.as_str())
                })
                .unwrap_or_else(|| panic!("{file} page {page} missing: {out}"));
            let (want, got) = (
                words(want.as_str().unwrap()),
                words(got["text"].as_str().unwrap()),
            );
            let cer = edits(&want, &got) as f64 / want.len() as f64;
            eprintln!("{file} page {page}: character error rate {cer:.4}");
            assert!(cer <= 0.03, "{file} page {page}: CER {cer:.3}");
        }
    }
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn ocr_can_be_turned_off_and_missing_languages_name_their_package() {
    let env = Env::new();
    let d = env.docs();
    std::fs::create_dir(&d).unwrap();
    std::fs::copy(fixtures().join("fax.tiff"), d.join("fax.tiff")).unwrap();
    std::fs::copy(
        fixtures().join("scanned-report.pdf"),
        d.join("scanned-report.pdf"),
    )
    .unwrap();
    let report = env.json("off", &["index", d.to_str().unwrap(), "--json", "--no-ocr"]);
    let failed = failures(&report);
    assert!(
        reason(&failed, "fax.tiff").contains("OCR is off"),
        "{failed:?}"
    );
    assert!(
        reason(&failed, "scanned-report.pdf").contains("OCR is off"),
        "{failed:?}"
    );
    assert_eq!(report["ocr_pages"], 0);
    // A language whose data is not installed: an error before any work,
    // naming what to install.
    let out = env.quarry(
        "lang",
        &["index", d.to_str().unwrap(), "--ocr-lang", "eng+zzz"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("zzz") && err.contains("tesseract-ocr-zzz"),
        "{err}"
    );
    // Turning OCR on again reads them: they changed in no way, but failed
    // documents are read again when the run can read them.
    let again = env.json("off", &["index", d.to_str().unwrap(), "--json"]);
    assert_eq!(again["ocr_pages"], 4, "{again}");
}

/// Tesseract's Windows installer keeps its languages in `tessdata` beside
/// the library, where Tesseract itself does not look when another program
/// loads it. Imitated here: the system library reached through a folder
/// whose `tessdata` holds one language under a name only it has.
#[cfg(target_os = "linux")]
#[test]
fn languages_beside_the_tesseract_library_are_used() {
    let system = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join("libtesseract.so.5"))
    .find(|p| p.exists())
    .expect("Tesseract 5 is installed (scripts/deps.sh)");
    let english = ["/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tessdata"]
        .iter()
        .map(|d| Path::new(d).join("eng.traineddata"))
        .find(|p| p.exists())
        .expect("Tesseract's English data is installed");
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("libtesseract.so.5");
    std::os::unix::fs::symlink(&system, &lib).unwrap();
    std::fs::create_dir(tmp.path().join("tessdata")).unwrap();
    std::fs::copy(&english, tmp.path().join("tessdata/qry.traineddata")).unwrap();
    let status = |prefix: Option<&str>| -> Value {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quarry"));
        command
            .args(["ocr", "--json"])
            .env("QUARRY_TESSERACT_LIB", &lib)
            .env("QUARRY_CONFIG_DIR", tmp.path().join("config"))
            .env_remove("TESSDATA_PREFIX");
        if let Some(p) = prefix {
            command.env("TESSDATA_PREFIX", p);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(status(None)["languages"], serde_json::json!(["qry"]));
    // TESSDATA_PREFIX, when the user set it, still decides.
    let theirs = english.parent().unwrap().to_str().unwrap();
    let languages = status(Some(theirs))["languages"].clone();
    assert!(
        languages.as_array().unwrap().iter().any(|l| l == "eng")
            && languages.as_array().unwrap().iter().all(|l| l != "qry"),
        "{languages}"
    );
}
