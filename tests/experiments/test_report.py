"""HTML reports of a run and of a sweep: self-contained, every section's plots embedded and
decodable; checked in a headless Chromium when one is installed."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.experiments import figures
from fedsec.experiments.report import heatmap_axes, write_report
from fedsec.results import RunDirectory

IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)">')


def make_run(path: Path, rounds: int = 4, ma_offset: float = 0.0) -> Path:
    path.mkdir(parents=True)
    run = RunDirectory(path)
    for r in range(1, rounds + 1):
        run.append_round({
            "round": r, "ma": 0.5 + 0.1 * r + ma_offset, "asr": 0.9 - 0.2 * r, "wm_accuracy": 0.25 * r,
            "wm_bits": 3.0 * r, "tp": 1, "fp": r % 2, "fn": 0, "tn": 3, "precision": 1.0, "recall": 1.0,
            "fpr": (r % 2) / 4, "train_s": 1.0, "aggregate_s": 0.1, "eval_s": 0.2, "round_s": 1.3,
            "bytes_down": 4_000_000, "bytes_up": 4_000_000,
        })
    run.write_json("summary.json", {"name": path.name, "rounds": rounds, "ma": 0.5 + 0.1 * rounds + ma_offset,
                                    "asr": 0.1, "recall": 1.0, "fpr": 0.125, "wall_s": 5.0})
    run.write_json("partitions.json", {"sizes": [30, 20], "label_counts": [[10, 20], [15, 5]]})
    (path / "scenario.yaml").write_text(yaml.safe_dump({
        "name": "r", "seed": 0, "rounds": rounds, "data": {"dataset": "digits", "num_clients": 2,
                                                           "partitioner": {"name": "iid"}},
        "model": {"name": "mlp"}, "sampling": {"clients_per_round": 2},
        "attack": {"fraction": 0.5, "data": {"name": "badnets"}}, "defenses": [{"name": "krum", "f": 1}]}))
    return path


def make_sweep(path: Path) -> Path:
    rows = []
    for a in ("badnets", "dba"):
        for i, d in enumerate(("fedavg", "flame")):
            for seed in (0, 1):
                run = f"cells/{a}_{d}_s{seed}"
                make_run(path / run, ma_offset=-0.01 * (i + seed))
                rows.append({"attack": a, "defenses": d, "seed": seed, "status": "finished", "ma": 0.9 - 0.01 * i,
                             "asr": 0.8 if d == "fedavg" else 0.1, "recall": 0.5, "fpr": 0.1, "wm_verified": True,
                             "wall_s": 3.0, "run": run})
    grid = {"attack": {"badnets": {}, "dba": {}}, "defenses": {"fedavg": [], "flame": [{"name": "flame"}]}}
    (path / "sweep.yaml").write_text(yaml.safe_dump({"name": "demo", "base": "b.yaml", "set": {"rounds": 4},
                                                     "grid": grid, "seeds": [0, 1]}))
    header = list(rows[0])
    (path / "sweep.csv").write_text(
        ",".join(header) + "\n" + "".join(",".join(str(r[k]) for k in header) + "\n" for r in rows))
    return path


def embedded_images(text: str) -> dict[str, np.ndarray]:
    """alt text -> decoded image (fails if a PNG does not decode)."""
    from matplotlib import image as mpimg

    return {alt: mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png") for alt, data in IMAGE.findall(text)}


def assert_self_contained(text: str) -> None:
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', text) and "url(" not in text and "@import" not in text


def test_run_report_has_every_section_with_plots(tmp_path: Path) -> None:
    path = write_report(make_run(tmp_path / "run"))
    text = path.read_text()
    assert path == tmp_path / "run" / "report.html"
    assert_self_contained(text)
    for heading in ("Scenario", "Summary", "Accuracy and watermark", "Detection", "Partitions", "Costs"):
        assert f"<h2>{heading}</h2>" in text
    images = embedded_images(text)
    assert set(images) == {"accuracy per round", "watermark statistics per round", "detection rates per round",
                           "label histogram per client", "seconds per phase", "megabytes per round"}
    assert all(img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0 for img in images.values())
    assert "badnets (fraction 0.5)" in text and "krum" in text
    assert "<td class=\"text\">traffic up (MB)</td><td>16.00</td>" in text  # 4 rounds x 4 MB


def test_sweep_report_has_table_heatmaps_and_curves(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    (sweep / "game.json").write_text(json.dumps({
        "ma_min": 0.8, "attacker_labels": ["badnets", "dba"], "defender_labels": ["fedavg", "flame"],
        "payoff": [[0.8, 0.1], [0.8, 0.1]], "attacker_strategy": [1.0, 0.0], "defender_strategy": [0.0, 1.0],
        "value": 0.1}))
    result = CliRunner().invoke(app, ["report", str(sweep)])
    assert result.exit_code == 0, result.output
    text = (sweep / "report.html").read_text()
    assert_self_contained(text)
    images = embedded_images(text)
    assert {"heatmap of ma", "heatmap of asr", "heatmap of recall", "heatmap of fpr", "MA per round",
            "ASR per round", "payoff matrix"} <= set(images)
    assert "<td>80.0 ± 0.0</td>" in text and "<td>2/2</td>" in text  # ASR against fedavg; watermark verified
    assert "<h2>Results (mean ± 95% CI over seeds)</h2>" in text and "Student&#x27;s t" in text
    assert "Game value (attacker's expected utility): 10.00 %" in text


def test_run_report_of_a_rule_that_never_rejects_says_n_a(tmp_path: Path) -> None:
    path = tmp_path / "run"
    make_run(path)
    run = RunDirectory(path)
    records = [{**r, **dict.fromkeys(("tp", "fp", "fn", "tn", "precision", "recall", "fpr", "f1")),
                "malicious_share": 0.1 * r["round"]} for r in run.rounds()]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run.write_json("summary.json", {"name": "run", "rounds": 4, "recall": None, "malicious_share": 0.25})
    text = write_report(path).read_text()
    assert "Detection rates: n/a" in text and "<td>n/a</td>" in text and "<td>25.00 %</td>" in text
    assert "malicious share per round" in embedded_images(text)
    assert "detection rates per round" not in embedded_images(text)


def test_curves_shade_the_interval_band() -> None:
    from matplotlib import image as mpimg

    series = {"a": [(1, 0.2), (2, 0.5), (3, 0.6)]}
    plain = mpimg.imread(io.BytesIO(figures.curves(series, "t")), format="png")
    banded = mpimg.imread(io.BytesIO(figures.curves(series, "t", bands={"a": [0.1, 0.1, 0.2]})), format="png")
    assert plain.shape == banded.shape and not np.array_equal(plain, banded)


def test_report_of_something_else_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "neither a sweep directory" in result.output


def test_heatmap_axes_prefer_attack_and_defense() -> None:
    assert heatmap_axes(["seed_x", "defenses", "attack.data.name"]) == ("attack.data.name", "defenses")
    assert heatmap_axes(["client.lr", "rounds", "x"]) == ("client.lr", "rounds")
    assert heatmap_axes(["client.lr"]) == ("client.lr", None)


def find_browser() -> str | None:
    """A Chromium-family binary on PATH, or the one Playwright installed, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if path := shutil.which(name):
            return path
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        path = p.chromium.executable_path
    return path if Path(path).exists() else None


