"""The pre-registered grokking analysis (docs/results/grokking_preregistration.md), from the committed records only.

Two steps, in this order, both reading <results>/<label>-s<seed>.json as scripts/grokking_seeds.py
writes them (each checked intact and made with the arm's config):

    python scripts/grokking_report.py calibrate --results docs/results/data/grokking_nanda
    python scripts/grokking_report.py report --results docs/results/data/grokking_nanda

`calibrate` reads the calibration runs alone (seeds 100 and 101: the grokking config and the two
negative controls) and writes thresholds.json: each signal's tau and whether it passed the
calibration gate. It refuses to replace a thresholds.json that says otherwise, so the thresholds are
fixed before any reported seed is read. `report` applies them unchanged to the reported seeds (0-4)
and the held-out seed (9), and writes analysis.json, report.md, reproduction.png and signals.png beside the
records; a run not recorded yet is listed as missing, never filled in.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from whitebox.config import ConfigError
from whitebox.grid.records import read_record
from whitebox.grid.seeds import seed_config
from whitebox.report.aggregate import mean_ci_text
from whitebox.report.stats import t_interval
from whitebox.runner import find_experiment
from whitebox.runtime.artifacts import ArtifactError, write_json, write_text
from whitebox.runtime.figures import save_figure, subplots
from whitebox.studies import alarms, phases

CONFIG = "configs/grokking_nanda.yaml"
ARMS = {"nanda": [], "wd0": ["training.weight_decay=0"], "frac": ["task.train_fraction=0.15"]}
CONTROLS = ("wd0", "frac")
CALIBRATION, REPORTED, HELD_OUT = (100, 101), (0, 1, 2, 3, 4), 9


def curves(results: Path, seeds: tuple[int, ...], arm: str) -> tuple[dict[int, alarms.Curve], list[str]]:
    """The evaluation curves of `arm` on `seeds` that are recorded, and the names of those that are not."""
    found, missing = {}, []
    sections = find_experiment("grokking").sections
    for seed in seeds:
        cfg = seed_config(CONFIG, seed, arm, ARMS[arm])
        record = read_record(results, cfg.run.name, cfg, sections)
        if record is None:
            missing.append(cfg.run.name)
        else:
            found[seed] = [r for r in record["curves"]["plant"] if "eval/test_acc" in r]
    return found, missing


def control_curves(results: Path, seeds: tuple[int, ...]) -> tuple[dict[str, alarms.Curve], list[str]]:
    """The recorded curves of every control arm on `seeds`, keyed <arm>-s<seed>, and the names not recorded yet."""
    controls, missing = {}, []
    for arm in CONTROLS:
        found, gone = curves(results, seeds, arm)
        controls.update({f"{arm}-s{seed}": curve for seed, curve in found.items()})
        missing += gone
    return controls, missing


def calibrate(results: Path) -> dict[str, Any]:
    """Each signal's tau from the calibration controls and its gate on the calibration grokking runs."""
    runs, missing = curves(results, CALIBRATION, "nanda")
    controls, gone = control_curves(results, CALIBRATION)
    missing += gone
    if missing:
        raise SystemExit(f"grokking_report: calibration needs every calibration run; not recorded yet: {', '.join(missing)}")
    grokked_controls = sorted(name for name, curve in controls.items() if alarms.generalised_at(curve) is not None)
    negatives = [curve for name, curve in controls.items() if name not in grokked_controls]
    if not negatives:
        raise SystemExit("grokking_report: every calibration control grokked, so none calibrates a threshold; "
                         "the pre-registration's controls need revising (an amendment) before any reported seed is read")
    signals = {}
    for name, signal in alarms.SIGNALS.items():
        tau = alarms.threshold(negatives, signal)
        signals[name] = {"tau": tau, "calibrated": alarms.warns_on_calibration(list(runs.values()), signal, tau),
                         "calibration_leads": {f"nanda-s{s}": alarms.lead_time(c, signal, tau) for s, c in runs.items()}}
    return {"calibration_runs": sorted(f"nanda-s{s}" for s in runs), "controls": sorted(controls),
            "controls_that_grokked": grokked_controls,
            "generalised_at": {f"nanda-s{s}": alarms.generalised_at(c) for s, c in runs.items()}, "signals": signals}


