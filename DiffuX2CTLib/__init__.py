"""DiffuX2CT engine: CT reconstruction from biplanar radiographs with a 3D conditional diffusion model.

Parts: ``data/`` (imaging geometry, the DRR projector, image I/O, radiograph intensities), ``model/`` (the
network), ``diffusion``, ``train``, ``reconstruct``, ``evaluate`` and ``cli``; ``app/`` is the side the Slicer module
talks to (scene logic, process runner, background worker). Everything but ``app/scene.py`` depends on torch,
MONAI, SimpleITK and numpy only, never on Slicer, Qt or VTK, so it runs the same from the command line, a script,
or Slicer's background worker.
"""

__version__ = "0.1.0"
