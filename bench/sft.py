"""The sft task's benchmark: packing against padded batches, and the generated train.py against
TRL's SFTTrainer, on the same model, conversations, max_length, batch, schedule and epoch.

    .venv/bin/python bench/sft.py                   # about 17 minutes on 2 cores
    .venv/bin/python bench/sft.py --repeats 1 --rows sample   # a minute

Rows (PyTorch's default threads, what users get; fp32; one epoch; eval and checkpoints off):

    sample        the project's tiny model (2 layers, 64 wide) on 600 bundled conversations
                  (about 35 tokens each), max_length 128, batch 8
    long-tailed   a GPT-2-shaped decoder of 45M parameters (6 layers, 512 wide, 50,257-token
                  vocabulary, random weights, built here: nothing is downloaded) on conversations
                  whose number of turns follows a long tail (lognormal: median 3 question-answer
                  pairs, about 75 tokens; the longest truncated at max_length 512), batch 2

    lora          the long-tailed row's work, packed, with every weight trained against LoRA
                  adapters (use_peft, r 16 on the attention's c_attn, PEFT's default for GPT-2):
                  time per update, peak memory, and the size of final/ (adapter vs full model)
    vocab-50k     the long-tailed row's model and conversations in packed rows of 1,024 tokens,
                  batch 2, loss_type nll against chunked_nll (lm_loss.py): peak memory and time
                  per update. The fp32 logits of one micro-batch are 2 x 1,024 x 50,257 x 4 bytes
                  = 412 MB; nll also holds their log-softmax and, in the backward pass, their
                  gradient. causal-lm computes its loss with the same lm_loss.py.

Contenders, each a fresh process under bench/probe.py (which records when every optimizer
update ends), in an order rotated every repeat:

    train.py packed     the generated project, packing=true (bfd rows of max_length tokens)
    train.py padded     packing=false: one conversation per row, padded to the batch's longest
    SFTTrainer          TRL's trainer (bench/sft_trainer_run.py), packing=true with bfd, which
                        TRL trains padding-free (each batch flattened into one row)

Throughput is document tokens per second: the tokens of the epoch's conversations (after
truncation at max_length; the same for every contender) over the time of the epoch's updates
(the steady time per update, from the probe, times the number of updates). Padding does not
count: it is the work packing saves.
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

from benchmark import bake

BENCH = Path(__file__).resolve().parent
DECODER = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 512, "n_layer": 6, "n_head": 8,
    "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
}  # fmt: skip
ROWS = {
    "sample": {"max_length": 128, "batch": 8, "learning_rate": 3e-3, "conversations": 600},
    "long-tailed": {"max_length": 512, "batch": 2, "learning_rate": 3e-4, "conversations": 240},
}
CONTENDERS = ("train.py packed", "train.py padded", "SFTTrainer")
# The lora row: the long-tailed work, all weights trained against LoRA adapters (use_peft).
ROWS["lora"] = ROWS["long-tailed"]
CONTENDERS_OF = {"lora": ("train.py packed", "train.py LoRA")}
# The vocab-50k row: the long-tailed model and data in rows of 1,024 tokens, nll vs chunked_nll.
ROWS["vocab-50k"] = {**ROWS["long-tailed"], "max_length": 1024}
CONTENDERS_OF["vocab-50k"] = ("train.py packed", "train.py chunked")


def prepare(row, project, root):
    """(model directory, train file, the epoch's document tokens) of a row."""
    import torch
    import transformers

    tiny = project / "assets" / "tiny-model"
    bundled = [json.loads(line) for line in (project / "assets" / "data" / "train.jsonl").open()]
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny)
    # Weights (random, seed 0) saved as a pretrained model, which every contender loads.
    model_dir = root / row / "model"
    if row == "sample":
        config = transformers.AutoConfig.from_pretrained(tiny)
        conversations = bundled[: ROWS[row]["conversations"]]
    else:
        config = transformers.GPT2Config(
            **DECODER, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        conversations = long_tailed(bundled, ROWS[row]["conversations"])
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    train_file = root / row / "train.jsonl"
    train_file.write_text("".join(json.dumps(c) + "\n" for c in conversations))
    max_length = ROWS[row]["max_length"]
    lengths = [len(tokenizer.apply_chat_template(c["messages"])["input_ids"]) for c in conversations]
    return model_dir, train_file, sum(min(n, max_length) for n in lengths)


def long_tailed(bundled, count, seed=0):
    """Conversations of k question-answer pairs from the sample, k lognormal (median 3)."""
    rng = random.Random(seed)
    pairs = [m["messages"][-2:] for m in bundled]
    out = []
    for _ in range(count):
        k = min(60, max(1, round(rng.lognormvariate(1.1, 1.0))))
        out.append({"messages": [message for _ in range(k) for message in rng.choice(pairs)]})
    return out


def command(contender, row, model_dir, train_file, project, out):
    settings = ROWS[row]
    common = {
        "max_length": settings["max_length"], "per_device_train_batch_size": settings["batch"],
        "learning_rate": settings["learning_rate"], "warmup_steps": 2, "logging_steps": 5,
        "seed": 42, "output_dir": out,
    }  # fmt: skip
    if contender == "SFTTrainer":
        script = BENCH / "sft_trainer_run.py"
        options = {**common, "model_dir": model_dir, "train_file": train_file}
    else:
        script = project / "train.py"
        options = {
            **common, "model_name_or_path": model_dir, "config_name": "null", "dataset_name": "null",
            "train_file": train_file, "packing": "false" if contender.endswith("padded") else "true",
            "use_peft": "true" if contender.endswith("LoRA") else "false",
            "loss_type": "chunked_nll" if contender.endswith("chunked") else "nll",
            # Its own validation file, so that no split is carved from the training conversations.
            "validation_file": project / "assets" / "data" / "validation.jsonl",
            "num_train_epochs": 1, "weight_decay": 0.01, "max_grad_norm": 1.0, "lr_scheduler_type": "linear",
            "eval_strategy": "no", "save_strategy": "no", "report_to": "none", "mixed_precision": "no",
            "overwrite_output_dir": "true",
        }  # fmt: skip
    argv = [x for key, value in options.items() for x in (f"--{key}", str(value))]
    return [sys.executable, str(BENCH / "probe.py"), str(Path(out) / "probe.json"), str(script), *argv]


def run(contender, row, model_dir, train_file, tokens, project, run_dir):
    run_dir.mkdir(parents=True)
    out = run_dir / "output"
    out.mkdir()
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(run_dir / "datasets-cache"), "TOKENIZERS_PARALLELISM": "false",
    }  # fmt: skip
    env.pop("OMP_NUM_THREADS", None)
    cmd = command(contender, row, model_dir, train_file, project, out)
    started = time.time()
    with (run_dir / "log.txt").open("w") as log:
        process = subprocess.Popen(cmd, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    result = {"contender": contender, "row": row, "rc": os.waitstatus_to_exitcode(status)}
    result.update(wall=time.time() - started, cpu=usage.ru_utime + usage.ru_stime)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    if result["rc"] != 0:
        print(f"  ! {contender} ({row}) failed:\n{(run_dir / 'log.txt').read_text()[-2000:]}", file=sys.stderr)
        return result
    times = json.loads((out / "probe.json").read_text())["update_times"]
    steady = (times[-1] - times[0]) / (len(times) - 1)
    result.update(updates=len(times), update_s=steady, tokens_per_s=tokens / (steady * len(times)))
    result["final_mb"] = sum(f.stat().st_size for f in (out / "final").glob("*.safetensors")) / 2**20
    return result


def ratio(results, row, contender, other, key):
    """The median over repeats of contender's value over other's in the same repeat of a row."""
    done = [r for r in results if r["row"] == row and r["rc"] == 0]
    pairs = [
        (a[key], b[key])
        for a in done
        for b in done
        if a["contender"] == contender and b["contender"] == other and a["repeat"] == b["repeat"]
    ]
    return statistics.median(x / y for x, y in pairs) if pairs else float("nan")


def report(results, tokens, args, started):
    lines = [
        "# Benchmark: the sft task's packing, and train.py against TRL's SFTTrainer (CPU)",
        "",
        f"- Command: `.venv/bin/python bench/sft.py --repeats {args.repeats} --rows {args.rows}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} ({(time.time() - started) / 60:.1f} min)",
        f"- Machine: {os.cpu_count()} CPUs; default threads; {versions()}",
        "- Method: bench/sft.py's docstring. Ratios: medians over repeats of per-repeat ratios.",
        "",
        "| row | goal | measured | verdict |",
        "|---|---|---|---|",
    ]
    goals = []
    for row in args.rows.split(","):
        if row in ("lora", "vocab-50k"):
            other, what = ("train.py LoRA", "LoRA") if row == "lora" else ("train.py chunked", "chunked_nll")
            versus = "full fine-tuning" if row == "lora" else "nll"
            goals += [
                (row, f"{what} {measure} vs {versus}", ratio(results, row, other, "train.py packed", key), None)
                for measure, key in (("s/update", "update_s"), ("peak memory", "peak_rss_mb"), ("final/ size", "final_mb"))
                if not (row == "vocab-50k" and key == "final_mb")
            ]  # fmt: skip
            continue
        speedup = ratio(results, row, "train.py packed", "train.py padded", "tokens_per_s")
        versus = ratio(results, row, "train.py packed", "SFTTrainer", "wall")
        goals += [
            (row, "packed tokens/s ≥ 1.5× padded" if row == "long-tailed" else "packed tokens/s vs padded",
             speedup, speedup >= 1.5 if row == "long-tailed" else None),
            (row, "faster than SFTTrainer, whole process (wall)", versus, versus < 1),
            (row, "tokens/s vs SFTTrainer", ratio(results, row, "train.py packed", "SFTTrainer", "tokens_per_s"), None),
            (row, "peak memory vs SFTTrainer", ratio(results, row, "train.py packed", "SFTTrainer", "peak_rss_mb"), None),
        ]  # fmt: skip
    for row, goal, value, verdict in goals:
        mark = "" if verdict is None else ("PASS" if verdict else "FAIL")
        lines.append(f"| {row} | {goal} | {value:.3f}× | {mark} |")
    lines += [
        "",
        "| row | contender | runs ok | wall s | CPU s | updates | s/update | tokens/s | peak RSS MB | final/ MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in args.rows.split(","):
        for contender in CONTENDERS_OF.get(row, CONTENDERS):
            ok = [r for r in results if r["row"] == row and r["contender"] == contender and r["rc"] == 0]
            runs = sum(1 for r in results if r["row"] == row and r["contender"] == contender)
            if not ok:
                lines.append(f"| {row} | {contender} | 0/{runs} | | | | | | | |")
                continue

            def med(key, ok=ok):
                return statistics.median(r[key] for r in ok)

            lines.append(
                f"| {row} | {contender} | {len(ok)}/{runs} | {med('wall'):.1f} | {med('cpu'):.1f} | "
                f"{ok[0]['updates']} | {med('update_s'):.3f} | {med('tokens_per_s'):.0f} | {med('peak_rss_mb'):.0f} | {med('final_mb'):.1f} |"
            )
    lines += ["", "Document tokens per epoch: " + ", ".join(f"{row} {n}" for row, n in tokens.items()), ""]
    return "\n".join(lines)


def versions():
    import torch
    import transformers
    import trl

    return f"Python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", default="sample,long-tailed,lora,vocab-50k")
    parser.add_argument("--output", default=None, help="Also write the report to this file.")
    args = parser.parse_args()
    started = time.time()
    results, tokens = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = bake("sft", root)
        for row in args.rows.split(","):
            model_dir, train_file, tokens[row] = prepare(row, project, root)
            for repeat in range(args.repeats):
                contenders = CONTENDERS_OF.get(row, CONTENDERS)
                turn = repeat % len(contenders)
                order = contenders[turn:] + contenders[:turn]
                for contender in order:
                    run_dir = root / "runs" / row / str(repeat) / contender.replace(" ", "-")
                    result = run(contender, row, model_dir, train_file, tokens[row], project, run_dir)
                    result["repeat"] = repeat
                    results.append(result)
                    print(
                        json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}),
                        flush=True,
                    )
    text = report(results, tokens, args, started)
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
