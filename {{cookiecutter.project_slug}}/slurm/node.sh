#!/bin/bash
# One node's part of slurm/train.sbatch (srun runs it once per node): start this node's
# `accelerate launch`, and pass a USR1 from SLURM on to the training processes only.
# Arguments go to train.py.
set -uo pipefail

# The launcher ignores USR1 (it would die of it and leave its processes unattended); each
# training process catches it, saves with the others and exits 0, and the launcher then ends.
(
    trap '' USR1
    exec accelerate launch --config_file "$ACCELERATE_CONFIG" \
        --num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID" \
        --num_processes $((SLURM_NNODES * PROCESSES_PER_NODE)) \
        --main_process_ip "$HEAD_NODE" --main_process_port "$PORT" \
        --rdzv_conf "timeout=$RENDEZVOUS_TIMEOUT" \
        train.py "$@"
) &
launcher=$!
# SLURM signals every process of the step; should it reach this script alone, pass it on.
trap 'pkill -USR1 -P "$launcher"' USR1
# A trapped signal makes `wait` return early: wait again until the launcher has ended.
status=0
while wait "$launcher" || status=$?; [ "$status" -gt 128 ] && kill -0 "$launcher" 2> /dev/null; do
    status=0
done
exit "$status"
