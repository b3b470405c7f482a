#!/usr/bin/env bash
# Benchmark-only environment for the Geneformer peer: helical's TranscriptomeTokenizer
# (helical/models/geneformer/geneformer_tokenizer.py). Never a dependency of gc_lib.
#
# helical 3.x declares Python >=3.12 and ~130 dependencies (torch, transformers, ...), none
# of which the tokenizer needs, so helical goes in with --no-deps --ignore-requires-python and
# we add only what the tokenizer module imports (numpy, scipy, pandas, anndata, scanpy,
# datasets, tqdm) plus h5py, pyarrow and psutil for the benchmark. Versions of numpy, scipy,
# pandas and datasets follow helical 3.1.4's own pins. pip will warn that helical's other
# requirements (torch, transformers, ...) are missing: expected. Load the tokenizer file
# directly (importlib.util.spec_from_file_location), since helical.models imports transformers.
#
# Usage: bash benchmarks/geneformer_env.sh [VENV_DIR]   (default: benchmarks/.venv-geneformer)
#        PYTHON=python3.11 overrides the interpreter.
set -euo pipefail

VENV="${1:-$(dirname "$0")/.venv-geneformer}"
"${PYTHON:-python3.11}" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --disable-pip-version-check -q)

"${PIP[@]}" --no-deps --ignore-requires-python helical==3.1.4

# Direct needs first, then their exact transitive closure (pip freeze of a working env).
"${PIP[@]}" \
  numpy==2.2.6 scipy==1.13.1 pandas==2.2.2 anndata==0.12.19 scanpy==1.11.5 datasets==3.6.0 \
  h5py==3.16.0 pyarrow==26.0.1 psutil==7.2.2 tqdm==4.70.1 \
  aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 anyio==4.16.0 array-api-compat==1.16.0 \
  attrs==26.1.0 certifi==2026.10.18 charset-normalizer==3.5.2 click==8.5.1 cloudpickle==3.1.2 \
  contourpy==1.3.3 cycler==0.12.1 dill==0.3.8 donfig==0.8.1.post1 filelock==4.2.11 \
  fonttools==4.68.0 formulaic==1.2.2 frozenlist==1.8.0 fsspec==2025.3.0 google-crc32c==1.9.0 \
  h11==0.16.0 hf-xet==1.8.0 httpcore2==2.16.2 httpx2==2.16.2 huggingface_hub==2.4.0 idna==3.20 \
  interface_meta==2.0.1 joblib==1.6.0 kiwisolver==1.5.1 legacy-api-wrap==1.5 llvmlite==0.50.0 \
  matplotlib==3.11.2 multidict==7.2.1 multiprocess==0.70.16 narwhals==2.29.0 natsort==8.4.0 \
  networkx==3.6.1 numba==0.68.1 numcodecs==0.16.6 packaging==26.3 patsy==1.0.3 pillow==13.0.0 \
  propcache==0.5.4 pynndescent==0.7.0 pyparsing==3.3.3 python-dateutil==4.0.0 pytz==2026.6 \
  PyYAML==6.0.3 requests==2.34.2 scikit-learn==1.9.1 scverse-misc==0.0.3 seaborn==0.13.2 \
  session-info2==0.4.1 statsmodels==0.15.0 threadpoolctl==3.8.0 truststore==0.10.5 \
  typing_extensions==4.16.0 tzdata==2026.6 umap-learn==0.5.12 urllib3==2.8.0 wrapt==2.5.2 \
  xxhash==4.1.0 yarl==1.25.1 zarr==3.1.6

# Smoke check: the tokenizer module loads without helical's heavy package __init__.
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, importlib.util
p = md.distribution("helical").locate_file("helical/models/geneformer/geneformer_tokenizer.py")
spec = importlib.util.spec_from_file_location("gf_tokenizer", p)
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
print("ok:", m.TranscriptomeTokenizer.__module__, "helical", md.version("helical"))
EOF
