"""The benchmark's real-size rows: what users train, at the thread settings they get.

Each row fine-tunes a model of a real size (bench/real_models.py: a MiniLM-size encoder, a
GPT-2-small decoder) saved to a local directory, with the generated train.py, the floor and the
Trainer: same data, batch, schedule, fp32, number of updates, and one evaluation after the last
update (eval is part of a run). Contenders alternate, order rotated each repeat, as the tiny rows.

    encoder              default threads (what users get): the row that decides the goals,
                         with lockstep turns against the floor and the Trainer
    encoder, 1 thread    OMP_NUM_THREADS=1: CPU time without thread spin-waits
    encoder, loaded      default threads while another process keeps one core busy (a shared
                         machine): how much each loop slows down
    encoder, loaded, 1 thread
                         the same load with OMP_NUM_THREADS=1: what setting the threads to the
                         cores a job actually gets is worth
    decoder packed/padded GPT-2 small, 512-token blocks, packing on and off
"""

import math
import statistics
import subprocess
import sys

import real_models
from benchmark import fmt, lockstep, median, paired_ratio, run_one, summed_ratio

CONTENDERS = ("train.py", "floor", "Trainer")
ENCODER = {
    "model": "encoder", "task": "text-classification", "updates": 63, "warmup": 10, "turn": 4,
    "options": {
        "per_device_train_batch_size": 32, "max_seq_length": 64, "learning_rate": 5e-5, "warmup_steps": 6,
        "per_device_eval_batch_size": 64, "logging_steps": 10,
    },
}  # fmt: skip
DECODER = {
    "model": "decoder", "task": "causal-lm", "updates": 10, "warmup": 2, "turn": 1,
    "options": {
        "per_device_train_batch_size": 2, "block_size": 512, "learning_rate": 3e-4, "warmup_steps": 2,
        "per_device_eval_batch_size": 4, "logging_steps": 5,
    },
}  # fmt: skip


def rows(args):
    """(name, row) pairs of a full run, or of --quick (one short encoder row)."""
    if args.quick:
        return [("encoder, quick", {**ENCODER, "updates": 30, "warmup": 5, "threads": None, "repeats": 1})]
    chosen = [
        ("encoder", {**ENCODER, "threads": None, "repeats": args.real_repeats, "lockstep": True}),
        ("encoder, 1 thread", {**ENCODER, "threads": 1, "repeats": 2}),
        ("encoder, loaded", {**ENCODER, "threads": None, "repeats": 2, "load": True, "only": ("train.py", "Trainer")}),
        ("encoder, loaded, 1 thread", {**ENCODER, "threads": 1, "repeats": 1, "load": True, "only": ("train.py", "Trainer")}),
        ("decoder packed", {**DECODER, "threads": None, "repeats": args.decoder_repeats, "packing": "true"}),
        ("decoder padded", {**DECODER, "threads": None, "repeats": args.decoder_repeats, "packing": "false"}),
    ]  # fmt: skip
    wanted = {name.strip() for name in (args.real_rows or "").split(",") if name.strip()}
    if wanted - {name for name, _ in chosen}:
        sys.exit(f"--real-rows takes names from: {', '.join(name for name, _ in chosen)}.")
    return [(name, row) for name, row in chosen if not wanted or name in wanted]


def busy_core():
    """Another process keeping one core busy with one-thread matrix products."""
    code = "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n"
    return subprocess.Popen([sys.executable, "-c", code])


def run(args, root, projects, counter):
    """Runs every real-size row; returns (results, lockstep pairs by (row, other), counter)."""
    results, lock, built = [], {}, {}
    for name, row in rows(args):
        project = projects[row["task"]]
        if row["model"] not in built:
            built[row["model"]] = real_models.build(row["model"], project, root / "real")
        model_dir, train_file, validation_file = built[row["model"]]
        row["options"] = {
            **row["options"], "model_name_or_path": model_dir, "train_file": train_file,
            "validation_file": validation_file, **({"packing": row["packing"]} if "packing" in row else {}),
        }  # fmt: skip
        load = busy_core() if row.get("load") else None
        try:
            for repeat in range(row["repeats"]):
                contenders = list(row.get("only", CONTENDERS))
                shift = repeat % len(contenders)
                for contender in contenders[shift:] + contenders[:shift]:
                    counter += 1
                    run_dir, cache = root / f"run-{counter}", root / f"data-cache-{counter}"
                    result = run_one(contender, row["task"], project, run_dir, cache, args, row["updates"], row=row)
                    result.update(repeat=repeat, row=name)
                    results.append(result)
                    print(f"  [{repeat}] {name:17} {contender:9} rc={result['rc']} wall={result['wall']:.1f}s "
                          f"cpu={result['cpu']:.1f}s upd={1 / result.get('steady_ups', math.nan):.3f}s "
                          f"eval={result.get('eval_seconds', math.nan):.2f}s rss={result['peak_rss_mb']:.0f}MB",
                          file=sys.stderr)  # fmt: skip
            for other in ("floor", "Trainer") if row.get("lockstep") else ():
                for order in (("train.py", other), (other, "train.py")):
                    counter += 1
                    pairs = lockstep(row["task"], project, root / f"run-{counter}", args, order, row=row)
                    pairs = pairs if order[0] == "train.py" else [(b, a) for a, b in pairs]
                    lock.setdefault((name, other), []).extend(pairs)
                    print(f"  lockstep {name}: {' then '.join(order)}: {len(pairs)} turns, train.py/{other} "
                          f"{summed_ratio(pairs):.3f}", file=sys.stderr)  # fmt: skip
        finally:
            if load:
                load.kill()
                load.wait()
    return results, lock, counter


