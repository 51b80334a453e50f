"""Reading the options: YAML files, then the command line, into one checked Config.

    python train.py --config configs/debug.yaml --config mine.yaml --learning_rate 1e-4

Later files win over earlier ones and the command line over files. When a run resumes
(--resume_from_checkpoint), the checkpoint's own config.yaml comes first, so `--output_dir X
--resume_from_checkpoint latest` alone continues the run as it was; what you type still wins.
Paths in defaults and config files (the bundled model and data, outputs/) count from the project
directory; paths you type on the command line count from where you are.

Why a parser of our own and not a library: options.py's docstring.
"""

import contextlib
import dataclasses
import difflib
import os
import sys
import types
import typing
from pathlib import Path
from typing import Literal

import yaml

from trainkit.checkpoints import checkpoint_dirs, no_space, output_dir_lock
from trainkit.options import UsageError, check_bounds
from trainkit.processes import exit_process

# The project directory: the kit's parent.
PROJECT = Path(__file__).resolve().parents[1]
# Names people bring from other tools, and the option that does the job here.
COMMON_NAMES = {
    "fp16": "mixed_precision fp16",
    "bf16": "mixed_precision bf16",
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "eval_batch_size": "per_device_eval_batch_size",
    "evaluation_strategy": "eval_strategy",
    "model": "model_name_or_path",
    "dataset": "dataset_name (hub) or --train_file (local file)",
}
# Where training data comes from, and its validation data (train_dir: image-classification).
SOURCES = ("dataset_name", "train_file", "train_dir")
VALIDATION_SOURCES = ("validation_file", "validation_dir")
# Options a resumed run never takes from its checkpoint: they say where and how to run now.
NOT_RECORDED = ("output_dir", "resume_from_checkpoint", "overwrite_output_dir", "debug")


def run(train, config_class, argv):
    """Parse argv and train, holding output_dir's lock. A UsageError becomes one line on stderr
    and exit status 2."""
    cfg = None
    try:
        cfg = parse_args(argv, config_class)
        with output_dir_lock(cfg.output_dir):
            train(cfg)
    except Exception as error:
        if cfg is not None and cfg.debug:
            raise
        if not isinstance(error, UsageError):
            # A full disk (checkpoints.no_space) is one sentence too; any other error goes on.
            error = (cfg and no_space(error, cfg.output_dir)) or error
            if not isinstance(error, UsageError):
                raise
        # One message, not one per process.
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {error}", file=sys.stderr)
        exit_process(2)


def parse_args(argv, config_class):
    """YAML files in order, then --key value overrides: a checked config_class, defaults filled."""
    if "-h" in argv or "--help" in argv:
        print_help(config_class)
        sys.exit(0)
    kinds = typing.get_type_hints(config_class)
    files, overrides = read_command_line(argv)
    given = {}
    for path in files:
        # A config file counts from where you are, else from the project: configs/x.yaml works
        # from anywhere.
        in_project = not Path(path).exists() and (PROJECT / path).exists()
        given.update(load_yaml(PROJECT / path if in_project else path))
    given.update(overrides)
    for name in given:
        check_known(name, kinds)
    recorded = recorded_options(given, config_class)
    values = {
        name: coerce(name, kinds[name], value) for name, value in {**recorded, **given}.items()
    }
    cfg = config_class(**values)
    for spec in dataclasses.fields(cfg):
        value = getattr(cfg, spec.name)
        # Defaults and paths in config files count from the project; typed ones from here.
        if spec.metadata["path"] and value and spec.name not in overrides.keys() | recorded.keys():
            setattr(cfg, spec.name, from_project(value))
    # Data you give replaces the default data entirely, whatever its kind (a hub dataset, a file,
    # a folder of images), its validation split included.
    if any(values.get(name) is not None for name in given.keys() & set(SOURCES)):
        for name in SOURCES + VALIDATION_SOURCES:
            if name not in values and hasattr(cfg, name):
                setattr(cfg, name, None)
    if "num_train_epochs" in given and cfg.max_steps > 0 and os.environ.get("RANK", "0") == "0":
        print(f"Note: max_steps={cfg.max_steps} wins over num_train_epochs; -1 trains by epochs.")
    check_bounds(cfg)
    cfg.check()  # config.py: combinations that cannot work
    return cfg.fill_derived_defaults()


