"""docs/architecture.md maps each room of the code to its tests; this keeps the table true."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("orchestrator", "trainers", "serve_apps")
ROW = re.compile(r"^\| `([^`]+)` \| (.+) \|$", re.M)


def table() -> dict[str, list[str]]:
    page = (ROOT / "docs" / "architecture.md").read_text()
    return {room: re.findall(r"`([^`]+)`", tests) for room, tests in ROW.findall(page)}


def test_every_room_and_test_named_exists():
    rows = table()
    assert rows, "no table of rooms and tests in docs/architecture.md"
    missing = [room for room in rows if not (ROOT / room).exists()]
    missing += [t for tests in rows.values() for t in tests if not (ROOT / "tests" / t).is_file()]
    assert not missing, missing


def test_every_module_has_a_row():
    rooms = table()
    homeless = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if not any(str(path.relative_to(ROOT)).startswith(room) for room in rooms)
    ]
    assert not homeless, homeless


def test_every_test_file_is_named():
    named = {t for tests in table().values() for t in tests}
    files = {
        str(path.relative_to(ROOT / "tests"))
        for folder in ("unit", "integration")
        for path in (ROOT / "tests" / folder).glob("test_*.py")
    }
    assert files <= named, sorted(files - named)
