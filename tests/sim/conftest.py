from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def trace_files(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny production-style trace: requests.jsonl and models.json."""
    models = [
        {"id": "chat", "size_mb": 8000, "load_s": 6.0, "pin": True},
        {"id": "code", "size_mb": 12000, "load_s": 9.0},
        {"id": "embed", "size_mb": 1000, "load_s": 1.5},
    ]
    rows = []
    for i in range(60):
        model = ["chat", "code", "embed"][i % 3]
        rows.append(
            {
                "t": i * 2.0,
                "model": model,
                "priority": ["urgent", "normal", "batch"][i % 3],
                "client": f"svc-{i % 4}",
                "prompt_tokens": 200,
                "output_tokens": 50,
            }
        )
    models_path = tmp_path / "models.json"
    models_path.write_text(json.dumps(models))
    trace_path = tmp_path / "requests.jsonl"
    trace_path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return trace_path, models_path
