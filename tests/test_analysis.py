"""herald.analysis and `herald log`: the delivery log read back, as written by a real engine and
as written by hand in both schema versions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from herald import analysis
from herald_workload import BACKUP_COST, PRIMARY_COST, Workload, produce


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return produce(tmp_path_factory.mktemp("incident") / "data")


@pytest.fixture(scope="module")
def events(incident: Workload) -> pd.DataFrame:
    return analysis.load_events(incident.data_dir)


@pytest.fixture(scope="module")
def notes(events: pd.DataFrame) -> pd.DataFrame:
    return analysis.notifications(events)


def test_event_columns_are_typed(events: pd.DataFrame) -> None:
    dtypes = events.dtypes.astype(str).to_dict()
    assert dtypes["ts"] == "datetime64[ns, UTC]"
    assert dtypes["id"] == "string"
    for k in ("event", "type", "tenant", "priority", "channel", "provider", "error_class", "provider_code", "alert"):
        assert dtypes[k] == "category", k
    assert dtypes["latency_us"] == dtypes["http_status"] == dtypes["segments"] == dtypes["step"] == "Int64"
    assert dtypes["cost"] == "float64" and dtypes["attempt"] == dtypes["seq"] == "int64"
    assert events["seq"].is_monotonic_increasing
    # ts is ts_us exactly
    assert (events["ts"].astype("int64") // 1000 == events["ts_us"]).all()


def test_one_row_per_notification_sent(incident: Workload, notes: pd.DataFrame) -> None:
    assert len(notes) == len(incident.ids)
    assert set(notes["id"]) == set(incident.ids)
    by_id = notes.set_index("id")
    assert by_id["type"].astype(str).to_dict() == incident.ids
    assert by_id["tenant"].astype(str).to_dict() == incident.tenants
    assert by_id["state"].astype(str).to_dict() == incident.states
    assert by_id["final"].all()
    assert set(notes["priority"].astype(str)) == {"critical", "high", "normal", "bulk"}


def test_latencies_for_accepted_ones(notes: pd.DataFrame) -> None:
    completed = notes[notes["state"] == "completed"]
    assert len(completed) > 200
    assert completed["accepted_ms"].notna().all() and (completed["accepted_ms"] >= 0).all()
    delivered = notes[notes["receipt"].isin(["delivered", "opened"])]
    assert len(delivered) > 0.9 * len(completed)
    assert delivered["delivered_ms"].notna().all()
    assert (delivered["delivered_ms"] >= delivered["accepted_ms"]).all()
    dead = notes[notes["state"] == "dead_lettered"]
    assert dead["accepted_ms"].isna().all()
    assert notes["opened"].sum() > 0


def test_error_classes_failover_and_dead_letters(events: pd.DataFrame, notes: pd.DataFrame) -> None:
    failed = events[events["event"] == "attempt_failed"]
    assert failed["error_class"].notna().all()
    primary = failed[failed["provider"] == "primary"]
    assert len(primary) > 0 and "provider_error" in set(primary["error_class"].astype(str))
    assert (primary["http_status"] == 503).all()
    assert len(failed[failed["provider"] == "backup"]) > 0  # the outage
    assert (notes["failovers"] > 0).sum() > 0
    assert {"primary,backup", "backup,primary"} <= set(notes["providers"])
    dead = notes[notes["state"] == "dead_lettered"]
    assert len(dead) > 0 and dead["error_class"].notna().all()
    switched = notes[notes["providers"] == "primary,backup"]
    assert (switched["first_provider"] == "primary").all()


def test_cost_and_recipient_from_v1_lines(events: pd.DataFrame, notes: pd.DataFrame) -> None:
    if not (events["v"] >= 1).all():
        pytest.skip("the installed core writes version 0 lines (no cost, recipient, channel)")
    by_primary = notes[(notes["state"] == "completed") & (notes["final_provider"] == "primary")]
    assert (by_primary["cost"] == PRIMARY_COST).all()
    assert notes["recipient"].notna().all()
    assert set(notes["channel"].astype(str)) == {"sms", "email", "push"}  # push: promo's first step
    # Short SMS texts are one segment each; email has none.
    accepted = events[events["event"] == "accepted"]
    sms = accepted["channel"].astype(str) == "sms"
    assert sms.any() and (accepted.loc[sms, "segments"] == 1).all()
    assert accepted.loc[~sms, "segments"].isna().all()
    assert (notes.loc[(notes["channel"] == "sms") & (notes["state"] == "completed"), "segments"] == 1).all()
    # The workload's failures are injected 503s: the sandbox's own error code comes with them.
    failed = events[events["event"] == "attempt_failed"]
    assert failed["provider_code"].notna().any()


def test_steps_of_the_cascade_campaign(incident: Workload, events: pd.DataFrame, notes: pd.DataFrame) -> None:
    """promo is push (step 0) then email (step 1) when the push failed: its events carry the step,
    and steps() gives each step's funnel; the other types are one step each."""
    promo = {i for i, kind in incident.ids.items() if kind == "promo"}
    stepped = events[events["id"].isin(promo) & events["step"].notna()]
    assert set(stepped["step"].astype(int)) == {0, 1}
    assert events.loc[~events["id"].isin(promo), "step"].isna().all()
    per_step = analysis.steps(events)
    assert per_step.dtypes.astype(str)[["step", "started", "channel", "outcome"]].tolist() == [
        "int64", "bool", "category", "category"]
    rows = per_step[per_step["id"].isin(promo)]
    assert len(rows) == 2 * len(promo)  # the email step is there, cancelled, when the push succeeded
    push, email = rows[rows["step"] == 0].set_index("id"), rows[rows["step"] == 1].set_index("id")
    assert (push["channel"] == "push").all() and (email["channel"] == "email").all()
    assert push["sent"].all() and set(push["providers"]) == {"pusher"}
    failed_push = push.index[push["outcome"] == "failed"]
    assert 0 < len(failed_push) < len(promo)  # the pusher refuses some with a 400
    assert set(email.index[email["started"]]) == set(failed_push)  # the fallback started for exactly those
    assert (email.loc[~email["started"], "outcome"] == "cancelled").all()
    assert (push.loc[push["accepted"], "outcome"] == "succeeded").all()
    # Funnel order at every step: sent ⊇ accepted ⊇ delivered ⊇ opened.
    for col_a, col_b in (("sent", "accepted"), ("accepted", "delivered"), ("delivered", "opened")):
        assert (rows[col_a] | ~rows[col_b]).all(), (col_a, col_b)
    assert push["opened"].sum() > 0 and email["opened"].sum() > 0
    assert set(incident.read) <= set(push.index[push["opened"]])  # read on push, as the application said
    assert (email.loc[email["accepted"], "cost"] == BACKUP_COST).all()
    # A promo is completed exactly when one of its steps was accepted.
    completed = set(notes.loc[(notes["type"] == "promo") & (notes["state"] == "completed"), "id"])
    assert completed == set(rows.loc[rows["accepted"], "id"])
    assert notes.set_index("id").loc[list(promo), "steps"].tolist() == [
        1 + int(i in set(failed_push)) for i in promo]
    # One step for the rest: the same facts as notifications().
    rest = per_step[~per_step["id"].isin(promo)].set_index("id")
    assert (rest["step"] == 0).all() and len(rest) == len(incident.ids) - len(promo) and rest["started"].all()
    by_note = notes.set_index("id").loc[rest.index]
    assert (rest["channel"].astype(str) == by_note["channel"].astype(str)).all()
    assert (rest["outcome"].astype(str) == by_note["state"].astype(str)).all()
    assert (rest["accepted"] == by_note["accepted_ms"].notna()).all()


