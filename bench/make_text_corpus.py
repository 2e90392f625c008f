#!/usr/bin/env python3
"""Write a folder of plain-text documents of a given total size for scale runs.

Each document is a sequence of paragraphs whose sentences are drawn from a
BEIR corpus (squaddev by default) and reshuffled with a fixed seed, so every
file has its own content (nothing is deduplicated by hash) while the words,
sentence lengths and token counts are those of real English prose.

    python bench/make_text_corpus.py --out /tmp/scale-1g --mb 1024
"""

import argparse
import json
import os
import random
import re


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="../shared/data/squaddev")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mb", type=float, default=1024.0, help="total size in MiB")
    ap.add_argument("--file-kb", type=int, default=48, help="size of each document")
    ap.add_argument("--per-folder", type=int, default=250)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    sentences = []
    with open(os.path.join(args.dataset, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 20)
    rng = random.Random(args.seed)
    total = int(args.mb * 1024 * 1024)
    file_bytes = args.file_kb * 1024
    written = 0
    n = 0
    while written < total:
        folder = os.path.join(args.out, f"part{n // args.per_folder:04d}")
        os.makedirs(folder, exist_ok=True)
        parts = []
        size = 0
        while size < file_bytes:
            para = " ".join(rng.choice(sentences) for _ in range(rng.randint(3, 8)))
            parts.append(para)
            size += len(para.encode("utf-8")) + 2
        body = "\n\n".join(parts) + "\n"
        with open(os.path.join(folder, f"doc{n:06d}.txt"), "w", encoding="utf-8") as f:
            f.write(body)
        written += len(body.encode("utf-8"))
        n += 1
    print(json.dumps({"files": n, "bytes": written, "out": args.out}))


if __name__ == "__main__":
    main()
