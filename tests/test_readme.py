"""The README's Python examples run as written (from the repository root, offline, small sizes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


@pytest.mark.parametrize("index", [0, 1])
def test_python_api_examples_run(index, tmp_path):
    blocks = _python_blocks("Python API")
    assert len(blocks) == 2, "the README's Python API section should hold two examples"
    code = blocks[index].replace('"out/api"', repr(str(tmp_path / "api")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if index == 0:
        assert (tmp_path / "api" / "splats.ply").stat().st_size > 0
    else:
        assert "points;" in done.stdout
