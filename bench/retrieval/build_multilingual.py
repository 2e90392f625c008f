#!/usr/bin/env python3
"""Build non-English retrieval sets (BEIR layout) from the Debian Reference
and its translations (Debian packages debian-reference-{en,fr,de,es,ja,zh-cn}:
text translated by Debian's translators, not by anyone on the project).

    apt-get install debian-reference-en debian-reference-fr debian-reference-de \
        debian-reference-es debian-reference-ja debian-reference-zh-cn
    python3 bench/retrieval/build_multilingual.py --out DIR

Each section of the book (h2-h4 with an anchor id, the same id in every
language) is a document: its body text, without its heading. A section's
heading is the query whose relevant document is that section, by
construction. For each language L it writes two sets over the same corpus of
L sections:
  debref-L-mono   the heading in L          -> the L section (monolingual)
  debref-L-cross  the English heading       -> the L section (cross-lingual)
and debref-en (English heading -> English section) as the baseline.
Sections left untranslated (body mostly identical to the English one) and
sections under 30 words (60 characters in Chinese and Japanese) are skipped.
Stdlib only; deterministic.
"""
import argparse
import html
import json
import os
import re

SRC = "/usr/share/debian-reference"
LANGS = ["fr", "de", "es", "ja", "zh-cn"]
HEADING = re.compile(r'<h([234])[^>]*>\s*<a id="([^"]+)"\s*/>(.*?)</h\1>', re.S)
ANY_HEADING = re.compile(r"<h[1-6][^>]*>", re.S)


def clean(fragment):
    fragment = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", fragment, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", fragment))
    return re.sub(r"\s+", " ", text).strip()


def sections(lang):
    """{id: (heading, body)} over every chapter and appendix in `lang`."""
    out = {}
    for name in sorted(os.listdir(SRC)):
        if not name.endswith(f".{lang}.html") or name.startswith("index"):
            continue
        page = open(os.path.join(SRC, name), encoding="utf-8").read()
        heads = list(HEADING.finditer(page))
        for h in heads:
            start = h.end()
            nxt = ANY_HEADING.search(page, start)
            body = clean(page[start : nxt.start() if nxt else len(page)])
            heading = re.sub(r"^[A-Z0-9]+(\.\d+)*\.?\s*", "", clean(h.group(3)))
            out[h.group(2)] = (heading, body)
    return out


def long_enough(lang, body):
    if lang in ("ja", "zh-cn"):
        return len(body) >= 60
    return len(body.split()) >= 30


def translated(body, english):
    """Whether `body` is mostly not the English text left in place."""
    en = set(english.lower().split())
    words = body.lower().split()
    if not words:
        return False
    return sum(w not in en for w in words) / len(words) >= 0.3


def write(out, name, corpus, queries):
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    with open(os.path.join(d, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for sid, body in corpus:
            f.write(json.dumps({"_id": sid, "title": "", "text": body}, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "queries.jsonl"), "w", encoding="utf-8") as f:
        for sid, text in queries:
            f.write(json.dumps({"_id": sid, "text": text}, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for sid, _ in queries:
            f.write(f"{sid}\t{sid}\t1\n")
    print(f"{name}: {len(corpus)} documents, {len(queries)} queries")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    english = sections("en")
    en_ok = {s: v for s, v in english.items() if long_enough("en", v[1]) and v[0]}
    write(args.out, "debref-en", sorted((s, v[1]) for s, v in en_ok.items()),
          sorted((s, v[0]) for s, v in en_ok.items()))
    for lang in LANGS:
        local = sections(lang)
        keep = sorted(
            s for s, (head, body) in local.items()
            if s in en_ok and head and long_enough(lang, body)
            and translated(body, en_ok[s][1]) and head != en_ok[s][0]
        )
        corpus = [(s, local[s][1]) for s in keep]
        write(args.out, f"debref-{lang}-mono", corpus, [(s, local[s][0]) for s in keep])
        write(args.out, f"debref-{lang}-cross", corpus, [(s, en_ok[s][0]) for s in keep])


if __name__ == "__main__":
    main()
