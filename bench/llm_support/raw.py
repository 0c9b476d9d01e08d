"""The raw engine: llama-cpp-python's high-level `Llama`, batch 1, streaming, in its own process.

    python bench/llm_support/raw.py '{"gguf": ..., "n_ctx": 2048, "n_threads": 2, "warmup": {...}}'

Loads the model, runs the warm-up request, prints {"event": "loaded", ...}, then answers
requests one at a time: a JSON request ({messages, max_tokens, temperature, top_p, seed})
per line on stdin, a {"event": "run", ...} line on stdout for each. Ends at EOF.

Completion tokens are counted exactly: `Llama.generate` calls `self.sample` once per
sampled token, so the instance's `sample` is wrapped by a counter (one Python call per
token, nothing else); a request that ends on EOS sampled one token (the EOS) that is
not part of the completion. Content chunks are timed as they are yielded.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    plan = json.loads(sys.argv[1])
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(plan["gguf"], n_ctx=plan["n_ctx"], n_threads=plan["n_threads"], verbose=False)

    sampled = [0]
    original_sample = llm.sample

    def counting_sample(*args, **kwargs):
        sampled[0] += 1
        return original_sample(*args, **kwargs)

    llm.sample = counting_sample  # generate() looks `self.sample` up on the instance

    def one(request: dict) -> dict:
        sampled[0] = 0
        times: list[float] = []
        finish = None
        t0 = time.perf_counter()
        for chunk in llm.create_chat_completion(
            messages=request["messages"],
            max_tokens=request["max_tokens"],
            temperature=request["temperature"],
            top_p=request["top_p"],
            seed=request["seed"],
            stream=True,
        ):
            choice = chunk["choices"][0]
            if choice["delta"].get("content"):
                times.append(time.perf_counter() - t0)
            finish = choice.get("finish_reason") or finish
        end = time.perf_counter() - t0
        tokens = sampled[0] - (1 if finish == "stop" else 0)
        return {"chunk_times": times, "end": end, "completion_tokens": tokens, "finish_reason": finish}

    if plan.get("warmup"):
        one(plan["warmup"])
    emit({"event": "loaded", "seconds": time.perf_counter() - started})
    for line in sys.stdin:
        if line.strip():
            emit({"event": "run", **one(json.loads(line))})


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
