"""TRL's SFTTrainer doing the same work as the generated sft project's train.py (bench/sft.py):
the same model directory (its tokenizer and chat template), conversations file, max_length,
packing (bfd, which TRL trains padding-free: a batch flattened into one row), batch, linear
schedule with warmup, weight decay, clipping, fused AdamW (TRL's default optimizer is the
Trainer's, adamw_torch_fused), one epoch, fp32, no checkpoints; the final model saved.

    python bench/sft_trainer_run.py --model_dir M --train_file T --output_dir O [options]
"""

import argparse

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import SFTConfig, SFTTrainer

parser = argparse.ArgumentParser(description=__doc__)
for name, kind, default in [
    ("model_dir", str, None), ("train_file", str, None), ("output_dir", str, None),
    ("max_length", int, 1024), ("per_device_train_batch_size", int, 8), ("learning_rate", float, 3e-4),
    ("warmup_steps", int, 2), ("logging_steps", int, 5), ("seed", int, 42),
]:  # fmt: skip
    parser.add_argument(f"--{name}", type=kind, default=default, required=default is None)
parser.add_argument("--packing", default="true", choices=["true", "false"])
args = parser.parse_args()

set_seed(args.seed)
config = SFTConfig(
    output_dir=args.output_dir, max_length=args.max_length, packing=args.packing == "true",
    packing_strategy="bfd", per_device_train_batch_size=args.per_device_train_batch_size,
    learning_rate=args.learning_rate, lr_scheduler_type="linear", warmup_steps=args.warmup_steps,
    weight_decay=0.01, max_grad_norm=1.0, num_train_epochs=1, logging_steps=args.logging_steps,
    save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True, seed=args.seed,
    optim="adamw_torch_fused", dataloader_num_workers=0, bf16=False, fp16=False,
)  # fmt: skip
tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
model = AutoModelForCausalLM.from_pretrained(args.model_dir)
train_set = datasets.load_dataset("json", data_files={"train": args.train_file})["train"]
trainer = SFTTrainer(model=model, args=config, train_dataset=train_set, processing_class=tokenizer)
trainer.train()
trainer.save_model()
