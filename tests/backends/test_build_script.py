"""scripts/build-llama-server.sh's control flow, with stand-ins for pip and cmake.

The real build (minutes) runs in `make setup`; here fakes make each step instant so the
caching rules can be checked: built once, a no-op afterwards, and a binary that cannot
run is never cached.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "build-llama-server.sh"

FAKE_PYTHON = """\
#!/usr/bin/env bash
# "python -m pip download ... -d DIR llama-cpp-python==V": make an sdist-shaped tarball.
set -e
while [[ $# -gt 0 ]]; do [[ "$1" == "-d" ]] && dir="$2"; shift; done
src="$(mktemp -d)"
mkdir -p "$src/llama_cpp_python-0.3.36/vendor/llama.cpp"
tar -czf "$dir/llama_cpp_python-0.3.36.tar.gz" -C "$src" llama_cpp_python-0.3.36
echo "$dir" >> "$FAKE_CALLS"
"""

FAKE_CMAKE = """\
#!/usr/bin/env bash
# configure: remember the flags; --build: produce a llama-server that runs (or not).
set -e
if [[ "$1" == "--build" ]]; then
  mkdir -p "$2/bin"
  printf '#!/usr/bin/env bash\\n%s\\n' "$FAKE_BINARY_BODY" > "$2/bin/llama-server"
  chmod +x "$2/bin/llama-server"
else
  echo "$@" >> "$FAKE_CALLS"
fi
"""


def run_script(tmp_path: Path, binary_body: str) -> subprocess.CompletedProcess[str]:
    fakes = tmp_path / "fakes"
    fakes.mkdir(exist_ok=True)
    for name, body in (("python", FAKE_PYTHON), ("cmake", FAKE_CMAKE)):
        (fakes / name).write_text(textwrap.dedent(body))
        (fakes / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "PYTHON": str(fakes / "python"),
        "MODEL_BOSS_CACHE": str(tmp_path / "cache"),
        "FAKE_CALLS": str(tmp_path / "calls.txt"),
        "FAKE_BINARY_BODY": binary_body,
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_builds_once_with_native_off_then_uses_the_cache(tmp_path: Path) -> None:
    first = run_script(tmp_path, 'echo "version: 9 (fake)"')
    assert first.returncode == 0, first.stderr + first.stdout
    assert "built at" in first.stdout
    calls = (tmp_path / "calls.txt").read_text()
    assert "-DGGML_NATIVE=OFF" in calls
    assert "-DBUILD_SHARED_LIBS=OFF" in calls
    link = tmp_path / "cache" / "bin" / "llama-server"
    assert link.resolve() == tmp_path / "cache" / "bin" / "llama-server-0.3.36"
    assert sorted(p.name for p in link.parent.iterdir()) == [
        "llama-server",
        "llama-server-0.3.36",
    ]

    second = run_script(tmp_path, "exit 1")
    assert second.returncode == 0
    assert "cached at" in second.stdout
    assert (tmp_path / "calls.txt").read_text() == calls  # nothing downloaded or built


def test_a_binary_that_cannot_run_is_not_cached(tmp_path: Path) -> None:
    result = run_script(tmp_path, "echo 'Illegal instruction' >&2; exit 132")
    assert result.returncode != 0
    assert "the built binary does not run" in result.stderr
    assert "Illegal instruction" in result.stdout
    assert not (tmp_path / "cache" / "bin" / "llama-server-0.3.36").exists()
