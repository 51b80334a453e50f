"""The processes of a run: started as one Accelerator (one process, or each of `accelerate
launch`'s), and stopped together when a signal asks: SLURM sends SIGTERM or SIGUSR1 before it
kills a job, Ctrl-C sends SIGINT.
"""

import ctypes
import logging
import math
import os
import platform
import signal
import sys
import time

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

from trainkit.options import UsageError

# SLURM sends SIGTERM or SIGUSR1 before it kills a job, Ctrl-C sends SIGINT.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def start_processes(cfg):
    """This process's Accelerator, after the checks that must come before any work."""
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with=None if cfg.report_to == "none" else cfg.report_to,
        project_config=ProjectConfiguration(cfg.output_dir, logging_dir=f"{cfg.output_dir}/logs"),
        dynamo_backend="inductor" if cfg.torch_compile else "no",
    )
    if int(os.environ.get("WORLD_SIZE", "1")) != accelerator.num_processes:
        raise UsageError("Processes would train alone: without GPUs set ACCELERATE_USE_CPU=true.")
    if accelerator.device.type == "cpu" and cfg.mixed_precision == "fp16":
        # Accelerate has no fp16 autocast on CPU: the run would be fp32, unsaid.
        raise UsageError("mixed_precision=fp16 does not run on CPU; use bf16 or no.")
    keep_freed_cpu_memory(accelerator.device)
    if accelerator.device.type == "cpu" and accelerator.is_local_main_process:
        # The processes that share this machine's cores: torchrun's count of them on this node.
        here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        note = thread_note(torch.get_num_threads(), *cpu_share(), here)
        if note:
            print(note, flush=True)
    if accelerator.distributed_type == "DEEPSPEED" and cfg.gradient_accumulation_steps > 1:
        raise UsageError("DeepSpeed steps at every backward: set gradient_accumulation_steps=1.")
    return accelerator


def fit_fsdp_wrapping(accelerator, model):
    """FSDP2 shards each of the model's `_no_split_modules` on its own, then (accelerate 1.16)
    the input embedding on its own, with the output layer where their weight is tied. Two kinds
    of transformers models fail there, found on CPU processes (tests/test_sharding.py):
    - the embedding sits inside one of those modules (BERT's, RoBERTa's and ViT's `*Embeddings`):
      its weight would be sharded twice ("value was None when it should not be"). Those modules
      are left to the unit around them; a wrap list set in the accelerate config
      (fsdp_transformer_layer_cls_to_wrap) is kept;
    - other embedding modules hold the same weight (T5's and BART's encoder and decoder
      `embed_tokens`): torch refuses a weight in two units. They become the input embedding
      module itself, which computes the same (the same weight and options)."""
    if accelerator.distributed_type != "FSDP":
        return
    embedding = getattr(model, "get_input_embeddings", lambda: None)()
    weight = getattr(embedding, "weight", None)
    for name, module in list(model.named_modules(remove_duplicate=False)):
        same = isinstance(module, torch.nn.Embedding) and module.weight is weight
        if same and module is not embedding and module.extra_repr() == embedding.extra_repr():
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, embedding)
    plugin = accelerator.state.fsdp_plugin
    if plugin.transformer_cls_names_to_wrap is None:
        holders = {type(m).__name__ for m in model.modules() if embedding in list(m.modules())}
        present = {type(m).__name__ for m in model.modules()}
        names = getattr(model, "_no_split_modules", None) or []
        plugin.transformer_cls_names_to_wrap = [
            n for n in names if n in present and n not in holders
        ]


def cpu_share():
    """(cores this process may run on, by its affinity and any cgroup quota; the load others put
    on them: the 1-minute load average less this process's own part of it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:  # cgroup v2: "max 100000", or a quota of CPU time per period
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        cores = min(cores, max(1, int(quota) // int(period))) if quota != "max" else cores
    except (OSError, ValueError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    # The load average is a one-minute moving average: a process that has been busy for t
    # seconds accounts for about 1 - exp(-t/60) of its CPU rate in it.
    used, age = time.process_time(), max(1e-3, time.time() - process_start())
    own = min(used / age, 1.0) * (1 - math.exp(-age / 60))
    return cores, max(0.0, load - own)


def process_start():
    """When this process started (Linux: /proc); now, elsewhere."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


def thread_note(threads, cores, others_load, processes):
    """One line when torch runs more threads per process than the cores it can really use: on
    a busy machine, threads beyond that wait on each other (measured: docs/speed.md). Advice,
    not a change: the thread count decides the order of float sums, so setting it by the load
    would make two runs of one command differ."""
    free = max(1, math.floor(cores - others_load + 0.5))
    usable = max(1, free // processes)
    if threads <= usable:
        return None
    busy = f" under a load of {others_load:.1f} from other work" if others_load >= 0.5 else ""
    return (
        f"Note: torch runs {threads} threads in each of {processes} process(es) on {cores} "
        f"core(s){busy}; threads beyond {usable} wait on each other. Set them: "
        f"OMP_NUM_THREADS={usable} python train.py ... (docs/speed.md)."
    )


def keep_freed_cpu_memory(device):
    """glibc gives each large tensor fresh pages, which the kernel zeroes on first touch, and
    frees them at once: CPU updates then spend much time in page faults. Keeping freed memory on
    the heap makes a MiniLM-size update ~3% faster at about the same peak (bench/README.md).
    glibc only."""
    if device.type == "cpu" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(None)
        libc.mallopt(-4, 0)  # M_MMAP_MAX: no block gets a mapping of its own
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: keep up to 2 GiB of freed memory


def exit_process(status):
    """Destroy the process group if it is still open (leaving with it open aborts the process),
    then exit with `status`. One of several processes exits without Python's teardown: gloo's
    worker threads may still be letting go of the last collective's tensors, which takes the GIL,
    and in teardown Python ends such a thread, which aborts the process ("terminate called
    without an active exception") and fails the launch of a finished run (1 in about 50
    two-process predict.py runs on a busy 2-core machine)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


class StopRequests:
    """SIGTERM, SIGUSR1 and SIGINT ask the run to finish its update, save and stop; a second
    Ctrl-C stops at once (the last complete checkpoint stays). `agreed()` tells every process
    whether any of them was asked, through a CPU (gloo) all-reduce: no wait for a GPU."""

    def __init__(self, accelerator):
        self.received = []
        self.accelerator = accelerator
        several = accelerator.num_processes > 1
        self.group = torch.distributed.new_group(backend="gloo") if several else None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.request)

    def request(self, signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in self.received:
            os._exit(130)
        # Recorded before the message, so a Ctrl-C after the message is always a second one.
        self.received.append(signum)
        if signum == signal.SIGINT and self.accelerator.is_main_process:
            print("\nStopping after this update (Ctrl-C again: at once).", flush=True)

    def agreed(self):
        flag = torch.tensor(len(self.received))
        if self.group is not None:
            torch.distributed.all_reduce(flag, group=self.group)
        return flag.item() > 0
