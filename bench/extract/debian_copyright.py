#!/usr/bin/env python3
"""Build an extraction evaluation set from Debian's machine-readable copyright
files (/usr/share/doc/*/copyright, DEP-5): real documents nobody here wrote,
whose fields are known from their own structure.

The header stanza (Format, Upstream-Name, Upstream-Contact, Source) is
removed from what is indexed, so the software's name must be read from the
rest; the other truths come from the `Files: *` and `Files: debian/*`
stanzas, which stay in the text. Files get neutral names (doc-NNN.txt), so a
path never gives an answer away.

    python3 bench/extract/debian_copyright.py OUT [--n 60] [--seed 7]

writes OUT/docs/doc-NNN.txt, OUT/schema.json and OUT/truth.jsonl
({"doc": "docs/doc-NNN.txt", "fields": {...}}), then:

    quarry eval --extract --dataset OUT --model ID
"""
import argparse
import glob
import json
import os
import random
import re

SCHEMA = {"fields": [
    {"name": "software", "type": "string",
     "description": "the name of the software these copyright notes are about"},
    {"name": "license", "type": "string",
     "description": "the short licence name of the main files (the Files: * section)"},
    {"name": "copyright_holder", "type": "string",
     "description": "the first copyright holder of the main files (Files: *), without years"},
    {"name": "first_year", "type": "number",
     "description": "the earliest copyright year of the main files (Files: *)"},
    {"name": "packager", "type": "string",
     "description": "the first copyright holder of the Debian packaging (Files: debian/*), without years"},
]}


def stanzas(text):
    """Deb822 stanzas: lists of (field, value) with continuation lines joined by newlines."""
    out, cur, key = [], [], None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = [], None
        elif line[0] in " \t" and key is not None:
            k, v = cur[-1]
            cur[-1] = (k, v + "\n" + line.strip())
        else:
            m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if not m:
                return None
            key = m.group(1)
            cur.append((key, m.group(2)))
    if cur:
        out.append(cur)
    return out


def holder(copyright_value):
    """The first holder of a Copyright: value, without years, (C) or e-mail."""
    first = next((l for l in copyright_value.split("\n") if l.strip() and l.strip() != "."), "")
    s = re.sub(r"(?i)copyright|\(c\)|©", " ", first)
    s = re.sub(r"<[^>]*>", " ", s)
    s = re.sub(r"https?://\S+", " ", s)
    s = re.sub(r"(?i)[,.]?\s*all rights reserved.*$", " ", s)
    s = re.sub(r"\b\d{4}\b(\s*[-–,]\s*\d{2,4}\b)*", " ", s)
    s = re.sub(r"^[\s,.:;-]+|[\s,.:;-]+$", "", s)
    s = re.sub(r"\s+", " ", s)
    return s or None


def first_year(copyright_value):
    years = [int(y) for y in re.findall(r"\b(19\d{2}|20\d{2})\b", copyright_value)]
    return min(years) if years else None


def fields_of(parts):
    header = dict(parts[0])
    if "Format" not in header or "Upstream-Name" not in header:
        return None
    files = [dict(s) for s in parts[1:] if "Files" in dict(s)]
    main = next((s for s in files if s["Files"].split()[0] == "*"), None)
    deb = next((s for s in files if s["Files"].split()[0].startswith("debian/")), None)
    if main is None or "License" not in main or "Copyright" not in main:
        return None
    return {
        "software": header["Upstream-Name"].strip(),
        "license": main["License"].split("\n")[0].strip(),
        "copyright_holder": holder(main["Copyright"]),
        "first_year": first_year(main["Copyright"]),
        "packager": holder(deb["Copyright"]) if deb and "Copyright" in deb else None,
    }


def body_without_header(text):
    """The file with its first stanza (the header) removed."""
    parts = re.split(r"\n\s*\n", text.strip(), maxsplit=1)
    return parts[1] if len(parts) == 2 else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    seen, items = set(), []
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        parts = stanzas(text)
        if not parts:
            continue
        truth = fields_of(parts)
        if truth is None or truth["software"].lower() in seen:
            continue
        body = body_without_header(text)
        if len(body) < 200 or len(body) > 60000:
            continue
        seen.add(truth["software"].lower())
        items.append((truth, body))
    random.Random(args.seed).shuffle(items)
    items = items[: args.n]
    os.makedirs(os.path.join(args.out, "docs"), exist_ok=True)
    with open(os.path.join(args.out, "truth.jsonl"), "w") as t:
        for i, (truth, body) in enumerate(items):
            rel = f"docs/doc-{i:03d}.txt"
            with open(os.path.join(args.out, rel), "w") as f:
                f.write(body)
            t.write(json.dumps({"doc": rel, "fields": truth}) + "\n")
    with open(os.path.join(args.out, "schema.json"), "w") as f:
        json.dump(SCHEMA, f, indent=1)
    print(f"{len(items)} documents in {args.out}")


if __name__ == "__main__":
    main()
