#!/usr/bin/env bash
# The seeds' hello world with every kubectl build installed beside the
# dispatcher (kubectl.1.27 ... kubectl.1.33), against one none-driver cluster.
# Prints a table: kubectl version | each step ok/FAIL.
#   sudo ./scripts/kubectl-matrix.sh [path/to/minik]
set -uo pipefail
MINIK=${1:-target/debug/minik}
MINIK=$(readlink -f "$MINIK")
dir=$(dirname "$(readlink -f "$(command -v kubectl)")")
work=$(mktemp -d)
export MINIK_HOME=$work/minik KUBECONFIG=$work/kubeconfig HOME=$work
"$MINIK" start --driver=none >/dev/null 2>&1 || { echo "minik start failed"; exit 1; }
printf '%-8s %-6s %-6s %-8s %-7s %-7s %-6s %-6s %-6s\n' kubectl get run create expose curl scale apply delete
for k in "$dir"/kubectl.1.*; do
  v=${k##*kubectl.}
  r=()
  step() { if "$@" >/dev/null 2>&1; then r+=(ok); else r+=(FAIL); fi; }
  n=hw${v//./}
  step "$k" get nodes
  step "$k" run "$n-pod" --image=minik/hello --port=80
  step "$k" create deployment "$n" --image=minik/hello --port=80
  step "$k" expose deployment "$n" --type=NodePort --port=80
  url=$("$MINIK" service "$n" --url 2>/dev/null)
  ok=FAIL; for i in $(seq 1 60); do curl -sf --max-time 2 "$url" | grep -q "served by pod $n" && { ok=ok; break; }; sleep 0.5; done; r+=($ok)
  step "$k" scale deployment "$n" --replicas=2
  step sh -c "\"$k\" create deployment $n-a --image=minik/hello --dry-run=client -o yaml | \"$k\" apply -f -"
  step "$k" delete deployment "$n" "$n-a"
  printf '%-8s %-6s %-6s %-8s %-7s %-7s %-6s %-6s %-6s\n' "$v" "${r[@]}"
done
"$MINIK" delete >/dev/null 2>&1
rm -rf "$work"
