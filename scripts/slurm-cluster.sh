#!/usr/bin/env bash
# A private one-node SLURM cluster for the tests (tests/slurm_cluster.py, make test-slurm, CI):
# munged, slurmctld and slurmd with their key, config, state, spool and logs in one folder,
# their own ports and munge socket, so a machine's own SLURM (a login node's) is left alone.
#
#   scripts/slurm-cluster.sh install      apt-get install slurm-wlm munge when missing (root)
#   scripts/slurm-cluster.sh up DIR       start the cluster in DIR; wait until its node is idle;
#                                         clients then need `export SLURM_CONF=DIR/slurm.conf`
#                                         and DIR/bin first on PATH (its sacct)
#   scripts/slurm-cluster.sh down DIR     cancel its jobs, stop exactly the daemons `up` started
#
# Exit 3 with one line when SLURM's or munge's programs are missing (the tests skip on it).
set -euo pipefail

PROGRAMS=(munged slurmctld slurmd sbatch srun scancel scontrol sinfo squeue)
export PATH="$PATH:/usr/sbin:/sbin"

missing() {
    local name
    for name in "${PROGRAMS[@]}"; do command -v "$name" >/dev/null || echo "$name"; done
}

not_installed() {
    echo "SLURM is not installed (no $(missing | paste -sd' ')): as root, apt-get install -y" \
         "slurm-wlm munge, or $0 install" >&2
    exit 3
}

install() {
    [ -z "$(missing)" ] && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || not_installed
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {
    local dir=$1 user host
    user=$(id -un)
    host=$(hostname -s)
    # This machine's cores and memory as slurmd itself sees them (first line of `slurmd -C`).
    cat > "$dir/slurm.conf" <<EOF
ClusterName=ftbnn-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=30
MinJobAge=600
$(slurmd -C | head -n 1) NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# submitit asks sacct for the state of a job that ended without a result (time limit, killed);
# this cluster keeps no accounting database, so its sacct answers from what slurmctld holds
# (finished jobs for MinJobAge seconds), in sacct's --parsable2 form.
write_sacct() {
    mkdir -p "$1/bin"
    cat > "$1/bin/sacct" <<'SACCT'
#!/bin/sh
echo "JobID|State|NodeList"
while [ $# -gt 0 ]; do
    [ "$1" = -j ] && shift && scontrol -o show job "$1" 2>/dev/null
    shift
done | awk '{
    delete f
    for (i = 1; i <= NF; i++) { n = index($i, "="); f[substr($i, 1, n - 1)] = substr($i, n + 1) }
    id = f["JobId"]
    if (f["ArrayJobId"] != "") {
        t = f["ArrayTaskId"]; sub(/%.*/, "", t)
        id = f["ArrayJobId"] "_" (t ~ /[-,]/ ? "[" t "]" : t)
    }
    print id "|" f["JobState"] "|" f["NodeList"]
}'
SACCT
    chmod +x "$1/bin/sacct"
}

wait_idle() {
    local state=""
    for _ in $(seq 60); do
        state=$(sinfo -h -N -o %t 2>/dev/null || true)
        [ "$state" = idle ] && return 0
        sleep 1
    done
    echo "SLURM test cluster in $1: node not idle after 60 s (state '${state:-none}');" \
         "logs in $1/log" >&2
    return 1
}

up() {
    local dir
    [ -z "$(missing)" ] || not_installed
    dir=$(realpath -m "$1")
    mkdir -p "$dir"/{munge,state,spool,log,run}
    chmod 700 "$dir/munge"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed" --force
    write_config "$dir"
    write_sacct "$dir"
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    wait_idle "$dir" || { down "$dir"; exit 1; }
}

# Stop the daemon whose pid file `up` named, if that pid is still that program.
stop() {
    local pidfile=$1 name=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 0
    kill -TERM "$pid"
    for _ in $(seq 100); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

down() {
    local dir
    dir=$(realpath -m "$1")
    export SLURM_CONF="$dir/slurm.conf"
    if [ -f "$SLURM_CONF" ] && squeue -h -o %i >/dev/null 2>&1; then
        # This cluster's jobs only (its own config); their step daemons end with them.
        scancel --full --quiet $(squeue -h -o %A) 2>/dev/null || true
        for _ in $(seq 30); do [ -z "$(squeue -h -o %i)" ] && break; sleep 1; done
    fi
    stop "$dir/run/slurmd.pid" slurmd
    stop "$dir/run/slurmctld.pid" slurmctld
    stop "$dir/run/munged.pid" munged
}

case "${1:-}" in
    install) install ;;
    up) [ $# -eq 2 ] || { echo "usage: $0 up DIR" >&2; exit 2; }; up "$2" ;;
    down) [ $# -eq 2 ] || { echo "usage: $0 down DIR" >&2; exit 2; }; down "$2" ;;
    *) echo "usage: $0 install | up DIR | down DIR" >&2; exit 2 ;;
esac