def test_steps_from_hand_written_lines() -> None:
    """A cascade whose push failed and whose email was delivered and opened, and a plain one."""
    lines = [
        v1(1, T0, 7, "received"), v1(2, T0 + 1, 7, "routed", detail="2 steps"),
        v1(3, T0 + 2, 7, "step_started", step=0, channel="push"),
        v1(4, T0 + 3, 7, "sending", step=0, channel="push", attempt=1, provider="fcm"),
        v1(5, T0 + 4, 7, "attempt_failed", step=0, channel="push", attempt=1, provider="fcm",
           error_class="recipient_invalid"),
        v1(6, T0 + 5, 7, "step_failed", step=0, channel="push"),
        v1(7, T0 + 6, 7, "step_started", step=1, channel="email"),
        v1(8, T0 + 7, 7, "sending", step=1, channel="email", attempt=1, provider="ses"),
        v1(9, T0 + 2_007, 7, "accepted", step=1, channel="email", attempt=1, provider="ses", cost=0.001),
        v1(10, T0 + 2_008, 7, "step_succeeded", step=1, channel="email"),
        v1(11, T0 + 2_008, 7, "completed"),
        v1(12, T0 + 9_007, 7, "delivered", step=1, provider="ses"),
        v1(13, T0 + 9_008, 7, "opened", step=1, provider="ses"),
        v1(14, T0 + 10, 8, "received"), v1(15, T0 + 11, 8, "routed", channel="sms"),
        v1(16, T0 + 12, 8, "sending", channel="sms", attempt=1, provider="tw"),
        v1(17, T0 + 1_012, 8, "accepted", channel="sms", attempt=1, provider="tw"),
        v1(18, T0 + 1_013, 8, "completed", channel="sms"),
        v1(19, T0 + 5_000, 8, "acknowledged", channel="sms"),
    ]
    frame = analysis._typed(analysis._frame_json(["".join(json.dumps(x) + "\n" for x in lines).encode()]))
    got = analysis.steps(frame)
    assert got[["id", "step", "channel", "started", "sent", "accepted", "delivered", "opened", "outcome"]].astype(
        "object").values.tolist() == [
        ["7", 0, "push", True, True, False, False, False, "failed"],
        ["7", 1, "email", True, True, True, True, True, "succeeded"],
        ["8", 0, "sms", True, True, True, False, True, "completed"],  # read, as the application reported
    ]
    assert got["providers"].tolist() == ["fcm", "ses", "tw"]
    assert got["accepted_ms"].tolist()[1:] == [pytest.approx(2.007), pytest.approx(1.002)]
    assert got["delivered_ms"].tolist()[1] == pytest.approx(9.007)
    assert got["error_class"].astype("object").tolist()[0] == "recipient_invalid"
    assert analysis.notifications(frame).set_index("id")["steps"].to_dict() == {"7": 2, "8": 1}


