"""Shared fixtures. ``tests/`` is put on ``sys.path`` so tests can ``from material import ...``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# As the CLI does (streamer/cli.py): spinning OpenMP threads starve the engine's other threads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what imports and collection made, as ``serve`` freezes its startup's objects: the
    tests that play in real time in this process then meet no 0.3 s full collection."""
    from streamer.runtime.heap import freeze_startup_objects

    freeze_startup_objects()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD 1.x model (diffusers folder plus ``tiny-sd.safetensors``), built
    once per test session, offline, in a few seconds. Load it with ``--model`` / ``model=``."""
    from streamer.generate.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
