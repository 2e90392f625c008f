"""llama.cpp's prefill and decode speed on a GGUF by token ids alone (no
tokenizer needed), for files of random weights in a real model's shape:

    cargo run -p quarry-core --example decoder_speed -- write qwen3-1.7b q4k /tmp/qwen3.gguf
    python bench/llamacpp_tokens.py --model /tmp/qwen3.gguf --prompt-tokens 1500 --tokens 64 --threads 2

The prompt's ids are the ones `decoder_speed time` uses ((i*7919+13) mod the
vocabulary); prefill is llama.cpp's own batching (n_batch 512), decoding is
greedy, one token at a time. Prints one JSON object.
"""
import argparse
import json
import os
import time

import numpy as np
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prompt-tokens", type=int, default=1500)
ap.add_argument("--tokens", type=int, default=64)
ap.add_argument("--threads", type=int, default=os.cpu_count())
args = ap.parse_args()

llm = Llama(
    model_path=args.model,
    n_ctx=args.prompt_tokens + args.tokens + 16,
    n_threads=args.threads,
    n_threads_batch=args.threads,
    n_batch=512,
    verbose=False,
)
vocab = llm.n_vocab()


def last_logits():
    # Only the last position's logits are computed (logits_all is off).
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))


ids = [(i * 7919 + 13) % vocab for i in range(args.prompt_tokens)]
start = time.perf_counter()
llm.eval(ids)
prefill = args.prompt_tokens / (time.perf_counter() - start)
nxt = int(np.argmax(last_logits()))
start = time.perf_counter()
for _ in range(args.tokens):
    llm.eval([nxt])
    nxt = int(np.argmax(last_logits()))
decode = args.tokens / (time.perf_counter() - start)
print(json.dumps({"prefill_tok_s": round(prefill, 1), "decode_tok_s": round(decode, 2), "threads": args.threads}))
