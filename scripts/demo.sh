#!/usr/bin/env bash
# Demo of responder's main job on this machine: a "compromised" container on two networks is
# contained by a playbook (logs preserved as hashed evidence, then every network cut), and the
# incident timeline is printed. Needs root (installs packages, starts dockerd if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare-host.sh

export RESPONDER_DATA_DIR="${RESPONDER_DATA_DIR:-$PWD/.demo-data}"
R=.venv/bin/responder

echo "== setting the scene: demo-victim on networks demo-front and demo-back, next to demo-peer"
docker rm -f demo-victim demo-peer >/dev/null 2>&1 || true
for net in demo-front demo-back; do
  docker network rm "$net" >/dev/null 2>&1 || true
  docker network create "$net" >/dev/null
done
docker run -d --name demo-victim --network demo-front --restart always responder-test/busybox:latest \
  sh -c 'i=0; while true; do echo "beacon $i to 203.0.113.7:4444"; i=$((i+1)); sleep 1; done' >/dev/null
docker network connect demo-back demo-victim
docker run -d --name demo-peer --network demo-front responder-test/busybox:latest sleep 3600 >/dev/null
docker network connect demo-back demo-peer
sleep 3
peer_ip=$(docker inspect -f '{{(index .NetworkSettings.Networks "demo-front").IPAddress}}' demo-peer)
docker exec demo-victim ping -c1 -W1 "$peer_ip" >/dev/null && echo "   demo-victim can reach demo-peer ($peer_ip)"

echo; echo "== the plan (dry run: nothing changes)"
$R run isolate-container --dry-run -p container=demo-victim

echo; echo "== containment"
set +e
$R run isolate-container -p container=demo-victim | tee /tmp/responder-demo.out
set -e
incident=$(grep -o 'INC-[0-9]*-[0-9]*-[0-9a-f]*' /tmp/responder-demo.out | head -1)

echo; echo "== checking the effect"
if docker exec demo-victim ping -c1 -W1 "$peer_ip" >/dev/null 2>&1; then
  echo "   demo-victim can STILL reach demo-peer"; exit 1
else
  echo "   demo-victim can no longer reach demo-peer; networks: $(docker inspect -f '{{json .NetworkSettings.Networks}}' demo-victim)"
fi

echo; echo "== the incident timeline"
$R show "$incident"
echo
echo "Data (timeline, runner artifacts, evidence) is under $RESPONDER_DATA_DIR."
echo "Clean up with: docker rm -f demo-victim demo-peer; docker network rm demo-front demo-back"