def write_thresholds(results: Path, thresholds: dict[str, Any]) -> Path:
    """thresholds.json, written once: a different existing file is a refusal, the same one is left as it is."""
    path = results / "thresholds.json"
    if path.is_file():
        if json.loads(path.read_text()) != json.loads(json.dumps(thresholds)):
            raise SystemExit(f"grokking_report: {path} holds other thresholds; they are fixed before the reported seeds "
                             f"are read and never replaced (git checkout it, or record an amendment and delete it)")
        return path
    return write_json(path, thresholds)


def report(results: Path) -> dict[str, Any]:
    """Reproduction, phase boundaries, lead times, false alarms and the verdict on the reported seeds."""
    path = results / "thresholds.json"
    if not path.is_file():
        raise SystemExit(f"grokking_report: {path} not found; run `calibrate` first (thresholds are fixed before the "
                         f"reported seeds are read)")
    thresholds = json.loads(path.read_text())
    runs, missing = curves(results, REPORTED, "nanda")
    controls, gone = control_curves(results, REPORTED)
    missing += gone
    held_out, gone = curves(results, (HELD_OUT,), "nanda")
    missing += gone
    grokked = {seed: c for seed, c in runs.items() if alarms.generalised_at(c) is not None}
    readings = {name: alarms.read_signal(name, grokked, list(controls.values()), s["tau"], s["calibrated"])
                for name, s in thresholds["signals"].items()}
    best, readings = alarms.verdicts(readings, grokked)
    per_seed = {seed: {**phases.boundaries(c), **phases.plateau(c), "generalisation": alarms.generalised_at(c),
                       "key_frequencies": phases.key_frequencies(c), "final_test_acc": c[-1]["eval/test_acc"]}
                for seed, c in runs.items()}
    g_values = [float(v["generalisation"]) for v in per_seed.values() if v["generalisation"] is not None]
    g_low, g_high = phases.prediction_interval(g_values)
    held_g = alarms.generalised_at(held_out[HELD_OUT]) if HELD_OUT in held_out else None
    return {
        "missing": missing,
        "per_seed": per_seed,
        "boundaries": {k: interval(per_seed, k) for k in phases.PAPER},
        "paper": phases.PAPER,
        "plateau_shown": sum(bool(v["shows"]) for v in per_seed.values()),
        "controls": {name: {"generalisation": alarms.generalised_at(c), "final_test_acc": c[-1]["eval/test_acc"]}
                     for name, c in controls.items()},
        "best_black_box": best,
        "signals": {name: reading_json(r) for name, r in readings.items()},
        "warns_earlier": sorted(name for name, r in readings.items() if r.warns_earlier),
        "held_out": {"seed": HELD_OUT, "generalisation": held_g, "prediction_interval": [g_low, g_high],
                     "inside": None if held_g is None or math.isnan(g_low) else bool(g_low <= held_g <= g_high)},
    }


def interval(per_seed: dict[int, dict], key: str) -> dict[str, float | int]:
    ci = t_interval([float(v[key]) for v in per_seed.values() if v[key] is not None])
    return {**ci.as_json(), "missing": len(per_seed) - ci.n}


def reading_json(r: alarms.Reading) -> dict[str, Any]:
    diff = r.over_black_box
    return {"white_box": r.white_box, "tau": r.tau, "calibrated": r.calibrated, "leads": r.leads,
            "lead": r.lead.as_json(), "false_alarms": r.false_alarms, "controls": r.controls,
            "false_alarm_ci": list(r.false_alarm_ci), "over_black_box": None if diff is None else diff.as_json(),
            "warns_earlier": r.warns_earlier}


