"""Imaging physics: geometry and acquisition, HU conversion, the DRR projector, radiograph intensities, image I/O
and DRR synthesis."""
