"""The peer side of `quarry bench`'s generation figures: llama.cpp (through
llama-cpp-python, built from source by pip) running the same GGUF on the same
templated RAG prompt, with the same thread count.

    pip install llama-cpp-python==0.3.36
    quarry bench --no-embed --prompt-tokens 1500 --dump-prompt /tmp/prompt.txt
    python bench/llamacpp_gen.py --model PATH.gguf --prompt /tmp/prompt.txt

Prefill is timed over evaluating the whole prompt (llama.cpp's own batching,
n_batch 512); decoding over 64 greedy tokens, one at a time. Prints one JSON
object shaped like the `generate` entry of `quarry bench --json`.
"""
import argparse
import json
import os
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prompt", required=True, help="file with the templated prompt")
ap.add_argument("--tokens", type=int, default=64, help="tokens to decode")
ap.add_argument("--threads", type=int, default=os.cpu_count())
args = ap.parse_args()

prompt = open(args.prompt, encoding="utf-8").read()
llm = Llama(
    args.model,
    n_ctx=4096,
    n_batch=512,
    n_threads=args.threads,
    n_threads_batch=args.threads,
    verbose=False,
)
ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
n_vocab = llm.n_vocab()


def greedy():
    """The arg-max of the last evaluated token's logits."""
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_vocab,))
    return int(np.argmax(logits))


# Warm-up on a short prefix (page in the weights), as Quarry's model is loaded
# before its timer starts.
llm.eval(ids[:8])
llm.reset()

t0 = time.perf_counter()
llm.eval(ids)
next_id = greedy()
prefill_s = time.perf_counter() - t0

generated = [next_id]
t1 = time.perf_counter()
for _ in range(args.tokens - 1):
    llm.eval([generated[-1]])
    generated.append(greedy())
decode_s = time.perf_counter() - t1

print(
    json.dumps(
        {
            "engine": "llama.cpp (llama-cpp-python)",
            "model": os.path.basename(args.model),
            "threads": args.threads,
            "prompt_tokens": len(ids),
            "prefill_tokens_per_s": len(ids) / prefill_s,
            "first_token_s": prefill_s,
            "generated_tokens": len(generated),
            "decode_tokens_per_s": (len(generated) - 1) / decode_s,
            "text": llm.detokenize(generated).decode("utf-8", "replace"),
        },
        indent=2,
    )
)
