#!/usr/bin/env bash
# The seeds' hello world with every kubectl build installed beside the
# dispatcher (kubectl.1.27 ... kubectl.1.33), against one none-driver cluster.
# Prints a table: kubectl version | each step ok/FAIL.
#   sudo ./scripts/kubectl-matrix.sh [path/to/minik]
# Steps: get nodes, run, create deployment, expose, curl the NodePort, scale,
# client-side apply (kubectl 1.27/1.28 read /openapi/v2 protobuf for it),
# server-side apply (ssa), then the SSA conflict check (conf): after `scale`,
# applying other replicas must fail with a conflict and `--force-conflicts`
# must win; delete.
# Only one none-driver cluster fits on a host: the script holds the host lock
# (/tmp/minik-integration-tests.lock) that the integration tests take.
set -uo pipefail
LOCK=/tmp/minik-integration-tests.lock
if [ -z "${MINIK_MATRIX_LOCKED:-}" ]; then
  exec env MINIK_MATRIX_LOCKED=1 flock "$LOCK" "$0" "$@"
fi
MINIK=${1:-target/debug/minik}
MINIK=$(readlink -f "$MINIK")
dir=$(dirname "$(readlink -f "$(command -v kubectl)")")
work=$(mktemp -d)
export MINIK_HOME=$work/minik KUBECONFIG=$work/kubeconfig HOME=$work
cleanup() { "$MINIK" delete >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
"$MINIK" start --driver=none >"$work/start.log" 2>&1 || {
  echo "minik start failed:"; cat "$work/start.log"
  tail -20 "$MINIK_HOME"/profiles/*/logs/agent.log 2>/dev/null; exit 1; }
fmt='%-8s %-6s %-6s %-8s %-7s %-7s %-6s %-6s %-6s %-6s %-6s\n'
printf "$fmt" kubectl get run create expose curl scale apply ssa conf delete
fails=0
for k in "$dir"/kubectl.1.*; do
  v=${k##*kubectl.}
  r=()
  step() { if "$@" >/dev/null 2>&1; then r+=(ok); else r+=(FAIL); fails=$((fails+1)); fi; }
  n=hw${v//./}
  step "$k" get nodes
  step "$k" run "$n-pod" --image=minik/hello --port=80
  step "$k" create deployment "$n" --image=minik/hello --port=80
  step "$k" expose deployment "$n" --type=NodePort --port=80
  url=$("$MINIK" service "$n" --url 2>/dev/null)
  ok=FAIL; for i in $(seq 1 60); do curl -sf --max-time 2 "$url" | grep -q "served by pod $n" && { ok=ok; break; }; sleep 0.5; done
  [ "$ok" = ok ] || fails=$((fails+1)); r+=($ok)
  step "$k" scale deployment "$n" --replicas=2
  step sh -c "\"$k\" create deployment $n-a --image=minik/hello --dry-run=client -o yaml | \"$k\" apply -f -"
  ssa="$work/$n-s.yaml"
  "$k" create deployment "$n-s" --image=minik/hello --replicas=1 --dry-run=client -o yaml >"$ssa" 2>/dev/null
  step "$k" apply --server-side -f "$ssa"
  # scale takes spec.replicas; applying replicas: 1 again is then a conflict
  step sh -c "\"$k\" scale deployment $n-s --replicas=3 &&
    ! \"$k\" apply --server-side -f \"$ssa\" 2>\"$work/err\" && grep -q 'Apply failed with 1 conflict' \"$work/err\" &&
    \"$k\" apply --server-side --force-conflicts -f \"$ssa\" &&
    [ \"\$(\"$k\" get deployment $n-s -o jsonpath='{.spec.replicas}')\" = 1 ]"
  step "$k" delete deployment "$n" "$n-a" "$n-s"
  printf "$fmt" "$v" "${r[@]}"
done
[ "$fails" -eq 0 ] && echo "all steps ok" || { echo "$fails step(s) failed"; exit 1; }
