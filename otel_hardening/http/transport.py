"""httpx transports that harden whatever transport they wrap (sync and async faces of one engine)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import anyio
import httpx

from otel_hardening._logging import log_once
from otel_hardening.http.engine import Call, Engine


def _begin(engine: Engine, request: httpx.Request) -> Call | None:
    if not engine.active():
        return None
    try:
        return engine.begin(request)
    except (TypeError, ValueError):
        raise  # a bad request.extensions["hardening"] is the caller's error, said clearly
    except Exception:
        log_once("engine:begin", logging.ERROR,
                 "otel_hardening: hardening failed for a request; sending it unhardened", exc_info=True)
        return None


class _PrefixedStream(httpx.SyncByteStream):
    """Chunks already read by the retry layer, then the rest of the original stream."""

    def __init__(self, prefix: list[bytes], rest: Iterator[bytes], original: httpx.SyncByteStream) -> None:
        self._prefix, self._rest, self._original = prefix, rest, original

    def __iter__(self) -> Iterator[bytes]:
        yield from self._prefix
        yield from self._rest

    def close(self) -> None:
        self._original.close()


class _AsyncPrefixedStream(httpx.AsyncByteStream):
    def __init__(self, prefix: list[bytes], rest: AsyncIterator[bytes], original: httpx.AsyncByteStream) -> None:
        self._prefix, self._rest, self._original = prefix, rest, original

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._prefix:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._original.aclose()


def _buffer(response: httpx.Response, limit: int) -> None:
    """Read up to ``limit`` body bytes now, so a reset mid-body is an error this layer can retry."""
    stream = response.stream
    assert isinstance(stream, httpx.SyncByteStream)
    chunks: list[bytes] = []
    size = 0
    rest = iter(stream)
    for chunk in rest:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.stream = _PrefixedStream(chunks, rest, stream)
            return
    stream.close()
    response.stream = httpx.ByteStream(b"".join(chunks))


async def _abuffer(response: httpx.Response, limit: int) -> None:
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    chunks: list[bytes] = []
    size = 0
    rest = stream.__aiter__()
    async for chunk in rest:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.stream = _AsyncPrefixedStream(chunks, rest, stream)
            return
    await stream.aclose()
    response.stream = httpx.ByteStream(b"".join(chunks))


class HardenedTransport(httpx.BaseTransport):
    """Circuit breaker, retries and telemetry around ``inner``; each attempt goes through ``inner``."""

    def __init__(self, inner: httpx.BaseTransport, engine: Engine) -> None:
        self.inner = inner
        self.engine = engine

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = _begin(self.engine, request)
        if call is None:
            return self.inner.handle_request(request)
        while True:
            call.before_attempt()
            call.install_attempt_hook(is_async=False)
            response: httpx.Response | None = None
            try:
                with call.span_scope():
                    response = self.inner.handle_request(request)
                    if call.will_retry_errors:
                        _buffer(response, call.retry.buffer_max)
            except Exception as exc:
                if response is not None:
                    response.close()
                delay = call.on_error(exc)
            except BaseException:
                call.abandon()
                raise
            else:
                retry_in = call.on_response(response)
                if retry_in is None:
                    return response
                response.close()
                delay = retry_in
            time.sleep(delay)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> HardenedTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None = None, exc_value: BaseException | None = None,
                 traceback: TracebackType | None = None) -> None:
        self.inner.__exit__(exc_type, exc_value, traceback)


class AsyncHardenedTransport(httpx.AsyncBaseTransport):
    """The async face of :class:`HardenedTransport`; the engine is the same."""

    def __init__(self, inner: httpx.AsyncBaseTransport, engine: Engine) -> None:
        self.inner = inner
        self.engine = engine

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = _begin(self.engine, request)
        if call is None:
            return await self.inner.handle_async_request(request)
        while True:
            call.before_attempt()
            call.install_attempt_hook(is_async=True)
            response: httpx.Response | None = None
            try:
                with call.span_scope():
                    response = await self.inner.handle_async_request(request)
                    if call.will_retry_errors:
                        await _abuffer(response, call.retry.buffer_max)
            except Exception as exc:
                if response is not None:
                    await response.aclose()
                delay = call.on_error(exc)
            except BaseException:
                call.abandon()
                raise
            else:
                retry_in = call.on_response(response)
                if retry_in is None:
                    return response
                await response.aclose()
                delay = retry_in
            await anyio.sleep(delay)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> AsyncHardenedTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None = None,
                        exc_value: BaseException | None = None, traceback: TracebackType | None = None) -> None:
        await self.inner.__aexit__(exc_type, exc_value, traceback)
