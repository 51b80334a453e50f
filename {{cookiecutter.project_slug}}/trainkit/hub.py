"""Sharing the trained model: final/README.md, a model card written by every run, and with
push_to_hub=true the upload of final/ to the Hugging Face Hub (huggingface_hub, which
transformers installs). Option names as the Trainer's.

check() runs before any data or model work, so a push that cannot happen (no network, not
logged in) stops the run in one sentence at its start, not after hours of training.
"""

import json
import time
from pathlib import Path

import yaml

from trainkit import plots
from trainkit.options import UsageError


def repository(cfg):
    """The hub repository: hub_model_id, or the output_dir's name under your account."""
    return cfg.hub_model_id or Path(cfg.output_dir).resolve().name


def check(cfg):
    if not cfg.push_to_hub:
        return
    from huggingface_hub import HfApi

    try:
        user = HfApi().whoami()["name"]
    except Exception as error:  # offline, no token, a bad token, no network: all end the same
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(
            f"push_to_hub: the Hugging Face Hub cannot be reached as a logged-in user ({reason}); "
            "log in with `hf auth login` or set push_to_hub=false."
        ) from error
    return user


def push(cfg, directory, path_in_repo=None):
    """Upload `directory` to the run's hub repository (created private if it does not exist)."""
    from huggingface_hub import HfApi

    api = HfApi()
    repo = api.create_repo(repository(cfg), private=cfg.hub_private_repo, exist_ok=True).repo_id
    message = f"{Path(directory).name} of run {cfg.run_name}"
    api.upload_folder(
        repo_id=repo, folder_path=directory, path_in_repo=path_in_repo, commit_message=message
    )
    print(f"Pushed {directory} to https://huggingface.co/{repo}")


def write_card(cfg, directory, task_name, model_class):
    """directory/README.md: what the model is, how it was trained and scored, how to load it
    (from output_dir/final, where `directory` ends up)."""
    run = Path(cfg.output_dir)
    train, evals, config = plots.read_run(run)
    record = json.loads((run / "record.json").read_text())
    base = cfg.model_name_or_path
    origin = f"fine-tuned from {base}" if base else f"from scratch (config {cfg.config_name})"
    data = cfg.dataset_name or ", ".join(f for f in (cfg.train_file, cfg.validation_file) if f)
    module = "transformers" if model_class.__module__.startswith("transformers") else "model"
    header = {"library_name": "transformers"} if module == "transformers" else {}
    header["tags"] = [task_name, "trainer-template"]
    if base and not Path(base).exists():  # a hub id, not a local directory
        header["base_model"] = base
    if cfg.dataset_name:
        header["datasets"] = [cfg.dataset_name]
    name = model_class.__name__
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", ""]
    lines += [f"# {repository(cfg)}", "", f"A {task_name} model, {origin}, on {data}.", ""]
    lines += ["## Load it", "", "```python", f"from {module} import {name}", ""]
    lines += [f'model = {name}.from_pretrained("{run / "final"}")', "```", ""]
    if cfg.use_peft:
        lines += ["A LoRA adapter: `peft.PeftModel.from_pretrained(base_model, directory)`.", ""]
    lines += ["## Scores", ""]
    if evals:
        last = evals[-1]
        value, step = plots.best(evals, config)
        metric = cfg.metric_for_best_model
        # With load_best_model_at_end, final/ is the best checkpoint's model: its scores first.
        best_loaded = cfg.load_best_model_at_end and step != last["step"]
        if best_loaded:
            shown = next(record for record in evals if record["step"] == step)
            lines += ["final/ holds the best checkpoint's model (load_best_model_at_end): the"]
            lines += [f"evaluation at update {step}:", ""]
        else:
            shown = last
            lines += [f"Last evaluation, at update {last['step']} (final/'s model):", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {n} | {v:.4g} |" for n, v in shown.items() if n[:5] == "eval_"]
        if best_loaded:
            later = f"{metric} {last[metric]:.4g} (a later model than final/'s)"
            lines += ["", f"The last evaluation, at update {last['step']}: {later}."]
        else:
            lines += ["", f"Best {metric}: {value:.4g} at update {step}."]
        lines += [""]
    else:
        lines += ["No evaluation was run (eval_strategy=no).", ""]
    finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    resumed = " (the last session: the run was resumed)" if cfg.resume_from_checkpoint else ""
    versions = ", ".join(f"{k} {record['packages'][k]}" for k in ("torch", "transformers"))
    lines += ["## Training", ""]
    if train:
        lines += [f"- {train[-1]['step']} updates; last training loss {train[-1]['loss']:.4g}"]
    lines += [
        f"- {record['processes']} process(es) on {', '.join(record['devices'])}",
        f"- Python {record['python']}, {versions}",
        f"- from {record['started']} to {finished}{resumed}",
        f"- git commit {record['git']['commit'] or '(none: not a git repository)'}"
        + (" (dirty: see record.diff in the run)" if record["git"]["dirty"] else ""),
        "", "## Options", "", "Every option of the run (its config.yaml):", "", "```yaml",
        yaml.safe_dump(config, sort_keys=True).strip(), "```", "",
    ]  # fmt: skip
    (Path(directory) / "README.md").write_text("\n".join(lines))
