from __future__ import annotations

import pytest

from model_boss.scheduling import ModelPool, PoolSpec, Slot, SlotState


def state(slot: Slot) -> SlotState:
    return slot.state


def test_slot_walks_the_state_machine_and_accounts_memory() -> None:
    pool = ModelPool([PoolSpec("gpu0", 10000)])
    gpu = pool.pools["gpu0"]
    slot = pool.create("a", ("gpu0",), 6000, now=0.0)
    assert slot.state is SlotState.PENDING
    assert (gpu.promised_mb, gpu.used_mb, gpu.free_mb) == (6000, 0, 4000)
    assert pool.can_lease(slot)
    pool.lease_requested(slot)
    assert gpu.used_mb == 6000
    assert pool.loading(slot)
    assert state(slot) is SlotState.LOADING
    assert pool.ready(slot, now=1.0)
    assert state(slot) is SlotState.READY
    assert pool.drain(slot)
    assert state(slot) is SlotState.DRAINING
    # Draining memory is free for placement, but still used until the backend stops.
    assert (gpu.promised_mb, gpu.used_mb) == (0, 6000)
    assert pool.stopped(slot)
    assert state(slot) is SlotState.STOPPED
    assert (gpu.promised_mb, gpu.used_mb) == (0, 0)
    assert slot.slot_id not in pool.slots


def test_out_of_order_transitions_are_refused() -> None:
    pool = ModelPool([PoolSpec("gpu0", 10000)])
    slot = pool.create("a", ("gpu0",), 6000, now=0.0)
    assert not pool.ready(slot, now=0.0)  # not loading yet
    assert not pool.loading(slot)  # no lease asked for
    assert pool.failed(slot)
    assert not pool.drain(slot)
    assert not pool.stopped(slot)
    assert state(slot) is SlotState.FAILED


def test_a_pending_slot_waits_until_memory_is_physically_free() -> None:
    pool = ModelPool([PoolSpec("gpu0", 10000)])
    old = pool.create("a", ("gpu0",), 6000, now=0.0)
    pool.lease_requested(old)
    pool.loading(old)
    pool.drain(old)
    new = pool.create("b", ("gpu0",), 6000, now=1.0)
    assert not pool.can_lease(new)
    pool.stopped(old)
    assert pool.can_lease(new)


def test_model_pool_needs_a_pool() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ModelPool([])
