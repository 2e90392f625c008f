#!/usr/bin/env python3
"""Scan every file of a library folder for any 8-word sequence of the
indexed text (issue 21): prints the files that hold one.

    python3 bench/sealed/scan.py LIBRARY SOURCE_DIR [--words 8]

Each library file is read as bytes; its printable runs (and zstd/lz4 would
hide text, so an encrypted library must pass for the right reason: the scan
of a plain library is the control) are split into words, and every run of
N words is looked up among the runs of N words of the source files.
"""
import argparse
import os
import re
import sys


def windows(words, n):
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def source_windows(src, n):
    out = set()
    for root, _, files in os.walk(src):
        for f in files:
            text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
            out |= windows(text.split(), n)
    return out


def file_words(path):
    data = open(path, "rb").read()
    runs = re.findall(rb"[\x20-\x7e\t\n\r]{16,}", data)
    return " ".join(r.decode("ascii") for r in runs).split()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("library")
    ap.add_argument("source")
    ap.add_argument("--words", type=int, default=8)
    a = ap.parse_args()
    wanted = source_windows(a.source, a.words)
    hits = []
    scanned = 0
    for root, _, files in os.walk(a.library):
        for f in files:
            path = os.path.join(root, f)
            scanned += 1
            found = windows(file_words(path), a.words) & wanted
            if found:
                hits.append((path, len(found), next(iter(found))))
    for path, count, example in hits:
        print(f"{path}: {count} sequence(s), e.g. \"{example}\"")
    print(f"{scanned} file(s) scanned, {len(hits)} hold {a.words}-word sequences of the source")
    sys.exit(1 if hits else 0)


if __name__ == "__main__":
    main()
