"""The one SceneLogic of a Slicer session, shared by the panel and the Python console: one reconstruction at a
time, one warm background worker, which ends when Slicer quits or the module is reloaded."""

from __future__ import annotations

import shutil
import sys

import slicer

from DiffuX2CTLib.app.scene import SceneLogic

_SCENE_LOGIC: list[SceneLogic] = []
_QUIT_SLOTS: list = []  # the slot connected to aboutToQuit, to disconnect exactly that one


def sharedSceneLogic() -> SceneLogic:
    """The session's SceneLogic, made on first use with Slicer's Python (``PythonSlicer``) for the worker; it
    ends its worker when Slicer quits."""
    if not _SCENE_LOGIC:
        python = shutil.which("PythonSlicer") or sys.executable
        _SCENE_LOGIC.append(SceneLogic(slicer.mrmlScene, slicer.app.applicationLogic(), python_executable=python))
        if hasattr(slicer.app, "connect"):
            _QUIT_SLOTS.append(_SCENE_LOGIC[0].shutdown)
            slicer.app.connect("aboutToQuit()", _QUIT_SLOTS[-1])
    return _SCENE_LOGIC[0]


def endSharedSceneLogic() -> None:
    """Cancel its job, end its worker and its aboutToQuit connection (before a reload: the worker runs the old
    code, and the reloaded module connects its own logic)."""
    while _QUIT_SLOTS:
        slicer.app.disconnect("aboutToQuit()", _QUIT_SLOTS.pop())
    while _SCENE_LOGIC:
        _SCENE_LOGIC.pop().shutdown()
