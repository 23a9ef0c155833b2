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


def run_script(
    tmp_path: Path, binary_body: str, **extra_env: str
) -> subprocess.CompletedProcess[str]:
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
        "MODEL_BOSS_LLAMA_GPU": "auto",
        **extra_env,
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


def add_fake(tmp_path: Path, name: str, body: str) -> None:
    fakes = tmp_path / "fakes"
    fakes.mkdir(exist_ok=True)
    (fakes / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
    (fakes / name).chmod(0o755)


def fake_toolkit(tmp_path: Path, *, cublas: bool) -> Path:
    """A CUDA toolkit folder whose bin/nvcc is on PATH (with or without cuBLAS), and an
    nvidia-smi that sees two compute capability 9.0 GPUs."""
    toolkit = tmp_path / "toolkit"
    (toolkit / "bin").mkdir(parents=True)
    (toolkit / "lib").mkdir()
    if cublas:
        (toolkit / "lib" / "libcublas.so").write_text("")
    add_fake(tmp_path, "nvcc", "echo 'Cuda compilation tools, release 13.0'")
    (tmp_path / "fakes" / "nvcc").rename(toolkit / "bin" / "nvcc")
    (tmp_path / "fakes" / "nvcc").symlink_to(toolkit / "bin" / "nvcc")
    add_fake(
        tmp_path,
        "nvidia-smi",
        'if [[ "$1" == -L ]]; then echo "GPU 0: H200"; else printf "9.0\\n9.0\\n"; fi',
    )
    return toolkit


def test_builds_with_cuda_for_the_gpus_present_when_nvcc_is_there(tmp_path: Path) -> None:
    fake_toolkit(tmp_path, cublas=True)
    result = run_script(tmp_path, 'echo "version: 9 (fake)"')
    assert result.returncode == 0, result.stderr + result.stdout
    calls = (tmp_path / "calls.txt").read_text()
    assert "-DGGML_CUDA=ON" in calls
    assert f"-DCMAKE_CUDA_COMPILER={tmp_path / 'fakes' / 'nvcc'}" in calls
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in calls.split()
    assert "-DCUDA_cublas_LIBRARY" not in calls  # the toolkit's own cuBLAS
    link = tmp_path / "cache" / "bin" / "llama-server"
    assert link.resolve().name == "llama-server-0.3.36-cuda"


def test_a_toolkit_without_cublas_uses_the_pip_wheels_one(tmp_path: Path) -> None:
    fake_toolkit(tmp_path, cublas=False)
    wheel = tmp_path / "site" / "nvidia" / "cu13"
    (wheel / "lib").mkdir(parents=True)
    (wheel / "include").mkdir()
    for name in ("libcublas.so.13", "libcublasLt.so.13"):
        (wheel / "lib" / name).write_text("")
    missing = run_script(tmp_path, 'echo "version: 9"', PYTHON="/bin/false")
    assert missing.returncode != 0
    assert "has no cuBLAS" in missing.stderr

    result = run_script(tmp_path, 'echo "version: 9"', CUBLAS_DIR=str(wheel))
    assert result.returncode == 0, result.stderr + result.stdout
    calls = (tmp_path / "calls.txt").read_text().split()
    assert f"-DCUDA_cublas_LIBRARY={wheel}/lib/libcublas.so.13" in calls
    assert f"-DCUDA_cublasLt_LIBRARY={wheel}/lib/libcublasLt.so.13" in calls
    assert f"-DCMAKE_BUILD_RPATH={wheel}/lib" in calls


def test_auto_builds_for_the_cpu_where_no_nvidia_driver_answers(tmp_path: Path) -> None:
    fake_toolkit(tmp_path, cublas=True)
    (tmp_path / "fakes" / "nvidia-smi").write_text("#!/usr/bin/env bash\nexit 9\n")
    result = run_script(tmp_path, 'echo "version: 9"')
    assert result.returncode == 0, result.stderr
    assert "-DGGML_CUDA=ON" not in (tmp_path / "calls.txt").read_text()
    assert (tmp_path / "cache" / "bin" / "llama-server").resolve().name == "llama-server-0.3.36"


def test_cpu_is_forced_even_with_nvcc_and_cuda_without_nvcc_fails(tmp_path: Path) -> None:
    fake_toolkit(tmp_path, cublas=True)
    cpu = run_script(tmp_path, 'echo "version: 9"', MODEL_BOSS_LLAMA_GPU="cpu")
    assert cpu.returncode == 0, cpu.stderr
    assert "-DGGML_CUDA=ON" not in (tmp_path / "calls.txt").read_text()
    assert (tmp_path / "cache" / "bin" / "llama-server").resolve().name == "llama-server-0.3.36"

    (tmp_path / "fakes" / "nvcc").unlink()
    no_nvcc_path = ":".join(
        d for d in os.environ["PATH"].split(":") if not (Path(d) / "nvcc").exists()
    )
    cuda = run_script(
        tmp_path,
        'echo "version: 9"',
        MODEL_BOSS_LLAMA_GPU="cuda",
        PATH=f"{tmp_path / 'fakes'}:{no_nvcc_path}",
    )
    if Path("/usr/local/cuda/bin/nvcc").exists():  # the script looks there too
        assert "-DGGML_CUDA=ON" in (tmp_path / "calls.txt").read_text() or cuda.returncode != 0
    else:
        assert cuda.returncode != 0
        assert "no nvcc found" in cuda.stderr


def test_builds_from_a_local_source_tarball_without_the_package_index(tmp_path: Path) -> None:
    tree = tmp_path / "src" / "llama.cpp"
    (tree / "include").mkdir(parents=True)
    (tree / "include" / "llama.h").write_text("")
    (tree / "ggml").mkdir()
    (tree / "ggml" / "CMakeLists.txt").write_text("")
    tarball = tmp_path / "llama-src.tar.xz"
    subprocess.run(
        ["tar", "-cJf", str(tarball), "-C", str(tmp_path / "src"), "llama.cpp"], check=True
    )
    result = run_script(tmp_path, 'echo "version: 9"', LLAMA_CPP_SRC=str(tarball))
    assert result.returncode == 0, result.stderr + result.stdout
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    # No pip download (the fake python records its -d folder); cmake was given the tree.
    assert len(calls) == 1
    assert calls[0].split()[1].endswith("/llama.cpp")
