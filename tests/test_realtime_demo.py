"""``oneid demo``'s realtime step on a real Kafka broker and webhook receiver: a slice of the
generated app events fires triggers, every ``sent`` trigger (by its idempotency key) reaches
the receiver once and nothing else does, the counts reconcile, and the notes hold no raw
identifier.

A small demo data folder of its own and no batch stages: the events stay on provisional keys
(``oneid demo`` itself resolves them through the demo's identity run)."""

from __future__ import annotations

import json

import pytest

from oneid.realtime.demo import MEMBERS, demo_realtime, replay_events
from oneid.tables import table_path
from tests.support import delta_records, realtime_notes, small_config

pytestmark = pytest.mark.slow


def test_the_demo_replay_fires_triggers_that_reach_the_receiver(spark, tmp_path):
    from oneid_demo import generate_demo

    generate_demo(tmp_path / "demo_data", people=300, seed=7)
    cfg = small_config(tmp_path / "warehouse", f"demo.data_dir={tmp_path / 'demo_data'}")
    replay = [json.loads(value) for _, value in replay_events(cfg, "r")]
    assert len({e["ids"]["member_id"] for e in replay}) == MEMBERS
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("ONEID_WEBHOOK_SECRET", raising=False)  # the demo secret signs
        replayed = demo_realtime(spark, cfg)
    text = "\n".join(replayed.notes)

    notes = realtime_notes(text)
    assert notes.read == len(replay) == notes.processed + notes.quarantined
    assert notes.triggers["sent"] > 0 and notes.pushes == notes.triggers["sent"]
    assert notes.clean

    rows = delta_records(table_path(cfg, "realtime.triggers"))
    assert replayed.pushed == {r["trigger_id"] for r in rows if r["status"] == "sent"}
    assert len(replayed.pushed) == notes.pushes
    batches = delta_records(table_path(cfg, "realtime.batches"))
    assert sum(b["read"] for b in batches) == notes.read
    assert sum(b["processed"] + b["quarantined"] for b in batches) == notes.read
    # nothing raw in the notes: no member id, device id or phone of the replay
    for event in replay:
        for value in event["ids"].values():
            assert value not in text
