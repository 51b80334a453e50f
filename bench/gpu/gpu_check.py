"""The GPU check (issue 15, part 5): the generated causal-lm project on one NVIDIA GPU, in under
8 minutes. Started by bench/gpu/gpu_check.sh, which installs carried wheels first; see
bench/gpu/README.md for the device command.

    python bench/gpu/gpu_check.py --out DIR [--work DIR] [--budget S] [--parts a,b,c,d,e]
    python bench/gpu/gpu_check.py --cpu --out DIR    # tiny sizes on a CPU: proves the logic

Parts, each with verdict lines (PASS, FAIL, SKIPPED with its reason) and a time cap:

(a) throughput: a GPT-2-small-shaped decoder (bench/real_models.py "decoder", random weights,
    124M parameters) on packed 1,024-token blocks, bf16 autocast over fp32 weights, trained by
    the generated train.py with and without torch_compile, by the floor (bench/gpu/floor_gpu.py)
    and by the Trainer (bench/gpu/trainer_gpu.py), the same data, order, batch and schedule,
    each a fresh process under bench/gpu/gpu_probe.py: tokens/s over a steady window (the device
    synchronized at both ends), MFU, peak memory (torch.cuda.max_memory_allocated);
(b) syncs: train.py in-process (bench/gpu/sync_check.py) with
    torch.cuda.set_sync_debug_mode("error") armed between logging points, eager and compiled;
    where one raises, a second run in "warn" mode lists every call site;
(c) FSDP2 on one process: `accelerate launch --config_file configs/accelerate/fsdp.yaml
    --num_processes 1 train.py` uninterrupted; again, SIGKILLed after update K (past a
    checkpoint); resumed with --resume_from_checkpoint latest; losses and final weights compared,
    final/ loaded with from_pretrained;
(d) LoRA (use_peft) and, where bitsandbytes imports, QLoRA (load_in_4bit): short runs, the
    adapter in final/ loaded with PeftModel.from_pretrained;
(e) FSDP2 beyond (c): fsdp.yaml's cpu_ram_efficient_loading against every process reading the
    weights (update 1's loss bit for bit), and torch_compile under FSDP2 (within 1e-2, finite).

The figures go to OUT/gpu-check.json, the report to OUT/gpu-check.md (rewritten after every
part, so a run cut short still leaves one), every process's output to OUT/gpu-check.log.
"""

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
TEMPLATE = BENCH.parent
sys.path.insert(0, str(BENCH))
import real_models  # noqa: E402  (the benchmark's model and data builder)

H200_PEAK_TFLOPS = 989.0  # NVIDIA H200 SXM (= H100 SXM) dense bf16, datasheet
PACKAGES = ("torch", "transformers", "accelerate", "peft", "datasets", "evaluate", "safetensors", "bitsandbytes")
TINY_SHAPE = {
    "task": "causal-lm",
    "config": {
        "model_type": "gpt2", "vocab_size": 2048, "n_positions": 128, "n_embd": 64, "n_layer": 2, "n_head": 4,
        "bos_token_id": 0, "eos_token_id": 0,
    },
    "class": "GPT2LMHeadModel",
}  # fmt: skip


@dataclass
class Sizes:
    shape: str  # a bench/real_models.py shape
    block: int
    batch: int
    updates: int
    window_start: int  # the steady window: updates window_start+1 .. updates
    logging: int
    sync_updates: int
    sync_logging: int
    fsdp_block: int
    fsdp_batch: int
    fsdp_updates: int
    fsdp_save: int
    fsdp_hold: int  # SIGKILL after this update: past the checkpoint at fsdp_save
    lora_updates: int
    lora_window_start: int
    lora_logging: int
    budget: float  # seconds for everything after the wheels are installed
    # Per step: (cap: the most it may take, need: the least worth starting with), seconds.
    caps: dict = field(default_factory=dict)
    lr: float = 3e-4
    warmup: int = 10


GPU_SIZES = Sizes(
    shape="decoder", block=1024, batch=16, updates=80, window_start=10, logging=20,
    sync_updates=15, sync_logging=5,
    fsdp_block=256, fsdp_batch=8, fsdp_updates=12, fsdp_save=6, fsdp_hold=9,
    lora_updates=40, lora_window_start=10, lora_logging=10, budget=450,
    caps={
        "prepare": (120, 0), "eager": (120, 40), "compile": (240, 90), "sync": (150, 40), "sync compiled": (180, 60),
        "launch": (150, 40), "lora": (120, 40), "qlora": (150, 50),
    },
)  # fmt: skip
CPU_SIZES = Sizes(
    shape="gpu-check-tiny", block=64, batch=4, updates=16, window_start=4, logging=4,
    sync_updates=12, sync_logging=4,
    fsdp_block=64, fsdp_batch=4, fsdp_updates=12, fsdp_save=6, fsdp_hold=9,
    lora_updates=12, lora_window_start=4, lora_logging=4, budget=1500, warmup=2, lr=1e-3,
    caps={
        "prepare": (300, 0), "eager": (180, 30), "compile": (300, 60), "sync": (180, 30), "sync compiled": (300, 60),
        "launch": (180, 30), "lora": (180, 30), "qlora": (180, 30),
    },
)  # fmt: skip


class Budget:
    def __init__(self, total):
        self.total, self.started = total, time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.started

    def timeout(self, cap, need):
        """Seconds a step may take now, or None when less than `need` is left."""
        left = self.total - self.elapsed()
        return None if left < need else min(cap, left)


@dataclass
class Run:
    name: str
    command: list
    rc: int | None = None
    seconds: float = 0.0
    log: str = ""
    killed: str | None = None  # "held" (SIGKILLed by design) or "timeout"
    probe: dict | None = None

    def tail(self, lines=15):
        try:
            text = Path(self.log).read_text(errors="replace").replace("\r", "\n")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if line.strip()]
        return "\n".join(kept[-lines:])

    def failure(self):
        """One line: why this run failed, or None."""
        if self.killed == "timeout":
            return f"timed out after {self.seconds:.0f} s"
        if self.rc != 0 and self.killed != "held":
            last = self.tail(1)
            return f"exit status {self.rc}: {last[-200:]}"
        return None


