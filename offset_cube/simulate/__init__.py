"""A simulated Sentinel-1 stack over a moving glacier, with known truth: the demo's data and the engine's test."""

from pathlib import Path

#: The bundled geometry template of the demo: a real IW SLC manifest + IW2 annotation (Pamir, track 27 asc).
DEMO_TEMPLATE = (
    Path(__file__).parent / "templates" / "S1A_IW_SLC__1SSV_20220814T125820_20220814T125829_044549_055128_F814.zip"
)
