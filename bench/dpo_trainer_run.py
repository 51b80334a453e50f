"""TRL's DPOTrainer doing the same work as the generated dpo project's train.py (bench/dpo.py):
the same model directory (its tokenizer and chat template), pairs file, max_length (keep_start),
beta, sigmoid loss, batch, number of updates, linear schedule with warmup, no weight decay,
clipping, fused AdamW (TRL's default optimizer is the Trainer's, adamw_torch_fused), fp32, no
gradient checkpointing (DPOConfig's default is on: set off, as train.py's), dropout off, no
evaluation or checkpoints; the pairs drawn in train.py's order (common.TrainOrder). The reference
is TRL's default: a second copy loaded from the model directory; with --use_peft the policy with
its adapters off; with --precompute_ref_log_probs none in memory while training.

Besides final/, it writes to output_dir: log_history.json (TRL's logged losses and rewards) and
tokens.json (each pair's prompt, chosen and rejected token counts as TRL tokenized them).

    python bench/dpo_trainer_run.py --model_dir M --train_file T --output_dir O [options]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import datasets  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
for name, kind, default in [
    ("model_dir", str, None), ("train_file", str, None), ("output_dir", str, None),
    ("max_length", int, 512), ("per_device_train_batch_size", int, 2), ("learning_rate", float, 5e-6),
    ("max_steps", int, 16), ("warmup_steps", int, 2), ("logging_steps", int, 5), ("seed", int, 42),
    ("beta", float, 0.1), ("lora_r", int, 16), ("lora_alpha", int, 32), ("lora_dropout", float, 0.0),
]:  # fmt: skip
    parser.add_argument(f"--{name}", type=kind, default=default, required=default is None)
for flag in ("precompute_ref_log_probs", "use_peft"):
    parser.add_argument(f"--{flag}", default="false", choices=["true", "false"])
args = parser.parse_args()

set_seed(args.seed)
config = DPOConfig(
    output_dir=args.output_dir, max_length=args.max_length, truncation_mode="keep_start", beta=args.beta,
    loss_type=["sigmoid"], label_smoothing=0.0, precompute_ref_log_probs=args.precompute_ref_log_probs == "true",
    disable_dropout=True, per_device_train_batch_size=args.per_device_train_batch_size,
    gradient_accumulation_steps=1, learning_rate=args.learning_rate, lr_scheduler_type="linear",
    warmup_steps=args.warmup_steps, weight_decay=0.0, max_grad_norm=1.0, max_steps=args.max_steps,
    logging_steps=args.logging_steps, save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True,
    seed=args.seed, optim="adamw_torch_fused", dataloader_num_workers=0, bf16=False, fp16=False,
    gradient_checkpointing=False,
)  # fmt: skip
peft_config = None
if args.use_peft == "true":
    from peft import LoraConfig

    # No target_modules: PEFT's default for the architecture (c_attn for GPT-2), as train.py's.
    peft_config = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, task_type="CAUSAL_LM"
    )


class SameOrderDPOTrainer(DPOTrainer):
    def _get_train_sampler(self, train_dataset=None):
        return common.TrainOrder(len(train_dataset or self.train_dataset), args.seed)


tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
model = AutoModelForCausalLM.from_pretrained(args.model_dir)
train_set = datasets.load_dataset("json", data_files={"train": args.train_file})["train"]
trainer = SameOrderDPOTrainer(
    model=model, ref_model=None, args=config, train_dataset=train_set, processing_class=tokenizer,
    peft_config=peft_config,
)  # fmt: skip
prepared = trainer.train_dataset
tokens = {name: [len(ids) for ids in prepared[f"{name}_ids"]] for name in ("prompt", "chosen", "rejected")}
with open(os.path.join(args.output_dir, "tokens.json"), "w") as file:
    json.dump(tokens, file)
trainer.train()
trainer.save_model(os.path.join(args.output_dir, "final"))
with open(os.path.join(args.output_dir, "log_history.json"), "w") as file:
    json.dump(trainer.state.log_history, file)
