"""Helpers for bench/llm.py (building llama-server, streaming clients), `procs`: the server
processes of every bench and of the tests, and `voice_turns` for the voice benches."""
