"""The demo's traffic: a sync httpx client on threads and an async one on an event loop, both hardened
by ``otel_hardening.install()`` the way an application's clients are (nothing demo-specific)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter

import httpx

from otel_hardening.outbox import RequestDeferred


class Traffic:
    """Calls ``inventory`` from ``threads`` sync workers and ``payments`` from ``tasks`` async tasks;
    ``surge()`` sets ``surge_workers`` more sync workers calling the inventory client, whose pool holds
    ``pool_size`` connections. They are started with the others and wait: threads that appeared with the
    phase would be a step in the thread count, which the leak detector rightly reads as growth."""

    def __init__(self, inventory: str, payments: str, *, threads: int = 2, tasks: int = 3,
                 pause: float = 0.05, pool_size: int = 4, pool_timeout: float = 0.5,
                 surge_workers: int = 0) -> None:
        self.inventory, self.payments = inventory, payments
        self.threads, self.tasks, self.pause = threads, tasks, pause
        self.pool_size, self.pool_timeout = pool_size, pool_timeout
        self.stop = threading.Event()
        self.app_errors: Counter[str] = Counter()
        """Exceptions that reached the application, by type (only httpx's own errors may)."""
        self.foreign_errors = 0
        """Of them, those that are neither an ``httpx.HTTPError`` nor the outbox's ``RequestDeferred``: bugs."""
        self._deferred_keys: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.surge_workers = surge_workers
        self._surging = threading.Event()
        self._surge_busy = 0

    def start(self) -> None:
        # hardened: install() ran before it was built
        client = httpx.Client(timeout=httpx.Timeout(2.0, pool=self.pool_timeout),
                              limits=httpx.Limits(max_connections=self.pool_size))
        for i in range(self.threads):
            self._workers.append(threading.Thread(target=self._sync_worker, args=(client, self.stop),
                                                  name=f"demo-sync-{i}", daemon=True))
        self._workers.append(threading.Thread(target=asyncio.run, args=(self._async_main(),),
                                              name="demo-async", daemon=True))
        for i in range(self.surge_workers):
            self._workers.append(threading.Thread(target=self._surge_worker, args=(client,),
                                                  name=f"demo-surge-{i}", daemon=True))
        for worker in self._workers:
            worker.start()
        self._client = client

    def close(self) -> None:
        self.stop.set()
        self.calm()
        for worker in self._workers:
            worker.join(10)
        self._client.close()

    def surge(self) -> None:
        """The surge workers call the inventory client too, until ``calm()``."""
        self._surging.set()

    def calm(self, timeout: float = 10.0) -> None:
        """The surge workers stop calling; returns once each has finished its call (or ``timeout``)."""
        self._surging.clear()
        deadline = time.monotonic() + timeout
        while self._surge_busy and time.monotonic() < deadline:
            time.sleep(0.02)

    def deferred(self) -> set[str]:
        """The ``Idempotency-Key`` of every charge the outbox deferred: the upstream must apply each once."""
        with self._lock:
            return set(self._deferred_keys)

    def errors(self) -> tuple[dict[str, int], int]:
        """(exceptions the application saw by type, how many of them were foreign), taken together."""
        with self._lock:
            return dict(self.app_errors), self.foreign_errors

    def forget_deferred(self) -> None:
        with self._lock:
            self._deferred_keys.clear()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.app_errors[type(exc).__name__] += 1
            if not isinstance(exc, (httpx.HTTPError, RequestDeferred)):
                self.foreign_errors += 1

    def _sync_worker(self, client: httpx.Client, stop: threading.Event) -> None:
        while not stop.wait(self.pause) and not self.stop.is_set():
            try:
                client.get(f"{self.inventory}/items/42")
            except Exception as exc:  # CircuitOpenError is an httpx.TransportError; anything else is a bug
                self._failed(exc)

    def _surge_worker(self, client: httpx.Client) -> None:
        while not self.stop.is_set():
            if not self._surging.wait(0.1):
                continue
            with self._lock:
                self._surge_busy += 1
            try:
                if self._surging.is_set():
                    client.get(f"{self.inventory}/items/42")
            except Exception as exc:
                self._failed(exc)
            finally:
                with self._lock:
                    self._surge_busy -= 1
            self.stop.wait(self.pause)

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
