//! Image files as grey pages: PNG, JPEG (turned upright by its EXIF
//! orientation), WebP, BMP, and TIFF page by page. Dimensions are checked
//! from the header before any pixel is decoded, and decoding allocates at
//! most [`MAX_ALLOC`]; one page is held at a time.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder};

use super::GreyPage;

/// Most pixels in one image or page (a letter page at 1,000 dpi is 93.5
/// million); larger ones are reported, not decoded.
pub(crate) const MAX_IMAGE_PIXELS: u64 = 100_000_000;
/// Most bytes one decoder may allocate.
pub(crate) const MAX_ALLOC: u64 = 512 << 20;

/// Why an image (or a page of it) was not read.
pub(crate) fn too_large(width: u32, height: u32) -> String {
    format!(
        "the image is {width}×{height} pixels, more than the {} million Quarry reads",
        MAX_IMAGE_PIXELS / 1_000_000
    )
}

/// Resolution assumed for an image that does not say: the width of a
/// letter page, within what Tesseract reads well.
pub(crate) fn assumed_dpi(width: u32) -> u32 {
    (width as f64 / 8.5).clamp(70.0, 600.0) as u32
}

/// Visit the pages of an image file in order, at most `max_pages`:
/// `visit(page, image or why not)` returns false to stop. Returns the
/// number of pages the file has (counted up to where visiting stopped), or
/// why the file cannot be read at all.
pub(crate) fn pages(
    bytes: &[u8],
    max_pages: u32,
    visit: &mut dyn FnMut(u32, Result<GreyPage, String>) -> bool,
) -> Result<u32, String> {
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return tiff_pages(bytes, max_pages, visit);
    }
    let page = single(bytes)?;
    visit(1, page);
    Ok(1)
}

/// A one-page image: its pixels, or why not (the file is still an image).
fn single(bytes: &[u8]) -> Result<Result<GreyPage, String>, String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image format Quarry reads (PNG, JPEG, TIFF, WebP, BMP)".into());
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = reader;
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > MAX_IMAGE_PIXELS {
        return Ok(Err(too_large(width, height)));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = match DynamicImage::from_decoder(decoder) {
        Ok(i) => i,
        Err(e) => return Ok(Err(format!("the image could not be decoded: {e}"))),
    };
    image.apply_orientation(orientation);
    let grey = image.into_luma8();
    let (width, height) = grey.dimensions();
    Ok(Ok(GreyPage {
        pixels: grey.into_raw(),
        width,
        height,
        dpi: assumed_dpi(width),
    }))
}

fn tiff_pages(
    bytes: &[u8],
    max_pages: u32,
    visit: &mut dyn FnMut(u32, Result<GreyPage, String>) -> bool,
) -> Result<u32, String> {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = MAX_ALLOC as usize;
    limits.intermediate_buffer_size = MAX_ALLOC as usize / 4;
    let mut decoder = tiff::decoder::Decoder::new(Cursor::new(bytes))
        .map_err(|e| format!("corrupt TIFF: {e}"))?
        .with_limits(limits);
    let mut page = 0u32;
    loop {
        page += 1;
        if page > max_pages {
            let why = format!(
                "only the first {max_pages} pages of a file are read by OCR: page {page} and those after it are not indexed"
            );
            visit(page, Err(why));
            return Ok(page);
        }
        if !visit(page, tiff_page(&mut decoder)) {
            return Ok(page);
        }
        if !decoder.more_images() {
            return Ok(page);
        }
        if let Err(e) = decoder.next_image() {
            visit(
                page + 1,
                Err(format!("the TIFF's next page could not be read: {e}")),
            );
            return Ok(page + 1);
        }
    }
}

