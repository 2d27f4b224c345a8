"""Test doubles that speak real protocols, shared by tests and benchmarks. Modules:
openai_server   an OpenAI-compatible HTTP server on 127.0.0.1 with scripted faults
openai_batches  its Files and Batch API state
qa_pairs        a synthetic corpus and a QA-writing responder, for generate_data tests and benchmarks
"""

from medtune.testing.openai_server import Call, Fault, OpenAIServer, unused_base_url

__all__ = ["Call", "Fault", "OpenAIServer", "unused_base_url"]
