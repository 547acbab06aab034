"""Shared fixtures. Benchmark data is read through NNCERT_DATA (default ../shared/data beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("NNCERT_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """A benchmark file, or skip the test with a clear message when the data set is absent."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"benchmark data not found: {p} (set NNCERT_DATA to the shared data folder)")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="no CUDA device present")
    cuda = has_cuda()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
