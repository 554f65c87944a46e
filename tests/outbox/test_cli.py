"""``otel-hardening outbox``: in-process (the same main()), against real stores."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from otel_hardening.cli import main
from otel_hardening.outbox import Entry, open_store
from otel_hardening.outbox._model import new_id
from tests.outbox.conftest import Ledger


def put(store_url: str, url: str, body: bytes = b"{}") -> str:
    store = open_store(store_url, name="cli")
    id = new_id()
    store.put(Entry(id, url.split("/w")[0], "POST", url,
                    (("Authorization", "Bearer sekrit"), ("X-Api-Key", "k3y"), ("Idempotency-Key", f"k-{id}")),
                    body, time.time()))
    store.close()
    return id


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["outbox", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_purge_never_print_secrets(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    id = put(store_url, "http://api:80/w?token=t0k", b"card=4111")
    code, out, _ = cli(capsys, "list", "--store", store_url, "--name", "cli")
    assert code == 0 and id in out and "1 pending" in out and "token=REDACTED" in out
    code, out, _ = cli(capsys, "show", id, "--store", store_url, "--name", "cli")
    assert code == 0 and "Authorization: REDACTED" in out and "X-Api-Key: REDACTED" in out
    assert f"Idempotency-Key: k-{id}" in out and "9 bytes (not shown)" in out
    for secret in ("sekrit", "k3y", "t0k", "4111"):
        assert secret not in out
    code, out, _ = cli(capsys, "purge", id, "--store", store_url, "--name", "cli")
    assert code == 0 and "1 entries deleted" in out


def test_replay_send_and_retry_dead(store_url: str, ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    put(store_url, f"{ledger.url}/w", b"a")
    ledger.down = True
    store = open_store(store_url, name="cli")
    entry = store.claim(ledger.url, 1, 30)[0]
    store.bury(entry, "max_replays")
    store.finish(ledger.url)
    put(store_url, f"{ledger.url}/w", b"b")
    ledger.down = False
    code, out, _ = cli(capsys, "retry-dead", "--store", store_url, "--name", "cli")
    assert (code, out.strip()) == (0, "1 dead letters back in their queues")
    code, out, _ = cli(capsys, "replay", "--send", "--store", store_url, "--name", "cli")
    assert code == 0 and "2 delivered" in out, out
    assert ledger.applied == [b"b", b"a"]
    assert store.stats().pending == 0


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "o.sqlite3")
    code, _, err = cli(capsys, "show", "nope", "--store", store)
    assert code == 1 and err.strip() == f"otel-hardening outbox show: no entry 'nope' in {store}"
    code, _, err = cli(capsys, "purge", "--store", store)
    assert code == 2 and "exactly one" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "list", "--store", "ftp://x")
    assert code == 2 and err.startswith("otel-hardening outbox list: outbox store ftp://...") and "Traceback" not in err
    (tmp_path / "dir.sqlite3").mkdir()
    code, _, err = cli(capsys, "list", "--store", str(tmp_path / "dir.sqlite3"))
    assert code == 2 and "IsADirectoryError" in err and len(err.strip().splitlines()) == 1
