"""train.py under DeepSpeed ZeRO-2 on CPU processes: for the tests only.

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \\
        tests/deepspeed_on_cpu.py --config configs/debug.yaml --gradient_accumulation_steps 1

Accelerate takes its DeepSpeed path off CPUs only (ACCELERATE_USE_DEEPSPEED is ignored where
the processes run on CPU), though DeepSpeed itself runs there: its CPU accelerator talks over
gloo. This file sets what a GPU launch with configs/accelerate/deepspeed.yaml sets, right after
train.py has built its Accelerator: the state's DeepSpeedPlugin (ZeRO stage 2, that config's
options), the distributed type DEEPSPEED and DeepSpeed's communication on the process group.
Then train.py runs unchanged: `prepare` builds the DeepSpeed engine, `backward` steps it,
checkpoints are DeepSpeed's (pytorch_model/ with each process's partition of the optimizer).
Everything but the device is the production path; bf16 and DeepSpeed's fused CPU Adam are not.
"""

import os
import runpy
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import deepspeed  # noqa: E402
from accelerate.state import PartialState  # noqa: E402
from accelerate.utils import DeepSpeedPlugin, DistributedType  # noqa: E402

from trainkit import processes  # noqa: E402

start_processes = processes.start_processes
# On CPU, DeepSpeed compiles a shared-memory all-reduce (C++, about a minute, both cores) the
# first time it starts communication. Only its inference_all_reduce uses it; training's
# collectives go over the gloo process group. Marked unavailable, it is neither built nor used.
deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def start_deepspeed_processes(cfg):
    """train.py's start_processes, then the state a GPU launch with deepspeed.yaml would have."""
    accelerator = start_processes(cfg)
    plugin = DeepSpeedPlugin(
        zero_stage=2,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        gradient_clipping=cfg.max_grad_norm,
    )
    plugin.set_mixed_precision(cfg.mixed_precision)
    accelerator.state.deepspeed_plugins = {"default": plugin}
    plugin.select(_from_accelerator_state=True)
    accelerator.state.distributed_type = DistributedType.DEEPSPEED
    PartialState._shared_state["distributed_type"] = DistributedType.DEEPSPEED
    accelerator.deepspeed_engine_wrapped = None  # what Accelerator() sets under DeepSpeed
    deepspeed.init_distributed(dist_backend="gloo")  # on the process group Accelerate made
    return accelerator


# train.py imports start_processes by name when it runs, so it gets this one.
processes.start_processes = start_deepspeed_processes
sys.argv[0] = str(PROJECT / "train.py")
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
    status = 0
except SystemExit as stop:  # sys.exit(None) is success; a message is printed, as Python would
    status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    if isinstance(stop.code, str):
        print(stop.code, file=sys.stderr)
# Out without the interpreter's teardown, once train.py has ended its processes: in CI a worker
# of a complete FSDP2 run aborted in it once ("terminate called without an active exception"),
# and the launcher then failed the run.
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
