"""Data: imaging geometry, the differentiable DRR projector, image I/O and radiograph intensities."""
