"""The short soak: a minute of random faults, a revoked key, the sink down, a PostgreSQL restart (on a server of
its own, where PostgreSQL's server programs are installed), a reload and a `kill -9` with a restart, against
the monitor in a process of its own. Nothing queued is lost or left behind, and no account goes without good
data for longer than its faults explain."""

from __future__ import annotations

import pytest

from bench.soak import soak


@pytest.mark.xdist_group("soak")
@pytest.mark.timeout(300)
async def test_a_minute_of_faults_loses_no_message() -> None:
    report = await soak(minutes=1, accounts=40)
    print(report)
    assert report.messages > 0 and report.kills == 1 and report.crashes == 0, report
    assert report.lost == 0 and report.left_queued == 0, report
    assert report.duplicates <= report.kills, report
    assert report.tracebacks == 0, report
    assert report.unexplained_gaps == 0, report
    if report.database == "postgresql":
        assert report.database_outage_survived, report
        assert report.outage_messages and report.outage_late == 0, report  # delivered from memory
