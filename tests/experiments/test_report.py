"""HTML reports of a run, of several runs and of a sweep: self-contained pages whose embedded
chart specs hold the numbers of the run files, sections only where there is data, humanised
units."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fedsec.cli import app
from fedsec.experiments.report import heatmap_axes, write_report
from fedsec.experiments.table import ci_rows, mean_ci95, read_sweep
from fedsec.provenance import ENVIRONMENT_FILE
from fedsec.results import RunDirectory, append_jsonl

SPEC = re.compile(r'<script type="application/json" class="chart-spec" data-chart="[^"]+" data-name="([^"]*)">'
                  r"(.*?)</script>", re.S)
SEEDS = (0, 1, 2)


def make_run(path: Path, rounds: int = 4, ma_offset: float = 0.0, attacked: bool = True) -> Path:
    """A finished run directory of ``rounds`` rounds, 4 clients (client 3 malicious when ``attacked``)."""
    path.mkdir(parents=True)
    run = RunDirectory(path)
    for r in range(1, rounds + 1):
        record = {"round": r, "ma": 0.5 + 0.1 * r + ma_offset, "wm_accuracy": 0.25 * r, "wm_bits": 3.0 * r,
                  "train_s": 1.0, "aggregate_s": 0.1, "eval_s": 0.2, "round_s": 1.3,
                  "bytes_down": 4_000_000, "bytes_up": 4_000_000}
        if attacked:
            record |= {"asr": 0.9 - 0.2 * r, "tp": 1, "fp": r % 2, "fn": 0, "tn": 2, "precision": 1.0, "recall": 1.0,
                       "fpr": (r % 2) / 3, "malicious_share": 0.1}
        else:
            record |= {"tp": 0, "fp": 0, "fn": 0, "tn": 4, "precision": None, "recall": None, "fpr": 0.0}
        run.append_round(record)
        run.append_clients([{"round": r, "client": c, "role": "malicious" if attacked and c == 3 else "benign",
                             "accepted": c != 3, "train_loss": 0.5 + c, "scores": {"krum": 10.0 * (c + 1)}}
                            for c in range(4)])
    summary = {"name": path.name, "rounds": rounds, "ma": 0.5 + 0.1 * rounds + ma_offset, "fpr": 0.0,
               "bytes_down": 16_000_000, "wall_s": 5.0}
    if attacked:
        summary |= {"asr": 0.1, "recall": 1.0, "fpr": 0.125}
    run.write_json("summary.json", summary)
    run.write_json("partitions.json", {"sizes": [30, 20, 10, 10],
                                       "label_counts": [[10, 20], [15, 5], [5, 5], [10, 0]]})
    attack = {"fraction": 0.25, "data": {"name": "badnets"}} if attacked else None
    (path / "scenario.yaml").write_text(yaml.safe_dump({
        "name": "r", "seed": 0, "rounds": rounds, "data": {"dataset": "digits", "num_clients": 4,
                                                           "partitioner": {"name": "iid"}},
        "model": {"name": "mlp"}, "sampling": {"clients_per_round": 4}, "attack": attack,
        "defenses": [{"name": "krum", "f": 1}]}))
    return path


def make_sweep(path: Path) -> Path:
    """A sweep directory: 2 attacks x 2 defenses x 3 seeds, with run directories."""
    rows = []
    for a in ("badnets", "dba"):
        for i, d in enumerate(("fedavg", "flame")):
            for seed in SEEDS:
                run = f"cells/{a}_{d}_s{seed}"
                make_run(path / run, ma_offset=-0.01 * i - 0.05 * seed)
                rows.append({"attack": a, "defenses": d, "seed": seed, "status": "finished",
                             "ma": 0.9 - 0.01 * i - 0.002 * seed, "asr": (0.8 if d == "fedavg" else 0.1) + 0.01 * seed,
                             "recall": 0.5, "fpr": 0.1, "wm_verified": True, "wall_s": 3.0, "run": run})
    grid = {"attack": {"badnets": {}, "dba": {}}, "defenses": {"fedavg": [], "flame": [{"name": "flame"}]}}
    (path / "sweep.yaml").write_text(yaml.safe_dump({"name": "demo", "base": "b.yaml", "set": {"rounds": 4},
                                                     "grid": grid, "seeds": list(SEEDS)}))
    header = list(rows[0])
    (path / "sweep.csv").write_text(
        ",".join(header) + "\n" + "".join(",".join(str(r[k]) for k in header) + "\n" for r in rows))
    return path


IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"><figcaption>([^<]*)<')


def make_privacy(path: Path) -> list[bytes]:
    """The privacy audit's files in run directory ``path``: two reconstruction grids (3 and 2
    images, as the audit writes them), a not-invertible round, membership and DP-SGD records;
    returns the grids' bytes."""
    import torch

    from fedsec.privacy.plots import image_grid

    generator = torch.Generator().manual_seed(0)
    grids = []
    (path / "privacy").mkdir()
    for attack, n in (("dlg", 3), ("inverting-gradients", 2)):
        images = torch.rand(2, n, 1, 28, 28, generator=generator)
        grids.append(image_grid([images[0], images[1]]))
        (path / f"privacy/round-0001-client-0-{attack}.png").write_bytes(grids[-1])
    records = [
        {"round": 1, "kind": "inversion", "client": 0, "images": 3, "attack": "dlg", "status": "reconstructed",
         "psnr": [None, 24.12, 13.0], "ssim": [1.0, 0.925, 0.4], "matched": [0, 2, 1], "labels": [3, 1, 1],
         "labels_recovered": [3, 1, 7], "label_recovery": 0.6667, "loss": 1e-9, "seconds": 12.5,
         "png": "privacy/round-0001-client-0-dlg.png"},
        {"round": 1, "kind": "inversion", "client": 0, "images": 2, "attack": "inverting-gradients",
         "status": "reconstructed", "psnr": [18.5, 16.5], "ssim": [0.7, 0.5], "matched": [1, 0], "labels": [1, 3],
         "labels_recovered": [1, 3], "label_recovery": 1.0, "loss": 0.01, "seconds": 40.0,
         "png": "privacy/round-0001-client-0-inverting-gradients.png"},
        {"round": 2, "kind": "inversion", "client": 0, "images": 3, "attack": "dlg", "status": "not-invertible",
         "reason": "the server holds the update as CKKS ciphertexts and no secret key"},
        {"round": 4, "kind": "membership", "attack": "loss-threshold", "members": 390, "nonmembers": 1000,
         "auc": 0.7341, "tpr_at_fpr_0.001": 0.0051, "tpr_at_fpr_0.01": 0.0256, "threshold": -0.3, "tpr": 0.6,
         "fpr": 0.4, "advantage": 0.2, "member_clients": 3, "nonmember_clients": 1, "client_auc": 0.6667,
         "client_tpr_at_fpr_0.001": 0.0, "client_tpr_at_fpr_0.01": 0.0, "seconds": 1.0, "prepare_seconds": 0.0},
        {"round": 4, "kind": "dp-sgd", "clients": [0, 1, 2, 3], "steps": [1, 1, 1, 1], "epsilon": [3.21] * 4,
         "max_epsilon": 3.21, "delta": 1e-5, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "accountant": "rdp"},
    ]
    (path / "privacy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return grids


def chart_specs_all(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(chart name, the Plotly figure spec) of every chart embedded in the page, in page order."""
    return [(html.unescape(name), json.loads(body.replace("<\\/", "</"))) for name, body in SPEC.findall(text)]


def chart_specs(text: str) -> dict[str, dict[str, Any]]:
    """Chart name -> the Plotly figure spec embedded in the page (the last of a name)."""
    return dict(chart_specs_all(text))


def outside_scripts(text: str) -> str:
    return re.sub(r"<script\b[^>]*>.*?</script>", "", text, flags=re.S)


def assert_self_contained(text: str) -> None:
    """No reference leaves the file: no src but data: URIs, no non-anchor href, no CSS url() or
    @import; the Plotly library is embedded exactly once."""
    markup = outside_scripts(text)
    assert not re.search(r'\bsrc\s*=\s*(?!"data:)', markup) and not re.search(r'href\s*=\s*"(?!#)', markup)
    assert "url(" not in markup and "@import" not in markup
    assert text.count("plotly.js v") >= 1 and text.count("<script>/**") == 1


def headings(text: str) -> list[str]:
    return re.findall(r"<h2 id=\"s\d+\">([^<]*)</h2>", text)


def test_run_report_has_every_section_with_charts(tmp_path: Path) -> None:
    path = write_report(make_run(tmp_path / "run"))
    text = path.read_text()
    assert path == tmp_path / "run" / "report.html"
    assert_self_contained(text)
    assert headings(text) == ["Scenario", "Summary", "Accuracy and watermark", "Detection", "Clients", "Partitions",
                              "Costs"]
    specs = chart_specs(text)
    assert set(specs) == {"accuracy per round", "watermark statistics per round", "detection rates per round",
                          "malicious share per round", "label histogram per client", "seconds per phase",
                          "megabytes per round"}
    accuracy = {t["name"]: t for t in specs["accuracy per round"]["data"]}
    assert accuracy["MA"]["x"] == [1, 2, 3, 4] and accuracy["MA"]["y"] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert specs["accuracy per round"]["layout"]["yaxis"]["tickformat"] == ".0%"
    assert set(accuracy) == {"MA", "ASR", "wm_accuracy"}  # wm_bits is not a rate: a chart of its own
    histogram = specs["label histogram per client"]
    assert histogram["layout"]["xaxis"]["type"] == "category" and histogram["data"][0]["x"] == ["0", "1", "2", "3"]
    assert [t["y"] for t in histogram["data"]] == [[10, 15, 5, 10], [20, 5, 5, 0]]
    megabytes = {t["name"]: t["y"] for t in specs["megabytes per round"]["data"]}
    assert megabytes == {"down": [4.0] * 4, "up": [4.0] * 4}
    assert "badnets (fraction 0.25)" in text and "krum" in text
    assert '<td class="text">traffic up</td><td data-value="16.0">16.00 MB</td>' in text  # 4 rounds x 4 MB
    assert '<td class="text">traffic down</td><td data-value="16000000">16.00 MB</td>' in text  # summary.json
    assert '<td class="text">wall time</td><td data-value="5.0">5.00 s</td>' in text
    assert '<td class="text">ASR</td><td data-value="0.1">10.00 %</td>' in text


def test_privacy_section_embeds_the_reconstructions_with_their_scores(tmp_path: Path) -> None:
    path = make_run(tmp_path / "run")
    grids = make_privacy(path)
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "privacy": {"dlg": {"reconstructed": 1}}}))
    text = write_report(path).read_text()
    assert_self_contained(text)
    assert headings(text) == ["Scenario", "Summary", "Accuracy and watermark", "Detection", "Clients", "Partitions",
                              "Privacy", "Costs"]
    section = text.split(">Privacy</h2>")[1].split("<h2")[0]
    images = IMAGE.findall(section)
    assert [base64.b64decode(data) for data, _, _ in images] == grids  # the audit's own files, byte for byte
    assert [alt for _, alt, _ in images] == ["reconstructions: round 1, client 0, dlg",
                                             "reconstructions: round 1, client 0, inverting-gradients"]
    assert "PSNR per image ∞, 24.1, 13.0 dB; SSIM 1.000, 0.925, 0.400; label recovery 0.67" in images[0][2]
    cells = (re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section))
    rows = [row for row in cells if row]  # header rows have no td
    assert rows[0] == ["dlg", "reconstructed", "1", "0", "3", "∞", "0.775", "0.67", "12.5 s"]
    assert rows[1] == ["inverting-gradients", "reconstructed", "1", "0", "2", "17.5", "0.6", "1.00", "40.0 s"]
    assert rows[2][:2] == ["dlg", "not-invertible"] and rows[2][5:] == ["–", "–", "–", "–"]
    assert "not-invertible: the server holds the update as CKKS ciphertexts and no secret key" in section
    assert rows[3] == ["loss-threshold", "4", "390", "1000", "0.734", "0.005", "0.026", "0.200",
                       "0.667 (3 vs 1 clients)"]
    assert "ε = 3.21 at δ = 1e-05 after round 4, the largest of the 4 clients" in section
    assert "reconstructed" not in text.split(">Summary</h2>")[1].split("<h2")[0]  # nested: shown here instead


def test_privacy_section_shows_only_what_was_recorded(tmp_path: Path) -> None:
    path = make_run(tmp_path / "run")
    make_privacy(path)
    records = [json.loads(line) for line in (path / "privacy.jsonl").read_text().splitlines()]
    (path / "privacy.jsonl").write_text(json.dumps(records[3]) + "\n")  # membership only
    section = write_report(path).read_text().split(">Privacy</h2>")[1].split("<h2")[0]
    assert "<h3>Membership inference</h3>" in section and "<img" not in section
    assert "Gradient inversion" not in section and "DP-SGD" not in section
    (path / "privacy.jsonl").write_text("")
    assert "Privacy" not in headings(write_report(path).read_text())


def test_a_reconstruction_outside_the_run_is_refused_and_a_missing_one_named(tmp_path: Path) -> None:
    path = make_run(tmp_path / "run")
    make_privacy(path)
    (tmp_path / "elsewhere.png").write_bytes((path / "privacy/round-0001-client-0-dlg.png").read_bytes())
    first = json.loads((path / "privacy.jsonl").read_text().splitlines()[0])
    (path / "privacy.jsonl").write_text(json.dumps({**first, "png": "../elsewhere.png"}) + "\n")
    result = CliRunner().invoke(app, ["report", str(path)])
    assert result.exit_code == 2 and "'../elsewhere.png' is outside the run directory" in result.stderr
    (path / "privacy.jsonl").write_text(json.dumps({**first, "png": "privacy/gone.png"}) + "\n")
    section = write_report(path).read_text().split(">Privacy</h2>")[1].split("<h2")[0]
    assert "<img" not in section and "the grid privacy/gone.png is missing or not a PNG" in section
    (path / "privacy.jsonl").write_text(json.dumps({**first, "psnr": "high"}) + "\n")
    result = CliRunner().invoke(app, ["report", str(path)])
    assert result.exit_code == 2 and result.stderr.startswith(f"{path / 'privacy.jsonl'}: record 1: psnr")


def test_client_table_is_sortable_with_role_acceptance_and_scores(tmp_path: Path) -> None:
    text = write_report(make_run(tmp_path / "run")).read_text()
    table = re.search(r'<table class="sortable"><thead><tr>(.*?)</tr></thead><tbody>(.*?)</tbody>', text).groups()
    assert re.findall(r"<th[^>]*>([^<]*)</th>", table[0]) == ["client", "role", "rounds", "accepted", "score: krum",
                                                              "train loss", "failures"]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table[1])]
    assert rows[3] == ["3", "malicious", "4", "0/4", "40", "3.5000", "0"]
    assert rows[0][:5] == ["0", "benign", "4", "4/4", "10"]


def test_run_without_attackers_has_no_detection_section(tmp_path: Path) -> None:
    text = write_report(make_run(tmp_path / "run", attacked=False)).read_text()
    assert "Detection" not in headings(text)
    assert set(chart_specs(text)) == {"accuracy per round", "watermark statistics per round",
                                      "label histogram per client", "seconds per phase", "megabytes per round"}
    assert "ASR" not in {t["name"] for t in chart_specs(text)["accuracy per round"]["data"]}
    summary = outside_scripts(text).split('id="s1">Summary</h2>')[1].split("<h2")[0]
    assert ">FPR<" not in summary and "honest updates rejected" in summary and "recall" not in summary


def test_run_report_of_a_rule_that_never_rejects_says_n_a(tmp_path: Path) -> None:
    path = tmp_path / "run"
    make_run(path)
    run = RunDirectory(path)
    records = [{**r, **dict.fromkeys(("tp", "fp", "fn", "tn", "precision", "recall", "fpr", "f1")),
                "malicious_share": 0.1 * r["round"]} for r in run.rounds()]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run.write_json("summary.json", {"name": "run", "rounds": 4, "recall": None, "malicious_share": 0.25})
    text = write_report(path).read_text()
    assert "Detection rates: n/a" in text and "<td>n/a</td>" in text and ">25.00 %</td>" in text
    assert "malicious share per round" in chart_specs(text)
    assert "detection rates per round" not in chart_specs(text)


def test_sweep_report_has_bands_heatmaps_equal_to_the_table_and_a_game(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    (sweep / "game.json").write_text(json.dumps({
        "ma_min": 0.8, "attacker_labels": ["badnets", "dba"], "defender_labels": ["fedavg", "flame"],
        "payoff": [[0.8, 0.1], [0.8, 0.1]], "attacker_strategy": [1.0, 0.0], "defender_strategy": [0.0, 1.0],
        "value": 0.1}))
    (sweep / "game-attack-vs-defenses.json").write_text(json.dumps({
        "ma_min": 0.8, "attacker_labels": ["badnets", "dba"], "defender_labels": ["fedavg", "flame"],
        "costs": {"poisoning": 0.5}, "payoff": [[0.7, -0.1], [0.7, -0.1]], "attacker_strategy": [1.0, 0.0],
        "defender_strategy": [0.0, 1.0], "value": -0.1}))
    result = CliRunner().invoke(app, ["report", str(sweep)])
    assert result.exit_code == 0, result.output
    text = (sweep / "report.html").read_text()
    assert_self_contained(text)
    specs = chart_specs(text)
    assert {"heatmap of ma", "heatmap of asr", "heatmap of recall", "heatmap of fpr", "MA per round",
            "ASR per round", "payoff matrix"} <= set(specs)

    keys = ["attack", "defenses"]
    summary = {(line["attack"], line["defenses"]): line for line in ci_rows(read_sweep(sweep).rows, keys)}
    for metric in ("ma", "asr", "recall", "fpr"):
        heat = specs[f"heatmap of {metric}"]["data"][0]
        assert heat["y"] == ["badnets", "dba"] and heat["x"] == ["fedavg", "flame"]
        expected = [[summary[a, d][f"{metric}_mean"] for d in heat["x"]] for a in heat["y"]]
        np.testing.assert_allclose(heat["z"], expected, rtol=1e-12)
    assert specs["heatmap of asr"]["data"][0]["z"][0] == pytest.approx([0.81, 0.11])

    traces = specs["MA per round"]["data"]
    lines = [t for t in traces if t["mode"] == "lines+markers"]
    bands = [t for t in traces if t.get("fill") == "tonexty"]
    assert [t["name"] for t in lines] == ["badnets / fedavg", "badnets / flame", "dba / fedavg", "dba / flame"]
    assert [t["name"] for t in bands] == [f"{t['name']} 95% CI" for t in lines]
    # badnets / fedavg: seed s has MA 0.5 + 0.1 r - 0.05 s; round 1 over 3 seeds
    mean, half = mean_ci95([0.6, 0.55, 0.5])
    assert lines[0]["y"][0] == pytest.approx(mean) and bands[0]["y"][0] == pytest.approx(mean - half)
    upper = next(t for t in traces if t["name"] == "badnets / fedavg upper 95% CI")
    assert upper["y"][0] == pytest.approx(mean + half) and upper["legendgroup"] == lines[0]["legendgroup"]

    assert ">81.0 ± 2.5</td>" in text and ">3/3</td>" in text  # ASR against fedavg; watermark verified
    assert "<h2 id=\"s1\">Results (mean ± 95% CI over seeds)</h2>" in text and "Student's t" in text
    games = [spec["data"][0] for name, spec in chart_specs_all(text) if name == "payoff matrix"]
    assert [g["z"] for g in games] == [[[0.7, -0.1], [0.7, -0.1]], [[0.8, 0.1], [0.8, 0.1]]]
    assert "zmin" not in games[0] and "zmin" in games[1]  # a payoff less costs leaves the 0..1 scale
    assert headings(text)[-2:] == ["Game (attack-vs-defenses)", "Game (attacker vs defender)"]
    assert "Game value (attacker's expected utility): 10.00 %" in text


def test_several_runs_are_overlaid(tmp_path: Path) -> None:
    first, second = make_run(tmp_path / "a"), make_run(tmp_path / "b", ma_offset=-0.1)
    out = tmp_path / "both.html"
    result = CliRunner().invoke(app, ["report", str(first), str(second), "--out", str(out)])
    assert result.exit_code == 0, result.output
    specs = chart_specs(out.read_text())
    ma = {t["name"]: t["y"] for t in specs["MA per round"]["data"]}
    assert ma == {"a": pytest.approx([0.6, 0.7, 0.8, 0.9]), "b": pytest.approx([0.5, 0.6, 0.7, 0.8])}
    assert "seconds per round" in specs
    refused = CliRunner().invoke(app, ["report", str(first), str(tmp_path), "--out", str(out)])
    assert refused.exit_code == 2 and "not a run directory" in refused.output


def test_report_of_something_else_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "neither a sweep directory" in result.output


def test_heatmap_axes_prefer_attack_and_defense() -> None:
    assert heatmap_axes(["seed_x", "defenses", "attack.data.name"]) == ("attack.data.name", "defenses")
    assert heatmap_axes(["client.lr", "rounds", "x"]) == ("client.lr", "rounds")
    assert heatmap_axes(["client.lr"]) == ("client.lr", None)


def test_a_corrupt_client_record_is_named(tmp_path: Path) -> None:
    path = make_run(tmp_path / "run")
    with open(path / "clients.jsonl", "a") as f:
        f.write('{"round": 5, "client": "third"}\n')
    result = CliRunner().invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path / 'clients.jsonl'}: record 17: client: ")


def test_each_start_of_the_server_is_a_row_of_the_environment_section(tmp_path: Path) -> None:
    path = make_run(tmp_path / "run")
    assert ">Environment</h2>" not in write_report(path).read_text()  # runs from before the record: no section
    start = {"started": "2026-12-02T01:00:00Z", "resumed_after_round": 0, "fedsec_commit": "0123456789abcdef" * 2,
             "versions": {"torch": "2.14.1", "flwr": "1.41.0"}, "python": "3.11.7", "device": "cpu",
             "cpu_count": 2, "server_threads": 1, "client_threads": 1, "platform": "Linux"}
    append_jsonl(path / ENVIRONMENT_FILE, [start, {**start, "resumed_after_round": 3, "server_threads": 2}])
    text = write_report(path).read_text()
    section = text[text.index(">Environment</h2>"):]
    assert "0123456789ab<" in section and "<td>1 / 1</td>" in section and "<td>2 / 1</td>" in section
    assert section.count(">2026-12-02T01:00:00Z</td>") == 2

    with open(path / ENVIRONMENT_FILE, "a") as f:
        f.write('{"server_threads": "many"}\n')
    result = CliRunner().invoke(app, ["report", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path / ENVIRONMENT_FILE}: record 3: server_threads: ")


def test_inspection_section_shows_each_verdict_and_its_reconstructed_trigger(tmp_path: Path) -> None:
    import torch

    from fedsec.privacy.plots import image_grid

    path = make_run(tmp_path / "run")
    (path / "inspection").mkdir()
    trigger = image_grid([torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))])
    (path / "inspection/round-0004-neural-cleanse.png").write_bytes(trigger)
    verdict = {"round": 4, "kind": "inspection", "method": "neural-cleanse", "access": "white-box", "flagged": True,
               "score": 7.553, "threshold": 2.0, "targets": [8, 0], "class_scores": [0.1] * 10, "true_target": 0,
               "target_found": True, "queries": 200001, "seconds": 99.0, "trigger_iou": 0.0526,
               "trigger_png": "inspection/round-0004-neural-cleanse.png"}
    blind = {**verdict, "method": "weight-space", "flagged": False, "score": -14306.2, "threshold": -1024.6,
             "targets": [], "true_target": None, "trigger_iou": None, "trigger_png": None, "queries": None}
    repair = {"round": 4, "kind": "repair", "method": "fine-pruning", "pruned": [1, 2], "seconds": 3.0}
    (path / "inspection.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (verdict, blind, repair)))
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "inspection": {"neural-cleanse": {"flagged": 1}}}))
    text = write_report(path).read_text()
    assert_self_contained(text)
    assert headings(text)[-2:] == ["Inspection", "Costs"]
    section = text.split(">Inspection</h2>")[1].split("<h2")[0]
    cells = (re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section))
    assert [row for row in cells if row] == [  # the repair is not a verdict
        ["neural-cleanse", "white-box", "4", "yes", "7.553", "2", "8, 0", "0", "0.05", "200001", "99.0 s"],
        ["weight-space", "white-box", "4", "no", "-1.431e+04", "-1025", "–", "–", "–", "–", "99.0 s"]]
    ((data, alt, caption),) = IMAGE.findall(section)
    assert base64.b64decode(data) == trigger and alt == "reconstructed trigger: round 4, neural-cleanse"
    assert "then the true trigger's pixels; suspected targets 8, 0, true target 0, IoU with the true trigger 0.05" in \
        html.unescape(caption)
    assert "flagged" not in text.split(">Summary</h2>")[1].split("<h2")[0]  # nested: shown here instead
    (path / "inspection.jsonl").write_text(json.dumps({**verdict, "trigger_png": "../elsewhere.png"}) + "\n")
    result = CliRunner().invoke(app, ["report", str(path)])
    assert result.exit_code == 2 and "inspection.jsonl: png '../elsewhere.png' is outside the run directory" in \
        result.stderr


def test_runtime_guards_section_has_each_chain_per_round_and_its_curves(tmp_path: Path) -> None:
    path = make_run(tmp_path / "run")
    records = [{"round": r, "chain": chain, "guards": guards, "ma": 0.8, "asr": 0.95, "frr": 0.01, "sda": sda,
                "far": far, "sasr": sasr, "auc": [0.98] * len(guards), "thresholds": [1.0] * len(guards),
                "seconds_per_1000": 12.5, "fit_s": 3.0}
               for r, sda, far, sasr in ((2, 0.7, 0.2, 0.1), (4, 0.75, 0.1, 0.0))
               for chain, guards in (("strip", ["strip"]), ("strip-bdmae", ["strip", "bdmae"]))]
    (path / "guards.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = write_report(path).read_text()
    assert headings(text)[-2:] == ["Runtime guards", "Costs"]
    section = text.split(">Runtime guards</h2>")[1].split("<h2")[0]
    cells = (re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section))
    rows = [row for row in cells if row]
    assert rows[3] == ["strip-bdmae", "strip then bdmae", "4", "80.0 %", "95.0 %", "1.0 %", "10.0 %", "75.0 %",
                       "0.0 %", "0.980, 0.980", "12.50 s"]
    curves = {t["name"]: (t["x"], t["y"]) for t in chart_specs(text)["runtime guards per round"]["data"]}
    assert curves["strip-bdmae SDA"] == ([2, 4], pytest.approx([0.7, 0.75]))
    assert curves["strip SASR"] == ([2, 4], pytest.approx([0.1, 0.0]))
    (path / "guards.jsonl").write_text(json.dumps({**records[0], "frr": "high"}) + "\n")
    result = CliRunner().invoke(app, ["report", str(path)])
    assert result.exit_code == 2 and result.stderr.startswith(f"{path / 'guards.jsonl'}: record 1: frr")
    (path / "guards.jsonl").write_text("")
    assert "Runtime guards" not in headings(write_report(path).read_text())
