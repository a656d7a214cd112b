"""The power-cut campaign in CI: at least 30 cuts, ``file:`` and Azurite targets (see tests/_powercut.py).

The state dir, and for ``file:`` the target folder, live on powercutfs
(``bench/fusefs``), which keeps only what was fsynced. The power goes at
seeded points (the kill campaign's crash points, the N-th write, and right
after a run that succeeded); the file system comes back with its durable
image, torn at a seeded byte, and the same command resumes. Every campaign
ends canonical-equal to a clean load of its final source with no stray blob,
the handle rules hold and ``clfsload verify --state`` passes, and a load that
reported success is whole after the cut that follows it, with no rerun.
Where /dev/fuse is missing the module is skipped with that one reason.
The soak script ``tests/soak/powercut_campaign.py`` runs the same for any count.
"""

import pytest

from bench.fusefs.mount import fuse_available  # bench/ from the checkout (pytest pythonpath)

_WHY_NOT = fuse_available()
if _WHY_NOT:
    pytest.skip(_WHY_NOT, allow_module_level=True)

from _powercut import AFTER_SUCCESS, Azure, run_powercut_campaigns  # noqa: E402
from azurite import azurite  # noqa: E402,F401

SEED = 20261207
FILE_CUTS = 20
AZURITE_CUTS = 12


@pytest.mark.slow  # once per CI run, in the compiled pass
def test_power_cut_campaign_loses_nothing(tmp_path, azurite):  # noqa: F811 - the fixture
    az = Azure(azurite.endpoint, azurite.connection_string, azurite.create_container, azurite.make_sas)
    report = run_powercut_campaigns(tmp_path, SEED, {"file": FILE_CUTS, "azurite": AZURITE_CUTS}, azure=az)
    print("\n" + report.line())
    assert report.failures == [], "\n\n".join(report.failures[:3])
    assert report.cuts("file") >= FILE_CUTS and report.cuts("azurite") >= AZURITE_CUTS
    for kind in ("file", "azurite"):
        for point in ("writes", "commit", AFTER_SUCCESS):
            assert report.tried[kind][point] >= 1, "no %s cut at %s" % (kind, point)
