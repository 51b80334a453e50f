"""Run the generated train.py in this process with CUDA's sync detector armed between logging points.

    cd <generated project> && python <repo>/bench/gpu/sync_check.py RESULT.json --mode error -- [train.py args]

train.py reads values back from the device only to log, evaluate or save. This harness checks
that claim: it imports the project's train module and wraps two of its functions, so that
torch.cuda.set_sync_debug_mode(mode) is armed from the end of one log record's reads (after
check_finite, the last read of a log) to the start of the next record's (Totals.summary, the
first read). Between them run whole updates: loading the batch, copying it to the device, the
forward and backward passes, clipping, the optimizer step, zero_grad, the stop flag. Nothing
arms after the last log (the final save reads every weight back, as it must).

--mode error   the first synchronizing CUDA call raises; the harness records where and stops
--mode warn    every synchronizing call warns; the harness records each call site and goes on
--mode none    nothing armed (the harness runs, counting the updates it would have armed)
--emulate      no CUDA here: a TorchFunctionMode stands in for the detector and flags every
               .item(), bool(), int(), float(), .tolist() and .nonzero() of any tensor, CPU
               tensors included (which a GPU run would not flag). It exercises this harness's
               arming, error and warning paths on a CPU; it proves nothing about syncs.

RESULT.json: outcome (completed | sync | failed), updates, armed_updates, expected_armed,
sites [{site, via, in_model, count, message}], error. A site is the innermost Python frame of the
call (outside this harness and torch's dispatch wrappers); `via` the innermost frame in the
project; `in_model` whether the call came from inside transformers (the model's forward).
"""

import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
argv = sys.argv[1:]
if "--" not in argv:
    sys.exit("usage: sync_check.py RESULT.json [--mode error|warn|none] [--emulate] -- [train.py args]")
ours, train_args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
result_path = ours[0]
mode = ours[ours.index("--mode") + 1] if "--mode" in ours else "error"
emulate = "--emulate" in ours
if mode not in ("error", "warn", "none"):
    sys.exit(f"--mode must be error, warn or none, not {mode}")


def train_option(name):
    return int(train_args[train_args.index(f"--{name}") + 1])


max_steps, logging_steps = train_option("max_steps"), train_option("logging_steps")
PROJECT = Path.cwd().resolve()
sys.path.insert(0, str(PROJECT))

import torch  # noqa: E402
import train  # noqa: E402  (the generated project's train.py)
from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

cuda = torch.cuda.is_available()
state = {"armed": False, "updates": 0, "armed_updates": 0, "arms": 0}
sites = {}
WRAPPERS = ("/torch/overrides.py", "/torch/_tensor.py", "/torch/utils/_python_dispatch.py", "/torch/_jit_internal.py")


def short(frame):
    """site-packages/x/y.py:12 in f -> x/y.py:12 in f; project files relative to the project."""
    if frame is None:
        return None
    path = frame.filename.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if path.startswith(str(PROJECT) + "/"):
            path = path[len(str(PROJECT)) + 1 :]
    return f"{path}:{frame.lineno} in {frame.name}"


def record_site(frames, message):
    frames = [f for f in frames if not f.filename.startswith(str(HERE)) and f.filename != warnings.__file__]
    inner = [f for f in frames if not f.filename.replace("\\", "/").endswith(WRAPPERS)]
    site = (inner or frames or [None])[-1]
    in_project = [f for f in frames if f.filename.startswith(str(PROJECT) + os.sep)]
    key = short(site)
    entry = sites.setdefault(
        key,
        {
            "site": key,
            "via": short(in_project[-1]) if in_project else None,
            "in_model": any("/transformers/" in f.filename.replace("\\", "/") for f in frames),
            "count": 0,
            "message": message.splitlines()[0][:200],
            "update": state["updates"] + 1,
        },
    )
    entry["count"] += 1


class EmulatedDetector(TorchFunctionMode):
    """Stands in for set_sync_debug_mode on a CPU (see the module docstring)."""

    READS = {"item", "__bool__", "__int__", "__float__", "tolist", "nonzero"}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.READS:
            message = f"called a synchronizing CUDA operation (emulated: Tensor.{func.__name__})"
            if mode == "error":
                raise RuntimeError(message)
            warnings.warn(message, UserWarning, stacklevel=2)
        return func(*args, **(kwargs or {}))


emulator = [None]


def arm(on):
    if on == state["armed"]:
        return
    state["armed"] = on
    state["arms"] += on
    if mode == "none":
        return
    if emulate:
        if on:
            emulator[0] = EmulatedDetector()
            emulator[0].__enter__()
        else:
            emulator[0].__exit__(None, None, None)
            emulator[0] = None
    elif cuda:
        torch.cuda.set_sync_debug_mode(mode if on else "default")


summary = train.Totals.summary
check_finite = train.check_finite


def summary_disarmed(self, *args, **kwargs):
    arm(False)  # a log record starts: its reads are the loop's expected syncs
    return summary(self, *args, **kwargs)


def check_finite_then_arm(*args, **kwargs):
    checked = check_finite(*args, **kwargs)
    if state["updates"] < max_steps:  # not after the last log: the final save reads the weights
        arm(True)
    return checked


train.Totals.summary = summary_disarmed
train.check_finite = check_finite_then_arm


def on_update(*_):
    state["updates"] += 1
    state["armed_updates"] += state["armed"]


register_optimizer_step_post_hook(on_update)
show_warning = warnings.showwarning


def capture(message, category, filename, lineno, file=None, line=None):
    if "synchroniz" in str(message):
        record_site(traceback.extract_stack()[:-1], str(message))
    else:
        show_warning(message, category, filename, lineno, file, line)


if mode == "warn":
    warnings.filterwarnings("always", message=".*synchroniz")
    warnings.showwarning = capture

outcome, error, started = "completed", None, time.perf_counter()
try:
    train.main(train_args)
except SystemExit as stop:
    arm(False)
    outcome, error = ("completed", None) if stop.code in (0, None) else ("failed", f"exit status {stop.code}")
except Exception as failure:
    armed_then = state["armed"]
    arm(False)
    error = f"{type(failure).__name__}: {str(failure).splitlines()[0] if str(failure) else ''}"
    if armed_then and "synchroniz" in str(failure):
        outcome = "sync"
        record_site(traceback.extract_tb(failure.__traceback__), str(failure))
    else:
        outcome = "failed"
        traceback.print_exc()
finally:
    arm(False)
    warnings.showwarning = show_warning

windows = max(0, -(-max_steps // logging_steps) - 1)
report = {
    "mode": mode,
    "emulated": emulate,
    "cuda": cuda,
    "outcome": outcome,
    "error": error,
    "updates": state["updates"],
    "armed_updates": state["armed_updates"],
    "expected_armed": windows * logging_steps if max_steps % logging_steps == 0 else None,
    "arms": state["arms"],
    "sites": sorted(sites.values(), key=lambda s: -s["count"]),
    "seconds": round(time.perf_counter() - started, 2),
}
with open(result_path, "w") as stream:
    json.dump(report, stream, indent=1)
print(f"sync check ({mode}{', emulated' if emulate else ''}): {outcome}; {state['armed_updates']} updates armed; "
      f"{len(sites)} site(s)")  # fmt: skip
sys.exit(0 if outcome in ("completed", "sync") else 1)
