"""The demo's traffic: a sync httpx client on threads and an async one on an event loop, both hardened
by ``otel_hardening.install()`` the way an application's clients are (nothing demo-specific)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter

import httpx

from otel_hardening.outbox import RequestDeferred


class Traffic:
    """Calls ``inventory`` from ``threads`` sync workers and ``payments`` from ``tasks`` async tasks."""

    def __init__(self, inventory: str, payments: str, *, threads: int = 2, tasks: int = 3,
                 pause: float = 0.05) -> None:
        self.inventory, self.payments = inventory, payments
        self.threads, self.tasks, self.pause = threads, tasks, pause
        self.stop = threading.Event()
        self.app_errors: Counter[str] = Counter()
        """Exceptions that reached the application, by type (only httpx's own errors may)."""
        self._deferred_keys: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self) -> None:
        client = httpx.Client(timeout=2.0)  # hardened: install() ran before it was built
        for i in range(self.threads):
            self._workers.append(threading.Thread(target=self._sync_worker, args=(client,),
                                                  name=f"demo-sync-{i}", daemon=True))
        self._workers.append(threading.Thread(target=asyncio.run, args=(self._async_main(),),
                                              name="demo-async", daemon=True))
        for worker in self._workers:
            worker.start()
        self._client = client

    def close(self) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(10)
        self._client.close()

    def deferred(self) -> set[str]:
        """The ``Idempotency-Key`` of every charge the outbox deferred: the upstream must apply each once."""
        with self._lock:
            return set(self._deferred_keys)

    def forget_deferred(self) -> None:
        with self._lock:
            self._deferred_keys.clear()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.app_errors[type(exc).__name__] += 1

    def _sync_worker(self, client: httpx.Client) -> None:
        while not self.stop.wait(self.pause):
            try:
                client.get(f"{self.inventory}/items/42")
            except Exception as exc:  # CircuitOpenError is an httpx.TransportError; anything else is a bug
                self._failed(exc)

    async def _async_main(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            await asyncio.gather(*(self._async_worker(client) for _ in range(self.tasks)))

    async def _async_worker(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(self.pause)
            try:
                await client.post(f"{self.payments}/charges", json={"amount": 42},
                                  headers={"Idempotency-Key": f"charge-{uuid.uuid4()}"})
            except RequestDeferred as deferred:  # stored by the outbox: it will be sent, once
                with self._lock:
                    self._deferred_keys.add(deferred.idempotency_key)
                self._failed(deferred)
            except Exception as exc:
                self._failed(exc)
