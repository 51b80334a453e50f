"""The floor on a GPU: bench/floor_loop.py's loop (the smallest honest PyTorch loop doing the same
work as train.py) with the model on the device.

forward under bf16 autocast over fp32 weights (what Accelerate's mixed_precision=bf16 does),
backward, clip, fused AdamW step, LambdaLR step, zero_grad; pinned batches copied without
blocking; the parameters to clip listed once; a loss read back every logging_steps updates; the
final model saved. Data, tokenization, sample order (common.TrainOrder, train.py's), model and
parameter groups come from bench/common.py, as the CPU floor's do. With --torch_compile true the
model is compiled with torch.compile (its loss inside the compiled forward).

    cd <generated project> && python <repo>/bench/gpu/floor_gpu.py --task causal-lm --output_dir X \
        [--mixed_precision bf16|no] [common.py's options]
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/
import common  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

extra = argparse.ArgumentParser(add_help=False)
extra.add_argument("--mixed_precision", default="bf16", choices=["no", "bf16"])
ours, rest = extra.parse_known_args()
args = common.parse_args(rest)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
bf16 = ours.mixed_precision == "bf16"

torch.manual_seed(args.seed)
tokenizer = common.load_tokenizer(args)
train_set, _, label_names = common.prepare_data(args, tokenizer)
model = common.build_model(args, tokenizer, label_names, train_set).float().to(device)
if args.torch_compile:
    model = torch.compile(model)
optimizer = torch.optim.AdamW(common.param_groups(model, args.weight_decay), lr=args.learning_rate, fused=True)
total, warmup = args.max_steps, args.warmup_steps
schedule = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
)
collate = common.make_collate(args.task, tokenizer, augment=True, seed=args.seed)
order = common.TrainOrder(len(train_set), args.seed)
loader = DataLoader(
    train_set,
    batch_size=args.per_device_train_batch_size,
    sampler=order,
    collate_fn=collate,
    pin_memory=device.type == "cuda",
)
params = list(model.parameters())
os.makedirs(args.output_dir, exist_ok=True)
log = open(os.path.join(args.output_dir, "metrics.jsonl"), "w")
model.train()
step, loss_sum, start = 0, torch.zeros((), device=device), time.perf_counter()
while step < total:
    for batch in loader:
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm or math.inf)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        step += 1
        if step % args.logging_steps == 0 or step == total:
            elapsed, start = time.perf_counter() - start, time.perf_counter()
            record = {"step": step, "loss": loss_sum.item() / args.logging_steps, "seconds": elapsed}
            log.write(json.dumps(record) + "\n")
            loss_sum.zero_()
        if step == total:
            break
log.close()
final = os.path.join(args.output_dir, "final")
getattr(model, "_orig_mod", model).save_pretrained(final)
tokenizer.save_pretrained(final)
print(f"floor ({device.type}, {'bf16' if bf16 else 'fp32'}): {step} updates done")
