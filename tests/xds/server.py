"""An independent ADS server for Sluice's xDS tests, on PyPI's grpcio and
xds-protos (Envoy's own generated Python protos): it plays a script of
responses and records every request it receives, so a test can assert how a
client speaks the protocol (ACK/NACK, version_info, nonces, error_detail,
node, initial_resource_versions).

Usage: server.py SCRIPT.json [--port P]

The script is {"mode": "sotw"|"delta", "streams": [[step, ...], ...]}; the
n-th stream a client opens plays streams[n] (the last one repeats). Steps:
  {"wait": TYPE_URL}        take the next request of that type (waiting for it)
  {"send": {...}}           send a (Delta)DiscoveryResponse given in proto3 JSON
  {"close": "UNAVAILABLE"}  end the stream with that gRPC status
  {"sleep": SECONDS}
After its script a stream stays open, recording, until the client leaves.

Output (stdout, one JSON object per line): {"listening": PORT} first, then
{"stream": N, "request": {...}} per request and {"stream": N, "sent": NONCE}
per response.
"""

import argparse
import json
import queue
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import json_format

# Registering the resource types lets json_format resolve "@type".
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

STEP_TIMEOUT_S = 20
OUTPUT_LOCK = threading.Lock()


def emit(record):
    with OUTPUT_LOCK:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()


class ScriptedAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, script):
        self.script = script
        self.streams = 0
        self.lock = threading.Lock()

    def _next_script(self):
        with self.lock:
            index = self.streams
            self.streams += 1
        scripts = self.script["streams"]
        return index, scripts[min(index, len(scripts) - 1)]

    def _serve(self, request_iterator, context, response_type):
        index, steps = self._next_script()
        requests = queue.Queue()

        def read():
            try:
                for request in request_iterator:
                    emit({"stream": index, "request": json_format.MessageToDict(
                        request, preserving_proto_field_name=True)})
                    requests.put(request)
            except grpc.RpcError:
                pass
            requests.put(None)

        threading.Thread(target=read, daemon=True).start()
        pending = []
        for step in steps:
            if "wait" in step:
                # The first request of that type not yet consumed by a wait,
                # in arrival order: clients may send types in any order.
                deadline = time.monotonic() + STEP_TIMEOUT_S
                while True:
                    match = next((r for r in pending if r.type_url == step["wait"]), None)
                    if match is not None:
                        pending.remove(match)
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "script: no request for " + step["wait"])
                    try:
                        request = requests.get(timeout=remaining)
                    except queue.Empty:
                        continue
                    if request is None:
                        return
                    pending.append(request)
            elif "send" in step:
                response = json_format.ParseDict(step["send"], response_type())
                emit({"stream": index, "sent": response.nonce})
                yield response
            elif "close" in step:
                context.abort(getattr(grpc.StatusCode, step["close"]), "script: closing the stream")
            elif "sleep" in step:
                time.sleep(step["sleep"])
        # Keep the stream open (recording) until the client goes away.
        while context.is_active():
            try:
                if requests.get(timeout=0.2) is None:
                    return
            except queue.Empty:
                pass

    def StreamAggregatedResources(self, request_iterator, context):
        yield from self._serve(request_iterator, context, discovery_pb2.DiscoveryResponse)

    def DeltaAggregatedResources(self, request_iterator, context):
        yield from self._serve(request_iterator, context, discovery_pb2.DeltaDiscoveryResponse)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("script")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with open(args.script) as f:
        script = json.load(f)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ScriptedAds(script), server)
    port = server.add_insecure_port("127.0.0.1:%d" % args.port)
    server.start()
    emit({"listening": port})
    server.wait_for_termination()


if __name__ == "__main__":
    main()
