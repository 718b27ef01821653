"""DiffuX2CT engine: CT reconstruction from biplanar radiographs with a 3D conditional diffusion model.

The engine (everything here but ``scene.py``) depends on torch, MONAI, SimpleITK and numpy only, never on
Slicer, Qt or VTK, so it runs the same from the command line, a script, or Slicer's background worker.
"""

__version__ = "0.1.0"
