"""A trained model's predictions on new data: one JSON line per input, in input order, holding
the input and what the model says about it (task.predict decides what that is).

    python predict.py outputs/default/final data/new.jsonl   # the training format; labels optional
    python predict.py outputs/default/final inputs.txt           # or a plain list: one per line
    python predict.py outputs/default/final photos/              # images (in class folders: scored)
    python predict.py outputs/default/checkpoints/step-40 data/new.jsonl   # any checkpoint
    accelerate launch --num_processes 2 predict.py outputs/default/final data/new.jsonl
    options: --output FILE (default: predictions.jsonl beside final/) --batch_size 16
             --max_new_tokens 64 --temperature 0 --num_beams 1 (for generated text)

The predictions are written first. The run's config.yaml (beside final/, or in the checkpoint)
gives every other setting: columns, lengths, metrics. When every input holds its label too, the
scores follow (else one line says why not), computed as the run's
evaluation computes them (on the run's validation file they equal its last evaluation), printed
and written to FILE.metrics.json; scoring, and predicting from a checkpoint, read the run's
training data where it was (it fixes the order of the label names). With several processes each
predicts every N-th input, and the main process writes them all back in input order.
"""

import argparse
import functools
import json
import os
import sys
from pathlib import Path

import torch
from accelerate.utils import gather_object
from torch.utils.data import DataLoader

import task
from config import Config
from train import evaluate
from trainkit import cli, data, lora
from trainkit.options import UsageError
from trainkit.processes import exit_process, start_processes


def run_config(target):
    """The run's config, for final/ or a checkpoint."""
    checkpoint = (target / "trainer_state.json").is_file()
    config_file = target / "config.yaml" if checkpoint else target.parent / "config.yaml"
    if not config_file.is_file():
        raise UsageError(f"{target} is neither a run's final/ nor a checkpoint: no {config_file}.")
    # final/ is a model of its own, unless it holds LoRA adapters for the run's base model.
    whole = not checkpoint and not (target / "adapter_config.json").is_file()
    weights = ["--model_name_or_path", str(target), "--config_name", "null"] if whole else []
    argv = ["--config", str(config_file), *weights, "--resume_from_checkpoint", "null"]
    return cli.parse_args(argv, Config), checkpoint


def label_names_of(model_config):
    """The labels a trained classifier's config carries, in order (None without labels)."""
    if isinstance(model_config, dict):  # model.py's config: the custom task
        return model_config.get("label_names")
    names = getattr(model_config, "id2label", None) or {}
    return [names[i] for i in range(len(names))] or None


def load_model(cfg, target, checkpoint, accelerator, tokenizer, model_config):
    """The model of final/ or of a checkpoint, prepared, in eval mode. A whole model in final/
    carries its label names; for adapters and checkpoints they come from the run's training
    data, read as the run read it (the custom task's feature statistics come from it too)."""
    adapter = (target / "adapter_config.json").is_file()
    if checkpoint or adapter:
        label_names = data.load_datasets(cfg, accelerator, tokenizer, task)[2]
    else:
        label_names = label_names_of(model_config)
    model = task.build_model(cfg, model_config, label_names)
    # Prepared for evaluation: no DDP wrapper, since nothing trains (and at exit a DDP reducer's
    # gloo group deadlocked: its thread waited for the interpreter lock its destructor held).
    if checkpoint:  # built as the run built it, then its saved state loaded as resume does
        model = accelerator.prepare_model(lora.wrap(cfg, model, accelerator), evaluation_mode=True)
        accelerator.load_state(target)
        return model.eval()
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, target)
    return accelerator.prepare_model(model, evaluation_mode=True).eval()


def read_inputs(cfg, path):
    """The rows of a data file (dicts), the lines of a .txt file (strings), or the images of a
    folder (image-classification; in class folders, with their labels)."""
    if path.is_dir():
        if not hasattr(cfg, "image_column_name"):
            raise UsageError(f"Input {path} is a folder; give a data file or a .txt file.")
        from trainkit import images

        return images.folder_rows(path, cfg.image_column_name, cfg.label_column_name)
    if path.suffix == ".txt":
        return [line.rstrip("\n") for line in path.open(encoding="utf-8") if line.strip()]
    # As a train split: data.py reads it the way it reads training data.
    sources = {"train": f"input {path}"}
    rows = data.load_files({"train": ("input", str(path))}, sources, task.FILE_READERS)["train"]
    return list(rows)


