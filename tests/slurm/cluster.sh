#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost, for the slurm profile's test (no systemd needed).
#   tests/slurm/cluster.sh install   apt packages: slurmctld slurmd slurm-client munge (root)
#   tests/slurm/cluster.sh start     munge key, slurm.conf for this host, start the daemons
#   tests/slurm/cluster.sh stop      stop the daemons it started (by their PID files)
set -euo pipefail
state=/var/spool/fdt-slurm
conf=/etc/slurm/slurm.conf

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge; }; then
        echo "SLURM could not be installed (apt-get install slurmctld slurmd slurm-client munge" \
            "failed; needs root and Debian's package archive)" >&2
        exit 1
    fi
}

start() {
    host=$(hostname -s)
    # Twice the cores: the test's jobs are short and mostly wait (their own Snakemake start-up,
    # status checks), so the node takes more of them at once; each job keeps its threads.
    # (SlurmdParameters=config_overrides below: slurmd would refuse a count above the hardware's.)
    cpus=$(($(nproc) * 2))
    free_mb=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
    memory=$((free_mb * 8 / 10))
    mkdir -p "$state/ctld" "$state/d" /etc/slurm /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then  # ours to stop only if we started it
        runuser -u munge -- /usr/sbin/munged --force
        touch "$state/munged.ours"
    fi
    cat > "$conf" <<CONF
ClusterName=fdt-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
MailProg=/bin/true
DefMemPerCPU=1000
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    # -c: a fresh cluster each start (no jobs or node states, e.g. a drain, from an earlier one)
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 30); do
        if sinfo -h -o '%T' 2>/dev/null | grep -q -E 'idle|mixed'; then
            sinfo
            return
        fi
        sleep 1
    done
    echo "SLURM did not come up; see $state/slurmctld.log and $state/slurmd.log" >&2
    exit 1
}

stop() {
    # by the PIDs the daemons recorded, never by name (other SLURMs may run here)
    for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid"; do
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
    if [ -e "$state/munged.ours" ] && [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f "$state/munged.ours"
    fi
}

"${1:?usage: cluster.sh install|start|stop}"
