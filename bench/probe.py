"""Run a training script unchanged and record when each optimizer update finishes.

    python bench/probe.py RESULT.json SCRIPT.py [script args...]

The same probe wraps all three contenders (the generated train.py, the floor loop, the Trainer
script), so the instrumentation is identical for all of them and none of them is edited:

* a global optimizer post-step hook (torch.optim.optimizer.register_optimizer_step_post_hook)
  appends time.time() and time.process_time() after every optimizer.step(); the Trainer's and Accelerate's optimizer
  wrappers call the torch optimizer's step(), so the hook sees every update of every contender;
* datasets.load_dataset and Dataset.map are wrapped to add up the seconds spent in them (data
  preparation: reading the files and tokenizing), outermost calls only;
* the eval() of torch and transformers modules and PreTrainedModel.save_pretrained record when they are
  called: an evaluation after the last update lasts from the model's eval() to the final save.

The script runs in this process through runpy as __main__, after sys.argv and sys.path are set
as if it had been started directly. At exit the probe writes RESULT.json.

Lockstep mode (BENCH_LOCKSTEP="read_fd,write_fd,turn,total,first|second"): two probed scripts
started together take turns of `turn` updates: after each turn the hook hands the CPU over by
writing a byte to the other process and blocks until it gets one back. The waiting process uses
no CPU, so each turn runs alone, and neighbouring turns of the two contenders see the same machine.
"""

import time

T_START = time.time()  # before any import of note

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402

result_path, script, *script_args = sys.argv[1:]
update_times = []
prep = {"seconds": 0.0, "depth": 0, "first_start": None, "last_end": None}


def write_result():
    json.dump(
        {
            "t_start": T_START,
            "update_times": update_times,
            "update_cpu_times": update_cpu_times,
            "turn_starts": turn_starts,
            "prep_seconds": prep["seconds"],
            "prep_first_start": prep["first_start"],
            "prep_last_end": prep["last_end"],
            "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "eval_calls": eval_calls,
            "save_calls": save_calls,
        },
        open(result_path, "w"),
    )


atexit.register(write_result)

from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402  (all import torch)

update_cpu_times = []  # process CPU seconds at each update: robust to a busy machine
turn_starts = []  # lockstep: (when this process got the CPU back, updates done by then)
lockstep = os.environ.get("BENCH_LOCKSTEP")
if lockstep:
    read_fd, write_fd, turn, total, role = lockstep.split(",")
    read_fd, write_fd, turn, total = int(read_fd), int(write_fd), int(turn), int(total)
    offset = 0 if role == "first" else 1  # the second process waits after its first update


def take_turn(done):
    """Hand the CPU over after `done` updates and wait to get it back. The end of either side
    (its last update, or its exit: EOF or a broken pipe) ends the lockstep for both."""
    global lockstep
    try:
        if done > offset:
            os.write(write_fd, b"x")
        if done == total:
            os.close(write_fd)
            lockstep = None
        elif os.read(read_fd, 1):
            turn_starts.append((time.time(), done))
        else:
            lockstep = None
    except BrokenPipeError:
        lockstep = None


def on_update(*_):
    update_times.append(time.time())
    update_cpu_times.append(time.process_time())
    done = len(update_times)
    if lockstep and ((done - offset) % turn == 0 or done == total):
        take_turn(done)


register_optimizer_step_post_hook(on_update)

import datasets  # noqa: E402  (every contender imports datasets anyway)


def timed(function):
    def wrapper(*args, **kwargs):
        prep["depth"] += 1
        start = time.time()
        try:
            return function(*args, **kwargs)
        finally:
            prep["depth"] -= 1
            if prep["depth"] == 0:
                end = time.time()
                prep["seconds"] += end - start
                prep["first_start"] = prep["first_start"] or start
                prep["last_end"] = end

    return wrapper


datasets.load_dataset = timed(datasets.load_dataset)
datasets.Dataset.map = timed(datasets.Dataset.map)

import torch  # noqa: E402
import transformers  # noqa: E402

eval_calls, save_calls = [], []


def stamped(function, stamps):
    def wrapper(*args, **kwargs):
        stamps.append(time.time())
        return function(*args, **kwargs)

    return wrapper


torch.nn.Module.eval = stamped(torch.nn.Module.eval, eval_calls)
transformers.PreTrainedModel.eval = stamped(transformers.PreTrainedModel.eval, eval_calls)  # its own eval()
transformers.PreTrainedModel.save_pretrained = stamped(transformers.PreTrainedModel.save_pretrained, save_calls)

sys.argv = [script, *script_args]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