class Check:
    """The state of one invocation: settings, paths, results, verdicts; writes the report."""

    def __init__(self, args):
        self.args = args
        self.cpu = args.cpu
        self.sizes = CPU_SIZES if self.cpu else GPU_SIZES
        self.budget = Budget(args.budget or self.sizes.budget)
        self.out, self.work = Path(args.out).resolve(), Path(args.work).resolve()
        self.logs = self.work / "logs"
        self.peak = args.peak_tflops
        self.verdicts, self.parts, self.runs = [], {}, []
        self.figures = {"rows": [], "sync": {}, "fsdp": {}, "lora": {}}
        self.machine, self.settings = {}, {}
        self.lock = threading.Lock()
        self.started = datetime.datetime.now(datetime.timezone.utc)

    # --- running processes ----------------------------------------------------------------
    def env(self, **extra):
        env = dict(
            os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
            HF_HOME=str(self.work / "hf-home"), HF_DATASETS_CACHE=str(self.work / "hf-datasets"),
            TORCHINDUCTOR_CACHE_DIR=str(self.work / "inductor"), TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1", MPLBACKEND="Agg", WANDB_DISABLED="true",
        )  # fmt: skip
        if self.cpu and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = "1"  # steadier on a shared CPU (bench/README.md, "Limits")
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def run(self, name, command, timeout, cwd=None, env=None, hold_file=None):
        """Runs `command` in a process group of its own; SIGKILLs the group when `hold_file`
        appears (the FSDP kill) or after `timeout` seconds."""
        log = self.logs / f"{name.replace(' ', '_').replace('/', '-')}.log"
        run = Run(name, [str(c) for c in command], log=str(log))
        self.say(f"{name}: start (cap {timeout:.0f} s)")
        started = time.monotonic()
        with open(log, "w") as stream:
            stream.write("$ " + " ".join(run.command) + "\n")
            stream.flush()
            process = subprocess.Popen(
                run.command, cwd=cwd or self.project, env=env or self.env(), stdout=stream,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            while True:
                try:
                    run.rc = process.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if run.killed is None and hold_file is not None and Path(hold_file).exists():
                    run.killed = "held"
                    kill_held(process, hold_file)
                if run.killed is None and time.monotonic() - started > timeout:
                    run.killed = "timeout"
                    kill_tree(process)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # what the run left in its group
            os.killpg(process.pid, signal.SIGKILL)
        run.seconds = time.monotonic() - started
        self.say(f"{name}: rc={run.rc}{f' ({run.killed})' if run.killed else ''} in {run.seconds:.1f} s")
        with self.lock:
            self.runs.append(run)
        return run

    def probed(self, name, script, options, timeout, window=None, launcher=(), hold=None, extra_env=None):
        """`script` with `options` under gpu_probe.py (through `launcher`, e.g. accelerate launch)."""
        result = self.work / "probes" / f"{name.replace(' ', '_').replace('/', '-')}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.unlink(missing_ok=True)
        argv = [x for key, value in options.items() for x in (f"--{key}", str(value))]
        prefix = list(launcher) or [sys.executable]
        env = dict(extra_env or {})
        if window:
            env["GPU_CHECK_WINDOW"] = f"{window[0]},{window[1]}"
        hold_file = None
        if hold:
            hold_file = self.work / "probes" / f"{name.replace(' ', '_')}.held"
            hold_file.unlink(missing_ok=True)
            env.update(GPU_CHECK_HOLD_AT=hold, GPU_CHECK_HOLD_FILE=hold_file)
        command = [*prefix, HERE / "gpu_probe.py", result, script, *argv]
        run = self.run(name, command, timeout, env=self.env(**env), hold_file=hold_file)
        if result.exists():
            run.probe = json.loads(result.read_text())
        return run

    def say(self, text):
        with self.lock:
            print(f"[{self.budget.elapsed():6.1f}s] {text}", flush=True)

    def verdict(self, part, check, measured, verdict):
        with self.lock:
            self.verdicts.append({"part": part, "check": check, "measured": measured, "verdict": verdict})
        self.say(f"({part}) {verdict}: {check}: {measured}")

    def step_timeout(self, kind, part, what):
        """The time a step may take, or None after recording it as SKIPPED for want of time."""
        cap, need = self.sizes.caps[kind]
        timeout = self.budget.timeout(cap, need)
        if timeout is None:
            left = self.budget.total - self.budget.elapsed()
            self.verdict(part, what, "-", f"SKIPPED (time budget: {max(0, left):.0f} s left, {need} s needed)")
        return timeout

    # --- preparation ----------------------------------------------------------------------
    def prepare(self):
        self.logs.mkdir(parents=True, exist_ok=True)
        self.machine = machine_info(self)
        if self.args.project:
            self.project = Path(self.args.project).resolve()
        else:
            bake_dir = self.work / "bake"
            shutil.rmtree(bake_dir, ignore_errors=True)
            command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", bake_dir, TEMPLATE, "task=causal-lm"]
            run = self.run("bake", command, 120, cwd=TEMPLATE)
            if run.rc != 0:
                raise RuntimeError(f"baking the project failed (is cookiecutter installed?): {run.tail(5)}")
            (self.project,) = [p for p in bake_dir.iterdir() if (p / "train.py").is_file()]
        self.say(f"project: {self.project}")
        self.build_model_and_data()

    def build_model_and_data(self):
        import torch
        import transformers

        sizes = self.sizes
        root = self.work / "models"
        shutil.rmtree(root, ignore_errors=True)
        if sizes.shape not in real_models.SHAPES:
            real_models.SHAPES[sizes.shape] = TINY_SHAPE
        self.model_dir, small_train, self.validation_file = real_models.build(sizes.shape, self.project, root)
        self.small_train = small_train
        config = transformers.AutoConfig.from_pretrained(self.model_dir)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config)
        self.n_params = sum(p.numel() for p in model.parameters())
        self.n_layer, self.n_embd = config.n_layer, config.n_embd
        # Enough packed blocks that no run reaches an epoch's end: its last, smaller batch would
        # be another shape (a recompile under torch.compile).
        tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_dir)
        documents = [json.loads(line)["text"] for line in small_train.read_text().splitlines()]
        tokens = sum(len(ids) + 1 for ids in tokenizer(documents, verbose=False)["input_ids"])
        most_updates = max(sizes.updates, sizes.lora_updates, sizes.sync_updates)
        needed = most_updates * sizes.batch * sizes.block * 1.15 + sizes.block * (len(documents) // 1000 + 2)
        copies = max(1, math.ceil(needed / tokens))
        self.train_file = root / "train-large.jsonl"
        with open(self.train_file, "w") as stream:
            for copy in range(copies):
                shuffled = list(documents)
                random.Random(copy).shuffle(shuffled)
                stream.writelines(json.dumps({"text": text}) + "\n" for text in shuffled)
        self.settings = {
            "mode": "CPU (tiny sizes)" if self.cpu else "GPU",
            "model": f"GPT-2 shape '{sizes.shape}' from bench/real_models.py, random weights (seed 0)",
            "parameters": self.n_params, "layers": self.n_layer, "width": self.n_embd, "vocabulary": config.vocab_size,
            "sequence": sizes.block, "batch": sizes.batch, "tokens_per_update": sizes.batch * sizes.block,
            "updates": sizes.updates, "window": [sizes.window_start, sizes.updates], "logging_steps": sizes.logging,
            "learning_rate": sizes.lr, "warmup_steps": sizes.warmup, "peak_tflops": self.peak,
            "train_tokens": tokens * copies, "train_copies": copies,
        }  # fmt: skip
        self.say(f"model: {self.n_params / 1e6:.1f}M parameters; data: {copies} copies, {tokens * copies:,} tokens")

    # --- commands ---------------------------------------------------------------------------
    def train_options(self, output_dir, updates, logging, compiled=False, block=None, batch=None, **extra):
        sizes = self.sizes
        options = {
            "model_name_or_path": self.model_dir, "train_file": self.train_file,
            "validation_file": self.validation_file, "block_size": block or sizes.block, "packing": "true",
            "per_device_train_batch_size": batch or sizes.batch, "gradient_accumulation_steps": 1,
            "max_steps": updates, "learning_rate": sizes.lr, "warmup_steps": min(sizes.warmup, updates // 3),
            "weight_decay": 0.01, "max_grad_norm": 1.0, "lr_scheduler_type": "linear", "logging_steps": logging,
            "eval_strategy": "no", "save_strategy": "no", "report_to": "none", "mixed_precision": "bf16",
            "torch_compile": str(compiled).lower(), "peak_tflops": self.peak, "dataloader_num_workers": 0,
            "seed": 42, "output_dir": output_dir, "overwrite_output_dir": "true",
        }  # fmt: skip
        options.update(extra)
        return options

    def other_options(self, output_dir, compiled):
        sizes = self.sizes
        return {
            "task": "causal-lm", "model_name_or_path": self.model_dir, "train_file": self.train_file,
            "validation_file": self.validation_file, "block_size": sizes.block,
            "per_device_train_batch_size": sizes.batch, "max_steps": sizes.updates, "learning_rate": sizes.lr,
            "warmup_steps": sizes.warmup, "weight_decay": 0.01, "max_grad_norm": 1.0,
            "logging_steps": sizes.logging, "seed": 42, "torch_compile": str(compiled).lower(),
            "mixed_precision": "bf16", "output_dir": output_dir,
        }  # fmt: skip

    # --- (a) throughput --------------------------------------------------------------------
    def contender(self, name, compiled):
        sizes = self.sizes
        label = f"{name}{' compiled' if compiled else ''}"
        what = f"{label} trains {sizes.updates} updates"
        timeout = self.step_timeout("compile" if compiled else "eager", "a", what)
        if timeout is None:
            return None
        out_dir = self.work / "runs" / label.replace(" ", "-").replace(".", "")
        shutil.rmtree(out_dir, ignore_errors=True)
        window = (sizes.window_start, sizes.updates)
        if name == "train.py":
            options = self.train_options(out_dir, sizes.updates, sizes.logging, compiled)
            run = self.probed(label, self.project / "train.py", options, timeout, window)
        else:
            script = HERE / ("floor_gpu.py" if name == "floor" else "trainer_gpu.py")
            run = self.probed(label, script, self.other_options(out_dir, compiled), timeout, window)
        row = {"contender": name, "compiled": compiled, "rc": run.rc, "seconds": round(run.seconds, 1)}
        probe = run.probe or {}
        if run.failure() or not probe.get("window_seconds"):
            row["error"] = run.failure() or "no steady window recorded"
            self.verdict("a", what, row["error"], "FAIL")
        else:
            tokens = probe["window_updates"] * sizes.batch * sizes.block
            row["tokens_per_s"] = tokens / probe["window_seconds"]
            row["update_ms"] = 1000 * probe["window_seconds"] / probe["window_updates"]
            row["mfu"] = row["tokens_per_s"] * 6 * self.n_params / (self.peak * 1e12)
            attention = 12 * self.n_layer * self.n_embd * sizes.block
            row["mfu_attention"] = row["tokens_per_s"] * (6 * self.n_params + attention) / (self.peak * 1e12)
            row["peak_memory_gib"] = probe["peak_memory_bytes"] / 2**30
            row["peak_reserved_gib"] = (probe.get("peak_reserved_bytes") or 0) / 2**30 or None
            row["first_update_s"] = probe.get("first_update_s")
            row["process_s"] = probe.get("process_s")
            if name == "train.py":
                logged = [r for r in read_jsonl(out_dir / "metrics.jsonl") if "tokens_per_second" in r]
                if logged:
                    row["own_tokens_per_s"] = logged[-1]["tokens_per_second"]
                    row["own_mfu"] = logged[-1].get("mfu")
            row["loss_last"] = last_loss(out_dir / "metrics.jsonl")
        with self.lock:
            self.figures["rows"].append(row)
        return row

    def row(self, name, compiled):
        for row in self.figures["rows"]:
            if row["contender"] == name and row["compiled"] == compiled and "tokens_per_s" in row:
                return row
        return None

    def part_a(self, order):
        for name, compiled in order:
            if compiled and self.args.no_compile:
                continue
            self.contender(name, compiled)

    def goals_a(self):
        goal = "SKIPPED (CPU mode: the goals are for the H200)" if self.cpu else None
        compiled = self.row("train.py", True)
        attempted = any(r["contender"] == "train.py" and r["compiled"] for r in self.figures["rows"])
        if attempted and not compiled:
            self.verdict("a", "train.py compiled: MFU >= 45%", "no measurement: its run failed (above)", "FAIL")
        if compiled:
            value = f"{compiled['mfu']:.1%} (with attention FLOPs {compiled['mfu_attention']:.1%})"
            self.verdict("a", f"train.py compiled: MFU >= 45% (6N per token, peak {self.peak:g} TFLOP/s)", value,
                         goal or ("PASS" if compiled["mfu"] >= 0.45 else "FAIL"))  # fmt: skip
        for flag, label in ((False, "eager"), (True, "compiled")):
            ours, floor, trainer = self.row("train.py", flag), self.row("floor", flag), self.row("Trainer", flag)
            if ours and floor:
                ratio = ours["tokens_per_s"] / floor["tokens_per_s"]
                self.verdict("a", f"train.py within 3% of the floor, {label} (tokens/s ratio >= 0.97)",
                             f"{ratio:.3f}×", goal or ("PASS" if ratio >= 0.97 else "FAIL"))  # fmt: skip
                memory = ours["peak_memory_gib"] / floor["peak_memory_gib"]
                self.verdict("a", f"peak memory within 5% of the floor, {label}", f"{memory:.3f}×",
                             goal or ("PASS" if memory <= 1.05 else "FAIL"))  # fmt: skip
            if ours and trainer:
                ratio = ours["tokens_per_s"] / trainer["tokens_per_s"]
                self.verdict("a", f"train.py faster than the Trainer, {label} (tokens/s ratio > 1)", f"{ratio:.3f}×",
                             goal or ("PASS" if ratio > 1 else "FAIL"))  # fmt: skip

    # --- (b) syncs -------------------------------------------------------------------------
    def part_b(self, compiled):
        sizes = self.sizes
        label = "compiled" if compiled else "eager"
        what = f"no device sync between logging points, {label}"
        if compiled and self.args.no_compile:
            return
        timeout = self.step_timeout("sync compiled" if compiled else "sync", "b", what)
        if timeout is None:
            return
        emulate = self.cpu and not compiled
        mode = "none" if self.cpu and compiled else "error"
        out_dir = self.work / "runs" / f"sync-{label}"
        options = self.train_options(out_dir, sizes.sync_updates, sizes.sync_logging, compiled)
        argv = [x for key, value in options.items() for x in (f"--{key}", str(value))]

        def attempt(run_mode, seconds):
            result = self.work / "probes" / f"sync-{label}-{run_mode}.json"
            result.parent.mkdir(parents=True, exist_ok=True)
            result.unlink(missing_ok=True)
            shutil.rmtree(out_dir, ignore_errors=True)
            flags = ["--mode", run_mode, *(["--emulate"] if emulate else [])]
            command = [sys.executable, HERE / "sync_check.py", result, *flags, "--", *argv]
            run = self.run(f"sync {label} {run_mode}", command, seconds)
            return run, (json.loads(result.read_text()) if result.exists() else None)

        run, found = attempt(mode, timeout)
        figures = {"mode": mode, "emulated": emulate, "first": found}
        if found and found["outcome"] == "sync":
            left = self.budget.timeout(timeout, self.sizes.caps["sync"][1])
            if left:
                _, figures["all"] = attempt("warn", left)
        with self.lock:
            self.figures["sync"][label] = figures
        if not found or found["outcome"] == "failed":
            self.verdict("b", what, run.failure() or (found or {}).get("error") or "no result", "FAIL")
            return
        armed = f"{found['armed_updates']} updates armed (expected {found['expected_armed']})"
        lines = []  # (check, measured, verdict): the same reading in CPU mode, where only the verdicts differ
        if found["outcome"] == "completed":
            exact = found["armed_updates"] == found["expected_armed"] and found["armed_updates"] > 0
            lines.append((what, armed, "PASS" if exact else "FAIL"))
        else:
            lines.append((what, f"raised at {first_site(found)}", "FAIL"))
            listed = (figures.get("all") or {}).get("sites")
            if listed is not None:
                loop = [s for s in listed if not s["in_model"]]
                model = [s for s in listed if s["in_model"]]
                text = "; ".join(f"{s['site']} ×{s['count']}" for s in loop) or "none"
                text += f" (inside the model's forward: {len(model)} site(s), {sum(s['count'] for s in model)} calls)"
                check = f"no sync in the loop itself (train.py, accelerate, torch.optim), {label}"
                lines.append((check, text, "PASS" if not loop else "FAIL"))
        if self.cpu:
            how = "emulated detector (flags CPU tensors too)" if emulate else "nothing armed"
            reason = "SKIPPED (no CUDA: set_sync_debug_mode watches CUDA calls only)"
            lines = [(check, f"harness self-test, {how}: {measured}", reason) for check, measured, _ in lines]
        for line in lines:
            self.verdict("b", *line)

    # --- (c) FSDP2, kill, resume -------------------------------------------------------------
    def part_c(self):
        sizes = self.sizes
        fsdp_config = self.project / "configs" / "accelerate" / "fsdp.yaml"
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", fsdp_config,
                    "--num_processes", "1"]  # fmt: skip
        runs_dir = self.work / "runs"
        whole, broken = runs_dir / "fsdp-uninterrupted", runs_dir / "fsdp-killed"
        for path in (whole, broken):
            shutil.rmtree(path, ignore_errors=True)
        options = {
            "block": sizes.fsdp_block, "batch": sizes.fsdp_batch, "save_strategy": "steps",
            "save_steps": sizes.fsdp_save, "train_file": self.small_train,
        }  # fmt: skip
        script = self.project / "train.py"
        figures = self.figures["fsdp"]
        steps, threads = {}, []
        timeout = self.step_timeout("launch", "c", "FSDP2 runs, uninterrupted and killed")
        if timeout is None:
            return
        # The uninterrupted and the killed run side by side (their own rendezvous ports): only
        # their losses and weights are compared.
        for port, (name, out_dir, hold) in enumerate(
            (("uninterrupted", whole, None), ("killed", broken, sizes.fsdp_hold))
        ):
            run_options = self.train_options(out_dir, sizes.fsdp_updates, 1, **options)
            ported = [*launcher, "--main_process_port", 29611 + port]

            def launch(name=name, run_options=run_options, ported=ported, hold=hold):
                steps[name] = self.probed(f"fsdp {name}", script, run_options, timeout, launcher=ported, hold=hold)

            threads.append(threading.Thread(target=launch))
            threads[-1].start()
        for thread in threads:
            thread.join()
        if len(steps) < 2:
            self.verdict("c", "FSDP2 runs, uninterrupted and killed", "a launch raised (see the log)", "FAIL")
            return
        if steps["uninterrupted"].failure():
            self.verdict(
                "c", "FSDP2 (1 process) trains, saves and writes final/", steps["uninterrupted"].failure(), "FAIL"
            )
            return
        killed = steps["killed"]
        if killed.killed != "held":
            reason = killed.failure() or "the run ended before the kill"
            self.verdict("c", f"SIGKILL after update {sizes.fsdp_hold}", reason, "FAIL")
            return
        killed_records = read_jsonl(broken / "metrics.jsonl")  # before the resume trims them
        figures["left_by_the_kill"] = checkpoint_layout(broken / "checkpoints")
        timeout = self.step_timeout("launch", "c", "FSDP2 resume")
        if timeout is None:
            return
        resume = {"output_dir": broken, "resume_from_checkpoint": "latest"}
        resumed = self.probed(
            "fsdp resumed", script, resume, timeout, launcher=[*launcher, "--main_process_port", 29613]
        )
        if resumed.failure():
            self.verdict("c", "resume with --resume_from_checkpoint latest", resumed.failure(), "FAIL")
            return
        probe = steps["uninterrupted"].probe or {}
        layout = checkpoint_layout(whole / "checkpoints" / f"step-{sizes.fsdp_save}")
        figures.update(param_type=probe.get("param_type"), checkpoint_files=layout)
        sharded = any(name.startswith("pytorch_model_fsdp") for name in layout)
        fsdp_text = f"parameters are {probe.get('param_type')}; checkpoint holds {', '.join(layout)}"
        if self.cpu:
            self.verdict("c", "FSDP2 (1 process): DTensor parameters, sharded checkpoints", fsdp_text,
                         "SKIPPED (no GPU: accelerate runs the fsdp.yaml launch without FSDP on a CPU)")  # fmt: skip
        else:
            ok = (probe.get("param_dtensor") or probe.get("param_type") == "DTensor") and sharded
            self.verdict("c", "FSDP2 (1 process): DTensor parameters, sharded checkpoints", fsdp_text,
                         "PASS" if ok else "FAIL")  # fmt: skip
        self.compare_resume(whole, broken, killed_records)

    def compare_resume(self, whole, broken, killed_records):
        sizes = self.sizes
        figures = self.figures["fsdp"]
        losses = {r["step"]: r["loss"] for r in read_jsonl(whole / "metrics.jsonl") if "loss" in r}
        before = {r["step"]: r["loss"] for r in killed_records if "loss" in r}
        after = {r["step"]: r["loss"] for r in read_jsonl(broken / "metrics.jsonl") if "loss" in r}
        save, hold = sizes.fsdp_save, sizes.fsdp_hold
        control = [abs(before[s] - losses[s]) / abs(losses[s]) for s in sorted(before) if s in losses]
        redone = [s for s in range(save + 1, sizes.fsdp_updates + 1)]
        missing = [s for s in redone if s not in after or s not in losses]
        figures.update(uninterrupted=losses, killed_before_kill=before, resumed=after)
        if missing or not before:
            self.verdict("c", "the resumed run logs every update after the checkpoint", f"missing {missing}", "FAIL")
            return
        deterministic = max(control, default=0.0) == 0.0
        figures["control_max_relative"] = max(control, default=0.0)
        # Update save+1 is the first after the checkpoint: its loss is a forward pass of the
        # checkpointed weights on the batch at the saved position with the saved RNG state, so it
        # must equal the killed run's own update save+1 bit for bit, whatever the kernels do.
        first = save + 1
        same_first = first in before and after[first] == before[first]
        left = ", ".join(figures.get("left_by_the_kill") or []) or "none"
        self.verdict("c", f"SIGKILL after update {hold}; resumed from step-{save}: update {first}'s loss equals "
                     "the killed run's (bit for bit)", f"{after[first]!r} vs {before.get(first)!r} (checkpoints "
                     f"left by the kill: {left})", "PASS" if same_first else "FAIL")  # fmt: skip
        relative = [abs(after[s] - losses[s]) / abs(losses[s]) for s in redone]
        weights = compare_weights(whole / "final", broken / "final")
        figures.update(resumed_max_relative=max(relative), final_weights=weights)
        measured = (f"losses of updates {redone[0]}-{redone[-1]}: max relative difference {max(relative):.2e}; "
                    f"final weights: {weights['text']}; control (killed run before the kill vs uninterrupted, "
                    f"updates 1-{max(before)}): {max(control, default=0.0):.2e}")  # fmt: skip
        exact = max(relative) == 0.0 and weights.get("max_abs") == 0.0
        if exact:
            verdict = "PASS"
        elif not deterministic and max(relative) <= 1e-3 and weights.get("max_abs") is not None:
            verdict = "PASS (within this GPU's run-to-run difference: not bit-identical)"
        else:
            verdict = "FAIL"
        self.verdict("c", "resumed run equals the uninterrupted one (losses, final weights)", measured, verdict)
        self.verdict("c", "final/ loads with AutoModelForCausalLM.from_pretrained", *load_final(broken / "final"))

    # --- (e) FSDP2: weights read once, and compile ----------------------------------------------
    def part_e(self):
        """What (c) leaves to a GPU: fsdp.yaml's cpu_ram_efficient_loading (the pretrained weights
        read on process 0 and sent out as shards) against every process reading them, and
        torch_compile under FSDP2. Both start from (c)'s uninterrupted run: same model, data, bf16."""
        sizes = self.sizes
        reference = self.work / "runs" / "fsdp-uninterrupted"
        first = {r["step"]: r["loss"] for r in read_jsonl(reference / "metrics.jsonl") if "loss" in r}
        if 1 not in first:
            self.verdict("e", "FSDP2 extras", "(c)'s uninterrupted run logged no loss", "SKIPPED (needs part c)")
            return
        fsdp_config = self.project / "configs" / "accelerate" / "fsdp.yaml"
        options = {"block": sizes.fsdp_block, "batch": sizes.fsdp_batch, "train_file": self.small_train}
        runs = (
            ("weights read on every process", ["--fsdp_cpu_ram_efficient_loading", "false"], False, "launch"),
            ("compiled", [], True, "compile"),
        )
        for port, (name, flags, compiled, kind) in enumerate(runs):
            what = f"FSDP2 (1 process), {name}: update 1's loss against (c)'s"
            timeout = self.step_timeout(kind, "e", what)
            if timeout is None:
                continue
            out_dir = self.work / "runs" / f"fsdp-{'compiled' if compiled else 'every-process-reads'}"
            run_options = self.train_options(out_dir, sizes.fsdp_updates, 1, compiled, **options)
            launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", fsdp_config,
                        "--num_processes", "1", *flags, "--main_process_port", 29621 + port]  # fmt: skip
            run = self.probed(f"fsdp {name}", self.project / "train.py", run_options, timeout, launcher=launcher)
            if run.failure():
                self.verdict("e", what, run.failure(), "FAIL")
                continue
            losses = {r["step"]: r["loss"] for r in read_jsonl(out_dir / "metrics.jsonl") if "loss" in r}
            with self.lock:
                self.figures["fsdp"][f"e: {name}"] = losses
            gap = abs(losses[1] - first[1]) / abs(first[1])
            last = max(losses)
            finite = all(math.isfinite(loss) for loss in losses.values())
            measured = f"{losses[1]!r} vs {first[1]!r} (relative {gap:.1e}); loss at {last}: {losses[last]!r}"
            # Loading differently must bring the same weights: the same first forward, bit for bit.
            # Compiled kernels round bf16 differently: within 1e-2, and training goes on finite.
            ok = finite and (gap <= 1e-2 if compiled else gap == 0.0)
            verdict = "PASS" if ok else "FAIL"
            if self.cpu:
                verdict = f"SKIPPED (no GPU: accelerate runs the fsdp.yaml launch without FSDP on a CPU; {verdict})"
            self.verdict("e", what, measured, verdict)

    # --- (d) LoRA, QLoRA -----------------------------------------------------------------------
    def part_d(self):
        sizes = self.sizes
        full = self.row("train.py", False)
        for name, extra in (("LoRA", {}), ("QLoRA", {"load_in_4bit": "true"})):
            what = f"{name} (use_peft{', load_in_4bit' if extra else ''}) trains and saves an adapter that loads"
            if extra:
                if self.cpu:
                    self.verdict("d", what, "-", "SKIPPED (no CUDA: bitsandbytes' 4-bit layers run on CUDA GPUs only)")
                    continue
                missing = bitsandbytes_problem(self)
                if missing:
                    self.verdict("d", what, "-", f"SKIPPED (bitsandbytes does not import: {missing})")
                    continue
            timeout = self.step_timeout("qlora" if extra else "lora", "d", what)
            if timeout is None:
                continue
            out_dir = self.work / "runs" / name.lower()
            shutil.rmtree(out_dir, ignore_errors=True)
            options = self.train_options(out_dir, sizes.lora_updates, sizes.lora_logging, use_peft="true", **extra)
            run = self.probed(
                name, self.project / "train.py", options, timeout, (sizes.lora_window_start, sizes.lora_updates)
            )
            probe = run.probe or {}
            row = {"rc": run.rc, "seconds": round(run.seconds, 1)}
            if run.failure() or not probe.get("window_seconds"):
                self.verdict("d", what, run.failure() or "no steady window recorded", "FAIL")
                with self.lock:
                    self.figures["lora"][name] = row
                continue
            tokens = probe["window_updates"] * sizes.batch * sizes.block
            row.update(
                tokens_per_s=tokens / probe["window_seconds"], peak_memory_gib=probe["peak_memory_bytes"] / 2**30,
                first_update_s=probe.get("first_update_s"), loss_last=last_loss(out_dir / "metrics.jsonl"),
            )  # fmt: skip
            if full:
                row["tokens_per_s_vs_full"] = row["tokens_per_s"] / full["tokens_per_s"]
                row["peak_memory_vs_full"] = row["peak_memory_gib"] / full["peak_memory_gib"]
            loaded, detail = load_adapter(self.model_dir, out_dir / "final")
            finite = row["loss_last"] is not None and math.isfinite(row["loss_last"])
            with self.lock:
                self.figures["lora"][name] = row
            measured = f"last loss {row['loss_last']}; {detail}"
            self.verdict("d", what, measured, "PASS" if loaded and finite else "FAIL")

    # --- report ----------------------------------------------------------------------------
    def part(self, key, title, function, *args):
        started = self.budget.elapsed()
        try:
            function(*args)
            status = "done"
        except Exception as error:  # a broken part must not take the others down
            status = f"error: {type(error).__name__}: {error}"
            self.verdict(key, f"{title}: the part ran", status, "FAIL")
            import traceback

            traceback.print_exc()
        with self.lock:
            self.parts[title] = {"part": key, "from_s": round(started), "seconds": self.budget.elapsed() - started,
                                 "status": status}  # fmt: skip

    def write(self):
        with self.lock:
            figures = {
                "settings": self.settings, "machine": self.machine, "verdicts": self.verdicts, "parts": self.parts,
                "figures": self.figures, "elapsed_s": round(self.budget.elapsed(), 1), "budget_s": self.budget.total,
                "runs": [{k: v for k, v in asdict(r).items() if k != "command"} | {"command": " ".join(r.command)}
                         for r in self.runs],
            }  # fmt: skip
            (self.out / "gpu-check.json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
            (self.out / "gpu-check.md").write_text(markdown(self))
            with open(self.out / "gpu-check.log", "w") as stream:
                for run in self.runs:
                    stream.write(f"===== {run.name}: rc={run.rc} {run.killed or ''} {run.seconds:.1f} s\n")
                    with contextlib.suppress(OSError):
                        text = Path(run.log).read_text(errors="replace").replace("\r", "\n")
                        lines = [line for line in text.splitlines() if line.strip()]
                        stream.write("\n".join(lines[-200:]) + "\n")


# --- helpers ---------------------------------------------------------------------------------
def kill_tree(process):
    """SIGKILL a run and everything it started: torchrun starts each worker in a session of its
    own, so the launcher's process group alone would leave the worker running."""
    groups = []
    try:
        import psutil

        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                groups.append(os.getpgid(child.pid))
    except Exception:  # psutil missing, or the tree changed meanwhile: the groups known so far
        pass
    for group in [*dict.fromkeys(groups), process.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def kill_held(process, hold_file):
    """SIGKILL the training process that wrote `hold_file` (its pid and process group), as a
    crash or the OOM killer would, and let its launcher notice, reap it and exit (a worker left
    unreaped would still hold the run's lock); whatever is left after 30 s is killed too."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.killpg(int(Path(hold_file).read_text().split()[1]), signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    kill_tree(process)


def read_jsonl(path):
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError:
        return []


def last_loss(path):
    losses = [r["loss"] for r in read_jsonl(path) if "loss" in r]
    return losses[-1] if losses else None


def first_site(found):
    sites = found.get("sites") or []
    return f"{sites[0]['site']} (via {sites[0]['via']})" if sites else found.get("error")


def checkpoint_layout(directory):
    try:
        return sorted(p.name + ("/" if p.is_dir() else "") for p in Path(directory).iterdir())
    except OSError:
        return []


def compare_weights(a, b):
    """Largest absolute difference between two final/ directories' weights."""
    from safetensors.torch import load_file

    def weights(directory):  # model.safetensors, or its shards
        files = sorted(Path(directory).glob("model*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no model*.safetensors in {directory}")
        return {name: tensor for file in files for name, tensor in load_file(file).items()}

    try:
        left, right = weights(a), weights(b)
    except Exception as error:
        return {"max_abs": None, "text": f"unreadable: {type(error).__name__}: {error}"}
    if left.keys() != right.keys():
        odd = sorted(left.keys() ^ right.keys())[:3]
        return {"max_abs": None, "text": f"different tensors: {odd}"}
    worst = max((left[k].float() - right[k].float()).abs().max().item() for k in left)
    text = "bit-identical" if worst == 0 else f"max absolute difference {worst:.2e}"
    return {"max_abs": worst, "text": f"{text} ({len(left)} tensors)"}


def load_final(directory):
    """(measured, verdict) of loading final/ with from_pretrained."""
    try:
        from transformers import AutoModelForCausalLM

        model, info = AutoModelForCausalLM.from_pretrained(directory, output_loading_info=True)
    except Exception as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", "FAIL"
    problems = {key: value for key, value in info.items() if value}
    count = sum(p.numel() for p in model.parameters())
    if problems:
        return f"{count:,} parameters; {problems}", "FAIL"
    return f"{type(model).__name__}, {count:,} parameters, no missing or unexpected weights", "PASS"


def load_adapter(model_dir, final):
    """(loaded, text): final/ holds an adapter that PeftModel.from_pretrained loads onto the base."""
    files = sorted(p.name for p in Path(final).glob("adapter_*"))
    if "adapter_config.json" not in files:
        return False, f"final/ holds {checkpoint_layout(final)}: no adapter_config.json"
    try:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(model_dir)
        model = PeftModel.from_pretrained(base, final)
    except Exception as error:
        return False, f"PeftModel.from_pretrained failed: {type(error).__name__}: {str(error).splitlines()[0]}"
    trained = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return True, f"final/ holds {', '.join(files)}; PeftModel loads it ({trained:,} adapter weights)"


def bitsandbytes_problem(check):
    """None when bitsandbytes imports in a fresh process, else the last line of why not."""
    done = subprocess.run(
        [sys.executable, "-c", "import bitsandbytes"], env=check.env(), capture_output=True, text=True, timeout=120
    )
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"exit status {done.returncode}"


def machine_info(check):
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for name in PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    if check.cpu:
        return info
    # In a process of its own: this one keeps no CUDA context (and no GPU memory) while the runs go.
    code = (
        "import json, torch\n"
        "p = torch.cuda.get_device_properties(0)\n"
        "a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16); b = torch.randn_like(a)\n"
        "for _ in range(3): a @ b\n"
        "s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)\n"
        "s.record()\n"
        "for _ in range(10): a @ b\n"
        "e.record(); torch.cuda.synchronize()\n"
        "tflops = 10 * 2 * 8192**3 / (s.elapsed_time(e) / 1000) / 1e12\n"
        "print(json.dumps({'gpu': p.name, 'capability': f'{p.major}.{p.minor}', 'gpu_memory_gib': p.total_memory / 2**30,"
        " 'cuda': torch.version.cuda, 'matmul_bf16_tflops': tflops}))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], env=check.env(), capture_output=True, text=True, timeout=120
        )
        info.update(json.loads(done.stdout.strip().splitlines()[-1]))
    except Exception as error:  # the report says so; the parts still run
        info["gpu_error"] = f"{type(error).__name__}: {error}"
    with contextlib.suppress(Exception):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        info["nvidia_smi"] = smi.stdout.strip()
    return info


def fmt(value, spec, missing="-"):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def markdown(check):
    sizes, settings, machine = check.sizes, check.settings, check.machine
    lines = ["# GPU check (issue 15, part 5)", ""]
    when = check.started.strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"- Date: {when}; took {check.budget.elapsed():.0f} s (time budget {check.budget.total:.0f} s)"]
    if check.cpu:
        lines += ["- **CPU mode** (tiny sizes, no CUDA): the figures prove the script's logic, not speed; the goals "
                  "and the CUDA-only checks are SKIPPED with their reasons."]  # fmt: skip
    gpu = machine.get("gpu")
    if gpu:
        lines += [f"- GPU: {gpu} (compute capability {machine.get('capability')}, "
                  f"{fmt(machine.get('gpu_memory_gib'), '.0f')} GiB; nvidia-smi: {machine.get('nvidia_smi', '-')}); "
                  f"measured bf16 matmul 8192³: {fmt(machine.get('matmul_bf16_tflops'), '.0f')} TFLOP/s"]  # fmt: skip
    elif machine.get("gpu_error"):
        lines += [f"- GPU: could not be read: {machine['gpu_error']}"]
    versions = ", ".join(f"{name} {machine.get(name) or 'absent'}" for name in PACKAGES)
    command = os.environ.get("GPU_CHECK_COMMAND") or " ".join(sys.argv)
    lines += [f"- Software: Python {machine.get('python')}, CUDA {machine.get('cuda', '-')}; {versions}",
              f"- Command: `{command}`; wheels installed first: {os.environ.get('GPU_CHECK_WHEELS') or 'none'}"]  # fmt: skip
    if settings:
        lines += [
            f"- Model: {settings['model']}: {settings['parameters'] / 1e6:.1f}M parameters, {settings['layers']} "
            f"layers × {settings['width']}, vocabulary {settings['vocabulary']:,}. Data: the bundled causal-lm "
            f"lines as long-tailed documents, {settings['train_copies']} copies ({settings['train_tokens']:,} "
            f"tokens), packed into {sizes.block}-token blocks.",
            f"- Work (the same for all contenders): batch {sizes.batch} × {sizes.block} tokens, {sizes.updates} "
            f"updates; bf16 autocast over fp32 weights; fused AdamW lr {sizes.lr:g}, weight decay 0.01, clip 1.0, "
            f"linear schedule with {sizes.warmup} warmup updates; a loss read every {sizes.logging} updates; "
            "train.py's sample order for all; final model saved. Each contender is a fresh process; one run each.",
            f"- tokens/s: updates {sizes.window_start + 1}-{sizes.updates} (the device synchronized after updates "
            f"{sizes.window_start} and {sizes.updates}) × {sizes.batch * sizes.block:,} tokens per update. MFU = "
            f"tokens/s × 6 × parameters / {check.peak:g} TFLOP/s (the H200 SXM's dense bf16 peak, datasheet; "
            "train.py's own `mfu` uses the same formula); `+attn` adds 12 × layers × width × sequence FLOPs per "
            "token for attention (PaLM, appendix B). Peak memory: `torch.cuda.max_memory_allocated()` at the last "
            "update (CPU mode: peak RSS).",
        ]
    lines += ["", "## Verdicts", "", "| part | check | measured | verdict |", "|---|---|---|---|"]
    order = ["setup", "a", "b", "c", "d"]
    for v in sorted(check.verdicts, key=lambda v: order.index(v["part"]) if v["part"] in order else len(order)):
        shown = v["verdict"] if v["verdict"].startswith("SKIPPED") else f"**{v['verdict']}**"
        lines.append(f"| {v['part']} | {v['check']} | {v['measured']} | {shown} |")
    counts = {key: sum(v["verdict"].startswith(key) for v in check.verdicts) for key in ("PASS", "FAIL", "SKIPPED")}
    lines += ["", f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIPPED']} skipped.", ""]
    lines += ["## Parts and time", "", "| part | from s | took s | status |", "|---|---|---|---|"]
    for title, part in check.parts.items():
        lines.append(f"| ({part['part']}) {title} | {part['from_s']} | {part['seconds']:.0f} | {part['status']} |")
    caps = ", ".join(f"{kind} {cap} s" for kind, (cap, _) in sizes.caps.items())
    lines += ["", f"Caps per process: {caps}; a step starts only while enough of the budget is left.", ""]
    rows = check.figures["rows"]
    if rows:
        lines += ["## (a) Throughput", "",
                  "| contender | tokens/s | update ms | MFU | MFU +attn | peak GiB | ×floor tokens/s | ×Trainer tokens/s "
                  "| ×floor memory | first update s | process s | train.py's own log: tokens/s, mfu | last loss |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in rows:
            label = f"{row['contender']}{' compiled' if row['compiled'] else ''}"
            if "tokens_per_s" not in row:
                lines.append(f"| {label} | {row.get('error')} |" + " |" * 11)
                continue
            floor, trainer = check.row("floor", row["compiled"]), check.row("Trainer", row["compiled"])
            vs_floor = row["tokens_per_s"] / floor["tokens_per_s"] if floor else None
            vs_trainer = row["tokens_per_s"] / trainer["tokens_per_s"] if trainer else None
            memory = row["peak_memory_gib"] / floor["peak_memory_gib"] if floor else None
            own = (
                f"{fmt(row.get('own_tokens_per_s'), ',.0f')}, {fmt(row.get('own_mfu'), '.1%')}"
                if "own_mfu" in row
                else "-"
            )
            lines.append(
                f"| {label} | {row['tokens_per_s']:,.0f} | {row['update_ms']:.1f} | {row['mfu']:.1%} "
                f"| {row['mfu_attention']:.1%} | {row['peak_memory_gib']:.2f} | {fmt(vs_floor, '.3f')} "
                f"| {fmt(vs_trainer, '.3f')} | {fmt(memory, '.3f')} | {fmt(row.get('first_update_s'), '.1f')} "
                f"| {fmt(row.get('process_s'), '.1f')} | {own} | {fmt(row.get('loss_last'), '.4f')} |"
            )
        lines.append("")
    if check.figures["sync"]:
        lines += ["## (b) Device syncs between logging points", ""]
        for label, figures in check.figures["sync"].items():
            first = figures.get("first") or {}
            lines.append(f"- {label}: mode {figures['mode']}{' (emulated detector)' if figures['emulated'] else ''}: "
                         f"{first.get('outcome')}, {first.get('armed_updates')} of {first.get('updates')} updates "
                         f"armed (expected {first.get('expected_armed')}); {first.get('error') or 'no error'}")  # fmt: skip
            for site in (figures.get("all") or first).get("sites", [])[:12]:
                where = "model (transformers)" if site["in_model"] else "loop"
                lines.append(f"  - {site['site']} ×{site['count']}, via {site['via']} [{where}]: {site['message']}")
        lines.append("")
    fsdp = check.figures["fsdp"]
    if fsdp.get("uninterrupted"):
        lines += ["## (c) FSDP2, SIGKILL, resume", "",
                  f"Launch: `accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 train.py` "
                  f"(through gpu_probe.py), batch {sizes.fsdp_batch} × {sizes.fsdp_block} tokens, {sizes.fsdp_updates} "
                  f"updates, a checkpoint every {sizes.fsdp_save}, a loss logged every update; the second run is "
                  f"SIGKILLed from outside (the training process, as a crash would; its launcher then exits) while it "
                  f"waits after update {sizes.fsdp_hold}, then "
                  "resumed with `--output_dir ... --resume_from_checkpoint latest` alone. Parameters: "
                  f"{fsdp.get('param_type')}; checkpoint: {', '.join(fsdp.get('checkpoint_files') or [])}.", "",
                  "| update | uninterrupted | killed run (before the kill) | resumed (its metrics.jsonl: updates up to the checkpoint kept) |", "|---|---|---|---|"]  # fmt: skip
        for step in sorted(fsdp["uninterrupted"], key=int):
            lines.append(f"| {step} | {fsdp['uninterrupted'][step]!r} | {fsdp['killed_before_kill'].get(step, '')!r} "
                         f"| {fsdp['resumed'].get(step, '')!r} |")  # fmt: skip
        lines.append("")
    if check.figures["lora"]:
        lines += ["## (d) LoRA, QLoRA", "", "| run | tokens/s | ×full fine-tune | peak GiB | ×full | first update s | last loss |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, row in check.figures["lora"].items():
            lines.append(f"| {name} | {fmt(row.get('tokens_per_s'), ',.0f')} | {fmt(row.get('tokens_per_s_vs_full'), '.3f')} "
                         f"| {fmt(row.get('peak_memory_gib'), '.2f')} | {fmt(row.get('peak_memory_vs_full'), '.3f')} "
                         f"| {fmt(row.get('first_update_s'), '.1f')} | {fmt(row.get('loss_last'), '.4f')} |")  # fmt: skip
        lines += ["", "Full fine-tune: train.py eager from (a). LoRA: PEFT's default targets for GPT-2 (`c_attn`), "
                  "r 16; tokens/s over the same kind of window.", ""]  # fmt: skip
    failed = [r for r in check.runs if r.failure()]
    if failed:
        lines += ["## Failed processes (last lines of their output)", ""]
        for run in failed:
            lines += [f"### {run.name}: {run.failure()}", "", "```", run.tail(15), "```", ""]
    return "\n".join(lines) + "\n"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Where gpu-check.md, .json and .log go.")
    parser.add_argument("--work", required=True, help="Scratch: the baked project, models, runs, caches.")
    parser.add_argument("--cpu", action="store_true", help="CPU mode: tiny sizes, CUDA-only checks skipped.")
    parser.add_argument("--project", help="A project baked with task=causal-lm already (default: bake one).")
    parser.add_argument("--budget", type=float, default=None, help="Seconds for all parts (GPU 450, CPU 1500).")
    parser.add_argument("--parts", default="a,b,c,d,e", help="Which parts to run (default a,b,c,d,e).")
    parser.add_argument("--peak-tflops", type=float, default=H200_PEAK_TFLOPS, help="The GPU's dense bf16 peak.")
    parser.add_argument("--no-compile", action="store_true", help="Leave out the torch.compile runs.")
    parser.add_argument("--no-trainer-compile", action="store_true", help="Leave out the compiled Trainer run.")
    args = parser.parse_args()
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if args.parts - set("abcde"):
        parser.error("--parts takes a, b, c, d, e")
    return args


def main():
    args = parse_args()
    import torch

    if not args.cpu and not torch.cuda.is_available():
        sys.exit("error: no CUDA device here; --cpu runs the CPU mode (tiny sizes).")
    check = Check(args)
    check.out.mkdir(parents=True, exist_ok=True)
    check.work.mkdir(parents=True, exist_ok=True)
    check.say(f"GPU check, {'CPU mode' if check.cpu else 'GPU'}: out {check.out}, work {check.work}")
    check.part("setup", "bake the project, build the model and data", check.prepare)
    check.write()
    if not getattr(check, "project", None) or not getattr(check, "model_dir", None):
        print(markdown(check))
        return 1
    if "a" in args.parts:
        order = [("train.py", False), ("floor", False), ("Trainer", False), ("train.py", True), ("floor", True)]
        check.part("a", "throughput: train.py, floor, Trainer, eager and compiled", check.part_a, order)
        check.write()
    # (b) and (c) measure no speed, so they share the GPU: three threads, one process each at a time.
    side = []
    if "b" in args.parts:
        side.append(("b", "syncs between logging points, eager", check.part_b, False))
        if not args.no_compile:
            side.append(("b", "syncs between logging points, compiled", check.part_b, True))
    if "c" in args.parts:
        side.append(("c", "FSDP2: save, SIGKILL, resume", check.part_c))
    threads = [threading.Thread(target=check.part, args=job) for job in side]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check.write()
    if "e" in args.parts:
        check.part("e", "FSDP2: weights read once, and compile", check.part_e)
        check.write()
    if "d" in args.parts:
        check.part("d", "LoRA and QLoRA", check.part_d)
        check.write()
    if "a" in args.parts and not (args.no_trainer_compile or args.no_compile):
        check.part("a", "throughput: the Trainer compiled (last: the first to go when time is short)", check.part_a,
                   [("Trainer", True)])  # fmt: skip
    if "a" in args.parts:
        check.goals_a()
    check.write()
    report = (check.out / "gpu-check.md").read_text()
    print("\n" + report)
    return 1 if any(v["verdict"] == "FAIL" for v in check.verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
