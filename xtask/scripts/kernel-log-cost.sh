#!/bin/bash
# Per-run cost of sluice_connect4 (bpf_stats) on the happy path and the
# no-backend path with the kernel log level at info (record filtered in the
# kernel) and debug (record emitted). Needs root, bpftool, a debug build
# (cargo build -p sluice) and kernel.bpf_stats_enabled=1.
# Usage: kernel-log-cost.sh <with-backend 0|1> <info|debug>
set -e
WT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
CG=/sys/fs/cgroup/unified/sluice-measure-$$
PIN=/sys/fs/bpf/sluice-measure-$$
ADMIN=$((20000 + $$ % 10000))
mkdir -p $CG
cat > $TMP/m.yaml <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN}}}
static_resources:
  listeners:
  - name: vip
    bind_to_port: false
    address: {socket_address: {address: 127.96.0.77, port_value: 80}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: vip, cluster: backend}
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
$( [ "$1" = 1 ] && echo "        - endpoint: {address: {socket_address: {address: 127.0.0.2, port_value: 18080}}}" )
YAML
[ "$1" = 1 ] || sed -i 's/      - lb_endpoints:/      - lb_endpoints: []/' $TMP/m.yaml
python3 -c "
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.2',18080)); s.listen(4096)
while True:
    c,_=s.accept(); c.close()
" & BACK=$!
$WT/target/debug/sluice -c $TMP/m.yaml -l $2 --datapath required --datapath-cgroup $CG --datapath-pin-dir $PIN > $TMP/m.log 2>&1 & D=$!
for i in $(seq 100); do grep -q "server is live" $TMP/m.log && break; sleep 0.1; done
PROG=$(bpftool prog show pinned $PIN/links/sluice_connect4 2>/dev/null | head -1 | cut -d: -f1)
PROG=$(bpftool link show pinned $PIN/links/sluice_connect4 | grep -o "prog [0-9]*" | cut -d' ' -f2)
sh -c "echo \$\$ > $CG/cgroup.procs; exec python3 -c \"
import socket, time
n=3000; t=time.perf_counter()
for _ in range(n):
    try: socket.create_connection(('127.96.0.77', 80), timeout=1).close()
    except OSError: pass
print('client: %.1f us per connect' % ((time.perf_counter()-t)/n*1e6))
\""
bpftool prog show id $PROG | grep -o "run_time_ns [0-9]* run_cnt [0-9]*" | awk '{printf "connect4: %d runs, %.0f ns per run\n", $4, $2/$4}'
echo "kernel records in log: $(grep -c '\[kernel\]' $TMP/m.log)"
kill $D; wait $D 2>/dev/null || true; kill $BACK; wait $BACK 2>/dev/null || true
rmdir $CG
