#!/usr/bin/env bash
# Run the test suite under several BLAS kernels, to catch a test that depends on the CPU before
# CI does (numpy's matrix products, hence the generator's last bits, differ between kernels).
# Usage: scripts/test_blas_kernels.sh [PYTEST ARGS...]   (make test-kernels; default: the whole suite)
# Kernels: the machine's own, Prescott (runs on every x86-64) and Haswell; on ARM only the default
# runs. KERNELS="default Prescott" narrows it. Each run prints its own summary and time.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KERNELS=${KERNELS:-"default Prescott Haswell"}
[ "$(uname -m)" = x86_64 ] || KERNELS=default
failed=()
for kernel in $KERNELS; do
  start=$(date +%s)
  if [ "$kernel" = default ]; then
    env -u OPENBLAS_CORETYPE "$PY" -m pytest -q -p no:cacheprovider "$@"
  else
    OPENBLAS_CORETYPE=$kernel "$PY" -m pytest -q -p no:cacheprovider "$@"
  fi
  rc=$?
  echo "== BLAS kernel $kernel: exit $rc, $(( $(date +%s) - start )) s"
  [ $rc = 0 ] || failed+=("$kernel")
done
[ ${#failed[@]} = 0 ] || { echo "failed under: ${failed[*]}" >&2; exit 1; }
