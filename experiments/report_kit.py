"""What every chapter experiment writes: Markdown tables, the chapter's claims checked against the
numbers, and the outputs (``report.md``, ``metrics.json``) written atomically.

The chapter scripts run from ``experiments/`` (``python experiments/chNN_*.py``), so they import
this module as ``report_kit``.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import jax
import numpy as np

from gensynth import runs


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from string cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def mean_sd(values, fmt: str = ".3f") -> str:
    """``"m ± s"`` of a sequence of numbers (sample sd; ``± 0`` for one value)."""
    v = np.asarray(values, dtype=float)
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return f"{float(v.mean()):{fmt}} ± {sd:{fmt}}"


@dataclass
class Claims:
    """The chapter's directional claims, each with the numbers measured here and a verdict."""

    lines: list[str] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)

    def say(self, claim: str, holds: bool, evidence: str) -> None:
        self.lines.append(f"- **{'holds' if holds else 'does not hold'}** — {claim}: {evidence}")
        self.verdicts.append({"claim": claim, "holds": bool(holds), "evidence": evidence})

    def markdown(self) -> str:
        return "\n".join(self.lines) + "\n"


def write_report(
    out: pathlib.Path, title: str, claims: Claims, sections: list[str], metrics: dict, *, quick: bool, seconds: float
) -> str:
    """Writes ``out/report.md`` (title, claims, sections) and ``out/metrics.json``; returns the report.

    ``metrics`` gets the setting, the backend, the wall time and the claims' verdicts added.
    """
    out.mkdir(parents=True, exist_ok=True)
    setting = "quick, CPU" if quick else "full"
    text = (
        f"# {title} ({setting}; backend {jax.default_backend()}; {seconds:.0f} s wall)\n\n"
        "## Directions of the chapter, checked\n\n" + claims.markdown() + "\n" + "\n".join(sections)
    )
    runs.atomic_write_text(out / "report.md", text)
    payload = {"title": title, "quick": quick, "backend": jax.default_backend(), "seconds": round(seconds, 1),
               "claims": claims.verdicts, **metrics}  # fmt: skip
    runs.atomic_write_json(out / "metrics.json", payload)
    return text