def summarize(results, lock, args):
    """The real-size tables and their verdicts, as markdown lines."""
    lines = [
        "| row | contender | runs ok | wall s | ×floor | ×Trainer | CPU s | ×floor | ×Trainer | update s | ×floor "
        "| ×Trainer | CPU s/upd | ×Trainer | eval s | ×Trainer | peak RSS MB | ×floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    names = list(dict.fromkeys(r["row"] for r in results))
    for name in names:
        runs = [r for r in results if r["row"] == name]
        for r in runs:  # seconds per update, so that every ratio below reads "above 1: slower"
            r["update_s"] = 1 / r["steady_ups"] if r.get("steady_ups") else math.nan
            r["cpu_s_per_update"] = r["cpu_ms_per_update"] / 1000 if "cpu_ms_per_update" in r else math.nan
        contenders = [c for c in CONTENDERS if any(r["contender"] == c for r in runs)]
        for contender in contenders:
            ok = [r for r in runs if r["contender"] == contender and r["rc"] == 0]

            def cell(key, digits, *references):
                ratios = [
                    fmt(paired_ratio(runs, contender, key, reference=ref), 3)
                    if contender != ref and any(r["contender"] == ref for r in runs) else "-"
                    for ref in references
                ]  # fmt: skip
                return " | ".join([fmt(median([r.get(key) for r in ok]), digits), *ratios])

            lines.append(
                f"| {name} | {contender} | {len(ok)}/{sum(r['contender'] == contender for r in runs)} "
                f"| {cell('wall', 1, 'floor', 'Trainer')} | {cell('cpu', 1, 'floor', 'Trainer')} "
                f"| {cell('update_s', 3, 'floor', 'Trainer')} | {cell('cpu_s_per_update', 3, 'Trainer')} "
                f"| {cell('eval_seconds', 2, 'Trainer')} | {cell('peak_rss_mb', 0, 'floor')} |"
            )

        def versus(key, reference):
            return paired_ratio(runs, "train.py", key, reference=reference)

        def verdict(goal, value, limit, strict=False):
            passed = not math.isnan(value) and (value < limit if strict else value <= limit)
            verdicts.append((name, goal, f"{fmt(value, 3)}×", "PASS" if passed else "FAIL"))

        verdict("faster than the Trainer, whole process (wall)", versus("wall", "Trainer"), 1, strict=True)
        verdict("faster than the Trainer, whole process (CPU time)", versus("cpu", "Trainer"), 1, strict=True)
        verdict("faster than the Trainer, steady update time", versus("update_s", "Trainer"), 1, strict=True)
        if any(r["contender"] == "floor" for r in runs):
            verdict("steady update time within 3% of the floor", versus("update_s", "floor"), 1.03)
            verdict("peak memory within 5% of the floor", versus("peak_rss_mb", "floor"), 1.05)
        verdict("eval no slower than the Trainer's evaluate()", versus("eval_seconds", "Trainer"), 1)
        for (row_name, other), pairs in lock.items():
            if row_name != name:
                continue
            value = summed_ratio(pairs)
            turn_ratios = [a / b for a, b in pairs]
            quartiles = statistics.quantiles(turn_ratios, n=4) if len(pairs) > 1 else [math.nan] * 3
            goal = "within 3% of the floor" if other == "floor" else "faster than the Trainer's"
            passed = value <= 1.03 if other == "floor" else value < 1
            verdicts.append((name, f"steady update time {goal}, lockstep turns",
                             f"{fmt(value, 3)}× ({len(pairs)} turns; per turn: median {fmt(quartiles[1], 3)}, "
                             f"quartiles {fmt(quartiles[0], 3)}-{fmt(quartiles[2], 3)})", "PASS" if passed else "FAIL"))  # fmt: skip
    quiet = [r for r in results if r["row"] == "encoder" and r["rc"] == 0]
    loaded = [r for r in results if r["row"] == "encoder, loaded" and r["rc"] == 0]
    if quiet and loaded:
        slowdown = {
            c: median([r["wall"] for r in loaded if r["contender"] == c])
            / median([r["wall"] for r in quiet if r["contender"] == c])
            for c in ("train.py", "Trainer")
        }
        text = f"train.py {fmt(slowdown['train.py'], 2)}×, Trainer {fmt(slowdown['Trainer'], 2)}× their quiet wall time"
        passed = slowdown["train.py"] <= slowdown["Trainer"]
        verdicts.append(("encoder, loaded", "slows down no more than the Trainer", text, "PASS" if passed else "FAIL"))
    goal_lines = ["| row | goal | measured (train.py ÷ other) | verdict |", "|---|---|---|---|"]
    goal_lines += [f"| {row} | {goal} | {value} | {v} |" for row, goal, value, v in verdicts]
    return goal_lines, lines
