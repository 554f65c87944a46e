"""A subprocess app for the crash tests: ``enqueue`` writes until killed, printing each deferred id;
``replay`` only replays what the store holds, until killed."""

from __future__ import annotations

import os
import sys
import time

import httpx

import otel_hardening
from otel_hardening import CircuitPolicy, RetryPolicy
from otel_hardening.outbox import Outbox, OutboxPolicy, RequestDeferred


def main(mode: str, store: str, url: str) -> None:
    policy = OutboxPolicy(strip_headers=frozenset(), backoff_initial=0.05, backoff_max=0.2, poll=0.2, visibility=1.0)
    outbox = Outbox(store, policy=policy, name="crash", replay=mode == "replay")
    client = otel_hardening.harden(httpx.Client(timeout=5), retry=RetryPolicy(max_attempts=1),
                                   circuit=CircuitPolicy(fail_max=1000), outbox=outbox)
    if mode == "replay":
        print("ready", flush=True)
        while True:
            time.sleep(1)
    n = int(sys.argv[4])
    while True:
        try:
            client.post(f"{url}/w", content=b"w-%06d" % n)
        except RequestDeferred as deferred:
            os.write(1, f"{n} {deferred.id}\n".encode())  # one write: a kill never cuts a line
        n += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
