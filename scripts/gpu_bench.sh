#!/bin/sh
# The inference server's benchmark (bench/gpu_server.py) on a GPU machine, in one command from any
# directory:
#
#     sh scripts/gpu_bench.sh [--quick] [--frontends 0,1,2,8] [--clients 8]
#
# Makes .venv-gpu once (AIMASS_GPU_BENCH_VENV names another) with the container's own packages
# (gpu_endpoints/requirements.txt: onnxruntime-gpu, uvicorn[standard], orjson, ...) and what the
# benchmark needs beside them (httpx, rich; onnx and scikit-learn build the demo networks), then
# runs it: the tables on the terminal, the figures in bench/results/gpu-server.json. The provider
# that ran, the GPU's name and the floor are in both. Needs the network for the first run only.
set -e
cd "$(dirname "$0")/.."
VENV=${AIMASS_GPU_BENCH_VENV:-.venv-gpu}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r gpu_endpoints/requirements.txt \
        'httpx>=0.27,<1' 'rich>=13' 'onnx>=1.17,<1.24' 'scikit-learn>=1.5,<1.10'
fi
PYTHONPATH="$PWD/layers/core:$PWD" exec "$VENV/bin/python" -m bench.gpu_server "$@"
