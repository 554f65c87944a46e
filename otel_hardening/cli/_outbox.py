"""``otel-hardening outbox``: look into and operate an outbox store (SQLite file or Redis).

list      pending (or --dead) entries, oldest first: id, upstream, method, URL (redacted), age, attempts
show ID   one entry: headers with credential values redacted, the body's size (never its content)
replay    make pending entries due now (the app's replayers send them at their next round); with
          --send, send them from here through a hardened client, as stored (the app's before_replay
          hook does not run here: stores that keep no credentials need the app to replay)
retry-dead [ID...]  dead letters back to the end of their queue, attempts reset
purge ID... | --dead | --all   delete entries (stored requests are gone for good)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Any

from otel_hardening._redaction import REDACTED, SECRET_PARAM, redact_url

ACTIONS = ("list", "show", "replay", "retry-dead", "purge")
STORE_ENV = "OTEL_PYTHON_HARDENING_OUTBOX_STORE"
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    outbox = sub.add_parser("outbox", help="list, show, replay, retry or purge the requests an outbox holds",
                            description=__doc__.split("\n\n")[1] if __doc__ else None,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    outbox.add_argument("action", choices=ACTIONS)
    outbox.add_argument("ids", nargs="*", metavar="ID", help="entry ids (show: exactly one)")
    outbox.add_argument("--store", default=os.environ.get(STORE_ENV, ""),
                        help=f"a SQLite path or redis://host:port/db (default: ${STORE_ENV}, else this app's "
                             "default file)")
    outbox.add_argument("--name", default="", help="the outbox's name (Outbox(name=...); default: "
                        "$OTEL_SERVICE_NAME): the default file's name and the Redis key prefix")
    outbox.add_argument("--dead", action="store_true", help="list / purge: the dead letters")
    outbox.add_argument("--all", action="store_true", help="purge: every entry, pending ones too")
    outbox.add_argument("--limit", type=int, default=100, help="list: at most this many (default: %(default)s)")
    outbox.add_argument("--send", action="store_true", help="replay: send from this process now")
    outbox.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from otel_hardening.cli import PROG, CommandError
    from otel_hardening.outbox import ConfigurationError, StoreError, open_store
    from otel_hardening.outbox._policy import check_name, default_name

    where = f"{PROG} outbox {args.action}"
    try:
        name = check_name(args.name or default_name())
        store = open_store(args.store, name=name)
    except (StoreError, ConfigurationError) as exc:
        raise CommandError(f"{where}: {exc}", 2) from None
    try:
        return _ACTIONS[args.action](store, args, where, name)
    except StoreError as exc:
        raise CommandError(f"{where}: {exc}", 1) from None
    finally:
        with contextlib.suppress(StoreError):
            store.close()


def _age(created: float) -> str:
    seconds = max(0.0, time.time() - created)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _list(store: Any, args: argparse.Namespace, where: str, name: str) -> int:
    entries = store.entries(dead=args.dead, limit=args.limit)
    stats = store.stats()
    print(f"{store.location}: {stats.pending} pending ({stats.pending_bytes} bytes), {stats.dead} dead letters")
    for e in entries:
        tail = f"  dead: {e.dead_reason}" if e.dead_reason else ""
        error = f"  last error: {e.last_error}" if e.last_error else ""
        print(f"{e.id}  {e.method:6} {redact_url(e.url)}  age {_age(e.created)}  attempts {e.attempts}{error}{tail}")
    return 0


def _show(store: Any, args: argparse.Namespace, where: str, name: str) -> int:
    from otel_hardening.cli import CommandError

    if len(args.ids) != 1:
        raise CommandError(f"{where}: expected exactly one entry id, got {len(args.ids)}", 2)
    entry = store.get(args.ids[0])
    if entry is None:
        raise CommandError(f"{where}: no entry {args.ids[0]!r} in {store.location}", 1)
    print(f"id           {entry.id}")
    print(f"state        {'dead: ' + entry.dead_reason if entry.dead_reason else 'pending'}")
    print(f"upstream     {entry.upstream}")
    print(f"request      {entry.method} {redact_url(entry.url)}")
    print(f"deferred     {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(entry.created))} UTC "
          f"({_age(entry.created)} ago)")
    print(f"attempts     {entry.attempts}" + (f", last error {entry.last_error}" if entry.last_error else ""))
    if entry.trace_id:
        print(f"trace        {entry.trace_id} (span {entry.span_id})")
    print(f"body         {len(entry.body)} bytes (not shown)")
    print("headers")
    for key, value in entry.headers:
        # a name that looks secret (X-Api-Key, X-Auth-Token) hides its value; the idempotency key is an id
        secret = key.lower() in _CREDENTIAL_HEADERS or (SECRET_PARAM.search(key) and key.lower() != "idempotency-key")
        print(f"  {key}: {REDACTED if secret else value}")
    return 0


def _replay(store: Any, args: argparse.Namespace, where: str, name: str) -> int:
    if not args.send:
        count = store.reschedule(args.ids or None)
        print(f"{count} pending entries due now: the app's replayers send them at their next round")
        return 0
    from otel_hardening.outbox import Outbox, OutboxPolicy

    outbox = Outbox(store, name=name, policy=OutboxPolicy(strip_headers=frozenset()), replay=False)
    store.reschedule(args.ids or None)
    before = store.stats()
    try:
        outbox.replayer.round()
        after = store.stats()
    finally:
        outbox.close()  # out of the process's health report now, not when the garbage collector gets to it
    print(f"sent from here: {before.pending - after.pending} delivered, {after.dead - before.dead} dead-lettered, "
          f"{after.pending} still pending")
    return 0 if after.pending == 0 else 1


def _retry_dead(store: Any, args: argparse.Namespace, where: str, name: str) -> int:
    count = store.retry_dead(args.ids or None)
    print(f"{count} dead letters back in their queues")
    return 0


def _purge(store: Any, args: argparse.Namespace, where: str, name: str) -> int:
    from otel_hardening.cli import CommandError

    if bool(args.ids) + args.dead + args.all != 1:
        raise CommandError(f"{where}: say what to delete: entry ids, --dead or --all (exactly one)", 2)
    count = store.purge(args.ids) if args.ids else store.purge(dead=not args.all)
    print(f"{count} entries deleted")
    return 0


_ACTIONS = {"list": _list, "show": _show, "replay": _replay, "retry-dead": _retry_dead, "purge": _purge}
