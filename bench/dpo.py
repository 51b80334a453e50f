"""The dpo task's benchmark: the generated train.py against TRL's DPOTrainer, per update and in
peak memory, on the same model, preference pairs, max_length, batch, schedule and updates.

    .venv/bin/python bench/dpo.py                      # 2 repeats: about 13 minutes on 2 quiet cores
    .venv/bin/python bench/dpo.py --repeats 3 --output bench/results-cpu-dpo.md   # 19 minutes
    .venv/bin/python bench/dpo.py --quick              # one repeat of 6 updates a row: about 4 minutes
    .venv/bin/python bench/dpo.py --rows lora --repeats 3

The model is bench/sft.py's DECODER: GPT-2-shaped, 6 layers, 512 wide, 50,257-token
vocabulary, 45M parameters, random weights (seed 0) built from a config and saved as a
pretrained model that every contender loads (nothing is downloaded). Its tokenizer is the
project's tiny one, with its chat template, as in bench/sft.py and bench/real_models.py: the ids
use a corner of the vocabulary, which changes no tensor shape, so no time or memory.

The pairs are TRL's conversational preference format, made here from the bundled sample by a
seeded generator: a prompt of a few earlier question-answer turns (lognormal, median about 2;
a system message in 3 of 10) and a last question, a chosen and a rejected answer each followed
by further answer sentences (lognormal, median about 8). The default 24 pairs: sequences of
119 tokens at the median (prompt 59), up to 441, 304 tokens a pair (chosen and rejected
sequences, prompt in each); longer ones would be cut at max_length 512 (keep_start), none is
here. There are exactly updates x batch pairs: one epoch, so both sides precompute the
reference for the pairs they train on. Both draw them in the same order (train.py's
permutation; bench/dpo_trainer_run.py uses common.TrainOrder), so each update pads the same
pairs to the same length. The report checks that both tokenize every pair to the same prompt,
chosen and rejected token counts.

Rows (fp32, PyTorch's default threads, batch 2 pairs, one update per batch, beta 0.1, the
sigmoid loss, learning rate 1e-5 with 2 warmup updates and a linear decay, no weight decay,
max_grad_norm 1, dropout off, gradient checkpointing off, evaluation and checkpoints off, a log
every 5 updates, the final model saved; train.py draws no curves, as TRL does not):

    full          full fine-tuning, the reference live: train.py's frozen copy of the starting
                  weights against TRL's default, a second copy loaded from the model directory
    precompute    precompute_ref_log_probs=true on both sides: the reference's log probabilities
                  computed once, before training, and no reference forward in the updates
    lora          use_peft, r 16, alpha 32, PEFT's default targets for GPT-2 (c_attn); the
                  reference is the policy with its adapters off on both sides (TRL gets a
                  peft_config). Adapter dropout 0 on both sides: TRL's disable_dropout turns it
                  off, train.py's leaves lora_dropout (0.05 by default) on

Contenders, each a fresh process under bench/probe.py (which records when every optimizer update
ends), in an order rotated every repeat: train.py (the generated project, unmodified) and
DPOTrainer (bench/dpo_trainer_run.py). Measures: s/update, the steady time per update (from the
first update's end to the last's, over the updates between: the updates only, so precompute's
reference forwards before training are not in it); CPU s/update, the process CPU time over the
same window; wall, the whole process from spawn to exit (imports, data, precompute, updates,
saving); peak RSS, ru_maxrss of the process. Ratios are medians over repeats of per-repeat
ratios (train.py over DPOTrainer; below 1: train.py is faster or smaller). The losses at the
first and last steps both logged are shown: the same weights, pairs and order give the same
numbers to about 1e-5 (LoRA's adapters are drawn at random on each side).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TEMPLATE = BENCH.parent
sys.path.insert(0, str(BENCH))
from benchmark import bake  # noqa: E402
from sft import DECODER  # noqa: E402  (the sft row's model: one shape for both benchmarks)

COMMON = {
    "max_length": 512, "per_device_train_batch_size": 2, "learning_rate": 1e-5, "warmup_steps": 2,
    "logging_steps": 5, "seed": 42, "beta": 0.1,
}  # fmt: skip
ROWS = {
    "full": {"precompute_ref_log_probs": "false", "use_peft": "false"},
    "precompute": {"precompute_ref_log_probs": "true", "use_peft": "false"},
    "lora": {"precompute_ref_log_probs": "false", "use_peft": "true"},
}
LORA = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0}
CONTENDERS = ("train.py", "DPOTrainer")


def prepare(project, root, count):
    """(model directory, train file) shared by every row."""
    import torch
    import transformers

    tiny = project / "assets" / "tiny-model"
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny)
    config = transformers.GPT2Config(
        **DECODER, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model_dir = root / "model"
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    bundled = [json.loads(line) for line in (project / "assets" / "data" / "train.jsonl").open()]
    train_file = root / "train.jsonl"
    train_file.write_text("".join(json.dumps(pair) + "\n" for pair in longer_pairs(bundled, count)))
    return model_dir, train_file


def longer_pairs(bundled, count, seed=0):
    """Conversational pairs made of the sample's: earlier turns before the last question, and
    answers of several sentences (both counts lognormal)."""
    rng = random.Random(seed)
    turns = [(p["prompt"][-1]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in bundled]
    sentences = sorted({text for turn in turns for text in turn[1:]})
    systems = sorted({m["content"] for p in bundled for m in p["prompt"] if m["role"] == "system"})

    def answer(first):
        more = min(60, max(0, round(rng.lognormvariate(2.2, 0.9)) - 1))
        return [{"role": "assistant", "content": " ".join([first, *(rng.choice(sentences) for _ in range(more))])}]

    pairs = []
    for _ in range(count):
        prompt = [{"role": "system", "content": rng.choice(systems)}] if rng.random() < 0.3 else []
        for _ in range(min(12, max(0, round(rng.lognormvariate(1.2, 1.0)) - 1))):
            question, reply, _ = rng.choice(turns)
            prompt += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        question, chosen, rejected = rng.choice(turns)
        prompt.append({"role": "user", "content": question})
        pairs.append({"prompt": prompt, "chosen": answer(chosen), "rejected": answer(rejected)})
    return pairs


def our_tokens(project, model_dir, train_file):
    """Each pair's prompt, chosen and rejected token counts as the project's pairs.py makes them
    (before truncation), in the form dpo_trainer_run.py writes TRL's."""
    import transformers

    sys.path.insert(0, str(project))
    from trainkit.pairs import pair_tokens

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    counts = {"prompt": [], "chosen": [], "rejected": []}
    for line in train_file.open():
        pair = json.loads(line)
        for name, ids in zip(counts, pair_tokens(pair["prompt"], pair["chosen"], pair["rejected"], tokenizer)):
            counts[name].append(len(ids))
    return counts


