//! A PDF with a text page and a scanned page (an appended signed page, a
//! faxed annex): the text page keeps its text layer, the scanned page is
//! read by OCR under its own page number — upright even when the scanner
//! stored it sideways and the page's /Rotate turns it. Real Tesseract
//! (`scripts/deps.sh` installs it).

use std::path::{Path, PathBuf};

use lopdf::{dictionary, Document, Object, ObjectId, Stream};
use quarry_extract::extract::{extract_bytes, extract_with, ExtractError, ExtractLimits};
use quarry_extract::ocr::OcrSettings;

fn scan() -> image::GrayImage {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/scans/scanned-letter.png");
    image::open(p).unwrap().into_luma8()
}

fn jpeg(img: &image::GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img.clone())
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    out
}

fn page(
    doc: &mut Document,
    pages: ObjectId,
    content: &[u8],
    resources: lopdf::Dictionary,
    rotate: i64,
) -> ObjectId {
    let content = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
    doc.add_object(
        dictionary! {"Type" => "Page", "Parent" => pages, "Contents" => content,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 396.into()],
        "Rotate" => rotate, "Resources" => resources},
    )
}

/// Page 1: a line of text; page 2: the scan, stored turned by `-rotate`
/// degrees with a /Rotate that turns it back; page 3: a figure and its
/// caption.
fn mixed_pdf(rotate: i64) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages = doc.new_object_id();
    let font = doc.add_object(
        dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"},
    );
    let text = page(
        &mut doc,
        pages,
        b"BT /F1 14 Tf 72 300 Td (Quarterly revenue of the granite quarry grew by nine percent.) Tj ET",
        dictionary! {"Font" => dictionary! {"F1" => font}},
        0,
    );
    let img = scan();
    let stored = match rotate {
        90 => image::imageops::rotate270(&img),
        _ => img,
    };
    let image = doc.add_object(Stream::new(
        dictionary! {"Type" => "XObject", "Subtype" => "Image", "Width" => stored.width() as i64,
        "Height" => stored.height() as i64, "ColorSpace" => "DeviceGray",
        "BitsPerComponent" => 8, "Filter" => "DCTDecode"},
        jpeg(&stored),
    ));
    let scanned = page(
        &mut doc,
        pages,
        b"q 612 0 0 396 0 0 cm /Im0 Do Q",
        dictionary! {"XObject" => dictionary! {"Im0" => image}},
        rotate,
    );
    // Page 3: a figure with a short caption; the figure is no scan.
    let figure = doc.add_object(Stream::new(
        dictionary! {"Type" => "XObject", "Subtype" => "Image", "Width" => 200, "Height" => 200,
        "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8, "Filter" => "DCTDecode"},
        jpeg(&image::GrayImage::from_fn(200, 200, |x, _| {
            image::Luma([(x % 256) as u8])
        })),
    ));
    let caption = page(
        &mut doc,
        pages,
        b"q 200 0 0 200 72 100 cm /Im0 Do Q BT /F1 10 Tf 72 80 Td (Figure 1) Tj ET",
        dictionary! {"XObject" => dictionary! {"Im0" => figure}, "Font" => dictionary! {"F1" => font}},
        0,
    );
    doc.objects.insert(
        pages,
        Object::Dictionary(dictionary! {"Type" => "Pages",
        "Kids" => vec![text.into(), scanned.into(), caption.into()], "Count" => 3}),
    );
    let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages});
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn path() -> PathBuf {
    PathBuf::from("contract-with-scanned-annex.pdf")
}

#[test]
fn a_text_page_keeps_its_text_and_a_scanned_page_is_read_by_ocr_upright() {
    for rotate in [0, 90] {
        let bytes = mixed_pdf(rotate);
        let e = extract_with(
            &path(),
            &bytes,
            &ExtractLimits::default(),
            &OcrSettings::default(),
        )
        .unwrap();
        let page = |n: u32| {
            e.blocks
                .iter()
                .find(|b| b.page == Some(n))
                .map(|b| b.text.as_str())
                .unwrap_or("")
        };
        assert!(
            page(1).contains("granite quarry grew by nine percent"),
            "{:?}",
            e.blocks
        );
        assert!(
            page(2).contains("shall mean the terms and conditions"),
            "rotate {rotate}: {}",
            page(2)
        );
        assert_eq!(page(3), "Figure 1", "the figure page keeps its caption");
        assert_eq!(e.scanned.len(), 1, "only page 2 is a scan: {:?}", e.scanned);
        assert_eq!(e.scanned[0].page, 2);
        assert!(e.scanned[0].confidence.unwrap() > 80.0, "{:?}", e.scanned);
        assert!(e.scanned[0].problem.is_none());
    }
}

#[test]
fn without_ocr_the_text_page_is_still_indexed_and_a_stopped_read_says_so() {
    let e = extract_bytes(&path(), &mixed_pdf(0), &ExtractLimits::default()).unwrap();
    assert_eq!(e.blocks.len(), 2, "the text page and the caption");
    assert!(e.scanned.is_empty());
    // A stopped run stops inside the file, and says so.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let settings = OcrSettings {
        cancel: Some(stop),
        ..OcrSettings::default()
    };
    let r = extract_with(&path(), &mixed_pdf(0), &ExtractLimits::default(), &settings);
    assert_eq!(r.unwrap_err(), ExtractError::Stopped);
}
