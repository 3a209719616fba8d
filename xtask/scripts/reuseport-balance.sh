#!/bin/bash
# How the kernel's SO_REUSEPORT hash splits new connections between Sluice's
# 2 workers (--concurrency 2), and what that does to worker CPU. Needs a
# debug build (cargo build -p sluice), python3 and ss. See BENCHMARKS.md.
set -e
WT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
P=$((30000 + $$ % 5000)); B=$((P + 1)); ADMIN=$((P + 2))
cat > $TMP/rp.yaml <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN}}}
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 127.0.0.1, port_value: $P}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: tcp, cluster: backend}
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $B}}}
YAML
python3 -c "
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',$B)); s.listen(4096)
while True:
    c,_=s.accept(); c.sendall(b'x'); c.close()
" & BACK=$!
$WT/target/debug/sluice -c $TMP/rp.yaml --concurrency 2 --datapath off > $TMP/rp.log 2>&1 & D=$!
for i in $(seq 100); do grep -q "server is live" $TMP/rp.log && break; sleep 0.1; done
echo "== 1. accept-queue split of held connections (sluice stopped, so the queues show the kernel's pick)"
for round in 1 2 3 4 5; do
  kill -STOP $D
  python3 - $P <<'PY' &
import socket, sys, time
port = int(sys.argv[1]); held = []
for _ in range(1000):
    s = socket.socket(); s.connect(('127.0.0.1', port)); held.append(s)
time.sleep(1.5)
PY
  C=$!
  sleep 1
  echo "round $round: $(ss -Htln "sport = :$P" | awk '{print $2}' | tr '\n' ' ')"
  wait $C
  kill -CONT $D
  sleep 0.5
done
echo "== 2. worker CPU for 4000 short proxied connections (4 client processes)"
cpu() { for t in /proc/$D/task/*; do n=$(cat $t/comm); case $n in wrk:worker_*) echo "$n $(awk '{print $14+$15}' $t/stat)";; esac; done; }
cpu > $TMP/cpu0
for c in 1 2 3 4; do python3 - $P <<'PY' &
import socket, sys
port = int(sys.argv[1])
for _ in range(1000):
    s = socket.create_connection(('127.0.0.1', port), timeout=2); s.recv(1); s.close()
PY
done; wait $(jobs -p | grep -v "^$D$" | grep -v "^$BACK$") 2>/dev/null || true
cpu > $TMP/cpu1
join $TMP/cpu0 $TMP/cpu1 | awk '{print $1": "($3-$2)" ticks"}'
kill $D $BACK; wait 2>/dev/null || true
