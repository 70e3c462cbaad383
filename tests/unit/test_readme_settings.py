"""Every server setting is documented in the README's configuration table, and nothing there
names a setting that does not exist."""

from __future__ import annotations

import re

from server.config import Settings
from tests.conftest import REPO


def test_every_setting_is_in_the_readme_and_every_documented_one_exists() -> None:
    readme = (REPO / "README.md").read_text()
    settings = {f"PLANNER_{name.upper()}" for name in Settings.model_fields}
    table = readme[readme.index("## Server configuration") :]
    table = table[: table.index("\n\n", table.index("| variable |"))]
    documented = set(re.findall(r"`(PLANNER_[A-Z0-9_]+)`", table))
    assert settings - documented == set()
    assert documented - settings == set()
