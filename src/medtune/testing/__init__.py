"""Test doubles that speak real protocols (an OpenAI-compatible HTTP server), shared by tests and benchmarks."""

from medtune.testing.openai_server import Call, Fault, OpenAIServer, unused_base_url

__all__ = ["Call", "Fault", "OpenAIServer", "unused_base_url"]
