"""SIGKILL (and SIGTERM) of ``herald serve`` under load from several Client threads, then a restart
on the same data folder.

The clients resend every notification whose answer they did not get, with the same idempotency key,
so a notification the killed server had already taken is answered as a duplicate, not taken twice.
Checked against the store, the Client's answers and the sandbox's own records: every notification
the clients were told was accepted completes, reaches the sandbox, and one reaching it more than once
carries an ``in_doubt`` event (the crash lost its attempt's outcome), as in test_crash_recovery."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import herald
from herald import Sandbox
from herald.client import Client
from support import wait_for
from test_serve import KEY, Served, _config

THREADS = 4


@dataclass
class Server:
    """Starts `python -m herald serve` on one config (and so one data folder), again after a crash."""

    tmp_path: Path
    config: Path
    data_dir: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self) -> Served:
        env = {**os.environ, "HERALD_SERVE_TEST_KEY": KEY}
        log = self.tmp_path / f"serve-{len(self.started)}.stderr"
        with log.open("w") as stderr:  # a file, not a pipe: a full pipe would stall the server
            process = subprocess.Popen([sys.executable, "-m", "herald", "serve", "--config", str(self.config)],
                                       cwd=self.tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.started.append(process)
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("herald serve listening on "), (line, log.read_text())
        return Served(process, line.split()[-1], self.data_dir)


@pytest.fixture
def server(tmp_path: Path, sandbox: Sandbox) -> Iterator[Server]:
    data_dir = tmp_path / "serve-data"
    # Every attempt waits a little at the sandbox, so a kill finds attempts in flight.
    sandbox.set_faults("primary", latency_ms=15)
    srv = Server(tmp_path, _config(tmp_path, sandbox, 1 << 20, False, data_dir), data_dir)
    yield srv
    for process in srv.started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


class Senders:
    """THREADS threads, each sending notifications with its own idempotency keys as fast as it can,
    one at a time, until stopped; a send without an answer is repeated (same key) until answered."""

    def __init__(self, url: Callable[[], str], retry_for: float = 30.0) -> None:
        self.url = url  # where serve listens now (a restart binds another port)
        self.retry_for = retry_for
        self.stop = threading.Event()  # finish the send in hand, then return
        self.abort = threading.Event()  # the test failed: give up at once
        self.lock = threading.Lock()
        self.accepted: dict[str, int] = {}  # idempotency key -> the id the answer named
        self.duplicates: set[str] = set()  # keys whose answer said duplicate (an earlier try was taken)
        self.unanswered: Counter[str] = Counter()  # per thread: sends that got no answer
        self.retried: set[str] = set()  # keys sent again after a try without an answer
        self.after_restart: Counter[str] = Counter()  # per thread: accepted sends that began after the restart
        self.restarted = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(f"t{t}",), daemon=True) for t in range(THREADS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float = 60.0) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a client thread never finished"
        assert not self.errors, self.errors

    def _send_until_answered(self, name: str, clients: dict[str, Client], key: str) -> herald.client.RemoteReceipt:
        deadline = time.monotonic() + self.retry_for
        while True:
            url = self.url()
            if url not in clients:
                clients[url] = Client(url, api_key=KEY, timeout=10)
            try:
                return clients[url].send("solo", f"user-{key}", {"text": key}, idempotency_key=key)
            except (httpx.TransportError, herald.EngineClosed) as exc:
                with self.lock:
                    self.unanswered[name] += 1
                    self.retried.add(key)
                assert time.monotonic() < deadline, f"{key}: no answer for {self.retry_for} s from {url}: {exc!r}"
                if self.abort.is_set():
                    raise
                time.sleep(0.01)  # back-off between tries, not a synchronisation

    def _run(self, name: str) -> None:
        clients: dict[str, Client] = {}
        try:
            i = 0
            while not self.stop.is_set():
                key = f"{name}-{i}"
                after = self.restarted.is_set()
                receipt = self._send_until_answered(name, clients, key)
                with self.lock:
                    self.accepted[key] = receipt.id
                    if receipt.duplicate:
                        self.duplicates.add(key)
                    if after:
                        self.after_restart[name] += 1
                i += 1
        except BaseException as exc:  # reported by join()
            self.errors.append(exc)
        finally:
            for c in clients.values():
                c.close()


def _wait_all_final(client: Client, ids: list[int], timeout: float = 30.0) -> dict[int, herald.Status]:
    """Polls every status through the Client until all are final (bounded)."""
    final: dict[int, herald.Status] = {}
    pending = list(ids)

    def all_final() -> bool:
        nonlocal pending
        still = []
        for id in pending:
            status = client.status(id)
            assert status is not None, f"notification {id} was acknowledged but is not in the store"
            if status.final:
                final[id] = status
            else:
                still.append(id)
        pending = still
        return not pending

    wait_for(all_final, timeout, interval=0.05,
             what=lambda: f"{len(pending)} notifications to become final, e.g. {pending[:3]}")
    return final


def _check_outcome(served: Served, sandbox: Sandbox, senders: Senders) -> None:
    accepted = senders.accepted
    ids = list(accepted.values())
    with served.client() as client:
        statuses = _wait_all_final(client, ids)
        not_completed = {id: s.state for id, s in statuses.items() if s.state != "completed"}
        assert not not_completed, f"accepted but not completed: {list(not_completed.items())[:5]}"
        # One notification per key: no key was taken twice under two ids.
        assert len(set(ids)) == len(accepted), "two keys answered with one id"
        messages = sandbox.messages("primary")
        counts = Counter(int(m["headers"]["x-herald-id"]) for m in messages)
        texts = {int(m["headers"]["x-herald-id"]): m["body"]["text"] for m in messages}
        missing = set(ids) - set(counts)
        assert not missing, f"{len(missing)} accepted notifications never reached the sandbox, e.g. {sorted(missing)[:3]}"
        unknown = set(counts) - set(ids)
        assert not unknown, f"the sandbox got notifications no client was told about: {sorted(unknown)[:3]}"
        assert all(texts[id] == key for key, id in accepted.items()), "a message carried another key's text"
        twice = sorted(id for id, c in counts.items() if c > 1)
        unflagged = [id for id in twice if "in_doubt" not in [e.event for e in client.trace(id)]]
        assert not unflagged, f"sent more than once without an in_doubt event: {unflagged[:5]}"
        assert all(statuses[id].in_doubt for id in twice), "a duplicate's status does not say in_doubt"
    # The store after a clean stop: exactly one notification per idempotency key.
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0
    with closing(sqlite3.connect(served.data_dir / "herald.db")) as db:
        stored, keys = db.execute("SELECT count(*), count(DISTINCT idempotency_key) FROM notifications").fetchone()
    assert (stored, keys) == (len(accepted), len(accepted)), \
        f"{stored} notifications with {keys} keys stored for {len(accepted)} idempotency keys"


# Kill moments: by what the sandbox has received (delivery in progress) while the clients send.
KILL_AFTER = {"kill-at-first-delivery": 1, "kill-after-150": 150, "kill-after-600": 600}


@pytest.mark.parametrize("kill_after", list(KILL_AFTER.values()), ids=list(KILL_AFTER))
def test_sigkill_under_load_then_restart_loses_nothing_and_duplicates_only_in_doubt(
    server: Server, sandbox: Sandbox, kill_after: int
) -> None:
    first = server.start()
    current = {"url": first.url}
    senders = Senders(lambda: current["url"])
    senders.start()
    try:
        wait_for(lambda: sandbox.stats()["accepted"] >= kill_after or senders.errors, timeout=30,
                 what=f"the sandbox to receive {kill_after} messages")
        assert not senders.errors, senders.errors
        first.process.send_signal(signal.SIGKILL)
        assert first.process.wait(timeout=10) == -signal.SIGKILL
        with senders.lock:
            acknowledged_before = set(senders.accepted)
        delivered_before = sandbox.stats()["accepted"]

        # What the killed process left: work not yet finished (else the kill tested nothing).
        with closing(sqlite3.connect(server.data_dir / "herald.db")) as db:
            stored = db.execute("SELECT count(*) FROM notifications").fetchone()[0]
            unfinished = db.execute("SELECT count(*) FROM notifications WHERE state < 4").fetchone()[0]
        assert unfinished > 0, f"the kill came too late: all {stored} stored notifications were finished"
        # Every thread was sending when the server went away: each has a send without an answer.
        wait_for(lambda: len(senders.unanswered) == THREADS or senders.errors, timeout=10,
                 what="every client thread to see the server gone")

        second = server.start()  # the folder lock went with the killed process
        # Every send answered before the kill is stored now (an answer means durable: in SQLite,
        # or in the intake journal, which the restart has inserted).
        with closing(sqlite3.connect(server.data_dir / "herald.db")) as db:
            stored_keys = {k for (k,) in db.execute("SELECT idempotency_key FROM notifications")}
        lost = acknowledged_before - stored_keys
        assert not lost, f"answered before the kill but not in the store after the restart: {sorted(lost)[:5]}"
        senders.restarted.set()
        current["url"] = second.url
        # Run on until every thread has had sends accepted by the new server, then stop.
        wait_for(lambda: (len(senders.after_restart) == THREADS and min(senders.after_restart.values()) >= 20)
                 or senders.errors, timeout=30, what="every client thread to send through the restarted server")
    except BaseException:
        senders.abort.set()  # the failure above is the one to report, not the threads'
        senders.stop.set()
        raise
    senders.join()
    assert senders.duplicates <= senders.retried, "a first try was answered as a duplicate"
    assert len(senders.accepted) > len(acknowledged_before)
    assert delivered_before < len(senders.accepted)
    # A repeat of a send answered before the kill is a duplicate of the same notification.
    with second.client() as client:
        for key in sorted(acknowledged_before)[:20]:
            again = client.send("solo", f"user-{key}", {"text": key}, idempotency_key=key)
            assert (again.id, again.duplicate) == (senders.accepted[key], True), key
    _check_outcome(second, sandbox, senders)


def test_sigterm_under_load_drains_503_with_retry_after_and_loses_nothing(server: Server, sandbox: Sandbox) -> None:
    """Raw HTTP, to see the drain's answers: each is a 200 or a 503 with Retry-After (EngineClosed)
    or a refused connection once the server is gone; nothing answered 200 is lost after a restart."""
    served = server.start()
    accepted: dict[str, int] = {}
    refused: list[tuple[int, str | None, str | None]] = []  # (status, Retry-After, error type)
    other: list[object] = []
    closed: list[tuple[str, str]] = []  # (key, error) of the send each thread got no answer to
    lock = threading.Lock()
    stop = threading.Event()

    def sender(name: str) -> None:
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as http:
            i = 0
            while not stop.is_set():
                key = f"{name}-{i}"
                try:
                    r = http.post("/v1/notifications", json={"type": "solo", "recipient": f"user-{key}",
                                                             "data": {"text": key}, "idempotency_key": key})
                except httpx.TransportError as exc:
                    with lock:
                        closed.append((key, type(exc).__name__))
                    return
                with lock:
                    if r.status_code == 200:
                        accepted[key] = int(r.json()["id"])
                    elif r.status_code == 503:
                        refused.append((503, r.headers.get("Retry-After"), r.json().get("error", {}).get("type")))
                    else:
                        other.append((r.status_code, r.text[:200]))
                i += 1

    threads = [threading.Thread(target=sender, args=(f"t{t}",), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sandbox.stats()["accepted"] >= 100, timeout=30, what="delivery to be under way")
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not other, f"answers during the drain other than 200 and 503: {other[:5]}"
    assert all(ra is not None and ra.isdigit() and int(ra) > 0 for _, ra, _ in refused), refused[:5]
    assert all(kind == "EngineClosed" for _, _, kind in refused), refused[:5]
    assert refused, "no request was answered 503 while the server drained"
    assert len(closed) == THREADS, "a sender never saw the server go"

    restarted = server.start()
    with restarted.client() as client:
        # A send the stopping server dropped without an answer was not taken either: sent again, it
        # is new, not a duplicate.
        taken = [key for key, _ in closed
                 if client.send("solo", f"user-{key}", {"text": key}, idempotency_key=key).duplicate]
        assert not taken, f"taken, but the client got no answer: {taken}"
        statuses = _wait_all_final(client, list(accepted.values()))
        assert all(s.state == "completed" for s in statuses.values())
    counts = Counter(int(m["headers"]["x-herald-id"]) for m in sandbox.messages("primary"))
    assert set(accepted.values()) <= set(counts), "a notification accepted before SIGTERM never arrived"
    # A clean stop leaves nothing in doubt: every notification arrived exactly once.
    assert not [id for id, c in counts.items() if c > 1]
