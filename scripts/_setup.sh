# Sourced by run.sh and test.sh: create .venv, install fedsec and its dependencies, make
# Fashion-MNIST available offline. Idempotent: a second call checks a stamp and returns.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/_env.sh

python_bin=${FEDSEC_PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.fedsec-setup-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$python_bin" --version 2>&1)"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> setting up .venv (first time: several minutes; torch alone is ~5 GB)" >&2
  free_kib=$(df -Pk . | awk 'NR == 2 {print $4}')
  if [ ! -x .venv/bin/python ] && [ "$free_kib" -lt $((9 * 1024 * 1024)) ]; then
    echo "==> .venv needs about 7 GB and this disk has $((free_kib / 1024 / 1024)) GB free: free some space first" >&2
    exit 1
  fi
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi

fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$fmnist" ] && [ ! -f "${FEDSEC_DATA:-$HOME/.cache/fedsec/data}/FashionMNIST/raw/train-images-idx3-ubyte" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "==> installing Debian package dataset-fashion-mnist" >&2
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
  else
    echo "==> downloading Fashion-MNIST through torchvision" >&2
    .venv/bin/python -c "from fedsec.data.datasets import load_dataset; load_dataset('fashion-mnist')"
  fi
fi
# The report's browser test drives a headless Chromium; only the test script needs it.
if [ "$(basename "$0")" = test.sh ] && ! { command -v chromium && command -v chromedriver; } >/dev/null \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "==> installing Debian packages chromium chromium-driver" >&2
  apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || echo "==> chromium not installed: the report's browser test will be skipped" >&2
fi
# Byte-compile fedsec (only what changed): where PYTHONDONTWRITEBYTECODE is set, every process
# that imports it (each Ray worker, each ClientApp, each command) would compile it again.
.venv/bin/python -m compileall -q fedsec
export PATH="$PWD/.venv/bin:$PATH"
