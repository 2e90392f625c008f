#!/usr/bin/env python3
"""Measure whole-document questions on real text nobody here wrote: Debian's
machine-readable copyright files (/usr/share/doc/*/copyright, DEP-5) name
each licence of a package in a `License:` field, so "list every licence
named in these notes" has a known answer that is spread through the file.

    python3 bench/whole/licences.py build OUT [--n 12] [--seed 7]
    python3 bench/whole/licences.py run OUT --quarry BIN --model ID [--whole auto|never] [--limit N]

`build` picks files with at least 4 distinct licences and 8-40 KB of text
(longer than one reading window), writes OUT/docs/doc-NN.txt and
OUT/truth.jsonl; `run` indexes OUT/docs into OUT/library (once), asks the
question of each document with `--path-prefix` that document, and prints
the share of its licences each answer names (recall), how many answers
name every one, and the seconds per answer.
"""
import argparse
import glob
import json
import os
import random
import re
import subprocess
import sys
import time

QUESTION = "List every licence named in these copyright notes."


def licences(text):
    """The distinct short licence names of a DEP-5 file's License: fields."""
    names = set()
    for m in re.finditer(r"^License:\s*(\S.*)$", text, re.M):
        for part in re.split(r"\s+(?:or|and)\s+|\s*[|,]\s*", m.group(1).strip()):
            part = part.strip("() ")
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9.+_-]{1,40}", part):
                names.add(part)
    return sorted(names)


def named(licence, answer):
    """Whether `answer` names `licence` as a whole name ("GPL-3" is not in "GPL-3+")."""
    pattern = rf"(?<![\w.+-]){re.escape(licence.lower())}(?![\w+-]|\.\w)"
    return re.search(pattern, answer) is not None


def build(out, n, seed):
    picks = []
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        if not text.startswith("Format:") or not 8_000 <= len(text) <= 40_000:
            continue
        names = licences(text)
        if len(names) >= 4:
            picks.append((path, text, names))
    random.Random(seed).shuffle(picks)
    picks = picks[:n]
    os.makedirs(os.path.join(out, "docs"), exist_ok=True)
    with open(os.path.join(out, "truth.jsonl"), "w") as truth:
        for i, (path, text, names) in enumerate(picks):
            doc = os.path.join("docs", f"doc-{i:02d}.txt")
            with open(os.path.join(out, doc), "w") as f:
                f.write(text)
            truth.write(json.dumps({"doc": doc, "source": path, "licences": names}) + "\n")
    print(f"{len(picks)} documents written to {out}")


def run(out, quarry, model, whole, limit=None):
    out = os.path.abspath(out)
    env = dict(os.environ, QUARRY_LIBRARY_DIR=os.path.join(out, "library"))
    if not os.path.exists(os.path.join(out, "library")):
        subprocess.run([quarry, "index", os.path.join(out, "docs")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    rows = [json.loads(l) for l in open(os.path.join(out, "truth.jsonl"))][:limit]
    recalls, complete, seconds = [], 0, []
    for r in rows:
        doc = os.path.join(out, r["doc"])
        started = time.time()
        p = subprocess.run([quarry, "ask", QUESTION, "--path-prefix", doc, "--model", model,
                            "--whole", whole, "--no-cache", "--json"],
                           env=env, capture_output=True, text=True)
        seconds.append(time.time() - started)
        if p.returncode != 0:
            print(f"{r['doc']}: failed: {p.stderr.strip()[-300:]}", file=sys.stderr)
            recalls.append(0.0)
            continue
        answer = json.loads(p.stdout)["answer"].lower()
        found = [n for n in r["licences"] if named(n, answer)]
        recall = len(found) / len(r["licences"])
        recalls.append(recall)
        complete += recall == 1.0
        print(f"{r['doc']}: {len(found)}/{len(r['licences'])} licences named, "
              f"{seconds[-1]:.1f} s", file=sys.stderr)
    n = len(rows)
    print(json.dumps({
        "model": model, "whole": whole, "documents": n,
        "mean_recall": round(sum(recalls) / n, 3),
        "all_named": complete,
        "seconds_per_answer_p50": round(sorted(seconds)[n // 2], 1),
    }))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out")
    b.add_argument("--n", type=int, default=12)
    b.add_argument("--seed", type=int, default=7)
    r = sub.add_parser("run")
    r.add_argument("out")
    r.add_argument("--quarry", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--whole", default="auto", choices=["auto", "always", "never"])
    r.add_argument("--limit", type=int, default=None, help="only the first N documents")
    a = ap.parse_args()
    if a.cmd == "build":
        build(a.out, a.n, a.seed)
    else:
        run(a.out, a.quarry, a.model, a.whole, a.limit)


if __name__ == "__main__":
    main()
