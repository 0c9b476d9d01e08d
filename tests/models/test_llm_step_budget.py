"""The LLM engine's per-step prompt budget: newcomers' prompts must not stall running streams.

Real SmolLM2 GGUF, one thread, short outputs (runs in well under a minute on 2 cores).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from xrserve.models.llm import engine as engine_module  # noqa: E402
from xrserve.models.llm.engine import Engine, EngineError, Event, GenerationRequest  # noqa: E402


def smollm2_path() -> Path:
    from xrserve.models.llm.model import smollm2_path as installed

    try:
        return installed()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def make_engine(**kwargs) -> Engine:
    return Engine(str(smollm2_path()), n_ctx_per_seq=512, n_seq_max=8, n_threads=1, prefill_chunk=64, **kwargs)


@pytest.mark.parametrize("target", [0, -1.0, float("nan"), float("inf")])
def test_a_step_target_that_is_not_a_positive_number_is_refused(target: float) -> None:
    with pytest.raises(EngineError, match="step_target_s"):
        make_engine(step_target_s=target)


def test_the_prompt_room_follows_the_measured_costs() -> None:
    with make_engine(step_target_s=0.075) as engine:
        n_batch = engine._n_batch
        assert engine._prefill_room(0) == n_batch  # nobody generating: nobody waits on the step
        assert engine._prefill_room(3, flowing=False) == n_batch - 3  # streams still starting: no pause mid-answer
        assert engine._prefill_room(3) == 64  # no cost measured yet: one chunk
        engine._base_step_s, engine._prompt_row_s = 0.025, 0.002
        assert engine._prefill_room(8) in (24, 25)  # (75 - 25) ms / 2 ms, rounded down
        engine._base_step_s = 0.120  # already over the target: the floor keeps prompts moving
        assert engine._prefill_room(8) == engine_module._MIN_PREFILL_ROWS
        engine._base_step_s, engine._prompt_row_s = 0.0, 0.0
        assert engine._prefill_room(8) == n_batch - 8  # free prompt rows: the rest of the batch
        # the estimates: a generating-only step sets the base, a mixed one the cost per row beyond it
        engine._base_step_s = engine._prompt_row_s = None
        engine._learn_step_cost(0, 100, 0.5)
        assert engine._prompt_row_s == pytest.approx(0.005)  # no base yet: the whole step per row
        engine._learn_step_cost(8, 0, 0.04)
        assert engine._base_step_s == pytest.approx(0.04)
        engine._learn_step_cost(8, 20, 0.06)
        assert engine._prompt_row_s == pytest.approx(0.005 + engine_module._COST_SMOOTHING * (0.001 - 0.005))
    with make_engine() as engine:  # off by default: prompts may fill the batch, as before
        assert engine._step_target_s is None
        assert engine._prefill_room(8) == engine._n_batch - 8


def recorded_steps(engine: Engine) -> list[tuple[int, int]]:
    """(generating rows, prompt rows) of each step the engine takes from now on."""
    steps: list[tuple[int, int]] = []
    fill = engine._fill_batch

    def recording_fill(takes: dict[int, int]) -> int:
        rows = fill(takes)
        steps.append((rows - sum(takes.values()), sum(takes.values())))
        return rows

    engine._fill_batch = recording_fill  # type: ignore[method-assign]
    return steps


STORY = "The caravan crossed the desert at night, guided by the stars and an old map. " * 6


def test_newcomers_prompts_go_in_small_pieces_while_a_stream_generates() -> None:
    """With a target no step can meet, prompts advance by the floor while anyone's text flows, and finish."""
    with make_engine(step_target_s=1e-6) as engine:
        steps = recorded_steps(engine)
        done = {i: threading.Event() for i in range(5)}
        events: dict[int, list[Event]] = {i: [] for i in range(5)}
        flowing = threading.Event()  # stream 0 has the tokens out that make it worth protecting

        def emitter(i: int):
            def emit(event: Event) -> None:
                events[i].append(event)
                out = sum(e.completion_tokens for e in events[i] if e.kind == "delta")
                if i == 0 and out >= engine_module._FLOWING_TOKENS:
                    flowing.set()
                if event.kind in ("done", "error"):
                    done[i].set()

            return emit

        runner = engine.chat_template([{"role": "user", "content": "Tell a very long story about a dragon."}])
        engine.submit(0, GenerationRequest(runner, max_tokens=120, temperature=0), emitter(0))
        assert flowing.wait(60)
        for i in range(1, 5):
            prompt = engine.chat_template([{"role": "user", "content": f"Story {i}: {STORY} What happened next?"}])
            assert len(engine.tokenize(prompt)) > 100
            engine.submit(i, GenerationRequest(prompt, max_tokens=8, temperature=0), emitter(i))
        for i in range(5):
            assert done[i].wait(120), f"request {i} did not finish"
            assert events[i][-1].kind == "done", events[i][-1]
        mixed = [prompt_rows for generating, prompt_rows in steps if generating > 0 and prompt_rows > 0]
        assert mixed, "no step mixed generating rows with prompt rows"
        assert max(mixed) <= engine_module._MIN_PREFILL_ROWS
        # a step with nobody generating may fill the batch: none of the four waits on it
        alone = [prompt_rows for generating, prompt_rows in steps if generating == 0]
        assert all(rows <= engine._n_batch for rows in alone)


def test_prompts_that_come_with_a_stream_still_starting_go_in_whole() -> None:
    """Streams started together are not paced against each other: while no stream has `_FLOWING_TOKENS` out,
    a step takes the prompts' chunks whole beside the generating rows (8 streams at once stay batched)."""
    with make_engine(step_target_s=1e-6) as engine:
        steps = recorded_steps(engine)
        done = {i: threading.Event() for i in range(5)}

        def emitter(i: int):
            return lambda event: done[i].set() if event.kind in ("done", "error") else None

        short = engine.chat_template([{"role": "user", "content": "Hi."}])
        engine.submit(0, GenerationRequest(short, max_tokens=4, temperature=0), emitter(0))
        for i in range(1, 5):  # > 100 tokens each: several 64-token chunks, the first while 0 starts generating
            prompt = engine.chat_template([{"role": "user", "content": f"Story {i}: {STORY} What happened next?"}])
            engine.submit(i, GenerationRequest(prompt, max_tokens=4, temperature=0), emitter(i))
        for i in range(5):
            assert done[i].wait(120), f"request {i} did not finish"
        mixed = [prompt_rows for generating, prompt_rows in steps if generating > 0 and prompt_rows > 0]
        assert mixed and max(mixed) > engine_module._MIN_PREFILL_ROWS, steps
