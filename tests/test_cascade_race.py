"""A plan's fallback and the success that makes it unneeded can arrive at the same moment: the
deadline fires as the receipt or the application's acknowledgement comes in. The engine's loop
hands them to the delivery machine one at a time, in some order; whatever the order, there is
exactly one outcome: either the fallback started (the success came too late to stop it) or it was
cancelled (the success came first), never both, and the plan ends exactly once.

The property runs the machine itself (herald._core._CascadeModel drives the same transitions the
engine's loop does) over every ordering Hypothesis finds; tests/test_cascades.py does the same end
to end at the deadline boundary.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from herald import _core

DEADLINE_MS = 30_000

# The events around the deadline of an OTP-like plan: SMS (succeeds when read or delivered),
# then email unless the SMS succeeded within 30 s.
EVENTS = ["deadline", "sms_accepted", "sms_receipt", "sms_read", "email_answered"]


def run(order: list[str], success: str, sms_fails: bool, email_fails: bool) -> tuple[_core._CascadeModel,
                                                                                     list[dict[str, Any]]]:
    model = _core._CascadeModel([("sms", False, 0, success), ("email", False, DEADLINE_MS, "accepted")])
    steps = [model.begin(0)]
    receipt_seen = ""
    for t, event in enumerate(order, start=1):
        now = DEADLINE_MS if event == "deadline" else DEADLINE_MS - 1 + t % 2  # all "at once"
        if event == "deadline":
            steps.append(model.deadline(now))
        elif event == "sms_accepted":
            # The shell hands over the receipt the step's delivery already holds, as the engine does.
            state = "dead_lettered" if sms_fails else "completed"
            steps.append(model.step_finished(0, state, receipt_seen, now))
        elif event == "sms_receipt":
            receipt_seen = "delivered" if success == "delivered" else "opened"
            steps.append(model.step_receipt(0, receipt_seen, now))
        elif event == "sms_read":
            steps.append(model.acknowledged("sms", now))
        elif event == "email_answered":
            steps.append(model.step_finished(1, "dead_lettered" if email_fails else "completed", "", now))
    return model, steps


def count(steps: list[dict[str, Any]], kind: str, step: int) -> int:
    return sum(1 for s in steps for (k, n) in s["events"] if k == kind and n == step)


@settings(max_examples=400, deadline=None)
@given(
    order=st.permutations(EVENTS),
    success=st.sampled_from(["read", "delivered"]),
    sms_fails=st.booleans(),
    email_fails=st.booleans(),
)
def test_a_success_and_a_deadline_at_once_give_exactly_one_outcome(order: list[str], success: str, sms_fails: bool,
                                                                   email_fails: bool) -> None:
    model, steps = run(order, success, sms_fails, email_fails)
    started = sum(1 for s in steps if 1 in s["start"])
    cancelled = count(steps, "step_cancelled", 1)
    # Each step starts at most once; the fallback either starts or is cancelled, never both.
    assert sum(1 for s in steps if 0 in s["start"]) == 1
    assert started + cancelled <= 1, (order, steps)
    assert count(steps, "step_started", 1) == started
    # The plan ends at most once, and never while a step it started still runs.
    finishes = [i for i, s in enumerate(steps) if s["next"] == "finish"]
    assert len(finishes) <= 1
    for s in steps[finishes[0] + 1:] if finishes else []:
        assert s["events"] == [] and s["start"] == []
    # Which came first decides. The SMS succeeds once it is accepted and its receipt (delivered, or
    # opened for "read") or the application's read came: a read implies delivered. One that came
    # before the acceptance counts from the acceptance.
    succeeded_at = None
    if not sms_fails:
        accepted = order.index("sms_accepted")
        succeeded_at = max(accepted, min(order.index("sms_receipt"), order.index("sms_read")))
    deadline_at = order.index("deadline")
    if sms_fails:
        # The SMS failed: the email starts at its failure or at the deadline, whichever is first.
        assert started == 1
    elif succeeded_at is not None and succeeded_at < deadline_at:
        assert started == 0 and cancelled == 1, (order, steps)
    else:
        assert started == 1 and cancelled == 0, (order, steps)
    # The final state: completed when any step got through, else dead-lettered.
    if finishes:
        expected = "completed" if (not sms_fails or (started and not email_fails)) else "dead_lettered"
        assert model.state == expected, (order, model.statuses)


@settings(max_examples=200, deadline=None)
@given(order=st.permutations(["deadline", "sms_accepted", "sms_read", "cancel"]))
def test_a_cancel_among_them_stops_what_has_not_started(order: list[str]) -> None:
    model = _core._CascadeModel([("sms", False, 0, "read"), ("email", False, DEADLINE_MS, "accepted")])
    steps = [model.begin(0)]
    for event in order:
        if event == "deadline":
            steps.append(model.deadline(DEADLINE_MS))
        elif event == "sms_accepted":
            steps.append(model.step_finished(0, "completed", "", DEADLINE_MS))
        elif event == "sms_read":
            steps.append(model.acknowledged("sms", DEADLINE_MS))
        else:
            steps.append(model.cancel())
    started = sum(1 for s in steps if 1 in s["start"])
    assert started + count(steps, "step_cancelled", 1) <= 1
    if order.index("cancel") < order.index("deadline") and order.index("cancel") < order.index("sms_accepted"):
        assert started == 0
    assert sum(1 for s in steps if s["next"] == "finish") <= 1
