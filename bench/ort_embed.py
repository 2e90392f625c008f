"""The second peer of `quarry bench`: ONNX Runtime (what fastembed and many
desktop RAG apps embed with) running all-MiniLM-L6-v2 on the same texts, f32
and with ONNX Runtime's dynamic int8 quantization, at batch sizes 1 and 32.

    pip install sentence-transformers onnxruntime onnx
    python bench/ort_embed.py --model ~/.cache/quarry/models/all-minilm-l6-v2 \
        --dataset ../shared/data/squaddev --texts 256 [--threads 2]

The model is exported from the same weights with torch.onnx (the
sentence-transformers environment of bench/st_embed.py), into a temporary
folder; pooling (mean over real tokens) and normalisation run in numpy, as
fastembed does. Prints one JSON object shaped like `quarry bench --json`, plus
the cosine of each variant's vectors to sentence-transformers' own.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from peer_texts import load_texts
from onnxruntime.quantization import QuantType, quantize_dynamic
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--dataset", required=True)
ap.add_argument("--texts", type=int, default=256)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()

texts = load_texts(args.dataset, args.texts)

torch.set_num_threads(args.threads)
tok = AutoTokenizer.from_pretrained(args.model)
max_len = 256  # sentence-transformers' max_seq_length for this model
tmp = tempfile.mkdtemp(prefix="quarry-ort-")
f32_path = os.path.join(tmp, "minilm.onnx")
int8_path = os.path.join(tmp, "minilm-int8.onnx")
class Encoder(torch.nn.Module):
    """The BERT with positional inputs, as the ONNX graph takes them."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


model = Encoder(AutoModel.from_pretrained(args.model).eval())
sample = tok(["a sample text"], return_tensors="pt")
torch.onnx.export(
    model,
    (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
    f32_path,
    input_names=["input_ids", "attention_mask", "token_type_ids"],
    output_names=["last_hidden_state"],
    dynamic_axes={
        n: {0: "batch", 1: "seq"}
        for n in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]
    },
    opset_version=17,
    dynamo=False,
)
quantize_dynamic(f32_path, int8_path, weight_type=QuantType.QInt8)

reference = SentenceTransformer(args.model, device="cpu").encode(
    texts, batch_size=32, normalize_embeddings=True
)
tokens = sum(min(len(tok(t)["input_ids"]), max_len) for t in texts)


def embed(session, batch):
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(
            texts[i : i + batch],
            padding=True,
            truncation=True,
            max_length=max_len,
            return_tensors="np",
        )
        feeds = {k: enc[k].astype(np.int64) for k in ["input_ids", "attention_mask", "token_type_ids"]}
        hidden = session.run(None, feeds)[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    return np.concatenate(out)


result = {"onnxruntime": ort.__version__, "threads": args.threads}
for name, path in [("f32", f32_path), ("int8", int8_path)]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    embed(session, 8)  # warm up
    for batch in (1, 32):
        t = time.perf_counter()
        vectors = embed(session, batch)
        secs = time.perf_counter() - t
        cos = (vectors * reference).sum(1)
        result[f"{name}_batch_{batch}"] = {
            "texts": len(texts),
            "tokens": tokens,
            "seconds": secs,
            "texts_per_s": len(texts) / secs,
            "tokens_per_s": tokens / secs,
            "min_cosine_to_sentence_transformers": float(cos.min()),
        }
print(json.dumps(result, indent=2))
