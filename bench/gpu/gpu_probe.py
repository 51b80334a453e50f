"""Run a training script unchanged, in this process, and record what the GPU check reads.

    python bench/gpu/gpu_probe.py RESULT.json SCRIPT.py [script args...]
    accelerate launch ... bench/gpu/gpu_probe.py RESULT.json train.py [train args...]

The script runs through runpy as __main__ (its sys.argv and sys.path as if started directly), as
bench/probe.py runs the CPU benchmark's contenders. A global optimizer post-step hook
(torch.optim.optimizer.register_optimizer_step_post_hook) sees every update of train.py, the
floor and the Trainer alike, and:

* GPU_CHECK_WINDOW="W,N": synchronizes the device after update W and after update N and times
  the updates between them (the steady window: N - W updates, GPU work included); reads the
  peak memory at update N (torch.cuda.max_memory_allocated; on CPU the process's peak RSS);
* synchronizes after update 1 too: `first_update_s` (imports, data, model, compile, one update);
* GPU_CHECK_HOLD_AT=K with GPU_CHECK_HOLD_FILE=PATH: after update K writes its pid and process
  group to PATH and waits, so the parent can SIGKILL the run at a known point (the FSDP resume
  check; under torchrun the worker has a session of its own);
* records the class of the first trained parameter (DTensor under FSDP2).

RESULT.json is written at exit (not after a SIGKILL: the parent reads the run's files then).
"""

import time

T_START = time.perf_counter()  # before any import of note

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402

result_path, script, *script_args = sys.argv[1:]
result = {"script": script, "updates": 0, "first_update_s": None, "window_seconds": None, "param_type": None}
cuda = False  # until torch says otherwise


def write_result():
    result["process_s"] = time.perf_counter() - T_START
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if cuda:
        result["peak_memory_exit_bytes"] = torch.cuda.max_memory_allocated()
    with open(result_path, "w") as stream:
        json.dump(result, stream, indent=1)


atexit.register(write_result)

import torch  # noqa: E402
from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402

cuda = torch.cuda.is_available()
result["device"] = "cuda" if cuda else "cpu"
window_start, window_end = (int(x) for x in os.environ.get("GPU_CHECK_WINDOW", "0,0").split(","))
hold_at = int(os.environ.get("GPU_CHECK_HOLD_AT", "0"))
hold_file = os.environ.get("GPU_CHECK_HOLD_FILE")
window_started = [None]


def now_synchronized():
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def peak_memory():
    if cuda:
        return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, None


def on_update(optimizer, args, kwargs):
    result["updates"] += 1
    done = result["updates"]
    if done == 1:
        result["first_update_s"] = now_synchronized() - T_START
        first = optimizer.param_groups[0]["params"][0]
        result["param_type"] = type(first).__name__
        try:
            from torch.distributed.tensor import DTensor

            result["param_dtensor"] = isinstance(first, DTensor)
        except ImportError:
            result["param_dtensor"] = None
    if done == window_start:
        window_started[0] = now_synchronized()
    if done == window_end and window_started[0] is not None:
        result["window_seconds"] = now_synchronized() - window_started[0]
        result["window_updates"] = window_end - window_start
        result["peak_memory_bytes"], result["peak_reserved_bytes"] = peak_memory()
    if done == hold_at and hold_file:
        now_synchronized()
        with open(hold_file + ".tmp", "w") as stream:  # pid and process group, for the parent's SIGKILL
            stream.write(f"{os.getpid()} {os.getpgid(0)} held after update {done}\n")
        os.replace(hold_file + ".tmp", hold_file)
        time.sleep(3600)  # the parent SIGKILLs the process group now


register_optimizer_step_post_hook(on_update)

sys.argv = [script, *script_args]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as stop:
    result["exit"] = stop.code
    raise
except BaseException as error:
    result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    raise
