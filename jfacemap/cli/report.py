"""A demo report: text sections, figures and numbers, written atomically to a folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from jfacemap.io.atomic import write_text_atomic


@dataclass
class Report:
    """Accumulates what each demo stage found; `write()` saves report.txt and summary.json."""

    out: Path
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    numbers: dict[str, dict] = field(default_factory=dict)

    def section(self, title: str, lines: list[str], numbers: dict | None = None, key: str | None = None) -> None:
        """Add a titled section; its numbers go into summary.json under `key` (default: the title)."""
        self.sections.append((title, lines))
        if numbers is not None:
            self.numbers[key or title] = numbers

    def figure(self, path: Path) -> None:
        self.figures.append(Path(path))

    def text(self) -> str:
        parts = ["jfacemap demo report", "=" * 20, ""]
        for title, lines in self.sections:
            parts += [title, "-" * len(title), *lines, ""]
        if self.figures:
            parts += ["Figures", "-------", *[f"  {p.name}" for p in self.figures], ""]
        return "\n".join(parts)

    def write(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out / "summary.json", json.dumps(self.numbers, indent=2) + "\n")
        path = self.out / "report.txt"
        write_text_atomic(path, self.text())
        return path
