#!/usr/bin/env bash
# GPU clients, checked in one short script (at most ~8 minutes on one GPU):
#   1. the CUDA-only tests (device agreement of defenses, attacks, guards),
#   2. a 3-round federation with 10 clients sharing one GPU (resources.client_gpus: 0.1),
#   3. robust aggregation (median, trimmed mean, Krum) on CUDA vs CPU, n = 100, d = 1e6,
#   4. training throughput (samples/s) of the CNN on Fashion-MNIST, GPU vs CPU,
#   5. batched clients: 10 clients' local SGD one at a time vs vectorised with torch.func, on the GPU.
# scripts/gpu_check.sh            on a machine with a CUDA GPU
# scripts/gpu_check.sh --dry-run  anywhere: the same steps on the CPU with small sizes (checks the script)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh

DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
if [[ $DRY_RUN == 0 ]] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: no CUDA GPU visible to torch (use --dry-run to check the script on the CPU)" >&2
    exit 2
fi
DEVICE=cuda; GPUS=0.1; ROUNDS=3; D=1000000; BATCHES=200; STEPS=38
if [[ $DRY_RUN == 1 ]]; then DEVICE=cpu; GPUS=0; ROUNDS=1; D=20000; BATCHES=5; STEPS=2; fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

echo "== machine"
python - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs: {torch.cuda.device_count()}",
      *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
EOF

echo "== CUDA-only tests"
if [[ $DRY_RUN == 1 ]]; then
    python -m pytest -q --co tests/defenses/test_device.py tests/attacks/test_attack_devices.py tests/guards/test_strip.py | tail -1
else
    python -m pytest -q tests/defenses/test_device.py tests/attacks/test_attack_devices.py tests/guards/test_strip.py
fi

echo "== federation: 10 clients on one device (client_gpus $GPUS)"
start=$(date +%s.%N)
fedsec run scenarios/quickstart.yaml --quiet --set rounds=$ROUNDS --set resources.device=$DEVICE \
    --set resources.client_gpus=$GPUS --set output.dir="$OUT" --set output.plots=false
python - "$OUT" "$start" <<'EOF'
import json, sys, time
from pathlib import Path
summary = json.loads(next(Path(sys.argv[1]).glob("*/summary.json")).read_text())
print(f"MA {summary['ma']:.2%} after {summary['rounds']} rounds, {summary['train_s']:.1f} s of training rounds, "
      f"{time.time() - float(sys.argv[2]):.1f} s for the whole command; failed clients: {summary['failed']}")
EOF

echo "== robust aggregation, n = 100, d = $D: $DEVICE vs cpu (median of 5)"
python - "$DEVICE" "$D" <<'EOF'
import statistics, sys, time
import torch
from fedsec.defenses import UpdateBatch, build_pipeline

device, d = sys.argv[1], int(sys.argv[2])
updates = torch.randn(100, d, generator=torch.Generator().manual_seed(0))
for spec in ({"name": "median"}, {"name": "trimmed-mean", "beta": 0.1}, {"name": "krum", "f": 10}):
    pipeline = build_pipeline([spec])
    seconds = {}
    for where in dict.fromkeys((device, "cpu")):
        batch = UpdateBatch.of(updates.to(where))
        times = []
        for _ in range(5):
            if where == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            pipeline(batch)
            if where == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        seconds[where] = statistics.median(times)
    print(f"{spec['name']:>13}: " + ", ".join(f"{w} {s:.3f} s" for w, s in seconds.items())
          + (f", cpu/{device} {seconds['cpu'] / seconds[device]:.1f}x" if device != "cpu" else ""))
EOF

echo "== training throughput of the CNN on Fashion-MNIST (batch 32, $BATCHES batches)"
python - "$DEVICE" "$BATCHES" <<'EOF'
import sys, time
import torch
from fedsec.data.datasets import load_dataset
from fedsec.models import build_model

device, batches = sys.argv[1], int(sys.argv[2])
data = load_dataset("fashion-mnist")
x, y = data.train_x[: 32 * batches], data.train_y[: 32 * batches]
rates = {}
for where in dict.fromkeys((device, "cpu")):
    torch.manual_seed(0)
    model = build_model("cnn", data.image_shape, data.num_classes, data.mean, data.std).to(where)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xs, ys = x.to(where), y.to(where)
    for timed in (False, True):  # a warm-up pass, then the timed one
        if where == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, len(xs), 32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[i:i + 32]), ys[i:i + 32]).backward()
            optimizer.step()
        if where == "cuda":
            torch.cuda.synchronize()
        if timed:
            rates[where] = len(xs) / (time.perf_counter() - t)
print(", ".join(f"{w} {r:,.0f} samples/s" for w, r in rates.items())
      + (f", {device}/cpu {rates[device] / rates['cpu']:.1f}x" if device != "cpu" else ""))
EOF

echo "== batched clients on $DEVICE: 10 clients x $STEPS steps, one at a time vs vectorised (median of 3)"
python scripts/bench_batched_clients.py --device "$DEVICE" --steps "$STEPS" --repeats 3 | tail -1
echo "gpu_check: done"
