"""The transformers Trainer doing the same work as the generated train.py.

Same data, tokenization, collation, model, batch, linear warmup/decay, clipping, logging
interval, the same order of samples (common.TrainOrder); the Trainer's default AdamW (fused,
"adamw_torch_fused"); no checkpoints; with --do_eval true Trainer.evaluate() after training
(with accuracy/F1 for classification); the final model saved like train.py saves it.

    cd <generated project> && python <repo>/bench/trainer_run.py --task causal-lm --output_dir X
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from transformers import (  # noqa: E402
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainingArguments,
    set_seed,
)

args = common.parse_args()
set_seed(args.seed)
tokenizer = common.load_tokenizer(args)
train_set, eval_set, label_names = common.prepare_data(args, tokenizer)
model = common.build_model(args, tokenizer, label_names, train_set)
# seq2seq: the Seq2SeqTrainer, as run_summarization.py uses (training is the same as the Trainer's).
arguments_class = Seq2SeqTrainingArguments if args.task == "seq2seq" else TrainingArguments
training_args = arguments_class(
    output_dir=args.output_dir,
    max_steps=args.max_steps,
    per_device_train_batch_size=args.per_device_train_batch_size,
    gradient_accumulation_steps=1,
    learning_rate=args.learning_rate,
    weight_decay=args.weight_decay,
    warmup_steps=args.warmup_steps,
    lr_scheduler_type="linear",
    max_grad_norm=args.max_grad_norm,
    per_device_eval_batch_size=args.per_device_eval_batch_size,
    logging_steps=args.logging_steps,
    report_to="none",
    save_strategy="no",
    eval_strategy="no",
    use_cpu=True,
    dataloader_num_workers=0,
    seed=args.seed,
    torch_compile=args.torch_compile,
    # Image rows hold paths that the collator decodes: keep the columns the model does not take.
    remove_unused_columns=args.task != "image-classification",
)


def compute_metrics(prediction):
    predictions, references = prediction.predictions.argmax(-1).tolist(), prediction.label_ids.tolist()
    return {key[5:]: value for key, value in common.scores(args.task, 0, 1, predictions, references).items()}


class SameOrderTrainer(Seq2SeqTrainer if args.task == "seq2seq" else Trainer):
    def _get_train_sampler(self, train_dataset=None):
        return common.TrainOrder(len(train_dataset or self.train_dataset), args.seed)


trainer = SameOrderTrainer(
    model=model, args=training_args, train_dataset=train_set,
    data_collator=common.make_collate(args.task, tokenizer, augment=True, seed=args.seed),
    compute_metrics=compute_metrics if args.task in ("text-classification", "image-classification", "custom") else None,
)  # fmt: skip
trainer.train()
if args.do_eval:
    trainer.data_collator = common.make_collate(args.task, tokenizer)  # no augmentation
    print(trainer.evaluate(eval_set))
trainer.save_model(os.path.join(args.output_dir, "final"))
if tokenizer is not None:
    tokenizer.save_pretrained(os.path.join(args.output_dir, "final"))
