"""streaming=true against data on disk, in a generated causal-lm project (bench/README.md).

    .venv/bin/python bench/streaming.py                  # about 10 minutes; writes 2.2 GB in /tmp
    .venv/bin/python bench/streaming.py --large-gb 0.5   # a quicker look

1. Memory does not grow with the corpus: the same streamed run (the bundled tiny model, packed
   blocks of 128 tokens, batch 8, --updates updates) on a corpus of --small-gb and of --large-gb
   of generated jsonl, whole-process RSS sampled every 0.1 s: peak, and the RSS at a quarter and
   at the end of the training (flat: no growth as it reads).
2. Speed: streamed and on-disk runs of the same updates on a --disk-mb corpus, alternating:
   tokens per second of the training (the log's figure) and the wall time of the whole process,
   which for data on disk includes tokenizing the whole corpus first.
Training reads only as much of the corpus as its updates need; the large corpus is there to show
that nothing is read, mapped or indexed ahead.
"""

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark import bake

WORDS = [f"w{i}" for i in range(5000)]


def write_corpus(path, gigabytes, seed=0):
    """jsonl rows of 20-200 random words, until the file holds `gigabytes`."""
    rng = random.Random(seed)
    target = int(gigabytes * 1e9)
    with path.open("w") as stream:
        while stream.tell() < target:
            rows = [json.dumps({"text": " ".join(rng.choices(WORDS, k=rng.randint(20, 200)))}) for _ in range(10_000)]
            stream.write("\n".join(rows) + "\n")
    return path


def run(project, output, options, rss_every=0.1):
    """train.py with `options`: (wall seconds, RSS samples in MB, the last log record)."""
    args = [f"--{name}={value}" for name, value in options.items()]
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "train.py", f"--output_dir={output}", "--overwrite_output_dir=true", *args],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples = []
    while process.poll() is None:
        status = Path(f"/proc/{process.pid}/status")
        rss = next((line for line in status.read_text().splitlines() if line.startswith("VmRSS")), "")
        if rss:
            samples.append(int(rss.split()[1]) / 1024)
        time.sleep(rss_every)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"train.py failed:\n{process.stderr.read()[-3000:]}")
    records = [json.loads(line) for line in Path(output, "metrics.jsonl").read_text().splitlines()]
    return wall, samples, [r for r in records if "tokens_per_second" in r]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-gb", type=float, default=0.2)
    parser.add_argument("--large-gb", type=float, default=2.0)
    parser.add_argument("--disk-mb", type=float, default=20)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    try:
        project = bake("causal-lm", root)
        validation = project / "assets" / "data" / "validation.jsonl"
        common = {
            "model_name_or_path": "null", "dataset_name": "null", "text_column_name": "text",
            "validation_file": validation, "block_size": 128, "per_device_train_batch_size": 8,
            "max_steps": args.updates, "logging_steps": 50, "eval_strategy": "no",
            "save_strategy": "no", "report_to": "none",
        }  # fmt: skip
        lines = [f"# streaming=true, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
        lines += ["| corpus | peak RSS (MB) | RSS at 1/4 of training | RSS at the end | tokens/s |"]
        lines += ["|---|---|---|---|---|"]
        for size in (args.small_gb, args.large_gb):
            corpus = write_corpus(root / f"corpus-{size}.jsonl", size)
            options = {**common, "train_file": corpus, "streaming": "true"}
            wall, rss, logs = run(project, root / "out", options)
            # Training is the second half of the samples at the least (loading comes first).
            quarter, end = rss[len(rss) // 2 + len(rss) // 8], rss[-3]
            speed = sum(r["tokens_per_second"] for r in logs[1:]) / max(1, len(logs) - 1)
            gb = corpus.stat().st_size / 1e9
            lines.append(f"| {gb:.2f} GB | {max(rss):.0f} | {quarter:.0f} | {end:.0f} | {speed:.0f} |")
            print(lines[-1], flush=True)
            corpus.unlink()
        lines += ["", f"Same {args.updates} updates, {args.disk_mb:.0f} MB corpus, alternating:", ""]
        lines += ["| run | path | tokens/s (training) | wall of the process (s) | peak RSS (MB) |"]
        lines += ["|---|---|---|---|---|"]
        corpus = write_corpus(root / "disk.jsonl", args.disk_mb / 1000)
        # The first on-disk run tokenizes the whole corpus; later ones reuse datasets' cache.
        for repeat in range(1, args.repeats + 1):
            for path, streaming in (("streamed", "true"), ("on disk", "false")):
                options = {**common, "train_file": corpus, "streaming": streaming}
                wall, rss, logs = run(project, root / "out", options)
                speed = sum(r["tokens_per_second"] for r in logs[1:]) / max(1, len(logs) - 1)
                lines.append(f"| {repeat} | {path} | {speed:.0f} | {wall:.1f} | {max(rss):.0f} |")
                print(lines[-1], flush=True)
        report = "\n".join(lines) + "\n"
        print(report)
        Path(__file__).with_name("results-cpu-streaming.md").write_text(report)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
