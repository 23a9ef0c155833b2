"""``python -m model_boss.backends.demo_model``: fetch the demo model, print its path.

Idempotent (a second run returns at once). The ``model-boss model pull smollm2`` command
calls the same :func:`model_boss.backends.fetch_demo_model`.
"""

from __future__ import annotations

from model_boss.backends._demo_model import fetch_demo_model


def main() -> None:
    print(fetch_demo_model())


if __name__ == "__main__":
    main()
