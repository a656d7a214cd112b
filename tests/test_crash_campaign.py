"""The kill -9 campaign in CI: at least 50 kill points on a small tree (see tests/_campaign.py).

The loader is killed (its whole process group, or its driver alone) at
seeded points in every phase: INIT, state commits, phase switches, the
middle of a multi-segment file and of a multi-segment directory, inodes,
half-written blobs, RECONCILE, the sweep and each step of FINALIZE. Between
runs the source changes inside directories still pending. Every campaign
ends canonical-equal to a clean load of its final source, with no stray
blob, and no killed run left a published root over an incomplete tree.
The soak script ``tests/soak/kill_campaign.py`` runs the same for any count.
"""

import pytest

from _campaign import POINTS, run_campaigns

SEED = 20261125
KILL_POINTS = 50


@pytest.mark.slow  # once per CI run, in the compiled pass
def test_kill_campaign_loses_nothing(tmp_path):
    report = run_campaigns(tmp_path, SEED, KILL_POINTS)
    print("\n" + report.line())
    assert report.failures == [], "\n\n".join(report.failures[:3])
    assert report.kills >= KILL_POINTS
    assert report.driver_only_kills >= 1
    assert report.mutations >= 1
    # Every point a clean load reaches was cut at least once ("sweep" only runs after a change).
    missed = sorted(set(POINTS) - {"sweep"} - set(report.by_point))
    assert missed == [], "no kill at %s" % missed
