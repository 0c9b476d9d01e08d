"""Log-probabilities of the built-in LLM through the official `openai` package: chat and completions,
streamed and not, consistent with the sampled tokens, and refused out of range."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.conftest import Server, start_server

MODEL = "smollm2"
MOON = [{"role": "user", "content": "Tell me about the moon."}]


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory):
    server = start_server(tmp_path_factory.mktemp("logprobs"), "--only", MODEL, admin_key=True)
    yield server
    server.stop()


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.admin_key, max_retries=0, timeout=120)


def check_position(token: str, logprob: float, top: dict[str, float], greedy: bool) -> None:
    """One position: log-probabilities at most 0 whose probabilities sum to at most 1; at temperature 0
    the chosen token is the likeliest and its value is exactly its entry among the alternatives."""
    assert logprob <= 0 and all(value <= 0 for value in top.values())
    # float32 logits: three alternatives holding all the mass summed to 1 + 1.07e-6 on CI
    assert sum(math.exp(value) for value in top.values()) <= 1 + 1e-5
    assert list(top.values()) == sorted(top.values(), reverse=True)  # most likely first
    if greedy:
        assert token in top, (token, top)
        assert top[token] == logprob  # the same float, not merely close
        assert logprob == max(top.values())


def test_chat_logprobs_match_the_answer_at_temperature_0(llm: Server) -> None:
    answer = client(llm).chat.completions.create(
        model=MODEL, messages=MOON, max_tokens=16, temperature=0, logprobs=True, top_logprobs=5
    )
    choice = answer.choices[0]
    content = choice.logprobs.content
    assert len(content) == answer.usage.completion_tokens == 16
    assert b"".join(bytes(t.bytes) for t in content).decode() == choice.message.content
    for t in content:
        assert len(t.top_logprobs) == 5
        assert all(bytes(alt.bytes) == alt.token.encode() for alt in t.top_logprobs)
        check_position(t.token, t.logprob, {alt.token: alt.logprob for alt in t.top_logprobs}, greedy=True)
    # without top_logprobs: the chosen tokens alone, with the same values
    plain = client(llm).chat.completions.create(model=MODEL, messages=MOON, max_tokens=16, temperature=0, logprobs=True)
    assert [t.token for t in plain.choices[0].logprobs.content] == [t.token for t in content]
    assert all(t.top_logprobs == [] for t in plain.choices[0].logprobs.content)
    values = [t.logprob for t in plain.choices[0].logprobs.content]
    assert values == pytest.approx([t.logprob for t in content], abs=1e-3)
    # not asked: none
    none = client(llm).chat.completions.create(model=MODEL, messages=MOON, max_tokens=4, temperature=0)
    assert none.choices[0].logprobs is None


def test_streamed_chat_chunks_carry_their_own_tokens(llm: Server) -> None:
    params = dict(model=MODEL, messages=MOON, max_tokens=16, temperature=0, logprobs=True, top_logprobs=3)
    whole = client(llm).chat.completions.create(**params).choices[0].logprobs.content
    chunks = [c for c in client(llm).chat.completions.create(**params, stream=True) if c.choices]
    streamed = []
    for chunk in chunks:
        choice = chunk.choices[0]
        text = choice.delta.content or ""
        tokens = choice.logprobs.content if choice.logprobs is not None else []
        assert b"".join(bytes(t.bytes) for t in tokens).decode() == text  # each chunk: the tokens of its text
        streamed += tokens
    assert [t.token for t in streamed] == [t.token for t in whole]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in whole], abs=1e-3)
    for t in streamed:
        check_position(t.token, t.logprob, {alt.token: alt.logprob for alt in t.top_logprobs}, greedy=True)


def check_completion_logprobs(text: str, logprobs, n: int, greedy: bool) -> None:
    n_tokens = len(logprobs.tokens)
    assert len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == len(logprobs.text_offset) == n_tokens
    for token, offset in zip(logprobs.tokens, logprobs.text_offset):
        assert text[offset : offset + len(token)] == token
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) <= n
        check_position(token, logprob, top, greedy)


def test_completion_logprobs_streamed_and_not(llm: Server) -> None:
    params = dict(model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0, logprobs=3)
    result = client(llm).completions.create(**params)
    choice = result.choices[0]
    assert len(choice.logprobs.tokens) == result.usage.completion_tokens
    assert "".join(choice.logprobs.tokens) == choice.text
    assert choice.logprobs.text_offset[0] == 0
    check_completion_logprobs(choice.text, choice.logprobs, 3, greedy=True)

    tokens, offsets, values, text = [], [], [], ""
    for chunk in client(llm).completions.create(**params, stream=True):
        if not chunk.choices:
            continue
        piece = chunk.choices[0]
        if piece.logprobs is not None:
            assert "".join(piece.logprobs.tokens) == piece.text
            assert piece.logprobs.text_offset[:1] in ([], [len(text)])  # offsets count from the completion's start
            tokens += piece.logprobs.tokens
            offsets += piece.logprobs.text_offset
            values += piece.logprobs.token_logprobs
        text += piece.text
    assert text == choice.text and tokens == choice.logprobs.tokens and offsets == choice.logprobs.text_offset
    assert values == pytest.approx(choice.logprobs.token_logprobs, abs=1e-3)


def test_values_are_taken_before_temperature(llm: Server) -> None:
    """The first position's distribution is the model's whatever the temperature, top_k and top_p."""

    def first(**sampling) -> list:
        answer = client(llm).chat.completions.create(
            model=MODEL, messages=MOON, max_tokens=1, logprobs=True, top_logprobs=5, **sampling
        )
        return answer.choices[0].logprobs.content[0].top_logprobs

    cold = first(temperature=0)
    hot = first(temperature=1.8, top_p=0.5, seed=7, extra_body={"top_k": 3})
    assert [a.token for a in hot] == [a.token for a in cold]
    assert [a.logprob for a in hot] == pytest.approx([a.logprob for a in cold], abs=1e-3)


def test_values_are_taken_after_the_json_schema_mask(llm: Server) -> None:
    schema = {
        "type": "object",
        "properties": {"mood": {"type": "string", "enum": ["happy", "sad"]}},
        "required": ["mood"],
        "additionalProperties": False,
    }
    answer = client(llm).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "How do you feel? Answer in JSON."}],
        max_tokens=20,
        temperature=0,
        logprobs=True,
        top_logprobs=20,
        response_format={"type": "json_schema", "json_schema": {"name": "mood", "schema": schema}},
    )
    content = answer.choices[0].logprobs.content
    assert b"".join(bytes(t.bytes) for t in content).decode() == answer.choices[0].message.content
    # the first token must open the object: every alternative the mask leaves does, and they hold all the mass
    first = content[0].top_logprobs
    assert first and all(alt.token.lstrip().startswith("{") for alt in first), [a.token for a in first]
    for t in content:
        top = {alt.token: alt.logprob for alt in t.top_logprobs}
        check_position(t.token, t.logprob, top, greedy=True)
        if len(top) < 20:  # fewer than asked: the mask left only these, so they are the whole distribution
            assert sum(math.exp(v) for v in top.values()) == pytest.approx(1, abs=1e-3)


def test_concurrent_streams_get_their_own_logprobs(llm: Server) -> None:
    prompts = ["Name three colors.", "Count from one to five.", "What is a cat?"]

    def ask(text: str) -> tuple[str, list]:
        choice = (
            client(llm)
            .chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": text}],
                max_tokens=16,
                temperature=0,
                logprobs=True,
                top_logprobs=2,
            )
            .choices[0]
        )
        return choice.message.content, choice.logprobs.content

    alone = [ask(p) for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    for (text, content), (alone_text, alone_content) in zip(together, alone):
        assert b"".join(bytes(t.bytes) for t in content).decode() == text
        assert text == alone_text
        assert [t.token for t in content] == [t.token for t in alone_content]
        assert [t.logprob for t in content] == pytest.approx([t.logprob for t in alone_content], abs=1e-2)


@pytest.mark.parametrize(
    ("route", "params", "param", "words"),
    [
        ("chat", {"logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20"),
        ("chat", {"logprobs": True, "top_logprobs": -1}, "top_logprobs", "greater than or equal to 0"),
        ("chat", {"top_logprobs": 2}, "top_logprobs", "needs logprobs: true"),
        ("chat", {"logprobs": False, "top_logprobs": 0}, "top_logprobs", "needs logprobs: true"),
        ("completions", {"logprobs": 6}, "logprobs", "less than or equal to 5"),
        ("completions", {"logprobs": 2, "echo": True}, "echo", "echo with logprobs is not supported"),
    ],
)
def test_out_of_range_values_are_a_400_naming_the_parameter(llm: Server, route, params, param, words) -> None:
    c = client(llm)
    with pytest.raises(openai.BadRequestError) as refused:
        if route == "chat":
            c.chat.completions.create(model=MODEL, messages=MOON, max_tokens=2, **params)
        else:
            c.completions.create(model=MODEL, prompt="Hello", max_tokens=2, **params)
    assert refused.value.status_code == 400
    assert refused.value.param == param
    message = refused.value.body["message"]
    assert param in message and words in message, message
