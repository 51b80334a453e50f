"""What each speed choice of the generated train.py is worth at real size: the MiniLM-size
encoder row (bench/real_size.py; --model decoder: the GPT-2-small packed row), run with the
generated project as it is and with one choice undone at a time, alternating, at default threads.

    .venv/bin/python bench/ablation.py [--repeats 2] [--updates 30] [--model decoder --updates 6]

Variants (each edits one line of a copy of the generated project):
    as generated             fused AdamW, freed CPU memory kept, evaluation longest first
    per-tensor AdamW         optim.py: fused=None (PyTorch's default on CPU)
    CPU memory handed back   train.py: keep_freed_cpu_memory() not called
    evaluation in file order data.py: the validation set is not sorted by length
    large blocks mapped      train.py: blocks from 64 MB get their own mapping (freed at once)
    logits kept ...          train.py: a batch's logits live until the next batch's are made
"""

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import real_models
import real_size
from benchmark import bake, run_one

VARIANTS = {
    "as generated": [],
    "per-tensor AdamW": [("trainkit/optim.py", "fused=fused or None", "fused=None")],
    "CPU memory handed back": [
        ("trainkit/processes.py", "    keep_freed_cpu_memory(accelerator.device)\n", "    pass\n")
    ],
    "evaluation in file order": [("trainkit/data.py", 'if "input_ids" in eval_set.column_names:', "if False:")],
    "large blocks mapped (64 MB threshold)": [
        (
            "trainkit/processes.py",
            "libc.mallopt(-4, 0)  # M_MMAP_MAX: no block gets a mapping of its own",
            "libc.mallopt(-3, 64 * 2**20)  # M_MMAP_THRESHOLD: blocks from 64 MB get a mapping",
        ),
    ],
    "logits kept to the next batch": [
        (
            "train.py",
            "        del logits  # the largest tensor here: gone before the next batch's forward makes its own\n",
            "",
        ),
        (
            "train.py",
            "losses = task.summed_losses(cfg, model, batch)[0]  # the logits are not kept",
            "losses, _ = task.summed_losses(cfg, model, batch)",
        ),
    ],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--model", choices=["encoder", "decoder"], default="encoder")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated; default: all.")
    args = parser.parse_args()
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    args.batch, args.warmup_updates = 16, 5  # tiny-row defaults that the row's options replace
    root = Path(tempfile.mkdtemp(prefix="ablation-"))
    shape = real_size.ENCODER if args.model == "encoder" else {**real_size.DECODER, "packing": "true"}
    project = bake(shape["task"], root)
    model_dir, train_file, validation_file = real_models.build(args.model, project, root / "real")
    row = {**shape, "updates": args.updates, "warmup": min(5, args.updates // 3), "threads": None}
    row["options"] = {
        **row["options"], "model_name_or_path": model_dir, "train_file": train_file,
        "validation_file": validation_file, **({"packing": "true"} if args.model == "decoder" else {}),
    }  # fmt: skip
    projects = {}
    for name, edits in variants.items():
        copy = root / name.replace(" ", "-")
        shutil.copytree(project, copy)
        for file, old, new in edits:
            text = (copy / file).read_text()
            assert text.count(old) == 1, f"{name}: '{old}' not found once in {file}"
            (copy / file).write_text(text.replace(old, new))
        projects[name] = copy
    times = {name: {"update": [], "eval": [], "wall": []} for name in variants}
    counter = 0
    for repeat in range(args.repeats):
        names = list(variants)
        names = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in names:
            counter += 1
            run_dir, cache = root / f"run-{counter}", root / f"cache-{counter}"
            result = run_one("train.py", row["task"], projects[name], run_dir, cache, args, row["updates"], row=row)
            if result["rc"] != 0:
                sys.exit(f"{name} failed")
            times[name]["update"].append(1 / result["steady_ups"])
            times[name]["eval"].append(result["eval_seconds"])
            times[name]["wall"].append(result["wall"])
            print(f"  [{repeat}] {name:25} update {1 / result['steady_ups']:.3f} s, eval "
                  f"{result['eval_seconds']:.2f} s, wall {result['wall']:.1f} s", file=sys.stderr)  # fmt: skip
    base = {key: statistics.median(values) for key, values in times["as generated"].items()}
    print(
        f"| variant ({args.repeats} runs each, medians) | update s | ×as generated | eval s | ×as generated | wall s |"
    )
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        m = {key: statistics.median(v) for key, v in values.items()}
        print(f"| {name} | {m['update']:.3f} | {m['update'] / base['update']:.3f} | {m['eval']:.2f} "
              f"| {m['eval'] / base['eval']:.3f} | {m['wall']:.1f} |")  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