def unscored(cfg, inputs, path):
    """Why the inputs cannot be scored (a column evaluation reads is missing or empty in a row,
    or a folder for a run that did not train on folders), or None when they can."""
    if path.suffix == ".txt":
        return "a plain list holds no labels"
    for option, column in task.data_columns(cfg).items():
        empty = next((i for i, row in enumerate(inputs) if row.get(column) in (None, "")), None)
        if empty is not None:
            return f"input {empty + 1} has no {option} value ({column!r})"
    if path.is_dir() and not getattr(cfg, "train_dir", None):
        return "the run trained on a data file, so its labels' order comes from a file, not folders"
    return None


def scores(cfg, accelerator, model, tokenizer, report):
    """The run's evaluation of the inputs, computed as its evaluation computes them; a
    classifier's scores class by class go to `report`."""
    _, eval_set, label_names = data.load_datasets(cfg, accelerator, tokenizer, task)
    collate = functools.partial(task.collate, cfg, tokenizer=tokenizer, epoch=None)  # as train.py
    loader = DataLoader(eval_set, batch_size=cfg.per_device_eval_batch_size, collate_fn=collate)
    loader = accelerator.prepare(loader)
    return evaluate(accelerator, model, loader, cfg, label_names, tokenizer, report)


def predict_all(args):
    cfg, checkpoint = run_config(args.model)
    if not args.inputs.exists():
        raise UsageError(f"Input file {args.inputs} does not exist.")
    accelerator = start_processes(cfg)
    # The main process reads (and caches) the file first, the others then read its cache.
    with accelerator.main_process_first():
        inputs = read_inputs(cfg, args.inputs)
    tokenizer, model_config = task.load_tokenizer_and_config(cfg)
    model = load_model(cfg, args.model, checkpoint, accelerator, tokenizer, model_config)
    # From here the inputs stand where the run's validation data stood: relative paths in a file
    # count from its folder, and scoring evaluates all of it.
    source = "validation_dir" if args.inputs.is_dir() else "validation_file"
    setattr(cfg, source, str(args.inputs))
    cfg.max_eval_samples = None
    generation = {"max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams}
    if args.temperature > 0:
        generation.update(do_sample=True, temperature=args.temperature)
    # Process p predicts inputs p, p + N, p + 2N, ...; the main process puts them back in order.
    mine = range(accelerator.process_index, len(inputs), accelerator.num_processes)
    unwrapped, predicted = accelerator.unwrap_model(model), []
    with torch.no_grad():
        for start in range(0, len(mine), args.batch_size):
            indices = mine[start : start + args.batch_size]
            said = task.predict(cfg, unwrapped, [inputs[i] for i in indices], tokenizer, generation)
            predicted += zip(indices, said, strict=True)
    everything = sorted(gather_object(predicted), key=lambda pair: pair[0])
    output = args.output or args.model.parent / "predictions.jsonl"
    # The predictions are written first: nothing that scoring meets can lose them.
    if accelerator.is_main_process:
        with output.open("w") as stream:
            for index, said in everything:
                stream.write(json.dumps({"input": inputs[index], **said}, default=str) + "\n")
        print(f"{len(everything)} predictions: {output}")
    why_not = unscored(cfg, inputs, args.inputs)
    if why_not:
        accelerator.print(f"No scores: {why_not}.")
    else:
        report = Path(f"{output}.report.md")
        metrics = scores(cfg, accelerator, model, tokenizer, report)
        if accelerator.is_main_process:
            Path(f"{output}.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            print("scores: " + ", ".join(f"{k[5:]} {v:.4g}" for k, v in metrics.items()))
            if report.exists():  # a classifier's: per class, and a confusion matrix
                print(f"by class: {report}")
    # Every process leaves the process group together (end_training tears it down): one that
    # leaves while another still writes hung in the teardown, in the full suite, for minutes.
    accelerator.wait_for_everyone()
    accelerator.end_training()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="A run's final/ or one of its checkpoints.")
    parser.add_argument(
        "inputs", type=Path, help="A data file (labels optional), a .txt list, or an image folder."
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy decoding.")
    parser.add_argument("--num_beams", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        predict_all(args)
    except UsageError as error:
        if os.environ.get("RANK", "0") == "0":  # one message, not one per process
            print(f"error: {error}", file=sys.stderr)
        exit_process(2)


if __name__ == "__main__":
    main(sys.argv[1:])
    exit_process(0)  # not through Python's teardown where processes ran: processes.py says why
