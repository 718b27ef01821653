"""The bundled sample radiograph pair (a held-out phantom) in Slicer's Sample Data module; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import slicer

from DiffuX2CTLib.model.card import BUNDLED_MODEL_DIR

SAMPLE_DIR = BUNDLED_MODEL_DIR.parent.parent / "SampleData"
VIEWS = ("ap", "lateral")
ICON = Path(__file__).resolve().parent.parent / "Resources" / "Icons" / "DiffuX2CT.png"


def loadSamplePair(source=None) -> list:
    """Load the sample radiographs as "DiffuX2CT ap" and "DiffuX2CT lateral" volume nodes."""
    return [slicer.util.loadVolume(str(SAMPLE_DIR / f"{view}.nrrd"), {"name": f"DiffuX2CT {view}"}) for view in VIEWS]


def registerSampleData() -> None:
    """Offer the sample pair in the Sample Data module (called once Slicer has started)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DiffuX2CT",
        sampleName="DiffuX2CT biplanar radiographs",
        uris=[(SAMPLE_DIR / f"{view}.nrrd").as_uri() for view in VIEWS],
        fileNames=[f"DiffuX2CT-{view}.nrrd" for view in VIEWS],
        nodeNames=[f"DiffuX2CT {view}" for view in VIEWS],
        thumbnailFileName=str(ICON),
        customDownloader=loadSamplePair,
    )
