"""The floor: the smallest honest PyTorch training loop doing the same work as train.py.

forward, backward, clip, step, schedule; the same data, tokenization, model, batch, AdamW and
linear warmup/decay schedule as the generated train.py; a loss read back every logging_steps
updates; with --do_eval true an evaluation after the last update (loss, and accuracy/F1 for
classification); the final model saved like train.py saves it. No Accelerate, no Trainer.
AdamW is the fastest implementation PyTorch has for the device: fused.

    cd <generated project> && python <repo>/bench/floor_loop.py --task causal-lm --output_dir X
"""

import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

args = common.parse_args()
torch.manual_seed(args.seed)
tokenizer = common.load_tokenizer(args)
train_set, eval_set, label_names = common.prepare_data(args, tokenizer)
model = common.build_model(args, tokenizer, label_names, train_set)
if args.torch_compile:
    model = torch.compile(model)
optimizer = torch.optim.AdamW(common.param_groups(model, args.weight_decay), lr=args.learning_rate, fused=True)
total, warmup = args.max_steps, args.warmup_steps
schedule = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
)
collate = common.make_collate(args.task, tokenizer, augment=True, seed=args.seed)
eval_collate = common.make_collate(args.task, tokenizer)
order = common.TrainOrder(len(train_set), args.seed)
loader = DataLoader(train_set, batch_size=args.per_device_train_batch_size, sampler=order, collate_fn=collate)
os.makedirs(args.output_dir, exist_ok=True)
log = open(os.path.join(args.output_dir, "metrics.jsonl"), "w")
model.train()
step, loss_sum, start = 0, torch.zeros(()), time.perf_counter()
while step < total:
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm or math.inf)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        step += 1
        if step % args.logging_steps == 0 or step == total:
            elapsed, start = time.perf_counter() - start, time.perf_counter()
            log.write(
                json.dumps({"step": step, "loss": loss_sum.item() / args.logging_steps, "seconds": elapsed}) + "\n"
            )
            loss_sum.zero_()
        if step == total:
            break
if args.do_eval:
    model.eval()
    loss_sum, targets, predictions, references = 0.0, 0, [], []
    with torch.no_grad():
        for batch in DataLoader(eval_set, batch_size=args.per_device_eval_batch_size, collate_fn=eval_collate):
            labels = batch.pop("labels")
            logits = model(**batch).logits
            if args.task == "causal-lm":  # position t predicts token t + 1
                labels = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
            if logits.dim() == 3:
                logits = logits.flatten(0, 1)
            else:
                predictions += logits.argmax(-1).tolist()
                references += labels.tolist()
            loss_sum += torch.nn.functional.cross_entropy(logits.float(), labels.flatten(), reduction="sum").item()
            targets += int((labels != -100).sum())
    log.write(json.dumps({"step": step, **common.scores(args.task, loss_sum, targets, predictions, references)}) + "\n")
log.close()
final = os.path.join(args.output_dir, "final")
getattr(model, "_orig_mod", model).save_pretrained(final)
if tokenizer is not None:
    tokenizer.save_pretrained(final)
print(f"floor: {step} updates done")