# Appended to a copy of the report: once the page has loaded, the title says how many images
# decoded and whether any script error happened.
PROBE = """<script>
window.__errors = 0;
window.addEventListener('error', () => { window.__errors += 1; }, true);
window.addEventListener('load', () => {
  const images = [...document.images];
  const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = `probe images=${images.length} decoded=${decoded} errors=${window.__errors}`;
});
</script>"""


@pytest.mark.parametrize("kind", ["run", "sweep"])
def test_report_renders_in_headless_chromium(tmp_path: Path, kind: str) -> None:
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium/Chrome binary found (chromium, chromium-browser, google-chrome, or Playwright's)")
    target = make_run(tmp_path / "run") if kind == "run" else make_sweep(tmp_path / "sweep")
    text = write_report(target).read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--allow-file-access-from-files",
             "--virtual-time-budget=5000", "--window-size=1200,2400"]
    dom = subprocess.run([*flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    count = len(IMAGE.findall(text))
    assert f"probe images={count} decoded={count} errors=0" in dom.stdout, dom.stderr[-2000:]

    screenshot = tmp_path / "page.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", probed.as_uri()], capture_output=True, timeout=120)
    from matplotlib import image as mpimg

    pixels = mpimg.imread(screenshot)
    assert pixels.std() > 0.05  # not a blank page: text and plots were drawn
