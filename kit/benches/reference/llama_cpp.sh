#!/usr/bin/env bash
# The decoding reference for `cargo bench -p kit --bench generate`: native llama.cpp, built from the sources that
# PyPI's llama-cpp-python sdist vendors (the HF hub and GitHub may be out of reach; PyPI is not), run on the same
# GGUF files kit decodes. It builds $KIT_HOME/reference/build/bin/llama-bench, which the bench runs right after kit on
# each model to print kit's figure, the reference and their ratio side by side, and prints llama.cpp's figures once.
# Not part of CI: it builds llama.cpp (~10 minutes on 2 cores). Run it, then the bench, on an otherwise idle machine:
#   kit/benches/reference/llama_cpp.sh && cargo bench -p kit --bench generate
set -euo pipefail
KIT_HOME="${KIT_HOME:-$HOME/.cache/kit}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
THREADS="${THREADS:-$(nproc)}"
work="$KIT_HOME/reference"
mkdir -p "$work"
cd "$work"

# cmake from PyPI, in a venv of its own.
[ -x venv/bin/cmake ] || { python3 -m venv venv && venv/bin/pip install -q cmake; }

# The sdist, by the URL PyPI's simple index gives (pip download would try to build it; the JSON API may be out of
# reach where the index is not), checked against the index's sha256.
sdist="llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
    link=$(curl -fsSL https://pypi.org/simple/llama-cpp-python/ | grep -o "href=\"[^\"]*/$sdist#sha256=[0-9a-f]*\"" | head -1)
    [ -n "$link" ] || { echo "no $sdist on PyPI's simple index" >&2; exit 1; }
    link="${link#href=\"}"; link="${link%\"}"
    url="${link%%#*}"; sha="${link##*sha256=}"
    case "$url" in http*) ;; *) url="https://pypi.org${url}" ;; esac
    curl -fsSL -o "$sdist.part" "$url"
    echo "$sha  $sdist.part" | sha256sum -c --quiet - || { echo "$sdist: sha256 mismatch" >&2; exit 1; }
    mv "$sdist.part" "$sdist"
fi
src="llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -d "$src" ] || tar xzf "$sdist"

# llama-bench, CPU only, tuned for this machine (-march=native: GGML_NATIVE).
if [ ! -x build/bin/llama-bench ]; then
    venv/bin/cmake -S "$src" -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON \
        >"$work/build.log" 2>&1
    venv/bin/cmake --build build --target llama-bench -j "$THREADS" >>"$work/build.log" 2>&1 ||
        { tail -20 "$work/build.log" >&2; exit 1; }
fi

# The models kit fetches (`kit fetch smollm2-135m gemma3-270m`); 64 new tokens, no prompt, 5 runs.
for pair in "smollm2-135m:SmolLM2-135M-Instruct.Q4_1.gguf" "gemma3-270m:gemma-3-270m-q4_k_m.gguf"; do
    name=${pair%%:*} file="$KIT_HOME/models/${pair#*:}"
    [ -f "$file" ] || { echo "missing $file: run \`kit fetch $name\` first" >&2; exit 1; }
    build/bin/llama-bench -m "$file" -p 0 -n 64 -r 5 -t "$THREADS"
done
