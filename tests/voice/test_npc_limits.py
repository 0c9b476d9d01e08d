"""An NPC turn's LLM tokens count against its key's token budget (--tpm), over the session and
over REST, as chat completions do: once spent, the next turn gets a 429 that says so and when to retry."""

from __future__ import annotations

import httpx

from tests.conftest import Server, cli
from tests.session_client import SessionClient


def test_npc_turns_spend_the_keys_llm_tokens(voice_server: Server) -> None:
    token = cli("keys", "create", "-s", "*", "-q", "--tpm", "20", data_dir=voice_server.data_dir).stdout.strip()
    with SessionClient(voice_server.url, token) as session:
        session.open("npc", "npc", max_tokens=24, seed=1)
        session.send({"type": "say", "stream": "npc", "text": "Hello, who are you?"})
        first = session.wait(lambda m: isinstance(m, dict) and m.get("type") in ("turn_end", "error"), timeout=120)
        assert first["type"] == "turn_end", first  # the budget was full: the turn runs, then costs its tokens
        session.send({"type": "say", "stream": "npc", "text": "And where do you live?"})
        refused = session.wait(lambda m: isinstance(m, dict) and m.get("type") in ("turn_end", "error"), timeout=120)
    assert refused["type"] == "error" and refused["status"] == 429, refused
    assert "20 LLM tokens per minute" in refused["message"] and refused["retry_after_s"] > 0
    # the same budget over REST: the conversation route is refused too
    answer = httpx.post(
        f"{voice_server.url}/v1/npc/chat-1/turn",
        data={"text": "Hello?"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert answer.status_code == 429 and "LLM tokens per minute" in answer.json()["error"]["message"], answer.text
    assert int(answer.headers["retry-after"]) >= 1
