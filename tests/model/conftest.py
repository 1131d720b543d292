"""Fixtures for the model tests: one thread (the machine is shared) and the debug flavour."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, model_config


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def debug_cfg() -> ModelConfig:
    return model_config("debug")
