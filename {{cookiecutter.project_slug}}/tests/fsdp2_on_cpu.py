"""train.py under FSDP2 on CPU processes: for the tests only.

    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 \\
        tests/fsdp2_on_cpu.py --config configs/debug.yaml

Accelerate takes its FSDP path on accelerators only: on CPU processes its state says MULTI_CPU
(DDP over gloo) whatever the launch asks for. This file sets the two things that a GPU launch
with configs/accelerate/fsdp.yaml sets, right after train.py has built its Accelerator: the
state's FullyShardedDataParallelPlugin (FSDP2, that config's options) and the distributed type
FSDP. Then train.py runs unchanged: `prepare` calls fully_shard on each transformer layer and on
the model (DTensor parameters sharded over gloo), clipping takes the DTensor norm, checkpoints
are sharded DCP saves (pytorch_model_fsdp_0/, optimizer_0/), final/ comes from get_state_dict.
Everything but the device is the production path. What only a GPU settles (bf16 compute,
cpu_ram_efficient_loading, compile) is in the GPU check (bench/gpu).
"""

import os
import runpy
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from accelerate.state import PartialState  # noqa: E402
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin  # noqa: E402

from trainkit import processes  # noqa: E402

start_processes = processes.start_processes


def start_fsdp2_processes(cfg):
    """train.py's start_processes, then the state a GPU launch with fsdp.yaml would have."""
    accelerator = start_processes(cfg)
    accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        state_dict_type="SHARDED_STATE_DICT",
        reshard_after_forward=True,
        cpu_ram_efficient_loading=False,  # reads weights on process 0 only: the GPU check's row
    )
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return accelerator


# train.py imports start_processes by name when it runs, so it gets this one.
processes.start_processes = start_fsdp2_processes
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
