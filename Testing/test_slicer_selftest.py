"""The module's self-test as CTest runs it: ``slicer_add_python_unittest`` calls ``slicer.testing.runUnitTest``, which
loads the module by name with ``unittest.TestLoader().loadTestsFromName`` and runs every ``test_*`` method with
``setUp`` (``runTest`` only runs when there are none). Where the background process's Python lacks torch, every
test must be reported as skipped, with the reason, not as an error."""

from __future__ import annotations

import io
import unittest

from slicer_scene import CoreApp, forget_module, install_module_stand_ins


def _hide_torch_from_the_worker(monkeypatch, tmp_path) -> None:
    """The worker's Python (a child process) gets a ``sitecustomize`` that makes ``torch`` unimportable, so the
    probe reports it missing, as on a Slicer without the PyTorch extension's install."""
    folder = tmp_path / "without_torch"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(folder))


def test_ctest_reports_the_self_test_skipped_when_the_worker_lacks_torch(monkeypatch, tmp_path):
    _hide_torch_from_the_worker(monkeypatch, tmp_path)
    install_module_stand_ins(monkeypatch, CoreApp())
    try:
        suite = unittest.TestLoader().loadTestsFromName("DiffuX2CT")  # what slicer.testing.runUnitTest does
        output = io.StringIO()
        result = unittest.TextTestRunner(stream=output, verbosity=2).run(suite)
    finally:
        import DiffuX2CTWidgets.shared

        DiffuX2CTWidgets.shared.endSharedSceneLogic()
        forget_module()
    assert result.wasSuccessful(), output.getvalue()
    assert result.testsRun >= 2 and len(result.skipped) == result.testsRun, output.getvalue()
    assert all("torch" in reason and "install" in reason for _, reason in result.skipped)