def from_project(value):
    """A path option's value with its relative paths made absolute from the project directory;
    in a comma-separated list (metrics), only the items that name a path."""
    items = [
        os.path.normpath(PROJECT / item) if "/" in item or (PROJECT / item).exists() else item
        for item in value.split(",")
    ]
    return ",".join(items)


def recorded_options(given, config_class):
    """When resuming, the options the checkpoint was trained with (its config.yaml)."""
    resume = given.get("resume_from_checkpoint")
    if resume in (None, "null", "none", ""):
        return {}
    if resume == "latest":
        found = checkpoint_dirs(given.get("output_dir", PROJECT / config_class.output_dir))
        if not found:
            return {}
        resume = found[-1]
    path = Path(resume, "config.yaml")
    if not path.is_file():
        return {}
    known = {spec.name for spec in dataclasses.fields(config_class)}
    recorded = load_yaml(path)
    return {name: value for name, value in recorded.items() if name in known - set(NOT_RECORDED)}


def type_name(kind):
    """How --help and error messages name a type: int, bool, adamw|adafactor|sgd, str or null."""
    if typing.get_origin(kind) is Literal:
        return "|".join(typing.get_args(kind))
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        inner = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        return f"{type_name(inner)} or null"
    return kind.__name__


def coerce(name, kind, value):
    """Turn a YAML or command-line value into the option's type, or raise UsageError."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("", "null", "none")):
            return None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if typing.get_origin(kind) is Literal:
        if value in typing.get_args(kind):
            return value
        raise UsageError(f"Option {name} must be one of {', '.join(typing.get_args(kind))}.")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool and isinstance(value, bool):
        return value
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if kind is int and is_number and float(value).is_integer():
        return int(value)
    if kind is int and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if kind is float and (is_number or isinstance(value, str)):
        # YAML 1.1 reads "5e-4" as a string, so numeric strings are accepted.
        with contextlib.suppress(ValueError):
            return float(value)
    if kind is str and (is_number or isinstance(value, str)):
        return str(value)
    raise UsageError(f"Option {name} expects {type_name(kind)}, got {value!r}.")


def load_yaml(path):
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise UsageError(f"Cannot read config file {path}: {error.strerror}.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"Config file {path} is not valid YAML{where}.") from None
    if not isinstance(values, dict):
        raise UsageError(f"Config file {path} must hold a mapping of option: value.")
    return values


def print_help(config_class):
    lines = ["usage: train.py [--config FILE.yaml ...] [--option value ...]", "", "options:"]
    kinds = typing.get_type_hints(config_class)
    for spec in dataclasses.fields(config_class):
        meta = spec.metadata
        signs = {"at_least": ">=", "above": ">", "below": "<"}
        limits = [f"{sign} {meta[key]}" for key, sign in signs.items() if meta[key] is not None]
        kind = ", ".join([type_name(kinds[spec.name]), *limits])
        lines += [f"  --{spec.name} ({kind}, default {spec.default!r})", f"      {meta['help']}"]
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:
        # `train.py --help | head` closes the pipe early: not an error. Nothing more goes out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def read_command_line(argv):
    """Split argv into YAML files and --name value overrides."""
    files, overrides = [], {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise UsageError(f"Unexpected argument {arg!r}: options look like --name value.")
        name, has_value, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if not has_value:
            if not args:
                raise UsageError(f"Option --{name} needs a value.")
            value = args.pop(0)
        if name == "config":
            files.append(value)
        else:
            overrides[name] = value
    return files, overrides


def check_known(name, known):
    if name in COMMON_NAMES:
        raise UsageError(f"Unknown option {name}; use --{COMMON_NAMES[name]}.")
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]}?" if close else " See --help for the list."
        raise UsageError(f"Unknown option {name}.{hint}")