def test_parquet_round_trip(tmp_path: Path, events: pd.DataFrame, notes: pd.DataFrame) -> None:
    for frame, name in ((events, "events.parquet"), (notes, "notifications.parquet"),
                        (analysis.steps(events), "steps.parquet")):
        path = analysis.to_parquet(frame, tmp_path / name)
        back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, frame, check_categorical=False)
        assert back.dtypes.astype(str).to_dict() == frame.dtypes.astype(str).to_dict()


# -- hand-written segments ------------------------------------------------------------------------

T0 = 1_795_000_000_000_000  # µs
BIG = 2**62 + 12345  # past 2^53: a float would lose the last digits


def v0(seq: int, ts: int, id: int, event: str, **kw: object) -> dict:
    return {"ts_us": ts, "seq": seq, "id": id, "event": event, "type": "otp", "tenant": "default",
            "priority": "high", "attempt": kw.pop("attempt", 0), **kw}


def v1(seq: int, ts: int, id: int, event: str, **kw: object) -> dict:
    return {"v": 1, **v0(seq, ts, id, event, **kw), "id": str(id), "recipient": "u1"}


def write_segment(log: Path, lines: list[dict], tail: str = "") -> Path:
    log.mkdir(parents=True, exist_ok=True)
    path = log / f"events-{lines[0]['seq']:020d}.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + tail, encoding="utf-8")
    return path


@pytest.fixture
def mixed_log(tmp_path: Path) -> Path:
    """An old segment (v0), then one written after the upgrade (v1), for one notification each."""
    log = tmp_path / "data" / "log"
    write_segment(log, [
        v0(1, T0, BIG, "received"), v0(2, T0 + 10, BIG, "sending", attempt=1, provider="p"),
        v0(3, T0 + 5_000, BIG, "attempt_failed", attempt=1, provider="p", http_status=429, latency_us=900,
           detail="HTTP 429"),
        v0(4, T0 + 6_000, BIG, "sending", attempt=2, provider="p"),
        v0(5, T0 + 8_000, BIG, "attempt_failed", attempt=2, provider="p", detail="timed out after 5000 ms"),
        v0(6, T0 + 9_000, BIG, "dead_lettered", attempt=2, provider="p", detail="every provider failed"),
    ])
    write_segment(log, [
        v1(7, T0 + 60_000_000, BIG + 1, "received"),
        v1(8, T0 + 60_000_100, BIG + 1, "sending", attempt=1, provider="p", channel="sms"),
        v1(9, T0 + 60_002_000, BIG + 1, "accepted", attempt=1, provider="p", channel="sms", latency_us=1900,
           http_status=202, cost=0.0079, detail="m-1"),
        v1(10, T0 + 60_002_000, BIG + 1, "completed", attempt=1, provider="p", channel="sms"),
        v1(11, T0 + 60_050_000, BIG + 1, "receipt", attempt=1, provider="p", detail="delivered"),
    ], tail='{"v":1,"ts_us":17950000600')  # a line the engine is still writing
    return tmp_path / "data"


