"""Teacher backends: an OpenAI-compatible HTTP endpoint, a local transformers model, and a procedural solver.

All speak one protocol (``base.Teacher``): a list of requests in, one response per request out, errors as
data.
"""
