"""A small incident in a data directory, for the analysis and notebook tests.

Two sandbox providers: ``primary`` answers 503 to a quarter of the requests all along, ``backup``
has an outage (``outage_until_ms``) during the middle third of the sends. ``otp`` goes
primary then backup, ``news`` backup then primary (so both fail over), ``solo`` primary alone (so
some are dead-lettered). Receipts are on: delivered, and opened for news to open@example.com.

``promo`` is a campaign with two steps: a push through ``pusher`` (which refuses a quarter of
them with a 400), then an email through ``backup`` when the push failed. Half of its recipients
are open@example.com (the sandbox's receipts then say opened, for the push as for the email), and
every third push accepted is acknowledged as read by the application
(``Engine.acknowledge(id, channel="push")``): a funnel with losses at every stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from herald import Engine, Plan, RuleSet, Sandbox, Step
from support import wait_for

PRIMARY_COST = 0.0079
BACKUP_COST = 0.004
KINDS = ("otp", "news", "otp", "solo", "news", "promo")


@dataclass
class Workload:
    data_dir: Path
    ids: dict[str, str] = field(default_factory=dict)  # id -> type
    tenants: dict[str, str] = field(default_factory=dict)  # id -> tenant
    states: dict[str, str] = field(default_factory=dict)  # id -> final state
    read: set[str] = field(default_factory=set)  # promos acknowledged as read on push


def rules() -> RuleSet:
    return RuleSet({
        "otp": lambda n: Plan("sms", ["primary", "backup"], "Your code is {code}"),
        "news": lambda n: Plan("email", ["backup", "primary"], "{headline|News}"),
        "solo": lambda n: Plan("sms", ["primary"], "{text|hello}"),
        "promo": lambda n: Plan.cascade(
            Step("push", ["pusher"], title="{headline|Sale}", text="{offer|20% off}"),
            Step("email", ["backup"], subject="{headline|Sale}", text="{offer|20% off}"),
        ),
    })


def produce(data_dir: Path, per_phase: int = 100) -> Workload:
    """Three phases of ``per_phase`` sends each (the middle one during backup's outage); waits
    for every final state and the receipts, then closes the engine."""
    w = Workload(Path(data_dir))
    with Sandbox() as sandbox:
        for name in ("primary", "backup", "pusher"):
            sandbox.set_callbacks(name, enabled=True, delay_ms=20)
        sandbox.set_faults("primary", error_rate=0.25, error_status=503)
        sandbox.set_faults("pusher", error_rate=0.25, error_status=400)
        providers = [
            sandbox.provider("primary", concurrency=8, max_attempts=2, cost_per_message=PRIMARY_COST),
            sandbox.provider("backup", concurrency=8, max_attempts=2, cost_per_message=BACKUP_COST),
            # Its 400s are the campaign's losses, not an outage: no circuit opens on them.
            sandbox.provider("pusher", concurrency=8, max_attempts=1, circuit_consecutive_failures=0,
                             circuit_failure_rate=0),
        ]
        engine = Engine(w.data_dir, rules=rules(), providers=providers, retry_base=0.01, retry_max=0.05,
                        close_timeout=3.0, receipts="127.0.0.1:0")
        try:
            n = 0
            for phase in range(3):
                if phase == 1:
                    sandbox.set_faults("backup", outage_until_ms=int(time.time() * 1000) + 500)
                for _ in range(per_phase):
                    kind = KINDS[n % len(KINDS)]
                    tenant = ("acme", "globex", "acme")[(n // len(KINDS)) % 3]
                    if kind == "otp":
                        r = engine.send("otp", {"id": f"u{n}", "phone": f"+1555{n:07d}"}, {"code": str(n)},
                                        priority=("critical", "high")[(n // len(KINDS)) % 2], tenant=tenant)
                    elif kind == "news":
                        email = "open@example.com" if (n // len(KINDS)) % 3 == 0 else f"user{n}@example.com"
                        r = engine.send("news", {"id": f"u{n}", "email": email}, {"headline": "Hi"},
                                        priority=("bulk", "normal")[n % 2], tenant=tenant)
                    elif kind == "promo":
                        k = n // len(KINDS)
                        recipient = {"id": f"u{n}", "push_token": f"tok-{n}",
                                     "email": "open@example.com" if k % 2 == 0 else f"user{n}@example.com"}
                        r = engine.send("promo", recipient, {"headline": "Sale"}, priority="bulk", tenant=tenant)
                    else:
                        r = engine.send("solo", {"id": f"u{n}", "phone": f"+1556{n:07d}"}, {},
                                        priority="normal", tenant=tenant)
                    w.ids[str(r.id)] = kind
                    w.tenants[str(r.id)] = tenant
                    n += 1
                    if n % 5 == 0:
                        time.sleep(0.03)  # a steady stream (about 2 s in all) rather than one burst
            for id in w.ids:
                w.states[id] = engine.wait(int(id), timeout=30).state
            # The application reports every third promo push it showed as read.
            pushed = [i for i, kind in w.ids.items() if kind == "promo" and any(
                e.event == "accepted" and e.provider == "pusher" for e in engine.trace(int(i)))]
            for i in pushed[::3]:
                engine.acknowledge(int(i), channel="push")
                w.read.add(i)
            # Receipts come 20 ms after each acceptance: wait (bounded) until every completed one has its.
            # A plan with many steps keeps its receipts on the step that was sent (events under the
            # parent's id, with the step), not on the parent's row.
            def receipt(i: str) -> bool:
                if w.ids[i] != "promo":
                    return bool(engine.status(int(i)).receipt)
                return any(e.event in ("delivered", "opened") for e in engine.trace(int(i)))

            def missing() -> str:
                ids = [i for i, s in w.states.items() if s == "completed" and not receipt(i)]
                out = f"a receipt for every completed notification ({len(ids)} without: "
                for i in ids[:3]:
                    out += f"{i} {w.ids[i]} " + repr([(e.event, e.provider, e.detail) for e in engine.trace(int(i))]) + "; "
                st = engine.stats()
                return out + f") receipts={st['receipts']} rejected={st['receipts_rejected']} accepted={st['accepted']}"

            wait_for(lambda: all(receipt(i) for i, s in w.states.items() if s == "completed"),
                     15, what=missing, interval=0.05)
        finally:
            engine.close()
    return w