/// The current page of a TIFF as grey pixels.
fn tiff_page(decoder: &mut tiff::decoder::Decoder<Cursor<&[u8]>>) -> Result<GreyPage, String> {
    use tiff::ColorType;
    let (width, height) = decoder.dimensions().map_err(|e| e.to_string())?;
    if width as u64 * height as u64 > MAX_IMAGE_PIXELS {
        return Err(too_large(width, height));
    }
    let colour = decoder.colortype().map_err(|e| e.to_string())?;
    let white_is_zero = decoder
        .find_tag(tiff::tags::Tag::PhotometricInterpretation)
        .ok()
        .flatten()
        .and_then(|v| v.into_u32().ok())
        == Some(0);
    let data = decoder.read_image().map_err(|e| e.to_string())?;
    let n = width as usize * height as usize;
    let mut pixels = match (colour, data) {
        (ColorType::Gray(1), tiff::decoder::DecodingResult::U8(d)) => {
            unpack_bits(&d, width, height)
        }
        (ColorType::Gray(8), tiff::decoder::DecodingResult::U8(d)) => d,
        (ColorType::Gray(16), tiff::decoder::DecodingResult::U16(d)) => {
            d.iter().map(|v| (v >> 8) as u8).collect()
        }
        (ColorType::RGB(8), tiff::decoder::DecodingResult::U8(d)) => luma(&d, 3),
        (ColorType::RGBA(8), tiff::decoder::DecodingResult::U8(d)) => luma(&d, 4),
        (c, _) => {
            return Err(format!(
                "TIFF colour type {c:?} is not read by Quarry's OCR"
            ))
        }
    };
    if pixels.len() < n {
        return Err("the TIFF page holds fewer pixels than its size says".into());
    }
    pixels.truncate(n);
    if white_is_zero {
        pixels.iter_mut().for_each(|p| *p = 255 - *p);
    }
    Ok(GreyPage {
        pixels,
        width,
        height,
        dpi: assumed_dpi(width),
    })
}

/// One-bit rows (each padded to a byte, 1 = white as in BlackIsZero) as
/// 8-bit grey.
pub(crate) fn unpack_bits(data: &[u8], width: u32, height: u32) -> Vec<u8> {
    let row_bytes = (width as usize).div_ceil(8);
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for row in data.chunks(row_bytes).take(height as usize) {
        for x in 0..width as usize {
            let bit = row.get(x / 8).map_or(0, |b| (b >> (7 - x % 8)) & 1);
            out.push(if bit == 1 { 255 } else { 0 });
        }
    }
    out
}

/// Interleaved 8-bit colour samples (RGB first) as grey (Rec. 601 luma).
pub(crate) fn luma(data: &[u8], channels: usize) -> Vec<u8> {
    data.chunks_exact(channels)
        .map(|p| ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::One);
            let mut w = enc.write_header().unwrap();
            let row = vec![0xffu8; (width as usize).div_ceil(8)];
            let mut stream = w.stream_writer().unwrap();
            for _ in 0..height {
                std::io::Write::write_all(&mut stream, &row).unwrap();
            }
            stream.finish().unwrap();
        }
        out
    }

    #[test]
    fn a_huge_png_is_refused_from_its_header() {
        // 20,000 × 20,000 pixels: 400 million, refused before decoding.
        let bytes = png(20_000, 20_000);
        let mut seen = Vec::new();
        let n = pages(&bytes, 10, &mut |p, r| {
            seen.push((p, r.err()));
            true
        })
        .unwrap();
        assert_eq!(n, 1);
        let why = seen[0].1.as_deref().unwrap();
        assert!(
            why.contains("20000×20000") && why.contains("100 million"),
            "{why}"
        );
    }

    #[test]
    fn a_truncated_jpeg_is_an_error_not_a_crash() {
        let mut img = image::GrayImage::new(64, 64);
        img.pixels_mut().for_each(|p| p.0 = [200]);
        let mut jpeg = Vec::new();
        DynamicImage::ImageLuma8(img)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        let cut = &jpeg[..jpeg.len() / 3];
        let mut outcome = None;
        let r = pages(cut, 10, &mut |_, r| {
            outcome = Some(r.map(|p| p.width));
            true
        });
        // Either refused outright or the page reports why: never a panic.
        assert!(r.is_err() || outcome.is_some());
    }

    #[test]
    fn bits_unpack_to_black_and_white() {
        assert_eq!(unpack_bits(&[0b1010_0000], 3, 1), vec![255, 0, 255]);
    }
}
