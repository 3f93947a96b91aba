#!/usr/bin/env bash
# The floor: what a plain shell script costs. Starts every service in a loop, then
# serves commands from a FIFO — "restart I" (kill + wait + respawn) and "env I VALUE"
# (the same, with SIGNATURE=VALUE) — until SIGTERM/SIGINT, which kills every service
# and waits for them. No readiness, no restarts on crash, no cleanup if killed -9.
#
# Usage: floor.sh FIFO PYTHON SERVICE_PY DELAY GRANDCHILD PORT:SIGNATURE...
set -u
fifo=$1 python=$2 service=$3 delay=$4 grandchild=$5
shift 5

ports=() sigs=() pids=()
for spec in "$@"; do
    ports+=("${spec%%:*}")
    sigs+=("${spec#*:}")
done

start() {
    SIGNATURE=${sigs[$1]} "$python" -S "$service" --port "${ports[$1]}" \
        --delay "$delay" --grandchild "$grandchild" &
    pids[$1]=$!
}

stop_all() {
    kill "${pids[@]}" 2>/dev/null
    wait
    exit 0
}
trap stop_all TERM INT

for i in "${!ports[@]}"; do
    start "$i"
done

exec 3<>"$fifo"  # read-write: no end-of-file when a writer closes
while true; do
    if read -r command index value <&3; then
        case $command in
            env) sigs[$index]=$value ;&
            restart)
                kill "${pids[$index]}" 2>/dev/null
                wait "${pids[$index]}" 2>/dev/null
                start "$index"
                ;;
        esac
    fi
done
