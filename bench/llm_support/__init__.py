"""Helpers for bench/llm.py (building llama-server, streaming clients), and `procs`: the server
processes of every bench and of the tests."""
