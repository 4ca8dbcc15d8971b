import json

from PIL import Image

from whitebox.report.plots import plot_training, read_metrics


def _write(path, records, garbage=False):
    lines = [json.dumps(r) for r in records]
    if garbage:
        lines.append('{"stage": "plant", "st')
    path.write_text("\n".join(lines) + "\n")


def test_read_metrics_filters_stage_and_skips_cut_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(path, [{"stage": "plant", "step": 1, "train/loss": 2.0}, {"stage": "treat", "step": 1}], garbage=True)
    assert read_metrics(path, "plant") == [{"stage": "plant", "step": 1, "train/loss": 2.0}]
    assert len(read_metrics(path, "treat")) == 1


def test_plot_training_writes_a_png(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"stage": "plant", "step": s, "train/loss": 1 / (s + 1), "eval/loss": 1 / (s + 2),
                "eval/clean_acc": s / 10, "eval/asr": s / 10} for s in range(10)]
    _write(path, records)
    out = plot_training(path, "plant", tmp_path / "plots" / "plant.png")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 600
    assert not list((tmp_path / "plots").glob(".*tmp"))