@pytest.mark.parametrize("engine", ["pyarrow", "json", "pandas"])
def test_v0_and_v1_segments_are_read_alike(mixed_log: Path, engine: str) -> None:
    events = analysis.load_events(mixed_log, engine=engine)
    assert list(events["seq"]) == list(range(1, 12))
    assert list(events["v"]) == [0] * 6 + [1] * 5
    assert set(events["id"]) == {str(BIG), str(BIG + 1)}  # exact past 2^53, as strings
    assert events["id"].dtype == "string"
    failed = events[events["event"] == "attempt_failed"]
    assert list(failed["error_class"].astype(str)) == ["rate_limited", "timeout"]  # inferred for v0
    assert list(failed["http_status"].astype("object").fillna(-1)) == [429, -1]
    notes = analysis.notifications(events).set_index("id")
    old, new = notes.loc[str(BIG)], notes.loc[str(BIG + 1)]
    assert (old["state"], old["error_class"], old["attempts"], old["retries"]) == (
        "dead_lettered", "no_provider", 2, 0)
    assert pd.isna(old["accepted_ms"]) and pd.isna(old["recipient"])
    assert (new["state"], new["recipient"], new["channel"], new["cost"]) == ("completed", "u1", "sms", 0.0079)
    assert new["accepted_ms"] == pytest.approx(2.0) and new["delivered_ms"] == pytest.approx(50.0)
    assert new["receipt"] == "delivered"


@pytest.mark.parametrize("engine", ["pyarrow", "json", "pandas"])
def test_provider_code_segments_and_alert_are_typed(tmp_path: Path, engine: str) -> None:
    log = tmp_path / "data" / "log"
    write_segment(log, [
        v1(1, T0, 5, "attempt_failed", attempt=1, provider="tw", channel="sms", http_status=400,
           error_class="recipient_invalid", provider_code="21211", detail="HTTP 400: twilio 21211"),
        v1(2, T0 + 1, 6, "accepted", attempt=1, provider="tw", channel="sms", cost=0.0079, segments=3),
        {**v1(3, T0 + 2, 0, "alert_firing", alert="sms_failures", detail="failure rate 0.3 > 0.05"),
         "type": "", "tenant": ""},
        v1(4, T0 + 3, 6, "completed", attempt=1, provider="tw", channel="sms"),
    ])
    events = analysis.load_events(tmp_path / "data", engine=engine)
    assert events["provider_code"].dtype == "category" and events["alert"].dtype == "category"
    assert events["segments"].dtype == "Int64"
    assert list(events["provider_code"].astype("object").fillna("-")) == ["21211", "-", "-", "-"]
    assert list(events["segments"].astype("object").fillna(-1)) == [-1, 3, -1, -1]
    assert list(events["alert"].astype("object").fillna("-")) == ["-", "-", "sms_failures", "-"]
    notes = analysis.notifications(events).set_index("id")
    assert "0" not in notes.index  # the alert is about the engine, not a notification
    assert notes.loc["6", "segments"] == 3 and pd.isna(notes.loc["5", "segments"])


