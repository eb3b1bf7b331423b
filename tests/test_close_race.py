"""close() while other threads are inside the engine: every call either completes or raises
EngineClosed, nothing crashes, and whatever send() accepted is durable (the call gate)."""

from __future__ import annotations

import asyncio
import threading

import herald
from herald import Engine, Sandbox

from support import wait_for


def test_close_while_threads_send_and_read(make_engine, sandbox: Sandbox, tmp_path) -> None:
    for round in range(5):
        data_dir = tmp_path / f"round-{round}"
        engine: Engine = make_engine(data_dir=data_dir)
        accepted: list[int] = []
        refused = 0
        other: list[BaseException] = []
        lock = threading.Lock()
        started = threading.Barrier(5)

        def worker(n: int) -> None:
            nonlocal refused
            started.wait()
            i = 0
            while True:
                i += 1
                try:
                    r = engine.send("otp", f"u{n}", {"code": str(i)}, idempotency_key=f"{n}-{i}")
                    engine.status(r.id)
                    engine.trace(r.id)
                    with lock:
                        accepted.append(r.id)
                except herald.EngineClosed:
                    with lock:
                        refused += 1
                    return
                except BaseException as exc:  # anything else is a failure of the gate
                    with lock:
                        other.append(exc)
                    return

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        started.wait()
        wait_for(lambda: len(accepted) >= 20, what="some sends")
        engine.close()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive()
        assert other == []
        assert refused == 4  # each worker ended on EngineClosed, none on a crash
        assert engine.closed
        # Everything a caller was told was accepted is in the store after a restart.
        with herald.open_readonly(data_dir) as store:
            for id in accepted:
                assert store.status(id) is not None, id


def test_close_while_an_asyncio_thread_is_inside(make_engine, sandbox: Sandbox) -> None:
    engine: Engine = make_engine()

    async def main() -> tuple[int, int]:
        ok = closed = 0

        async def sender() -> None:
            nonlocal ok, closed
            for i in range(10_000):
                try:
                    await engine.asend("otp", "u1", {"code": str(i)})
                    ok += 1
                except herald.EngineClosed:
                    closed += 1
                    return

        task = asyncio.create_task(sender())
        while ok < 10:
            await asyncio.sleep(0)
        await asyncio.to_thread(engine.close)
        await task
        return ok, closed

    ok, closed = asyncio.run(main())
    assert ok >= 10 and closed == 1
    assert engine.closed