def command(contender, row, model_dir, train_file, project, out, updates):
    options = {**COMMON, **ROWS[row], "max_steps": updates, "output_dir": out}
    if ROWS[row]["use_peft"] == "true":
        options.update(LORA)
    if contender == "DPOTrainer":
        script = BENCH / "dpo_trainer_run.py"
        options.update(model_dir=model_dir, train_file=train_file)
    else:
        script = project / "train.py"
        options.update(
            model_name_or_path=model_dir, config_name="null", dataset_name="null", train_file=train_file,
            # train.py reads a validation file even with evaluation off: the bundled one (100 short
            # pairs), so that no split is carved from the training pairs.
            validation_file=project / "assets" / "data" / "validation.jsonl",
            loss_type="sigmoid", truncation_mode="keep_start", disable_dropout="true", gradient_accumulation_steps=1,
            weight_decay=0.0, max_grad_norm=1.0, lr_scheduler_type="linear", eval_strategy="no", save_strategy="no",
            report_to="none", mixed_precision="no", gradient_checkpointing="false", plot_curves="false",
            overwrite_output_dir="true",
        )  # fmt: skip
    argv = [x for key, value in options.items() for x in (f"--{key}", str(value))]
    return [sys.executable, str(BENCH / "probe.py"), str(Path(out) / "probe.json"), str(script), *argv]


