"""The usage watch over simulated backends that report more than their lease holds."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from model_boss.engine import EngineModel, RequestRejected
from model_boss.scheduling import ModelProfile, SchedulerConfig
from tests.engine.test_engine import coordinator, holder, until

_MIB = 1024 * 1024


def over(name: str, lease_mb: int, uses_mb: int, **simulated: Any) -> EngineModel:
    """A model leased ``lease_mb`` whose backend reports ``uses_mb`` on GPU 0."""
    table = {"load_s": 0.02, "tokens_per_s": 1000, "vram_mb": uses_mb, **simulated}
    return EngineModel(ModelProfile(name, lease_mb, load_s=0.02), "simulated", {"simulated": table})


CONFIG = SchedulerConfig(batch_window_s=0.0, overuse_grace_s=0.3)


async def test_a_slot_over_its_lease_with_room_left_grows_it_and_keeps_running() -> None:
    async with coordinator([over("a", 4000, 6000)], config=CONFIG, usage_interval_s=0.05) as (
        eng,
        url,
    ):
        await eng.load("a", wait_s=5.0)

        def grown() -> bool:
            (slot,) = eng.slots_snapshot()
            return bool(slot["leased_bytes"] == 6000 * _MIB)

        assert await until(grown, 5.0)
        (slot,) = eng.slots_snapshot()
        assert slot["state"] == "ready"
        assert slot["used_bytes"] == 6000 * _MIB
        assert slot["memory"] == {
            "t:gpu0": {"leased_bytes": 6000 * _MIB, "used_bytes": 6000 * _MIB}
        }
        assert len(slot["lease_tokens"]) == 2  # its first lease, and the one it grew by
        async with holder(url) as other:
            pool = (await other.status()).pools[0]
            assert sorted(lease.mb for lease in pool.leases) == [2000, 4000]
        await asyncio.sleep(0.5)  # longer than the grace period: nothing stops it
        assert eng.model_state("a") == "ready"
        assert eng.stopped_for_errors == type(eng.stopped_for_errors)()
    # Stopping the coordinator gave back both leases.
    async with holder(url) as other:
        assert (await other.status()).pools[0].used_mb == 0


async def test_a_refused_grow_stops_the_slot_and_fails_its_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="model_boss.engine")
    slow = over("a", 4000, 6000, tokens_per_s=1, output_tokens=50)
    async with coordinator([slow], config=CONFIG, usage_interval_s=0.05) as (eng, url):
        async with holder(url) as other:
            kept = await other.acquire(vram_mb=5000, timeout=1)
            ticket = eng.submit("a")
            await asyncio.wait_for(ticket.future, 5.0)  # dispatched: it runs for 50 s
            assert await until(lambda: ticket.error is not None, 5.0)
            assert ticket.aborted.is_set()
            assert ticket.error is not None
            assert ticket.error.status == 503
            reason = ticket.error.reason
            assert "model 'a' used 6000 MB on t:gpu0, its lease holds 4000 MB" in reason
            assert "the ledger refused 2000 MB more" in reason
            assert "still over 0.3 s later: stopped" in reason
            eng.finish(ticket, ok=False)
            assert await until(lambda: eng.model_state("a") == "unloaded", 5.0)
            (stopped,) = eng.stopped_for_errors
            assert stopped["model"] == "a"
            assert stopped["reason"] == reason
            assert any(reason in r.getMessage() for r in caplog.records)
            # The other program kept its lease, and the model's next load leases what it used.
            pool = (await other.status()).pools[0]
            assert [lease.mb for lease in pool.leases] == [5000]
            assert kept.valid
            assert eng.scheduler.models["a"].vram_mb == 6000


async def test_a_model_refused_for_overuse_answers_507_with_the_numbers() -> None:
    # One strike is enough here (the scheduler's tests count two in a row).
    config = SchedulerConfig(batch_window_s=0.0, overuse_grace_s=0.0, overuse_strikes=1)
    async with coordinator([over("a", 3000, 5000)], config=config, usage_interval_s=0.05) as (
        eng,
        url,
    ):
        async with holder(url) as other:
            await other.acquire(vram_mb=6000, timeout=1)  # 1000 left: no room to grow
            ticket = eng.submit("a")
            await asyncio.wait_for(ticket.future, 5.0)
            eng.finish(ticket)
            assert await until(lambda: eng.model_state("a") == "unloaded", 5.0)
            with pytest.raises(RequestRejected) as refused:
                await asyncio.wait_for(eng.submit("a").future, 5.0)
            assert refused.value.status == 507
            assert "stopped once for using more memory" in refused.value.reason
            assert "used 5000 MB on t:gpu0, its lease holds 3000 MB" in refused.value.reason
            await eng.load("a")  # an admin load clears the refusal
            assert await until(lambda: not eng.scheduler.models["a"].overuse_refused, 5.0)
