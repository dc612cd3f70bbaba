# Stopping what a script started, by PID (sourced by the scripts that start Flower processes).

descendants() {  # every live descendant PID of $1, deepest first
  local child
  for child in $(pgrep -P "$1" 2>/dev/null || true); do
    descendants "$child"
    echo "$child"
  done
}

tree_pids() {  # tree_pids PID...: each live PID and its descendants
  local pid
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then echo "$(descendants "$pid") $pid"; fi
  done
}

stop_trees() {  # stop_trees PID...: TERM each live PID and its descendants, KILL what survives 10 s
  local pids alive="" pid
  pids=$(tree_pids "$@")
  [ -z "${pids// }" ] && return 0
  # Freeze the trees first, so that no process starts a child between listing and stopping.
  kill -STOP $pids 2>/dev/null || true
  pids=$(tree_pids "$@")
  kill -TERM $pids 2>/dev/null || true
  kill -CONT $pids 2>/dev/null || true
  for _ in $(seq 50); do
    alive=""; for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
    [ -z "$alive" ] && break; sleep 0.2
  done
  [ -n "$alive" ] && kill -9 $alive 2>/dev/null || true
}
