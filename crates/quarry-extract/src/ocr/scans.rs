//! The page images of scanned PDFs. A scan embeds one image per page
//! (usually JPEG for grey and colour, CCITT Group 4 for black and white,
//! sometimes Flate): the largest image on a page is decoded as it is, not
//! rendered, with its streams inflated up to a cap. JBIG2 and JPEG 2000
//! pages are reported as encodings Quarry cannot decode yet.

use std::io::Read;

use lopdf::{Dictionary, Document, Object, ObjectId};

use super::raster::{assumed_dpi, luma, too_large, unpack_bits, MAX_ALLOC, MAX_IMAGE_PIXELS};
use super::GreyPage;

/// A parsed PDF whose pages' images can be read.
pub(crate) struct ScannedPdf {
    doc: Document,
    pages: std::collections::BTreeMap<u32, ObjectId>,
}

impl ScannedPdf {
    /// Parse the PDF (again: pdf-extract keeps its own parse to itself).
    pub(crate) fn parse(bytes: &[u8]) -> Result<ScannedPdf, String> {
        let doc = Document::load_mem(bytes).map_err(|e| e.to_string())?;
        let pages = doc.get_pages();
        Ok(ScannedPdf { doc, pages })
    }

    /// The image of page `page` (1-based): `None` when the page has nothing
    /// to read (no image, or an image that does not cover the page — a
    /// figure, not a scan), or why it cannot be read.
    pub(crate) fn page_image(&self, page: u32) -> Result<Option<GreyPage>, String> {
        let id = *self.pages.get(&page).ok_or("no such page")?;
        let Some(image) = self.largest_image(id)? else {
            return Ok(None);
        };
        let dict = &image.dict;
        let width = int(dict, b"Width")? as u32;
        let height = int(dict, b"Height")? as u32;
        if width == 0 || height == 0 {
            return Ok(None);
        }
        if !self.covers(id, width, height) {
            return Ok(None);
        }
        if width as u64 * height as u64 > MAX_IMAGE_PIXELS {
            return Err(too_large(width, height));
        }
        let mut grey = decode(&self.doc, image, width, height)?;
        grey.dpi = self.dpi(id, width).unwrap_or_else(|| assumed_dpi(width));
        Ok(Some(rotated(grey, self.rotation(id))))
    }

    /// Whether an image of this shape can be the whole page: its aspect
    /// ratio within 15% of the page's, either way round (a scanner may
    /// store the page sideways). Unknown page sizes pass.
    fn covers(&self, page: ObjectId, width: u32, height: u32) -> bool {
        let Some((pw, ph)) = self.page_size(page) else {
            return true;
        };
        let (image, page) = (width as f32 / height as f32, pw / ph);
        let near = |a: f32, b: f32| (a - b).abs() <= 0.15 * b;
        near(image, page) || near(image, 1.0 / page)
    }

    /// The page's MediaBox width and height, in points.
    fn page_size(&self, page: ObjectId) -> Option<(f32, f32)> {
        let dict = self.doc.get_dictionary(page).ok()?;
        let b = self.inherited(dict, b"MediaBox")?.as_array().ok()?;
        let at = |i: usize| b.get(i).and_then(|o| o.as_float().ok());
        let (w, h) = ((at(2)? - at(0)?).abs(), (at(3)? - at(1)?).abs());
        (w > 0.0 && h > 0.0).then_some((w, h))
    }

    /// The page's largest image XObject (by pixels), if it has one.
    fn largest_image(&self, page: ObjectId) -> Result<Option<&lopdf::Stream>, String> {
        let images = self.doc.get_page_images(page).map_err(|e| e.to_string())?;
        Ok(images
            .iter()
            .max_by_key(|i| i.width.max(0) * i.height.max(0))
            .and_then(|i| self.doc.get_object(i.id).ok())
            .and_then(|o| o.as_stream().ok()))
    }

    /// Resolution from the page width (MediaBox, points) and the image width.
    fn dpi(&self, page: ObjectId, width: u32) -> Option<u32> {
        let (points, _) = self.page_size(page)?;
        Some(((width as f32 * 72.0 / points) as u32).clamp(70, 1200))
    }

    /// The page's /Rotate, in degrees clockwise.
    fn rotation(&self, page: ObjectId) -> i64 {
        self.doc
            .get_dictionary(page)
            .ok()
            .and_then(|d| self.inherited(d, b"Rotate"))
            .and_then(|o| o.as_i64().ok())
            .unwrap_or(0)
            .rem_euclid(360)
    }

    /// A page attribute, looked up through the page tree.
    fn inherited<'a>(&'a self, mut dict: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
        for _ in 0..32 {
            if let Ok(v) = dict.get(key) {
                return self.doc.dereference(v).ok().map(|(_, o)| o);
            }
            let parent = dict.get(b"Parent").ok()?.as_reference().ok()?;
            dict = self.doc.get_dictionary(parent).ok()?;
        }
        None
    }
}

fn int(dict: &Dictionary, key: &[u8]) -> Result<i64, String> {
    dict.get(key)
        .and_then(Object::as_i64)
        .map_err(|_| format!("the page image has no /{}", String::from_utf8_lossy(key)))
}

/// Decode an image XObject to grey by its filter.
fn decode(
    doc: &Document,
    image: &lopdf::Stream,
    width: u32,
    height: u32,
) -> Result<GreyPage, String> {
    let filters: Vec<Vec<u8>> = image
        .filters()
        .map(|f| f.into_iter().map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    let params = image
        .dict
        .get(b"DecodeParms")
        .ok()
        .and_then(|o| doc.dereference(o).ok().map(|(_, o)| o))
        .and_then(|o| match o {
            Object::Dictionary(d) => Some(d.clone()),
            Object::Array(a) => a.last().and_then(|o| o.as_dict().ok()).cloned(),
            _ => None,
        });
    let last = filters.last().map(Vec::as_slice);
    let pixels = match last {
        Some(b"DCTDecode") => jpeg(&image.content)?,
        Some(b"CCITTFaxDecode") => ccitt(&image.content, width, height, params.as_ref())?,
        Some(b"JBIG2Decode") => {
            return Err("the page image is JBIG2, which Quarry cannot decode yet".into())
        }
        Some(b"JPXDecode") => {
            return Err("the page image is JPEG 2000, which Quarry cannot decode yet".into())
        }
        None | Some(b"FlateDecode") => {
            let raw = match last {
                Some(_) => inflate(&image.content)?,
                None => image.content.clone(),
            };
            let raw = unpredict(raw, params.as_ref(), width)?;
            samples(doc, &image.dict, raw, width, height)?
        }
        Some(other) => {
            return Err(format!(
                "the page image is encoded with {}, which Quarry cannot decode",
                String::from_utf8_lossy(other)
            ))
        }
    };
    if pixels.len() != width as usize * height as usize {
        return Err("the page image's pixels do not match its size".into());
    }
    Ok(GreyPage {
        pixels,
        width,
        height,
        dpi: 0,
    })
}

fn jpeg(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| format!("the page's JPEG could not be decoded: {e}"))?;
    Ok(img.into_luma8().into_raw())
}

/// Inflate a Flate stream, refusing more than [`MAX_ALLOC`] bytes.
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .take(MAX_ALLOC + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the page image's stream is corrupt: {e}"))?;
    if out.len() as u64 > MAX_ALLOC {
        return Err("the page image inflates to more than 512 MiB".into());
    }
    Ok(out)
}

/// Undo PNG row predictors (/Predictor ≥ 10) on 1-component 8-bit or
/// packed rows; TIFF predictor 2 is refused.
fn unpredict(raw: Vec<u8>, params: Option<&Dictionary>, width: u32) -> Result<Vec<u8>, String> {
    let get = |k: &[u8], d: i64| {
        params
            .and_then(|p| p.get(k).ok())
            .and_then(|o| o.as_i64().ok())
            .unwrap_or(d)
    };
    let predictor = get(b"Predictor", 1);
    if predictor < 10 {
        return if predictor == 2 {
            Err("the page image uses the TIFF predictor, which Quarry cannot undo".into())
        } else {
            Ok(raw)
        };
    }
    let colors = get(b"Colors", 1).clamp(1, 4) as usize;
    let bpc = get(b"BitsPerComponent", 8).clamp(1, 16) as usize;
    let columns = get(b"Columns", width as i64).max(1) as usize;
    let bpp = (colors * bpc).div_ceil(8).max(1);
    let row = (columns * colors * bpc).div_ceil(8);
    let mut out = Vec::with_capacity(raw.len());
    let mut prev = vec![0u8; row];
    for line in raw.chunks(row + 1) {
        if line.len() < row + 1 {
            break;
        }
        let (kind, data) = (line[0], &line[1..]);
        let mut cur = data.to_vec();
        for i in 0..row {
            let a = if i >= bpp { cur[i - bpp] as i16 } else { 0 };
            let b = prev[i] as i16;
            let c = if i >= bpp { prev[i - bpp] as i16 } else { 0 };
            let add = match kind {
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => paeth(a, b, c),
                _ => 0,
            };
            cur[i] = cur[i].wrapping_add(add as u8);
        }
        out.extend_from_slice(&cur);
        prev = cur;
    }
    Ok(out)
}

fn paeth(a: i16, b: i16, c: i16) -> i16 {
    let p = a + b - c;
    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// Raw samples as grey, by colour space and bit depth.
fn samples(
    doc: &Document,
    dict: &Dictionary,
    raw: Vec<u8>,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, String> {
    let bpc = dict
        .get(b"BitsPerComponent")
        .and_then(Object::as_i64)
        .unwrap_or(1);
    let space = dict
        .get(b"ColorSpace")
        .ok()
        .and_then(|o| doc.dereference(o).ok().map(|(_, o)| o))
        .and_then(|o| match o {
            Object::Name(n) => Some(n.clone()),
            Object::Array(a) => a.first().and_then(|o| o.as_name().ok()).map(<[u8]>::to_vec),
            _ => None,
        })
        .unwrap_or_default();
    let n = width as usize * height as usize;
    let mut grey = match (space.as_slice(), bpc) {
        (_, 1) => unpack_bits(&raw, width, height),
        (b"DeviceGray" | b"CalGray", 8) => raw,
        (b"DeviceRGB" | b"CalRGB", 8) => luma(&raw, 3),
        (b"DeviceCMYK", 8) => raw
            .chunks_exact(4)
            .map(|p| {
                255 - ((p[0] as u32 * 30 + p[1] as u32 * 59 + p[2] as u32 * 11) / 100 + p[3] as u32)
                    .min(255) as u8
            })
            .collect(),
        (s, b) => {
            return Err(format!(
                "the page image's colour space {} at {b} bits is not read by Quarry's OCR",
                String::from_utf8_lossy(s)
            ))
        }
    };
    grey.truncate(n);
    // Samples run black to white unless /Decode turns them round (an image
    // mask paints its bits of 0 black, as read here).
    if decode_inverted(dict) {
        grey.iter_mut().for_each(|p| *p = 255 - *p);
    }
    Ok(grey)
}

/// Whether /Decode is [1 0] (samples inverted).
fn decode_inverted(dict: &Dictionary) -> bool {
    let Ok(decode) = dict.get(b"Decode").and_then(Object::as_array) else {
        return false;
    };
    decode
        .first()
        .and_then(|o| o.as_float().ok())
        .is_some_and(|v| v >= 1.0)
}

/// CCITT Group 3/4 (/K < 0 is Group 4), as grey; /BlackIs1 respected.
fn ccitt(
    bytes: &[u8],
    width: u32,
    height: u32,
    params: Option<&Dictionary>,
) -> Result<Vec<u8>, String> {
    let get = |k: &[u8]| params.and_then(|p| p.get(k).ok());
    let k = get(b"K").and_then(|o| o.as_i64().ok()).unwrap_or(0);
    let columns = get(b"Columns")
        .and_then(|o| o.as_i64().ok())
        .unwrap_or(1728) as u32;
    let black_is_1 = get(b"BlackIs1")
        .and_then(|o| o.as_bool().ok())
        .unwrap_or(false);
    if columns != width {
        return Err("the fax image's /Columns differ from its width".into());
    }
    let mut out = Vec::with_capacity(width as usize * height as usize);
    let mut line_cb = |transitions: &[u32]| {
        if out.len() < width as usize * height as usize {
            out.extend(fax::decoder::pels(transitions, width).map(|c| match c {
                fax::Color::Black => 0u8,
                fax::Color::White => 255u8,
            }));
        }
    };
    let done = if k < 0 {
        fax::decoder::decode_g4(bytes.iter().copied(), width, Some(height), &mut line_cb)
    } else {
        fax::decoder::decode_g3(bytes.iter().copied(), &mut line_cb)
    };
    if done.is_none() && out.is_empty() {
        return Err("the page's fax image could not be decoded".into());
    }
    out.resize(width as usize * height as usize, 255);
    if black_is_1 {
        out.iter_mut().for_each(|p| *p = 255 - *p);
    }
    Ok(out)
}

/// The page turned upright by its /Rotate.
fn rotated(page: GreyPage, degrees: i64) -> GreyPage {
    if degrees == 0 {
        return page;
    }
    let img =
        image::GrayImage::from_raw(page.width, page.height, page.pixels).expect("sized above");
    let img = match degrees {
        90 => image::imageops::rotate90(&img),
        180 => image::imageops::rotate180(&img),
        270 => image::imageops::rotate270(&img),
        _ => img,
    };
    let (width, height) = img.dimensions();
    GreyPage {
        pixels: img.into_raw(),
        width,
        height,
        dpi: page.dpi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_up_predictor_is_undone() {
        // Two rows of 3 grey pixels, the second coded as "up".
        let raw = vec![0, 10, 20, 30, 2, 1, 1, 1];
        let mut p = Dictionary::new();
        p.set("Predictor", 12);
        p.set("Columns", 3);
        assert_eq!(
            unpredict(raw, Some(&p), 3).unwrap(),
            vec![10, 20, 30, 11, 21, 31]
        );
    }

    #[test]
    fn an_inflating_bomb_is_refused() {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..600 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 2 << 20);
        assert!(inflate(&bomb).unwrap_err().contains("512 MiB"));
    }
}
