"""Pictures of runs, read from their metrics.jsonl and config.yaml. Needs matplotlib
(pip install -e ".[plots]"); train.py draws curves.png at the end of a run when it is there.

    python -m trainkit.plots outputs/default                       # outputs/default/curves.png
    python -m trainkit.plots outputs/lr-1e-4 outputs/lr-3e-4 --out outputs/compare
        # outputs/compare/compare.png (the runs' curves overlaid) and compare.md (their final
        # and best scores, and the options in which their config.yaml files differ)
"""

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

# Options that name a run or what it draws rather than change it: left out of the comparison.
NAMING = {"output_dir", "run_name", "overwrite_output_dir", "resume_from_checkpoint", "plot_curves"}


def read_run(run_dir):
    """(training records, evaluation records, config) of a run."""
    path = Path(run_dir, "metrics.jsonl")
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist: no run there.")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    config_file = Path(run_dir, "config.yaml")
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if any(name.startswith("eval_") for name in r)]
    return train, evals, config


def pyplot():
    """matplotlib's pyplot drawing to files, or None where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only: no window, no display needed
    import matplotlib.pyplot as plt

    return plt


def log_scale_helps(values):
    """A loss that falls over more than a decade reads better on a log axis."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) > 10


def draw(axes, runs, labelled):
    """Loss, eval metrics and learning rate of `runs` ({label: (train, evals)}) on three axes."""
    loss_axis, metric_axis, lr_axis = axes
    losses = []
    for index, (label, (train, evals)) in enumerate(runs.items()):
        color = f"C{index}"
        prefix = f"{label}: " if labelled else ""
        steps = [r["step"] for r in train]
        loss_axis.plot(steps, [r["loss"] for r in train], color=color, label=f"{prefix}training")
        eval_losses = [(r["step"], r["eval_loss"]) for r in evals if "eval_loss" in r]
        if eval_losses:
            columns = zip(*eval_losses, strict=True)
            loss_axis.plot(*columns, "o--", color=color, label=f"{prefix}evaluation")
        losses += [r["loss"] for r in train] + [value for _, value in eval_losses]
        names = sorted({n for r in evals for n in r if n.startswith("eval_") and n != "eval_loss"})
        for offset, name in enumerate(names):
            points = [(r["step"], r[name]) for r in evals if name in r]
            style = ["o-", "s-", "^-", "d-", "v-"][offset % 5]
            columns = zip(*points, strict=True)
            metric_axis.plot(*columns, style, color=color, label=f"{prefix}{name[5:]}")
        lr_axis.plot(steps, [r["learning_rate"] for r in train], color=color, label=label)
    if log_scale_helps(losses):
        loss_axis.set_yscale("log")
    titles = ("Loss (mean over each logged window)", "Evaluation metrics", "Learning rate")
    for axis, title, unit in zip(axes, titles, ("loss", "value", "learning rate"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("update (optimizer step)")
        axis.xaxis.get_major_locator().set_params(integer=True)  # updates are whole numbers
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
        if axis.lines and (labelled or axis is not lr_axis):
            axis.legend(fontsize=8)
    if not metric_axis.lines:
        where = metric_axis.transAxes
        metric_axis.text(0.5, 0.5, "no evaluation metrics", ha="center", transform=where)


def save_figure(runs, title, path, labelled):
    plt = pyplot()
    if plt is None:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
    draw(axes, runs, labelled)
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def save_curves(run_dir):
    """run_dir/curves.png; None (and a note) without matplotlib."""
    train, evals, config = read_run(run_dir)
    model = config.get("model_name_or_path") or config.get("config_name")
    title = f"{Path(run_dir).resolve().name}: {model}"
    path = save_figure({"run": (train, evals)}, title, Path(run_dir, "curves.png"), False)
    if path is None:
        print('Note: no curves.png: matplotlib is not installed (pip install -e ".[plots]").')
    return path


def best(evals, config):
    """(value, step) of metric_for_best_model over the run's evaluations; (None, None) if none."""
    name = config.get("metric_for_best_model", "eval_loss")
    scored = [(r[name], r["step"]) for r in evals if name in r]
    if not scored:
        return None, None
    pick = max if config.get("greater_is_better") else min
    return pick(scored, key=lambda pair: pair[0])


def compare_table(runs):
    """Markdown: each run's last training loss, last eval and best metric, then the options in
    which the runs' configs differ."""
    lines = ["| run | updates | last training loss | last evaluation | best |", "|---" * 5 + "|"]
    for label, (train, evals, config) in runs.items():
        last = evals[-1] if evals else {}
        scores = ", ".join(f"{n[5:]} {v:.4g}" for n, v in last.items() if n.startswith("eval_"))
        value, step = best(evals, config)
        metric = config.get("metric_for_best_model", "eval_loss")
        top = f"{metric[5:]} {value:.4g} at {step}" if value is not None else ""
        loss = f"{train[-1]['loss']:.4g}" if train else ""
        steps = train[-1]["step"] if train else 0
        lines.append(f"| {label} | {steps} | {loss} | {scores} | {top} |")
    configs = {label: config for label, (_, _, config) in runs.items()}
    names = sorted({name for config in configs.values() for name in config} - NAMING)
    differing = [n for n in names if len({json.dumps(c.get(n)) for c in configs.values()}) > 1]
    lines += ["", "Options that differ:", ""]
    if not differing:
        return "\n".join(lines + ["none: the runs share every option.", ""])
    lines += ["| option | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
    for name in differing:
        lines.append(f"| {name} | " + " | ".join(str(c.get(name)) for c in configs.values()) + " |")
    return "\n".join(lines + [""])


def compare(run_dirs, out):
    """out/compare.png and out/compare.md for several runs; labels are the run directories'
    names."""
    runs = {Path(d).resolve().name: read_run(d) for d in run_dirs}
    if len(runs) < len(run_dirs):
        raise SystemExit("error: give runs whose directories have different names.")
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "compare.md").write_text(compare_table(runs))
    curves = {label: (train, evals) for label, (train, evals, _) in runs.items()}
    picture = save_figure(curves, f"{len(runs)} runs compared", Path(out, "compare.png"), True)
    return picture, Path(out, "compare.md")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="Output directories of runs.")
    parser.add_argument(
        "--out", default="compare", help="Several runs: the folder for compare.png and compare.md."
    )
    args = parser.parse_args(argv)
    if pyplot() is None:
        print('Note: no pictures: matplotlib is not installed (pip install -e ".[plots]").')
    written = [save_curves(args.runs[0])] if len(args.runs) == 1 else compare(args.runs, args.out)
    for path in filter(None, written):
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
