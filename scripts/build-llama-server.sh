#!/usr/bin/env bash
# Build llama.cpp's `llama-server` once, into the model-boss cache.
#
# Source: the llama.cpp tree vendored in the llama-cpp-python source distribution (PyPI),
# or LLAMA_CPP_SRC: a local llama.cpp tree, or a tarball holding one (a machine with no
# package index).
#
# GPU: with MODEL_BOSS_LLAMA_GPU=auto (the default) the build uses CUDA when a CUDA
# toolkit is present (`nvcc` on PATH or in /usr/local/cuda/bin) and an NVIDIA driver
# answers (`nvidia-smi -L`), else it is CPU-only; `cuda` insists on CUDA (e.g. on a build
# host without a GPU), `cpu` never uses it. CUDA architectures: CMAKE_CUDA_ARCHITECTURES
# if set, else those of the GPUs nvidia-smi sees (e.g. 90), else llama.cpp's default list.
# A GPU slot refuses a CPU-only binary (its --list-devices shows no GPU): the memory it
# leased on the GPU would not be the memory the model uses.
#
# GGML_NATIVE=OFF: a native build dies with "Illegal instruction" on VMs whose CPU
# reports instructions (AMX) the hypervisor does not allow.
# Re-running is free: the binary is cached by version and flavour under $MODEL_BOSS_CACHE
# (llama-server-<version> for CPU, llama-server-<version>-cuda), and the link
# llama-server points at the one this machine should use.
# BUILD_SHARED_LIBS=OFF: llama.cpp's own libraries are linked in; a CUDA build still
# loads the toolkit's libcudart/libcublas (found through the build's RPATH).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${MODEL_BOSS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/model-boss}"
PYTHON="${PYTHON:-python3}"
GPU="${MODEL_BOSS_LLAMA_GPU:-auto}"

NVCC=""
if [[ "$GPU" != "cpu" ]]; then
  NVCC="$(command -v nvcc || true)"
  if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then
    NVCC=/usr/local/cuda/bin/nvcc
  fi
  # auto: a CUDA build only where it can run (an NVIDIA driver answers), since a CUDA
  # build takes far longer; MODEL_BOSS_LLAMA_GPU=cuda builds one on a machine without a GPU.
  if [[ "$GPU" == "auto" && -n "$NVCC" ]] && ! nvidia-smi -L >/dev/null 2>&1; then
    NVCC=""
  fi
fi
case "$GPU" in
  auto | cpu) ;;
  cuda) [[ -n "$NVCC" ]] || { echo "llama-server: MODEL_BOSS_LLAMA_GPU=cuda but no nvcc found" >&2; exit 1; } ;;
  *) echo "llama-server: MODEL_BOSS_LLAMA_GPU must be auto, cuda or cpu (got '$GPU')" >&2; exit 1 ;;
esac
FLAVOUR=""
[[ -n "$NVCC" ]] && FLAVOUR="-cuda"

DEST="$CACHE/bin/llama-server-$VERSION$FLAVOUR"
LINK="$CACHE/bin/llama-server"

if [[ -x "$DEST" ]]; then
  ln -sfn "$DEST" "$LINK"
  echo "llama-server $VERSION${FLAVOUR:+ (CUDA)}: cached at $DEST"
  exit 0
fi

for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "llama-server: '$tool' is needed to build it" >&2; exit 1; }
done
GENERATOR=()
if command -v ninja >/dev/null; then
  GENERATOR=(-G Ninja)
elif ! command -v make >/dev/null; then
  echo "llama-server: 'make' (or 'ninja') is needed to build it" >&2
  exit 1
fi

