"""The GPU check's results as one Markdown table per step, after a summary table with one row per step."""

from __future__ import annotations

STATUSES = ("ok", "failed", "timeout", "skipped")
SUMMARY_HEADER = "| step | status | seconds | limit s | note |"


def fmt(value) -> str:
    """A table cell: floats to 4 significant digits, None as '-', '|' and newlines escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        value = ", ".join(fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict]) -> list[str]:
    """Markdown lines of a table whose columns are the union of the rows' keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"# GPU check, {meta['date']}: {meta['device_name']}",
        "",
        f"Profile `{meta['profile']}` on `{meta['device']}`; Python {meta['python']}, torch {meta['torch']}, "
        f"CUDA {meta['cuda']}; commit {meta['commit']}; {meta['total_seconds']:.0f} s in all.",
        "",
        SUMMARY_HEADER,
        "|---|---|---|---|---|",
    ]
    for step in result["steps"]:
        lines.append(f"| {step['name']} | {step['status']} | {step['seconds']:.1f} | {step['limit_s']:.0f} | "
                     f"{fmt(step.get('note') or step.get('error') or '')} |")  # fmt: skip
    setup = meta.get("setup") or {}
    if setup:
        missing = [d["name"] for d in setup.get("runtime_dependencies", []) if d["state"] == "missing"]
        other = [f"{d['name']} {d['installed']}" for d in setup.get("runtime_dependencies", [])
                 if d["state"] == "other version"]  # fmt: skip
        lines += ["", f"Set-up: installed from wheels: {', '.join(setup.get('installed_from_wheels', [])) or 'none'}; "
                      f"runtime dependencies missing: {', '.join(missing) or 'none'}; "
                      f"other versions than pinned: {', '.join(other) or 'none'}."]  # fmt: skip
    for step in result["steps"]:
        lines += ["", f"## {step['name']}", ""]
        if step.get("description"):
            lines += [step["description"], ""]
        lines += table(step["rows"]) if step["rows"] else ["(no rows)"]
    return "\n".join(lines) + "\n"
