"""The README's main command decides the bundled samples on embedded defaults, then stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_decides_every_sample_and_leaves_nothing_running(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--once", "--samples", str(ROOT / "samples"),
                             "--timeout", "120"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "4 RPA emails, 4 entered in Sampro" in out
    words = " ".join(out.split())  # the console wraps lines
    assert "MP-1002 was held for PRICE_MISMATCH; once the buyer corrected the PO price in Sampro" in words
    for invoice_id in ("MP-1001", "MP-1005", "MP-1007", "MP-1010"):
        assert invoice_id in out
    assert out.count("entered") >= 3 and "po_not_found" in out and "DUPLICATE_INVOICE" in out
    state = tmp_path / ".stack" / "state.json"
    assert state.read_text().strip() in ("{}", "")  # its own Kafka was stopped