def markdown(analysis: dict[str, Any], thresholds: dict[str, Any]) -> str:
    """report.md: every number read from analysis.json and thresholds.json."""
    seeds = sorted(analysis["per_seed"], key=int)
    lines = ["# Grokking, Nanda et al. setup: the pre-registered analysis", "",
             "Generated by `scripts/grokking_report.py report` from the committed records; thresholds from "
             "`thresholds.json` (calibration seeds " + ", ".join(thresholds["calibration_runs"]) + ").", ""]
    if analysis["missing"]:
        lines += [f"**Not recorded yet** ({len(analysis['missing'])}): " + ", ".join(analysis["missing"]) + ".", ""]
    lines += ["## Reproduction", "", "| | " + " | ".join(f"s{s}" for s in seeds) + " | mean ± 95% CI | paper |",
              "|---" * (len(seeds) + 3) + "|"]
    for key in phases.PAPER:
        b = analysis["boundaries"][key]
        cells = [fmt(analysis["per_seed"][s][key]) for s in seeds]
        lines.append(f"| end of {key.replace('_', ' ')} (step) | " + " | ".join(cells) +
                     f" | {ci_text(b)} | {analysis['paper'][key]:,} |")
    for key, label in (("generalisation", "test accuracy >= 0.9 (G)"), ("plateau", "plateau after M (steps)"),
                       ("rise", "rise from < 0.2 to 0.9 (steps)")):
        lines.append(f"| {label} | " + " | ".join(fmt(analysis["per_seed"][s][key]) for s in seeds) + " | | |")
    lines.append("| key frequencies | " + " | ".join(" ".join(map(str, analysis["per_seed"][s]["key_frequencies"]))
                                                   for s in seeds) + " | | |")
    lines += ["", f"Plateau then jump shown on {analysis['plateau_shown']} of {len(seeds)} seeds "
              "(pre-registered: at least 4 of 5).", "",
              "## Early warning", "",
              "| signal | kind | tau | calibrated | lead time (mean ± 95% CI, n) | false alarms | lead over best black-box "
              "| warns earlier |", "|---|---|---|---|---|---|---|---|"]
    for name, s in analysis["signals"].items():
        fa = f"{s['false_alarms']}/{s['controls']} ({s['false_alarm_ci'][0]:.2f}-{s['false_alarm_ci'][1]:.2f})"
        diff = s["over_black_box"]
        lines.append(f"| {name} | {'white' if s['white_box'] else 'black'} | {s['tau']:.4g} | "
                     f"{'yes' if s['calibrated'] else 'no warning at the calibrated threshold'} | "
                     f"{ci_text(s['lead'])} | {fa} | {'' if diff is None else ci_text(diff)} | "
                     f"{'yes' if s['warns_earlier'] else 'no'} |")
    named = analysis["warns_earlier"]
    lines += ["", f"Best black-box signal: {analysis['best_black_box']}. Verdict: " +
              (f"white-box signal(s) that warn materially earlier: {', '.join(named)} (six signals, no multiplicity "
               "correction: weak evidence)." if named else
               "no white-box signal warns materially earlier than the best black-box one."), ""]
    held = analysis["held_out"]
    low, high = held["prediction_interval"]
    lines += [f"Held-out seed {held['seed']}: G = {fmt(held['generalisation'])}, 95% prediction interval "
              f"{fmt(low)} to {fmt(high)}: " + {True: "inside.", False: "outside.", None: "not decided."}[held["inside"]], ""]
    lines += ["Controls: " + ", ".join(f"{name} G {fmt(c['generalisation'])} (final test acc {c['final_test_acc']:.3f})"
                                      for name, c in analysis["controls"].items()) + ".", ""]
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def ci_text(b: dict[str, Any]) -> str:
    if b["n"] == 0:
        return "–"
    if math.isnan(b["low"]):
        return f"{b['mean']:,.0f} (n {b['n']})"
    return mean_ci_text(b["mean"], (b["high"] - b["low"]) / 2, 0) + f" (n {b['n']})"


