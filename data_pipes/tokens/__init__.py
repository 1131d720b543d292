"""Tokens: byte-level BPE training, tokenization, best-fit-decreasing packing into fixed-length training rows.

Importable without Prefect or the orchestrator. The kinds ``tokenizer_train`` and ``pack`` (in ``tasks/``)
drive these functions; ``benchmarks/pack.py`` measures them.
"""
