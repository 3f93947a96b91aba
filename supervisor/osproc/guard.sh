# The guard: a tiny process that outlives a killed supervisor and ends its units.
#
# Run as: /bin/sh guard.sh RUNTIME_DIR [LINK SOCKET]   (POSIX sh: about 1.7 MiB resident)
#
# The supervisor starts it before any unit and keeps the write end of its stdin; lines
# `+SID` / `-SID` register and forget unit sessions (each unit leads its own session and
# process group). When stdin reaches end-of-file — the supervisor exited, however it
# exited — the guard SIGKILLs every registered process group and every process whose
# environment carries a marker under RUNTIME_DIR (`SUPERVISE_ENV=RUNTIME_DIR/...`: every
# process of every unit has one, warm units and daemons that called setsid included),
# until none is left or PATIENCE rounds have passed; then it removes RUNTIME_DIR
# (published keys, signatures among them, must not outlive the stack) and, once the line
# `=` said the supervisor bound SOCKET (a refused second supervisor never did: the socket
# and the entry are another one's), LINK (the supervisor's entry in the per-user
# registry) if it still points at SOCKET, and SOCKET if it is a socket.

rt=$1
link=${2:-}
sock=${3:-}
PATIENCE=300 # rounds of 10 ms: unkillable processes (state D) are given up on after 3 s
GROUP_ROUNDS=3 # rounds in which a unit's process group still answering keeps the guard going

# Ctrl-C and a closed terminal are for the supervisor; the guard ends on end-of-file.
trap '' INT HUP

sessions=" "
bound=0
while IFS= read -r line; do
    case $line in
    =) bound=1 ;;
    +*) sessions="$sessions${line#+} " ;;
    -*)
        kept=" "
        for s in $sessions; do
            [ "$s" = "${line#-}" ] || kept="$kept$s "
        done
        sessions=$kept
        ;;
    esac
done

# The marker as a basic regular expression, anchored at the start of an entry.
marker="^SUPERVISE_ENV=$(printf '%s' "$rt" | sed 's/[][\.*^$]/\\&/g')/"

marked() {
    # Processes whose environment (NUL-separated entries) has the marker; not this one.
    grep -lzs -e "$marker" /proc/[0-9]*/environ 2>/dev/null |
        sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p' | grep -vx "$$"
}

killed=0
round=0
while [ "$round" -lt "$PATIENCE" ]; do
    found=0
    for s in $sessions; do
        # A group whose members are all dead but not yet reaped (by whoever adopted them)
        # still takes the signal: after the first rounds only marked processes, which a
        # zombie no longer shows, keep the guard going.
        if kill -KILL "-$s" 2>/dev/null && [ "$round" -lt "$GROUP_ROUNDS" ]; then
            found=1
        fi
    done
    for p in $(marked); do
        if kill -KILL "$p" 2>/dev/null; then
            found=1
            killed=$((killed + 1))
        fi
    done
    [ "$found" = 0 ] && break
    sleep 0.01
    round=$((round + 1))
done

rm -rf -- "$rt"
if [ "$bound" = 1 ] && [ -n "$link" ] && [ "$(readlink -- "$link" 2>/dev/null)" = "$sock" ]; then
    rm -f -- "$link"
fi
if [ "$bound" = 1 ] && [ -n "$sock" ] && [ -S "$sock" ]; then
    rm -f -- "$sock"
fi
if [ "$killed" -gt 0 ]; then
    echo "supervise guard: killed $killed process(es) left by the supervisor" >&2
fi
exit 0