def plot(results: Path, analysis: dict[str, Any]) -> Path:
    """reproduction.png: per reported seed, train/test accuracy and restricted/excluded loss with the phase ends."""
    runs, _ = curves(results, REPORTED, "nanda")
    fig, axes = subplots(2, 1, figsize=(10, 7), sharex=True)
    for seed, curve in runs.items():
        steps = [r["step"] for r in curve]
        axes[0].plot(steps, [r["eval/test_acc"] for r in curve], label=f"s{seed} test")
        axes[0].plot(steps, [r["eval/train_acc"] for r in curve], color="grey", alpha=0.4, lw=0.8)
        axes[1].plot(steps, [r["eval/restricted_loss"] for r in curve], label=f"s{seed} restricted")
        axes[1].plot(steps, [r["eval/excluded_loss"] for r in curve], ls=":", label=f"s{seed} excluded (train)")
    for ax in axes:
        for key, step in analysis["paper"].items():
            ax.axvline(step, color="black", ls="--", lw=0.8)
        for key, b in analysis["boundaries"].items():
            if b["n"] and not math.isnan(b["low"]):
                ax.axvspan(b["low"], b["high"], color="tab:red", alpha=0.12)
    axes[0].set_ylabel("accuracy (grey: train)")
    axes[1].set_ylabel("loss")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step (dashed: the paper's phase ends; shaded: 95% CI of ours)")
    axes[0].legend(fontsize=7, ncol=5)
    axes[1].legend(fontsize=6, ncol=5)
    fig.tight_layout()
    return save_figure(fig, results / "reproduction.png", dpi=110)


def plot_signals(results: Path, thresholds: dict[str, Any]) -> Path:
    """signals.png: every signal's move r(t) after M on the reported runs (colour, G marked) and controls (grey),
    with its calibrated tau."""
    runs, _ = curves(results, REPORTED, "nanda")
    controls = control_curves(results, REPORTED)[0].values()
    names = list(alarms.SIGNALS)
    fig, axes = subplots(2, (len(names) + 1) // 2, figsize=(16, 6.5), squeeze=False)
    for ax, name in zip(axes.flat, names):
        signal = alarms.SIGNALS[name]
        for curve in controls:
            ax.plot(*zip(*alarms.moves(curve, signal)), color="grey", alpha=0.5, lw=0.8)
        for seed, curve in runs.items():
            line, = ax.plot(*zip(*alarms.moves(curve, signal)), lw=1, label=f"s{seed}")
            if (g := alarms.generalised_at(curve)) is not None:
                ax.axvline(g, color=line.get_color(), ls=":", lw=0.8)
        ax.axhline(thresholds["signals"][name]["tau"], color="black", ls="--", lw=0.8)
        kind = "white" if signal.white_box else "black"
        ax.set_title(f"{name} ({kind}-box)", fontsize=9)
        ax.set_yscale("symlog", linthresh=0.01)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("step (dotted: G; dashed: tau; grey: controls)")
    fig.supylabel("r(t): move since M in the alarm direction")
    fig.tight_layout()
    return save_figure(fig, results / "signals.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["calibrate", "report"])
    parser.add_argument("--results", type=Path, default=Path("docs/results/data/grokking_nanda"))
    args = parser.parse_args()
    try:
        if args.step == "calibrate":
            print(f"wrote {write_thresholds(args.results, calibrate(args.results))}")
            return
        analysis = report(args.results)
        thresholds = json.loads((args.results / "thresholds.json").read_text())
        write_json(args.results / "analysis.json", analysis)
        text = markdown(analysis, thresholds)
        write_text(args.results / "report.md", text)
        print(text)
        if analysis["per_seed"]:
            print(f"wrote {plot(args.results, analysis)}")
            print(f"wrote {plot_signals(args.results, thresholds)}")
    except (ConfigError, ArtifactError) as err:
        raise SystemExit(f"grokking_report: {err}") from None


if __name__ == "__main__":
    main()
