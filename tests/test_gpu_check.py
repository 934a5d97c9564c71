"""The GPU check's dry run: every step of ``benchmarks/gpu_check.sh`` on the CPU with the tiny
model, so the script a lent GPU runs (once, with minutes to spare) cannot rot in between. It also
runs ``benchmarks/vocoder.py --smoke`` and ``benchmarks/latency.py --quick``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ["models", "versions", "load", "agreement", "sd15-eager", "compiled", "vocoder", "latency"]


def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        env={**os.environ, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    steps = json.loads((tmp_path / "results.json").read_text())
    assert [step["step"] for step in steps] == STEPS
    assert all(step["status"] == "ok" for step in steps)
    figures = {step["step"]: step["figures"] for step in steps}
    assert figures["compiled"]["recompiles_after_warm_up"] == 0
    assert figures["load"]["lora_fused"] is True
    assert float(figures["vocoder"]["cold_rtf"]) > 0
    lines = (tmp_path / "results.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines[1:]] == STEPS  # one line per step, after a header
    assert (tmp_path / "latency.log").read_text().count("RESULT") == 1
