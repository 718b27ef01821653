"""The one SceneLogic of a Slicer session, shared by the panel and the Python console: one reconstruction at a
time, one warm background worker, which ends when Slicer quits or the module is reloaded."""

from __future__ import annotations

import shutil
import sys

import slicer

from DiffuX2CTLib.app.scene import SceneLogic

_SCENE_LOGIC: list[SceneLogic] = []


def sharedSceneLogic() -> SceneLogic:
    """The session's SceneLogic, made on first use with Slicer's Python (``PythonSlicer``) for the worker."""
    if not _SCENE_LOGIC:
        python = shutil.which("PythonSlicer") or sys.executable
        _SCENE_LOGIC.append(SceneLogic(slicer.mrmlScene, slicer.app.applicationLogic(), python_executable=python))
        if hasattr(slicer.app, "connect"):
            slicer.app.connect("aboutToQuit()", _SCENE_LOGIC[0].shutdown)
    return _SCENE_LOGIC[0]


def endSharedSceneLogic() -> None:
    """Cancel its job and end its worker (before a reload: the worker runs the old code)."""
    while _SCENE_LOGIC:
        _SCENE_LOGIC.pop().shutdown()