ARGS=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON)
if [[ -n "$NVCC" ]]; then
  ARCHS="${CMAKE_CUDA_ARCHITECTURES:-}"
  if [[ -z "$ARCHS" ]] && command -v nvidia-smi >/dev/null; then
    ARCHS="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null \
      | tr -d ' .' | grep -E '^[0-9]+$' | sort -u | paste -sd ';' || true)"
  fi
  ARGS+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_COMPILER=$NVCC")
  # Toolkits assembled from NVIDIA's pip wheels may lack cuBLAS: then use the cuBLAS of
  # a pip-installed nvidia-cublas (CUBLAS_DIR, or found through PYTHON / python3).
  TOOLKIT="$(dirname "$(dirname "$(readlink -f "$NVCC")")")"
  if ! ls "$TOOLKIT"/lib*/libcublas.so* >/dev/null 2>&1 && ! ls "$TOOLKIT"/targets/*/lib/libcublas.so* >/dev/null 2>&1; then
    CUBLAS_DIR="${CUBLAS_DIR:-}"
    if [[ -z "$CUBLAS_DIR" ]]; then
      for py in "$PYTHON" python3; do
        CUBLAS_DIR="$("$py" - 2>/dev/null <<'PY' || true
import glob, os, sys
for base in sys.path:
    for lib in sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib", "libcublas.so*"))):
        print(os.path.dirname(os.path.dirname(lib)))
        raise SystemExit
PY
)"
        [[ -n "$CUBLAS_DIR" ]] && break
      done
    fi
    [[ -n "$CUBLAS_DIR" ]] || { echo "llama-server: $TOOLKIT has no cuBLAS and no pip nvidia-cublas was found (set CUBLAS_DIR)" >&2; exit 1; }
    CUBLAS="$(ls "$CUBLAS_DIR"/lib/libcublas.so* | head -1)"
    CUBLASLT="$(ls "$CUBLAS_DIR"/lib/libcublasLt.so* | head -1)"
    ARGS+=("-DCUDA_cublas_LIBRARY=$CUBLAS" "-DCUDA_cublasLt_LIBRARY=$CUBLASLT"
      "-DCMAKE_CXX_FLAGS=-I$CUBLAS_DIR/include" "-DCMAKE_CUDA_FLAGS=-I$CUBLAS_DIR/include"
      "-DCMAKE_BUILD_RPATH=$CUBLAS_DIR/lib")
    echo "llama-server: cuBLAS from $CUBLAS_DIR"
  fi
  # llama.cpp links the driver library for its VMM memory pool: the toolkit's stub, else
  # the driver's own libcuda; without either, build without VMM (plain cudaMalloc pool).
  if ! ls "$TOOLKIT"/lib*/stubs/libcuda.so "$TOOLKIT"/lib*/libcuda.so "$TOOLKIT"/targets/*/lib/stubs/libcuda.so >/dev/null 2>&1; then
    DRIVER="$( (ldconfig -p 2>/dev/null || true) | awk '/libcuda\.so(\.1)? / {print $NF; exit}')"
    if [[ -n "$DRIVER" ]]; then
      ARGS+=("-DCUDA_cuda_driver_LIBRARY=$DRIVER")
    else
      ARGS+=(-DGGML_CUDA_NO_VMM=ON)
    fi
  fi
  [[ -n "$ARCHS" ]] && ARGS+=("-DCMAKE_CUDA_ARCHITECTURES=$ARCHS")
  echo "llama-server: CUDA build with $NVCC${ARCHS:+, architectures $ARCHS}"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [[ -n "${LLAMA_CPP_SRC:-}" ]]; then
  if [[ -d "$LLAMA_CPP_SRC" ]]; then
    SRC="$LLAMA_CPP_SRC"
  else
    tar -xf "$LLAMA_CPP_SRC" -C "$WORK"
    HEADER="$(find "$WORK" -maxdepth 4 -path '*/include/llama.h' | head -1)"
    [[ -n "$HEADER" ]] || { echo "llama-server: no llama.cpp tree in $LLAMA_CPP_SRC" >&2; exit 1; }
    SRC="$(dirname "$(dirname "$HEADER")")"
  fi
  echo "llama-server $VERSION${FLAVOUR:+ (CUDA)}: building from $LLAMA_CPP_SRC (takes minutes, once)"
else
  echo "llama-server $VERSION${FLAVOUR:+ (CUDA)}: building from the llama-cpp-python sdist (takes minutes, once)"
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: \
    -d "$WORK" "llama-cpp-python==$VERSION"
  tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
  SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
fi

cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" "${ARGS[@]}" >"$WORK/cmake.log" 2>&1 \
  || { tail -50 "$WORK/cmake.log"; exit 1; }
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
echo "llama-server $VERSION${FLAVOUR:+ (CUDA)}: built at $DEST"