def test_an_empty_log(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    events = analysis.load_events(tmp_path)
    assert len(events) == 0 and list(events.columns) == list(analysis.COLUMNS)
    assert len(analysis.notifications(events)) == 0


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    write_segment(tmp_path, [{**v1(1, T0, 5, "received"), "v": 2}])
    with pytest.raises(analysis.LogVersionError, match="v=2"):
        analysis.load_events(tmp_path)


def test_time_window_skips_segments_outside_it(tmp_path: Path) -> None:
    hour = 3_600_000_000
    # A segment ends where the next begins: the first ends an hour before the window, the last
    # begins an hour after it, so neither is parsed (their garbage would fail the read).
    write_segment(tmp_path, [v1(1, T0, 1, "received")], tail="not json: this segment must not be parsed\n")
    write_segment(tmp_path, [v1(2, T0 + hour, 2, "received"), v1(3, T0 + 2 * hour - 1, 2, "queued")])
    write_segment(tmp_path, [v1(4, T0 + 2 * hour, 3, "received"), v1(5, T0 + 2 * hour + 1, 3, "queued")])
    write_segment(tmp_path, [v1(6, T0 + 4 * hour, 4, "received")], tail="not json either\n")
    since = pd.Timestamp(T0 + 2 * hour, unit="us", tz="UTC")
    events = analysis.load_events(tmp_path, since=since, until=since + pd.Timedelta(hours=1))
    assert list(events["seq"]) == [4, 5]
    assert analysis.load_events(tmp_path, since=(T0 + 2 * hour + 1) / 1e6, until=since + pd.Timedelta(hours=1))[
        "seq"].tolist() == [5]
    with pytest.raises(json.JSONDecodeError):
        analysis.load_events(tmp_path)


def test_open_segments_survive_retention(mixed_log: Path) -> None:
    with analysis.open_segments(mixed_log) as segments:
        for s in segments:
            s.path.unlink()  # retention deletes them after they were opened
        assert [len(s.file.read().splitlines()) for s in segments] == [6, 6]


def test_parse_time_forms() -> None:
    assert analysis.parse_time("2026-11-29T08:00:00Z") == pd.Timestamp("2026-11-29 08:00", tz="UTC")
    assert analysis.parse_time("2026-11-29 08:00") == pd.Timestamp("2026-11-29 08:00", tz="UTC")
    assert analysis.parse_time("1795000000") == pd.Timestamp(1_795_000_000, unit="s", tz="UTC")
    now = pd.Timestamp("2026-11-29 08:00", tz="UTC").to_pydatetime()
    assert analysis.parse_time("90m", now=now) == pd.Timestamp("2026-11-29 06:30", tz="UTC")
    with pytest.raises(ValueError, match="not a time"):
        analysis.parse_time("yesterday")


# -- herald log -----------------------------------------------------------------------------------


def herald_log(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herald", "log", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False)


def test_log_tail_across_segments(mixed_log: Path) -> None:
    result = herald_log("tail", "--data-dir", str(mixed_log), "-n", "7", cwd=mixed_log)
    assert result.returncode == 0, result.stderr
    assert [json.loads(x)["seq"] for x in result.stdout.splitlines()] == list(range(5, 12))


def test_log_tail_follow(mixed_log: Path) -> None:
    log = mixed_log / "log"
    with subprocess.Popen([sys.executable, "-m", "herald", "log", "tail", "-n", "1", "--follow", "--data-dir",
                           str(mixed_log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            assert json.loads(proc.stdout.readline())["seq"] == 11
            newest = sorted(log.iterdir())[-1]
            with newest.open("a", encoding="utf-8") as f:  # finish the line being written, then one more
                f.write('0000,"seq":12,"id":"9","event":"received","type":"otp","tenant":"t","priority":"bulk",'
                        '"attempt":0}\n')
            assert json.loads(proc.stdout.readline())["seq"] == 12
            write_segment(log, [v1(13, T0 + 70_000_000, 9, "queued")])  # the next segment
            assert json.loads(proc.stdout.readline())["seq"] == 13
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
            assert "Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_log_export_jsonl_and_parquet(mixed_log: Path, tmp_path: Path) -> None:
    since = str((T0 + 5_000) / 1e6)
    until = pd.Timestamp(T0 + 60_002_000, unit="us", tz="UTC").isoformat()
    out = tmp_path / "window.jsonl"
    result = herald_log("export", "--data-dir", str(mixed_log), "--since", since, "--until", until,
                        "--format", "jsonl", "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(x)["seq"] for x in out.read_text().splitlines()] == [3, 4, 5, 6, 7, 8]
    assert '"id": %d' % BIG in out.read_text()  # the lines as written, v0 and all
    out = tmp_path / "window.parquet"
    result = herald_log("export", "--data-dir", str(mixed_log), "--since", since, "--format", "parquet",
                        "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    back = pd.read_parquet(out)
    assert back["seq"].tolist() == list(range(3, 12)) and back["id"].iloc[0] == str(BIG)


@pytest.mark.parametrize("args", [["--since", "last tuesday"], ["--since", "1h", "--until", "soonish"],
                                  ["--since", "2026-11-29", "--until", "2026-11-28"]])
def test_log_export_bad_input_is_one_line_and_exit_2(mixed_log: Path, tmp_path: Path, args: list[str]) -> None:
    result = herald_log("export", "--data-dir", str(mixed_log), *args, "-o", str(tmp_path / "x.parquet"),
                        cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("herald log:")
    assert not (tmp_path / "x.parquet").exists()


def test_log_export_help_says_segments_are_opened_first(tmp_path: Path) -> None:
    result = herald_log("export", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "opened before any is read" in " ".join(result.stdout.split())


def test_log_without_a_log_is_one_line(tmp_path: Path) -> None:
    result = herald_log("tail", "--data-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2 and "no delivery log" in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []
