#!/usr/bin/env python3
"""Scanned-looking pages from real text, and how well Quarry's OCR reads them.

  scans.py fixtures DIR            the small set the end-to-end test uses
  scans.py build DIR [--docs 6]    a held-out set from Debian's documentation
  scans.py run DIR --quarry BIN    character error rate, word recall, pages/min,
                                   and whether a search for a sentence finds its page

Pages are rendered with Pillow (DejaVu Serif), blurred a little, given noise
and a small skew, and saved as PNG, as a multi-page CCITT G4 TIFF, and as an
image-only PDF (JPEG pages, via img2pdf): the shapes real scans come in.
Needs: pip install Pillow img2pdf.
"""
import argparse, glob, io, json, os, random, re, subprocess, sys, tempfile, time

from PIL import Image, ImageDraw, ImageFilter, ImageFont
import img2pdf

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"


def wrap(draw, text, font, width):
    lines = []
    for para in text.split("\n"):
        words, line = para.split(), ""
        for w in words:
            trial = (line + " " + w).strip()
            if draw.textlength(trial, font=font) <= width:
                line = trial
            else:
                lines.append(line)
                line = w
        lines.append(line)
    return lines


def render(text, dpi=300, inches=(8.5, 11), pt=11, skew=0.7, noise=10, seed=0):
    """One page of `text`; returns (image, the text that fit)."""
    rnd = random.Random(seed)
    w, h = int(inches[0] * dpi), int(inches[1] * dpi)
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, int(pt * dpi / 72))
    margin = dpi
    step = int(pt * dpi / 72 * 1.45)
    y, fitted = margin, []
    for line in wrap(d, text, font, w - 2 * margin):
        if y + step > h - margin:
            break
        d.text((margin, y), line, font=font, fill=rnd.randint(0, 40))
        fitted.append(line)
        y += step
    img = img.filter(ImageFilter.GaussianBlur(0.5 * dpi / 300))
    img = img.rotate(rnd.uniform(-skew, skew), resample=Image.BICUBIC, fillcolor=255)
    if noise:
        px = img.load()
        for _ in range(w * h // 40):
            x, yy = rnd.randrange(w), rnd.randrange(h)
            px[x, yy] = max(0, min(255, px[x, yy] + int(rnd.gauss(0, noise * 4))))
    return img, "\n".join(fitted)


def g4_tiff(pages, path):
    bw = [p.point(lambda v: 255 if v > 150 else 0, mode="1") for p in pages]
    bw[0].save(path, save_all=True, append_images=bw[1:], compression="group4", dpi=(300, 300))


def jpeg_pdf(pages, path, dpi):
    blobs = []
    for p in pages:
        b = io.BytesIO()
        p.save(b, "JPEG", quality=70, dpi=(dpi, dpi))
        blobs.append(b.getvalue())
    with open(path, "wb") as f:
        f.write(img2pdf.convert(blobs))


def paragraphs(text, n, size=900):
    """`n` page-sized pieces of `text`, split at blank lines where possible."""
    text = re.sub(r"[ \t]+", " ", text)
    out, cur = [], ""
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        if len(cur) + len(para) > size and cur:
            out.append(cur)
            cur = ""
        cur = (cur + "\n" + para).strip()
        if len(out) == n:
            break
    if cur and len(out) < n:
        out.append(cur)
    return out[:n]


def fixtures(out):
    """Small pages (half a letter page at 200 dpi) from the Apache License 2.0."""
    os.makedirs(out, exist_ok=True)
    src = open("/usr/share/common-licenses/Apache-2.0").read()
    parts = paragraphs(src[src.index("1. Definitions"):], 5, size=600)
    truth = {}
    small = dict(dpi=200, inches=(8.5, 5.5), pt=11)
    img, t = render(parts[0], seed=1, **small)
    img.save(os.path.join(out, "scanned-letter.png"), optimize=True)
    truth["scanned-letter.png"] = {"1": t}
    pages = [render(p, seed=2 + i, **small) for i, p in enumerate(parts[1:3])]
    jpeg_pdf([p for p, _ in pages], os.path.join(out, "scanned-report.pdf"), 200)
    truth["scanned-report.pdf"] = {str(i + 1): t for i, (_, t) in enumerate(pages)}
    pages = [render(p, seed=5 + i, **dict(small, dpi=300)) for i, p in enumerate(parts[3:5])]
    g4_tiff([p for p, _ in pages], os.path.join(out, "fax.tiff"))
    truth["fax.tiff"] = {str(i + 1): t for i, (_, t) in enumerate(pages)}
    rnd = random.Random(9)
    noise = Image.new("L", (800, 600))
    noise.putdata([rnd.choice((0, 255)) if rnd.random() < 0.5 else 128 for _ in range(800 * 600)])
    noise.save(os.path.join(out, "noise.png"))
    json.dump(truth, open(os.path.join(out, "truth.json"), "w"), indent=1)


def build(out, docs, seed):
    """Full letter pages at 300 dpi from Debian copyright files no one tuned on."""
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(seed)
    files = sorted(glob.glob("/usr/share/doc/*/copyright"))
    files = [f for f in files if os.path.getsize(f) > 6000]
    rnd.shuffle(files)
    truth = {}
    for i, f in enumerate(files[:docs]):
        text = open(f, errors="replace").read()
        parts = paragraphs(text, 2, size=2600)
        pages = [render(p, seed=seed * 100 + i * 10 + j) for j, p in enumerate(parts)]
        kind = ("png", "tiff", "pdf")[i % 3]
        name = f"doc-{i:02d}.{kind}"
        path = os.path.join(out, name)
        if kind == "png":
            pages = pages[:1]
            pages[0][0].save(path)
        elif kind == "tiff":
            g4_tiff([p for p, _ in pages], path)
        else:
            jpeg_pdf([p for p, _ in pages], path, 300)
        truth[name] = {str(j + 1): t for j, (_, t) in enumerate(pages)}
        truth[name]["_source"] = f
    # The truth sits beside the folder, not in it (it would be indexed too).
    json.dump(truth, open(out.rstrip("/") + ".truth.json", "w"), indent=1)
    print(f"{len(truth)} documents in {out}")


def levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def norm(s):
    return " ".join(s.split())


def truth_of(out):
    beside = out.rstrip("/") + ".truth.json"
    return json.load(open(beside if os.path.exists(beside) else os.path.join(out, "truth.json")))


def unique_line(truth, name, page):
    """A line of the page found on no other page (licence boilerplate
    repeats across Debian's copyright files), or None."""
    def shingles(text, n=5):
        w = re.findall(r"\w+", text.lower())
        return {tuple(w[i:i + n]) for i in range(max(len(w) - n + 1, 0))}
    others = set()
    for n, w in truth.items():
        for p, t in w.items():
            if not p.startswith("_") and (n, p) != (name, page):
                others |= shingles(t)
    lines = [l for l in truth[name][page].split("\n") if len(l) > 50]
    lines = [l for l in lines if not shingles(l) & others]
    return lines[len(lines) // 2] if lines else None


def run(out, quarry):
    truth = truth_of(out)
    env = dict(os.environ)
    errs = chars = found_words = words = pages = 0
    t0 = time.time()
    for name, want in truth.items():
        r = subprocess.run([quarry, "ocr", "--json", os.path.join(out, name)], env=env,
                           capture_output=True, text=True, check=True)
        got = {str(p["page"]): p.get("text", "") for p in json.loads(r.stdout)["pages"]}
        for page, text in want.items():
            if page.startswith("_"):
                continue
            pages += 1
            g = norm(got.get(page, ""))
            errs += levenshtein(norm(text), g)
            chars += len(norm(text))
            gw = set(re.findall(r"\w+", g.lower()))
            tw = re.findall(r"\w+", text.lower())
            found_words += sum(w in gw for w in tw)
            words += len(tw)
    secs = time.time() - t0
    lib = tempfile.mkdtemp()
    env["QUARRY_LIBRARY_DIR"] = lib
    subprocess.run([quarry, "index", out], env=env, capture_output=True, check=True)
    right = top3 = asked = 0
    for name, want in truth.items():
        for page, text in want.items():
            if page.startswith("_"):
                continue
            q = unique_line(truth, name, page)
            if q is None:
                continue
            r = subprocess.run([quarry, "search", "--json", "-k", "3", q], env=env,
                               capture_output=True, text=True, check=True)
            hits = json.loads(r.stdout)
            asked += 1
            at = [h["path"].endswith(name) and str(h.get("page")) == page for h in hits]
            right += bool(at) and at[0]
            top3 += any(at)
    print(json.dumps({"pages": pages, "cer": round(errs / max(chars, 1), 4),
                      "word_recall": round(found_words / max(words, 1), 4),
                      "pages_per_min": round(pages / secs * 60, 1),
                      "right_page_first": f"{right}/{asked}",
                      "right_page_top3": f"{top3}/{asked}"}, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures"); f.add_argument("dir")
    b = sub.add_parser("build"); b.add_argument("dir"); b.add_argument("--docs", type=int, default=6)
    b.add_argument("--seed", type=int, default=2026)
    r = sub.add_parser("run"); r.add_argument("dir"); r.add_argument("--quarry", required=True)
    a = ap.parse_args()
    {"fixtures": lambda: fixtures(a.dir), "build": lambda: build(a.dir, a.docs, a.seed),
     "run": lambda: run(a.dir, a.quarry)}[a.cmd]()
