"""The kit: the machinery around the loop that you fix rather than fork. Checkpoint I/O
(checkpoints.py), the command-line parser (cli.py), data file reading (data.py), the order of
samples across processes and updates (batching.py), the optimizer's parameter groups (optim.py),
LoRA plumbing (lora.py), the chunked LM loss (lm_loss.py), hub and model-card code (hub.py), run
records (record.py), plots (plots.py) and the task helpers a task needs.

The kit never imports your files (train.py, task.py, config.py, model.py): they pass it what it
needs as arguments (tests/test_layout.py checks the imports). An update of the template changes
files here; your files stay yours (README: "Updating from the template").
"""
