"""Report stage: results tables -> the data-efficiency ablation (table + WER-vs-hours plot).

Design decisions:
- Trials are grouped by (preset, recipe, budget); the spread is the sample standard
  deviation over the group's trials (its seeds), shown only when n > 1.
- Failed trials (or ok rows without a WER) are listed, never averaged; they are the
  stage's quarantined rows, so read = used + quarantined holds.
- The plot is drawn on a bare ``Figure`` with the Agg canvas: no pyplot, so no global
  backend state, and it works on a headless worker.
- No Ray here: a report is small; it lives in ``stages/`` because it is a stage.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bigssl import storage
from bigssl.results import RECIPES, read_results
from bigssl.summary import StageSummary

TITLE = "WER vs labeled hours (BigSSL data-efficiency ablation)"
_MARKERS = "osD^vP*Xh<>"


@dataclass
class Group:
    """The ok trials of one (preset, recipe, budget); WERs are fractions."""

    preset: str | None
    recipe: str
    budget: str
    hours: list[float] = field(default_factory=list)
    wers: list[float] = field(default_factory=list)
    by_test_set: dict[str, list[float]] = field(default_factory=dict)

    @property
    def labeled_hours(self) -> float:
        return statistics.fmean(self.hours)

    @property
    def n(self) -> int:
        return len(self.wers)


def mean_spread(values: list[float]) -> tuple[float, float | None]:
    """(mean, sample standard deviation or None when fewer than two values)."""
    spread = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), spread


def report_main(results: list[str], out: str, echo: bool = True) -> dict[str, Any]:
    """Read results (files or folders), write OUT/report.md, OUT/wer_vs_hours.png, summary;
    ``echo`` prints the markdown."""
    paths = [results] if isinstance(results, str) else list(results)
    rows = read_results(paths).to_pylist()
    ok = [r for r in rows if _usable(r)]
    failed = [r for r in rows if not _usable(r)]
    groups = group_trials(ok)
    primary = _primary_name(ok)
    markdown = render_markdown(groups, failed, sources=paths, primary=primary)
    report_uri, plot_uri = storage.join(out, "report.md"), storage.join(out, "wer_vs_hours.png")
    storage.write_bytes(report_uri, markdown.encode())
    storage.write_bytes(plot_uri, render_plot(groups, primary=primary))
    if echo:
        print(markdown, flush=True)
    summary = StageSummary(
        "report",
        read=len(rows),
        used=len(ok),
        quarantined=len(failed),
        # Trials share their labeled data, so summing their hours would count it again.
        hours=0.0,
        extra={
            "report": report_uri,
            "plot": plot_uri,
            "groups": len(groups),
            "recipes": sorted({g.recipe for g in groups}, key=_recipe_order),
            "labeled_hours": sorted({round(g.labeled_hours, 6) for g in groups}),
            "failed_trials": [f"{r['sweep']}/{r['trial_id']}" for r in failed],
            "sources": paths,
        },
    )
    return summary.finish(out)


def _usable(row: dict[str, Any]) -> bool:
    wer = row["wer"]
    return row["status"] == "ok" and wer is not None and math.isfinite(wer)


def _recipe_order(recipe: str) -> tuple[int, str]:
    return (RECIPES.index(recipe) if recipe in RECIPES else len(RECIPES), recipe)


def group_trials(rows: Iterable[dict[str, Any]]) -> list[Group]:
    """Ok rows grouped by (preset, recipe, budget), sorted by preset, recipe, hours."""
    groups: dict[tuple[str | None, str, str], Group] = {}
    for row in rows:
        key = (row["preset"], row["recipe"], row["budget"])
        group = groups.setdefault(key, Group(*key))
        group.hours.append(row["labeled_hours"])
        group.wers.append(row["wer"])
        for score in row["scores"]:
            if score["wer"] is not None:
                group.by_test_set.setdefault(score["test_set"], []).append(score["wer"])
    return sorted(
        groups.values(),
        key=lambda g: (g.preset or "", _recipe_order(g.recipe), g.labeled_hours, g.budget),
    )


def _primary_name(rows: list[dict[str, Any]]) -> str:
    names = {r["scores"][0]["test_set"] for r in rows if r["scores"]}
    return names.pop() if len(names) == 1 else "primary test set"


def _series_label(group: Group, several_presets: bool) -> str:
    return f"{group.recipe} ({group.preset})" if several_presets else group.recipe


def format_hours(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 1000 else f"{hours:.4g}"


def _cell(values: list[float], n_expected: int | None = None) -> str:
    if not values:
        return "—"
    mean, spread = mean_spread(values)
    text = f"{100 * mean:.2f}" + ("" if spread is None else f" ± {100 * spread:.2f}")
    return text if n_expected in (None, len(values)) else f"{text} (n={len(values)})"


def _escape(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def _table(header: list[str], align: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]


def render_markdown(
    groups: list[Group], failed: list[dict[str, Any]], *, sources: list[str], primary: str
) -> str:
    """The report: per-group table, recipe x budget pivot, failed trials."""
    num_ok = sum(g.n for g in groups)
    lines = [
        f"# {TITLE}",
        "",
        f"Sources: {', '.join(f'`{s}`' for s in sources)}  ",
        f"Trials: {num_ok + len(failed)} ({num_ok} ok, {len(failed)} failed). "
        f"WER in %, mean ± sample standard deviation over seeds; n = trials.",
        "",
        "## WER by recipe and label budget",
        "",
    ]
    test_sets = sorted({name for g in groups for name in g.by_test_set})
    # The primary test set already has the WER column; the others get one each.
    per_set = [name for name in test_sets if name != primary] if len(test_sets) > 1 else []
    header = ["preset", "recipe", "budget", "labeled h", f"WER % ({primary})", "n"]
    header += [f"{name} WER %" for name in per_set]
    body = [
        [g.preset or "—", g.recipe, g.budget, format_hours(g.labeled_hours), _cell(g.wers), g.n]
        + [_cell(g.by_test_set.get(name, []), g.n) for name in per_set]
        for g in groups
    ]
    align = ["---"] * 3 + ["---:"] * (len(header) - 3)
    lines += _table(header, align, body) if groups else ["No successful trials."]
    if groups:
        lines += ["", f"## WER % ({primary}) by recipe × label budget", ""]
        lines += _pivot(groups)
    if failed:
        lines += ["", "## Failed trials (not averaged)", ""]
        lines += _table(
            ["sweep", "trial", "recipe", "budget", "seed", "error"],
            ["---"] * 4 + ["---:", "---"],
            [
                [r["sweep"], r["trial_id"], r["recipe"], r["budget"], r["seed"], _error(r)]
                for r in failed
            ],
        )
    return "\n".join(lines) + "\n"


def _pivot(groups: list[Group]) -> list[str]:
    """Rows: recipe (and preset when several); columns: budgets by increasing hours."""
    several = len({g.preset for g in groups}) > 1
    hours: dict[str, float] = {}
    for g in groups:
        hours[g.budget] = min(hours.get(g.budget, math.inf), g.labeled_hours)
    budgets = sorted(hours, key=lambda b: (hours[b], b))
    cells: dict[str, dict[str, str]] = {}
    for g in groups:
        text = _cell(g.wers) + f" (n={g.n})"
        cells.setdefault(_series_label(g, several), {})[g.budget] = text
    header = ["recipe"] + [f"{b} ({format_hours(hours[b])} h)" for b in budgets]
    body = [[label] + [row.get(b, "—") for b in budgets] for label, row in cells.items()]
    return _table(header, ["---"] + ["---:"] * len(budgets), body)


def _error(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return "status ok but no WER"
    text = " ".join(str(row["error"] or "no error recorded").split())
    return text if len(text) <= 200 else text[:197] + "..."


def render_plot(groups: list[Group], *, primary: str) -> bytes:
    """PNG bytes: WER % vs labeled hours (log x), one line per recipe, error bars over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig = Figure(figsize=(7.5, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    several = len({g.preset for g in groups}) > 1
    series: dict[str, list[Group]] = {}
    for g in groups:
        if g.labeled_hours > 0:  # a log axis cannot show 0 h
            series.setdefault(_series_label(g, several), []).append(g)
    for i, (label, members) in enumerate(series.items()):
        members.sort(key=lambda g: g.labeled_hours)
        stats = [mean_spread(g.wers) for g in members]
        spreads = [100 * (s or 0.0) for _, s in stats]
        ax.errorbar(
            [g.labeled_hours for g in members],
            [100 * m for m, _ in stats],
            yerr=spreads if any(g.n > 1 for g in members) else None,
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=7,
            linewidth=1.8,
            capsize=4,
            label=label,
        )
    hours = sorted({g.labeled_hours for members in series.values() for g in members})
    ax.set_xscale("log")
    if hours:
        # Ticks at the budgets themselves; a margin keeps one budget from a singular axis.
        ax.set_xlim(hours[0] / 2, hours[-1] * 2)
        ax.xaxis.set_major_locator(FixedLocator(hours))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{format_hours(x)} h"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(bottom=0)
        ax.legend(title="recipe", frameon=False)
    else:
        ax.text(0.5, 0.5, "no successful trials", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("labeled hours (log scale)")
    ax.set_ylabel(f"WER % ({primary})")
    ax.set_title(TITLE)
    ax.grid(True, which="major", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()