def run(contender, row, model_dir, train_file, project, run_dir, updates):
    run_dir.mkdir(parents=True)
    out = run_dir / "output"
    out.mkdir()
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(run_dir / "datasets-cache"), "TOKENIZERS_PARALLELISM": "false",
    }  # fmt: skip
    env.pop("OMP_NUM_THREADS", None)
    cmd = command(contender, row, model_dir, train_file, project, out, updates)
    load = os.getloadavg()[0]
    started = time.time()
    with (run_dir / "log.txt").open("w") as log:
        process = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    result = {"contender": contender, "row": row, "rc": os.waitstatus_to_exitcode(status), "load": load}
    result.update(wall=time.time() - started, cpu=usage.ru_utime + usage.ru_stime)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    if result["rc"] != 0:
        print(f"  ! {contender} ({row}) failed:\n{(run_dir / 'log.txt').read_text()[-3000:]}", file=sys.stderr)
        return result
    probe = json.loads((out / "probe.json").read_text())
    times, cpu_times = probe["update_times"], probe["update_cpu_times"]
    result.update(
        updates=len(times),
        update_s=(times[-1] - times[0]) / (len(times) - 1),
        update_cpu_s=(cpu_times[-1] - cpu_times[0]) / (len(times) - 1),
        first_update_s=times[0] - started,
    )
    result["losses"] = logged_losses(contender, out)
    if contender == "DPOTrainer":
        result["tokens"] = json.loads((out / "tokens.json").read_text())
    return result


def logged_losses(contender, out):
    """{step: loss} of the training logs (TRL's log_history, train.py's metrics.jsonl)."""
    if contender == "DPOTrainer":
        logs = json.loads((out / "log_history.json").read_text())
    else:
        logs = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    return {log["step"]: log["loss"] for log in logs if "loss" in log}


def ratio(results, row, key):
    """The median over repeats of train.py's value over DPOTrainer's in the same repeat of a row."""
    done = [r for r in results if r["row"] == row and r["rc"] == 0]
    pairs = [
        (a[key], b[key])
        for a in done
        for b in done
        if a["contender"] == "train.py" and b["contender"] == "DPOTrainer" and a["repeat"] == b["repeat"]
    ]
    return statistics.median(x / y for x, y in pairs) if pairs else float("nan")


def token_check(ours, results, max_length):
    """A line on the pairs' tokens: per pair, and whether TRL's counts equal train.py's."""
    theirs = next((r["tokens"] for r in results if "tokens" in r), None)
    same = "not checked (no DPOTrainer run finished)"
    if theirs is not None:
        same = "the same for every pair" if theirs == ours else "DIFFERENT (see results json)"
    sequences = [
        min(max_length, prompt + completion)
        for name in ("chosen", "rejected")
        for prompt, completion in zip(ours["prompt"], ours[name])
    ]
    cut = sum(1 for name in ("chosen", "rejected") for p, c in zip(ours["prompt"], ours[name]) if p + c > max_length)
    pairs = len(ours["prompt"])
    return (
        f"Tokens: {pairs} pairs; per pair (chosen and rejected sequences, prompt in each, after truncation at "
        f"{max_length}) mean {sum(sequences) / pairs:.0f}; per sequence median {statistics.median(sequences):.0f}, "
        f"max {max(sequences)}; prompt median {statistics.median(ours['prompt']):.0f}; {cut} of {len(sequences)} "
        f"sequences cut at max_length. TRL's prompt, chosen and rejected token counts against train.py's: {same}."
    )


