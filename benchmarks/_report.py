"""What the benchmark scripts share for their reports: a markdown table and the machine's CPU.

Loaded with ``runpy.run_path`` by ``tokenize.py`` and ``train_throughput.py`` (``-P`` keeps the benchmarks folder off
``sys.path``); not run alone.
"""
import os
from pathlib import Path


def md_table(header: list[str], rows: list[list]) -> list[str]:
    """Lines of a markdown table."""
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *(f"| {' | '.join(map(str, r))} |" for r in rows)]


def cpu_facts() -> dict:
    """The CPU's model name, the cores and the load average now."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}
