"""The peer side of `quarry bench`: sentence-transformers (PyTorch, CPU) embedding
the same texts with the same all-MiniLM-L6-v2 weights, at batch sizes 1 and 32.

    pip install sentence-transformers
    python bench/st_embed.py --model ~/.cache/quarry/models/all-minilm-l6-v2 \
        --dataset ../shared/data/squaddev --texts 256
Prints one JSON object, shaped like `quarry bench --json`.
"""
import argparse
import json
import time

import torch
from peer_texts import load_texts
from sentence_transformers import SentenceTransformer

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--dataset", required=True)
ap.add_argument("--texts", type=int, default=256)
args = ap.parse_args()

texts = load_texts(args.dataset, args.texts)

model = SentenceTransformer(args.model, device="cpu")
tok = model.tokenizer
tokens = sum(min(len(tok(t)["input_ids"]), model.max_seq_length) for t in texts)
model.encode(texts[:8], batch_size=8)  # warm up
out = {"torch_threads": torch.get_num_threads()}
for batch in (1, 32):
    t = time.perf_counter()
    model.encode(texts, batch_size=batch, normalize_embeddings=True)
    secs = time.perf_counter() - t
    out[f"embed_batch_{batch}"] = {
        "texts": len(texts),
        "tokens": tokens,
        "seconds": secs,
        "texts_per_s": len(texts) / secs,
        "tokens_per_s": tokens / secs,
    }
print(json.dumps(out, indent=2))
