"""A real Valkey driven through its faults while holder processes take, renew and release
random leases (8 on one 10,000 MiB pool; on a 2-core machine they contend for the CPU,
which only makes renewals later: the checks must hold all the same)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_boss.leases._recovery import RECOVERY_S
from tests.faults.audit import Figures, Holders
from tests.faults.servers import Sentinel, TcpProxy, Valkey

pytestmark = pytest.mark.slow
TTL_S = 2.0


def _settled(server: Valkey) -> Valkey:
    """A new server grants nothing for RECOVERY_S (it may be a restart that lost data)."""
    time.sleep(RECOVERY_S + 0.2)
    return server


@pytest.fixture(scope="module")
def shared() -> Iterator[Valkey]:
    with Valkey() as server:
        yield _settled(server)


def _check(figures: Figures, *, served_after: float | None = None) -> None:
    assert figures.over_capacity == 0, figures.line()
    assert figures.token_violations == 0, figures.line()
    assert figures.hung == 0, figures.line()
    assert figures.grants > 0, figures.line()
    if served_after is not None:  # the same, long-running bosses are served again
        assert figures.grants_after(served_after) > 0, figures.line()


@pytest.mark.parametrize("aof", [False, True], ids=["no-persistence", "aof"])
def test_restart(tmp_path: Path, aof: bool) -> None:
    with Valkey(aof=aof) as server:
        _settled(server)
        run = Holders([server.url], tmp_path, seconds=16, ttl=TTL_S)
        time.sleep(3)
        server.restart(down_s=0.3)
        back = time.monotonic()
        hung = run.wait()
        figures = run.audit(f"restart ({'AOF' if aof else 'no persistence'})", hung_procs=hung)
    _check(figures, served_after=back + RECOVERY_S)


def test_valkey_stopped_longer_than_the_ttl(tmp_path: Path, shared: Valkey) -> None:
    url = shared.url + "?prefix=stopped:"
    run = Holders([url], tmp_path, seconds=10, ttl=TTL_S)
    time.sleep(3)
    shared.pause()
    time.sleep(TTL_S * 1.5)
    shared.resume()
    resumed = time.monotonic()
    hung = run.wait()
    _check(run.audit("SIGSTOP of Valkey for 1.5 x TTL", hung_procs=hung), served_after=resumed)


def test_partition_and_delay_through_a_proxy(tmp_path: Path, shared: Valkey) -> None:
    """Half the holders reach Valkey through a proxy that first drops everything (a
    partition longer than the TTL), then delays every packet; the others go direct."""
    proxy = TcpProxy(shared.port).start()
    try:
        direct = shared.url + "?prefix=partition:"
        cut = f"redis://127.0.0.1:{proxy.port}/0?prefix=partition:"
        run = Holders([direct, cut], tmp_path, seconds=12, ttl=TTL_S)
        time.sleep(2.5)
        proxy.drop()
        time.sleep(TTL_S * 1.5)
        proxy.heal()
        proxy.delay_s = 0.3
        time.sleep(2.5)
        proxy.delay_s = 0.0
        healed = time.monotonic()
        hung = run.wait()
    finally:
        proxy.stop()
    _check(
        run.audit("partition (drop 1.5 x TTL, then 0.3 s delays)", hung_procs=hung),
        served_after=healed,
    )


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_holders_killed_or_stopped(tmp_path: Path, shared: Valkey, signal_name: str) -> None:
    run = Holders([shared.url + f"?prefix=holders-{signal_name}:"], tmp_path, seconds=10, ttl=TTL_S)
    time.sleep(3)
    for i in (0, 1, 2):
        if signal_name == "SIGKILL":
            run.kill(i)
        else:
            run.stop(i)
    time.sleep(TTL_S * 1.5)
    if signal_name == "SIGSTOP":
        for i in (0, 1, 2):
            run.cont(i)
    after = time.monotonic()
    hung = run.wait()
    _check(run.audit(f"{signal_name} of 3 of 8 holders", hung_procs=hung), served_after=after)


def test_failover_to_a_replica_through_sentinel(tmp_path: Path) -> None:
    with Valkey() as master, Valkey(replica_of=master.port):
        sentinel = Sentinel(master.port).start()
        try:
            _settled(master)
            url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{sentinel.service}/0"
            run = Holders([url], tmp_path, seconds=20, ttl=TTL_S)
            time.sleep(3)
            master.kill()  # Sentinel promotes the replica (down-after 0.5 s)
            killed = time.monotonic()
            hung = run.wait()
            figures = run.audit("failover to a replica through Sentinel", hung_procs=hung)
        finally:
            sentinel.stop()
    _check(figures, served_after=killed + RECOVERY_S)
