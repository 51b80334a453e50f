"""The transformers Trainer doing the same work as the generated train.py, on a GPU.

bench/trainer_run.py's arguments (same data, tokenization, collation, model, batch, linear
warmup/decay, clipping, logging interval, train.py's sample order through common.TrainOrder; the
Trainer's default AdamW, "adamw_torch_fused"; no checkpoints, no evaluation; the final model
saved), with the device the Trainer picks (use_cpu only where there is no GPU) and bf16=True for
--mixed_precision bf16 (autocast over fp32 weights, as train.py's mixed_precision=bf16).

    cd <generated project> && python <repo>/bench/gpu/trainer_gpu.py --task causal-lm --output_dir X \
        [--mixed_precision bf16|no] [common.py's options]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import common  # noqa: E402
import torch  # noqa: E402
from transformers import Trainer, TrainingArguments, set_seed  # noqa: E402

extra = argparse.ArgumentParser(add_help=False)
extra.add_argument("--mixed_precision", default="bf16", choices=["no", "bf16"])
ours, rest = extra.parse_known_args()
args = common.parse_args(rest)

set_seed(args.seed)
tokenizer = common.load_tokenizer(args)
train_set, _, label_names = common.prepare_data(args, tokenizer)
model = common.build_model(args, tokenizer, label_names, train_set).float()
training_args = TrainingArguments(
    output_dir=args.output_dir,
    max_steps=args.max_steps,
    per_device_train_batch_size=args.per_device_train_batch_size,
    gradient_accumulation_steps=1,
    learning_rate=args.learning_rate,
    weight_decay=args.weight_decay,
    warmup_steps=args.warmup_steps,
    lr_scheduler_type="linear",
    max_grad_norm=args.max_grad_norm,
    logging_steps=args.logging_steps,
    report_to="none",
    save_strategy="no",
    eval_strategy="no",
    use_cpu=not torch.cuda.is_available(),
    bf16=ours.mixed_precision == "bf16",
    dataloader_num_workers=0,
    seed=args.seed,
    torch_compile=args.torch_compile,
)


class SameOrderTrainer(Trainer):
    """train.py's sample order (the signature of this method moved between transformers versions)."""

    def _get_train_sampler(self, *given, **named):
        dataset = (given[0] if given else named.get("train_dataset")) or self.train_dataset
        return common.TrainOrder(len(dataset), args.seed)


trainer = SameOrderTrainer(
    model=model,
    args=training_args,
    train_dataset=train_set,
    data_collator=common.make_collate(args.task, tokenizer, augment=True, seed=args.seed),
)
trainer.train()
trainer.save_model(os.path.join(args.output_dir, "final"))
tokenizer.save_pretrained(os.path.join(args.output_dir, "final"))
print(f"Trainer ({trainer.args.device}, {'bf16' if training_args.bf16 else 'fp32'}): done")
