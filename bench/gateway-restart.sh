#!/usr/bin/env bash
# What a failed-over client sees when the gateway it goes through is
# replaced: on the clusters `mesh demo` leaves up, scales west's podinfo to
# 0 (so the client's 50 GET/s all go through east's gateway), deletes east's
# gateway pod, and counts the client's failed GETs in the 70 s that follow
# (from the load pod's per-second lines). Run from the repository root
# after `mesh demo` (without --down); `mesh down` afterwards.
set -euo pipefail
kubectl="${KUBECTL:-$HOME/.cache/mesh/k8s-v1.34.4/bin/kubectl} --kubeconfig ${KUBECONFIG:-$HOME/.local/state/mesh/clusters/kubeconfig}"
$kubectl --context west -n demo scale deploy/podinfo --replicas=0 >/dev/null
weight=""
for _ in $(seq 1 60); do
  weight=$($kubectl --context west -n demo get trafficsplit podinfo -o jsonpath='{.spec.backends[1].weight}')
  [ "$weight" = "100" ] && break
  sleep 1
done
[ "$weight" = "100" ] || { echo "the split did not fail over to east (weight $weight)" >&2; exit 1; }
sleep 5
before=$($kubectl --context west -n demo logs client -c main | wc -l)
$kubectl --context east -n linkerd-multicluster delete pod -l app=linkerd-gateway --wait=false >/dev/null
sleep 70
$kubectl --context west -n demo logs client -c main | tail -n +$((before + 1)) | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
failed = sum(r["failed"] for r in rows)
ok = sum(r["ok"] for r in rows)
bad = [r["second"] for r in rows if r["failed"]]
print(f"after the gateway pod was deleted: {len(rows)} s, {ok} ok, {failed} failed, in {len(bad)} s")
'
$kubectl --context west -n demo scale deploy/podinfo --replicas=2 >/dev/null
