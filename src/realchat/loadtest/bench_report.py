"""What every benchmark report records about the machine it ran on, and how its files (and the
tools' other saved state) are written: atomically, so a crashed run never leaves half a file as
the latest numbers."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path


def machine_facts(load_before: Sequence[float]) -> dict[str, object]:
    """Cores, platform and the load average before and now (the machine is shared: a number
    means little without the load beside it)."""
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
