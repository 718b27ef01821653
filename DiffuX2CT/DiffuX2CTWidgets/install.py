"""Installing what the background process needs into Slicer's Python, without ever touching torch's build.

torch is installed the way the PyTorch extension does it (light-the-torch picks the CUDA build that fits the
driver), but in a child process, so Slicer's own process never imports torch. MONAI and the other packages are
installed with ``--no-deps`` (MONAI's only other dependency, numpy, ships with Slicer), so pip can never replace a
working CUDA build of torch with a PyPI one; Slicer's own SimpleITK and numpy are never reinstalled.
"""

from __future__ import annotations

from collections.abc import Callable

from DiffuX2CTLib.core.errors import InputError

# pip requirement for each import name the worker may lack; torch is not here (see install_torch), nor SimpleITK
# and numpy beyond what a broken Slicer lacks.
PIP_REQUIREMENTS = {"monai": "monai>=1.4", "safetensors": "safetensors>=0.4", "numpy": "numpy"}
SLICER_BUNDLED = ("SimpleITK",)  # ships with Slicer: missing means a damaged installation, not something to pip
LIGHT_THE_TORCH = "light-the-torch>=0.5"


def pip_arguments(missing: list[str]) -> list[str]:
    """pip ``install`` arguments for the missing packages other than torch, each without its dependencies
    (an empty list when nothing is to be installed by pip)."""
    requirements = [PIP_REQUIREMENTS[name] for name in missing if name in PIP_REQUIREMENTS]
    return ["--no-deps", *requirements] if requirements else []


class InstallLogic:
    """Installs missing packages after the user agreed; one installation at a time (Slicer processes GUI events
    while pip runs, so a second click could otherwise start a second installation).

    ``pip_install(arguments)`` and ``run_module(name, arguments)`` default to Slicer's ``slicer.util.pip_install``
    and ``executePythonModule`` (both run a child process); ``confirm(text, details)`` asks the user."""

    def __init__(
        self,
        pip_install: Callable[[list[str]], object] | None = None,
        run_module: Callable[[str, list[str]], object] | None = None,
        confirm: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._pip_install = pip_install
        self._run_module = run_module
        self._confirm = confirm
        self.installing = False

    # Slicer's functions, looked up when first needed so the class loads without the application.
    def pip_install(self, arguments: list[str]) -> None:
        import slicer

        (self._pip_install or slicer.util.pip_install)(arguments)

    def run_module(self, module: str, arguments: list[str]) -> None:
        import slicer

        run = self._run_module or getattr(slicer.util, "executePythonModule", None) or slicer.util._executePythonModule
        run(module, arguments)

    def confirm(self, text: str, details: str) -> bool:
        if self._confirm is not None:
            return self._confirm(text, details)
        import slicer

        return slicer.util.confirmOkCancelDisplay(text, "DiffuX2CT", detailedText=details)

    def install(self, missing: list[str], question: str) -> bool:
        """Install ``missing`` (import names reported by the probe) after the user agreed to ``question``.
        False when the user declined or an installation is already running; a failure is an InputError."""
        if self.installing or not missing:
            return False
        bundled = [name for name in missing if name in SLICER_BUNDLED]
        if bundled:
            raise InputError(f"Slicer's own {', '.join(bundled)} cannot be imported; reinstall Slicer")
        if not self.confirm(question, "Missing: " + ", ".join(missing)):
            return False
        self.installing = True
        try:
            if "torch" in missing:
                self.install_torch()
            arguments = pip_arguments(missing)
            if arguments:
                self.pip_install(arguments)
        except Exception as error:  # pip and light-the-torch fail in many ways; say which step
            raise InputError(f"installation failed ({error}); see the Python console for pip's output") from None
        finally:
            self.installing = False
        return True

    def install_torch(self) -> None:
        """torch with the CUDA build that suits this computer, as the PyTorch extension installs it, in a child
        process (the extension's ``installTorch`` imports torch into Slicer afterwards, which we avoid)."""
        self.pip_install([LIGHT_THE_TORCH])
        self.run_module("light_the_torch", ["install", "torch"])
