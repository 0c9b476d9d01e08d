"""Helpers for bench/llm.py: building llama-server, streaming clients, process control."""
