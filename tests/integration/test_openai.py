"""The official `openai` package against /v1/models and /v1/embeddings."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.conftest import Server, cli


def client(server: Server, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key or server.admin_key, max_retries=0)


def test_embeddings_rank_meaning(server: Server) -> None:
    result = client(server).embeddings.create(model="minilm", input=["a red apple", "a fruit", "a truck"])
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    apple, fruit, truck = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert apple @ fruit > apple @ truck + 0.1
    assert result.usage.prompt_tokens > 6
    assert result.model == "minilm"


def test_float_and_base64_agree(server: Server) -> None:
    c = client(server)
    as_float = c.embeddings.create(model="minilm", input="hello world", encoding_format="float").data[0].embedding
    as_base64 = c.embeddings.create(model="minilm", input="hello world").data[0].embedding  # the package's default
    np.testing.assert_allclose(as_float, as_base64, rtol=1e-6)


def test_more_inputs_than_one_batch(server: Server) -> None:
    texts = [f"sentence number {i}" for i in range(150)]  # minilm batches 64 at a time
    data = client(server).embeddings.create(model="minilm", input=texts).data
    assert [d.index for d in data] == list(range(150))
    single = client(server).embeddings.create(model="minilm", input=texts[149]).data[0].embedding
    np.testing.assert_allclose(data[149].embedding, single, atol=1e-5)


def test_models_list_follows_scopes(server: Server) -> None:
    assert {"minilm", "tiny"} <= {m.id for m in client(server).models.list()}
    key = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=server.data_dir).stdout.strip()
    assert [m.id for m in client(server, key).models.list()] == ["minilm"]
    assert client(server).models.retrieve("minilm").id == "minilm"


def test_embedding_errors_are_clear(server: Server) -> None:
    c = client(server)
    with pytest.raises(openai.NotFoundError, match="unknown model 'text-embedding-3-small'"):
        c.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError, match="not an embedding model"):
        c.embeddings.create(model="tiny", input="x")
    with pytest.raises(openai.BadRequestError, match="token id input is not supported"):
        c.embeddings.create(model="minilm", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="384-dimensional"):
        c.embeddings.create(model="minilm", input="x", dimensions=64)
    with pytest.raises(openai.BadRequestError, match="empty"):
        c.embeddings.create(model="minilm", input=[])
