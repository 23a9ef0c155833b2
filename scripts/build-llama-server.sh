#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from the llama.cpp tree vendored in the
# llama-cpp-python source distribution (PyPI), once, into the model-boss cache.
#
# GGML_NATIVE=OFF: a native build dies with "Illegal instruction" on VMs whose CPU
# reports instructions (AMX) the hypervisor does not allow.
# Re-running is free: the binary is cached by version under $MODEL_BOSS_CACHE.
# The binary is static (BUILD_SHARED_LIBS=OFF): no library path to set up.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${MODEL_BOSS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/model-boss}"
DEST="$CACHE/bin/llama-server-$VERSION"
LINK="$CACHE/bin/llama-server"
PYTHON="${PYTHON:-python3}"

if [[ -x "$DEST" ]]; then
  ln -sfn "$DEST" "$LINK"
  echo "llama-server $VERSION: cached at $DEST"
  exit 0
fi

for tool in cmake c++ make; do
  command -v "$tool" >/dev/null || { echo "llama-server: '$tool' is needed to build it" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "llama-server $VERSION: building from the llama-cpp-python sdist (takes minutes, once)"
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
  -d "$WORK" "llama-cpp-python==$VERSION"
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  >"$WORK/cmake.log" 2>&1 || { tail -50 "$WORK/cmake.log"; exit 1; }
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >"$WORK/build.log" 2>&1 \
  || { tail -50 "$WORK/build.log"; exit 1; }
# A binary that cannot run here (e.g. "Illegal instruction") must not be cached.
"$WORK/build/bin/llama-server" --version >"$WORK/version.txt" 2>&1 \
  || { cat "$WORK/version.txt"; echo "llama-server: the built binary does not run" >&2; exit 1; }
mkdir -p "$CACHE/bin"
# Install under a temporary name, then rename: a concurrent reader never sees half a file.
install -m 0755 "$WORK/build/bin/llama-server" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"
ln -sfn "$DEST" "$LINK"
head -2 "$WORK/version.txt"
echo "llama-server $VERSION: built at $DEST"
