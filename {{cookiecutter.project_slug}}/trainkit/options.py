"""How an option is declared and checked: config.py and task.py declare every option with
`option(...)` (type, default, one line of help, bounds); cli.py derives --help, type checks,
choices and bounds from those declarations. A UsageError is a problem the user can fix: it
reaches the console as one sentence and exit status 2.

Why a parser of our own (cli.py) and not a library: transformers' HfArgumentParser reads one
YAML file or the command line, not files layered with overrides, and argparse under it silently
accepts abbreviations (`--learn` sets learning_rate) and answers errors with usage blocks; tyro
and jsonargparse layer files well but add a dependency, nested flag syntax and multi-line error
reports. What users need here (layered YAML, `--k v`, typo hints, one-sentence errors, --help) is
small enough to own and read.
"""

import dataclasses
from dataclasses import field

import yaml


class UsageError(Exception):
    """A problem the user can fix; the command prints its one-sentence message and exits with 2."""


def option(default, help, *, at_least=None, above=None, below=None, path=False):
    """One option: its default, one line of help, the bounds of its value (inclusive `at_least`,
    exclusive `above` and `below`), and whether its default is a path in the project."""
    bounds = {"at_least": at_least, "above": above, "below": below}
    return field(default=default, metadata={"help": help, "path": path, **bounds})


def bounds_problem(value, meta):
    """What is wrong with a number given its declared bounds, or None."""
    low, above, below = meta["at_least"], meta["above"], meta["below"]
    if above is not None and not value > above:
        return "must be positive" if above == 0 else f"must be above {above}"
    if low is not None and not value >= low:
        return "must not be negative" if low == 0 else f"must be at least {low}"
    if below is not None and not value < below:
        return f"must be below {below}"
    return None


def check_bounds(cfg):
    """Every value within the bounds its declaration gives, or one sentence naming the first."""
    for spec in dataclasses.fields(cfg):
        value = getattr(cfg, spec.name)
        if value is not None and (problem := bounds_problem(value, spec.metadata)):
            raise UsageError(f"Option {spec.name} {problem}, got {value}.")


def check_metric_for_best_model(cfg, metric_names):
    """Checked before training, not at the first evaluation hours later, when the run evaluates:
    metric_names(cfg) lists what evaluation reports (task.eval_metric_names)."""
    if cfg.eval_strategy == "no":
        return
    names = metric_names(cfg)
    if cfg.metric_for_best_model not in names:
        name = cfg.metric_for_best_model
        raise UsageError(f"metric_for_best_model {name} is not one of {', '.join(names)}.")


def to_yaml(cfg):
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)
