#!/usr/bin/env bash
# A real two-node SLURM cluster on this machine, for the generated projects' SLURM test
# (tests/test_scale_out.py submits slurm/train.sbatch to it). Debian's slurm-wlm, built with
# multiple-slurmd support: nodes n1 and n2 are two slurmd daemons here, both at 127.0.0.1.
#   scripts/slurm.sh start    # install if needed (apt, root), start; prints the SLURM_CONF line
#   scripts/slurm.sh stop
# Idempotent. No systemd: the daemons start themselves in the background. Short credential
# lifetime and job age, so that a requeued job starts again within seconds (the default 120 s
# delay is the credential's lifetime) and a finished job leaves the queue at once.
set -euo pipefail
LAB=/tmp/trainer-template-slurm
export SLURM_CONF=$LAB/slurm.conf

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null; }

stop() {
    scancel --full --quiet "--user=$(id -un)" 2> /dev/null || true
    for pid in "$LAB"/run/*.pid; do
        alive "$pid" && kill "$(cat "$pid")"
    done
    return 0
}

start() {
    export DEBIAN_FRONTEND=noninteractive
    if ! dpkg -s slurmctld slurmd slurm-client munge > /dev/null 2>&1; then
        # The packages must not start services (there is no systemd to start them).
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        apt-get -y -q install --no-install-recommends slurm-wlm munge > /dev/null \
            || { apt-get -q update > /dev/null \
                && apt-get -y -q install --no-install-recommends slurm-wlm munge > /dev/null; }
        rm -f /usr/sbin/policy-rc.d
    fi
    mkdir -p "$LAB"/{run,log,state}
    host=$(hostname -s)
    cat > "$SLURM_CONF" << EOF
ClusterName=trainer-template
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
SlurmctldPort=16817
StateSaveLocation=$LAB/state
SlurmdSpoolDir=$LAB/state/slurmd-%n
SlurmctldPidFile=$LAB/run/slurmctld.pid
SlurmdPidFile=$LAB/run/slurmd-%n.pid
SlurmctldLogFile=$LAB/log/slurmctld.log
SlurmdLogFile=$LAB/log/slurmd-%n.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=5
KillWait=30
MailProg=/bin/true
NodeName=n[1-2] NodeHostname=$host NodeAddr=127.0.0.1 Port=17001-17002 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP
EOF
    if ! munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
        install -d -o munge -g munge -m 0755 /run/munge
        install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
        runuser -u munge -- /usr/sbin/munged
        for _ in $(seq 50); do munge -n 2> /dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
    fi
    alive "$LAB/run/slurmctld.pid" || slurmctld -c -f "$SLURM_CONF"
    for _ in $(seq 100); do scontrol ping 2> /dev/null | grep -q UP && break; sleep 0.2; done
    for node in n1 n2; do
        mkdir -p "$LAB/state/slurmd-$node"
        alive "$LAB/run/slurmd-$node.pid" || slurmd -f "$SLURM_CONF" -N "$node"
    done
    for _ in $(seq 150); do
        [ "$(sinfo -h -N -o '%t' 2> /dev/null | sort -u)" = idle ] && echo "export SLURM_CONF=$SLURM_CONF" && return 0
        sleep 0.2
    done
    echo "SLURM did not come up; sinfo says: $(sinfo -N 2>&1)" >&2
    return 1
}

"${1:?start or stop}"
