#!/usr/bin/env bash
# quickstart.sh: build pollbridge and the two demo programs, start the demo
# orders API (:9000) and the signature-verifying receiver (:8080) in the
# background, and run pollbridge with bridge.yaml in the foreground.
# Ctrl-C stops all three.
set -euo pipefail

cd "$(dirname "$0")/.."

echo "building into bin/ ..."
go build -o bin/ . ./examples/demoapi ./examples/receiver

# A fixed demo secret, shared by pollbridge (bridge.yaml) and the receiver.
# Never use it for anything real.
export APP_WEBHOOK_SECRET="${APP_WEBHOOK_SECRET:-whsec_cG9sbGJyaWRnZSBxdWlja3N0YXJ0IGRlbW8ga2V5ISE=}"

pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for HOST PORT NAME: wait up to 10s until something listens there.
wait_for() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "$3 did not start listening on $1:$2" >&2
	exit 1
}

bin/demoapi -addr 127.0.0.1:9000 &
pids+=($!)
bin/receiver -addr 127.0.0.1:8080 -path /hooks &
pids+=($!)
wait_for 127.0.0.1 9000 demoapi
wait_for 127.0.0.1 8080 receiver

cat <<BANNER

  demo orders API     http://127.0.0.1:9000/orders   (changes itself every 4s)
  webhook receiver    http://127.0.0.1:8080/hooks    (verifies signatures)
  pollbridge          bridge.yaml, polls every 5s, state in ./pollbridge.db
  status page         http://127.0.0.1:9090/   (metrics at /metrics)

  The first poll records a baseline; "verified msg_... item.updated orders/N
  changes: ..." lines from the receiver appear within a minute.
  Try: curl -X PATCH -d '{"status":"paid"}' http://127.0.0.1:9000/orders/1
       curl -X POST -d '{"mode":"500","count":3}' http://127.0.0.1:9000/_chaos
  Ctrl-C stops everything.

BANNER

bin/pollbridge run -c bridge.yaml
