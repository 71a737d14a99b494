#!/usr/bin/env bash
# Downloads the wheels that l2o's JAX backend needs on the GPU machine, into the folder DIR.
#
#   bash benchmarks/systems/gpu_wheels.sh DIR [PYTHON_VERSION]       (here: needs the network)
#
# The GPU machine has no network and no TensorFlow; its Python (3.12, the default
# PYTHON_VERSION) already holds JAX with CUDA and, of what l2o imports on the JAX path,
# numpy, scipy, absl-py, h5py, ml-dtypes, rich, packaging, pyyaml, tqdm, scikit-learn,
# matplotlib, tensorboard, six, cloudpickle, wrapt, attrs and typing-extensions. Missing
# there, and fetched here:
#   keras (the range pyproject.toml pins), namex          pure Python
#   tfp-nightly (TFP_NIGHTLY=tfp-nightly==VERSION pins it;
#     TFP 0.25's JAX substrate fails on jax 0.11), decorator  pure Python
#   optree (Keras's tree; no pure-Python fallback),
#   dm-tree (TFP's JAX substrate imports it)              compiled: wheels for CPython
#                                                         PYTHON_VERSION on manylinux x86-64
# Each with --no-deps: their own needs are on the machine already.
#
# Use (the folder must travel with the working tree, so git must ignore it):
#   echo /.whl/ >> .git/info/exclude && bash benchmarks/systems/gpu_wheels.sh .whl
# then, on the GPU machine (the device tool's `carry: [".whl"]`), before running anything:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site
#   KERAS_BACKEND=jax python3 -m benchmarks.systems.gpu
set -euo pipefail

dir=${1:?usage: bash benchmarks/systems/gpu_wheels.sh DIR [PYTHON_VERSION]}
python_version=${2:-3.12}
root=$(cd "$(dirname "$0")/../.." && pwd)
keras=$(grep -o '"keras[^"]*"' "$root/pyproject.toml" | tr -d '"')
pure=("$keras" namex "${TFP_NIGHTLY:-tfp-nightly}" decorator)
compiled=(optree dm-tree)

project() { echo "${1%%[<>=!]*}" | tr - _; }

mkdir -p "$dir"
for name in "${pure[@]}" "${compiled[@]}"; do  # pip install refuses two versions of one
    rm -f "$dir/$(project "$name")"-*.whl
done
python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir" "${pure[@]}"
python3 -m pip download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version "$python_version" --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir" "${compiled[@]}"
for name in "${pure[@]}"; do
    if ! ls "$dir/$(project "$name")"-*-none-any.whl >/dev/null 2>&1; then
        echo "error: $name came as no pure-Python wheel in $dir" >&2
        exit 1
    fi
done
ls "$dir"