def report(results, ours, args, started):
    lines = [
        "# Benchmark: the dpo task's train.py against TRL's DPOTrainer (CPU)",
        "",
        f"- Command: `{' '.join(['.venv/bin/python bench/dpo.py', *sys.argv[1:]])}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} ({(time.time() - started) / 60:.1f} min)",
        f"- Template: {args.template}",
        f"- Machine: {os.cpu_count()} CPUs ({cpu_name()}); default threads; {versions()}",
        f"- Work: {args.updates} updates of {COMMON['per_device_train_batch_size']} pairs per run (one epoch), "
        f"max_length {COMMON['max_length']}, fp32; repeats: {args.repeats}, order rotated each repeat.",
        "- Method: bench/dpo.py's docstring. Ratios: medians over repeats of per-repeat ratios, train.py over "
        "DPOTrainer (below 1: train.py is faster or smaller).",
        f"- Load average (1 min) before runs: min {min(r['load'] for r in results):.1f}, median "
        f"{statistics.median(r['load'] for r in results):.1f}, max {max(r['load'] for r in results):.1f} "
        "(the machine is shared; the previous run of the benchmark counts too: one 2-thread run alone reads about 2).",
        "",
        "| row | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    for row in args.rows.split(","):
        per_update, memory = ratio(results, row, "update_s"), ratio(results, row, "peak_rss_mb")
        lines += [
            f"| {row} | faster than DPOTrainer per update (s/update) | {per_update:.3f}× | {verdict(per_update < 1)} |",
            f"| {row} | no more memory than DPOTrainer (peak RSS) | {memory:.3f}× | {verdict(memory <= 1)} |",
            f"| {row} | CPU time per update vs DPOTrainer | {ratio(results, row, 'update_cpu_s'):.3f}× | |",
            f"| {row} | whole process (wall) vs DPOTrainer | {ratio(results, row, 'wall'):.3f}× | |",
        ]
    lines += [
        "",
        "| row | contender | runs ok | wall s | first update s | updates | s/update | CPU s/update | peak RSS MB "
        "| loss at the first / last step both logged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in args.rows.split(","):
        for contender in CONTENDERS:
            ok = [r for r in results if r["row"] == row and r["contender"] == contender and r["rc"] == 0]
            runs = sum(1 for r in results if r["row"] == row and r["contender"] == contender)
            if not ok:
                lines.append(f"| {row} | {contender} | 0/{runs} | | | | | | | |")
                continue

            def med(key, ok=ok):
                return statistics.median(r[key] for r in ok)

            # The steps both contenders logged (train.py also logs the updates after the last full interval).
            steps = sorted(set.intersection(*(set(r["losses"]) for r in results if r["row"] == row and r["rc"] == 0)))
            logged = " / ".join(f"{ok[0]['losses'][step]:.4f}" for step in steps[:1] + steps[-1:]) if steps else ""
            lines.append(
                f"| {row} | {contender} | {len(ok)}/{runs} | {med('wall'):.1f} | {med('first_update_s'):.1f} | "
                f"{ok[0]['updates']} | {med('update_s'):.3f} | {med('update_cpu_s'):.3f} | {med('peak_rss_mb'):.0f} "
                f"| {logged} |"
            )
    lines += ["", token_check(ours, results, COMMON["max_length"]), "", "Every run, in the order run:", ""]
    lines += ["| row | repeat | contender | load | wall s | s/update | peak RSS MB |", "|---|---|---|---|---|---|---|"]
    for r in results:
        if r["rc"] != 0:
            lines.append(f"| {r['row']} | {r['repeat']} | {r['contender']} | {r['load']:.1f} | failed | | |")
            continue
        lines.append(
            f"| {r['row']} | {r['repeat']} | {r['contender']} | {r['load']:.1f} | {r['wall']:.1f} | "
            f"{r['update_s']:.3f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def template_version():
    """The commit the project was baked from, and whether the template had uncommitted changes
    (cookiecutter bakes the working tree as it is)."""
    git = ["git", "-C", str(TEMPLATE)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--", "{{cookiecutter.project_slug}}"], capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "baked from the working tree (no git)"
    dirty = " plus uncommitted changes" if changes.stdout.strip() else ""
    return f"baked from commit {commit.stdout.strip()}{dirty}"


def verdict(passed):
    return "PASS" if passed else "FAIL"


def cpu_name():
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        return names[0]
    except (OSError, IndexError):
        return "unknown"


def versions():
    import peft
    import torch
    import transformers
    import trl

    return (
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl.__version__}, peft {peft.__version__}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--updates", type=int, default=12, help="Updates per run (and pairs: updates x batch).")
    parser.add_argument("--quick", action="store_true", help="A smoke check: 1 repeat of 6 updates.")
    parser.add_argument(
        "--output", default=None, help="Also write the report here, and every run's numbers beside it (.json)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (logs, outputs).")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.updates = 1, 6
    started = time.time()
    results = []
    tmp = tempfile.mkdtemp(prefix="bench-dpo-")
    root = Path(tmp)
    args.template = template_version()
    project = bake("dpo", root)
    pairs = args.updates * COMMON["per_device_train_batch_size"]
    model_dir, train_file = prepare(project, root, pairs)
    ours = our_tokens(project, model_dir, train_file)
    for row in args.rows.split(","):
        for repeat in range(args.repeats):
            turn = repeat % len(CONTENDERS)
            for contender in CONTENDERS[turn:] + CONTENDERS[:turn]:
                run_dir = root / "runs" / row / str(repeat) / contender.replace(".", "-")
                result = run(contender, row, model_dir, train_file, project, run_dir, args.updates)
                result["repeat"] = repeat
                results.append(result)
                shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items() if k != "tokens"}
                print(json.dumps(shown), flush=True)
    text = report(results, ours, args, started)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
        raw = {"results": results, "train_py_tokens": ours, "settings": {**COMMON, "updates": args.updates}}
        Path(args.output).with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    if args.keep:
        print(f"Kept: {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
