"""Installing or upgrading what the background process needs into Slicer's Python, without importing torch here.

torch comes through Slicer's PyTorch extension (``PyTorchUtils``): its own light-the-torch arguments, with
DiffuX2CT's version requirement and the computation backend the user chose (automatic: the build that suits the
NVIDIA driver), run in a child process. ``PyTorchUtilsLogic.installTorch`` is not called because it imports
torch into Slicer's process afterwards. Where the extension is missing, installing it is offered (Slicer must
restart before it can be used). MONAI and the other packages are installed or upgraded with ``--no-deps`` (so pip
can never replace a CUDA build of torch with a PyPI one); Slicer's own SimpleITK and numpy are never touched.
Slicer's process never imports torch or MONAI, so nothing but the background process needs a restart.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from DiffuX2CTLib.app.requirements import WORKER_REQUIREMENTS, specifier
from DiffuX2CTLib.core.errors import InputError

from .i18n import _

SLICER_BUNDLED = ("SimpleITK", "numpy")  # Slicer's own: never installed or upgraded here
LIGHT_THE_TORCH = "light-the-torch>=0.5"
PYTORCH_EXTENSION = "PyTorch"


class RestartRequired(Exception):
    """The PyTorch extension was installed (or is installed but not loaded): Slicer must restart first."""


def pip_arguments(missing: list[str], outdated: list[str] = ()) -> list[str]:
    """pip ``install`` arguments for the missing and outdated packages other than torch and Slicer's own, each
    without its dependencies, with ``--upgrade`` when one is installed already (empty: nothing for pip)."""
    names = [name for name in [*missing, *outdated] if name != "torch" and name not in SLICER_BUNDLED]
    if "numpy" in missing:  # only a damaged Slicer lacks it; a pip install is the way back
        names.append("numpy")
    requirements = [WORKER_REQUIREMENTS[name] for name in names]
    if not requirements:
        return []
    return ["--upgrade", "--no-deps", *requirements] if outdated else ["--no-deps", *requirements]


def torch_arguments(torch_logic, backend: str = "") -> list[str]:
    """light-the-torch arguments for torch with DiffuX2CT's version requirement, made by PyTorchUtils itself
    (``_getPipInstallArguments``; the same list where an older PyTorch extension lacks it); ``backend`` (e.g.
    ``cpu``, ``cu121``) forces a computation backend, empty lets light-the-torch pick."""
    make = getattr(type(torch_logic), "_getPipInstallArguments", None)
    if make is not None:
        return make(forceComputationBackend=backend or None, torchVersionRequirement=specifier("torch"))
    return ["install", WORKER_REQUIREMENTS["torch"]] + ([f"--pytorch-computation-backend={backend}"] if backend else [])


def describe(missing: list[str], outdated: list[dict]) -> str:
    """What is lacking, one line per kind, for the confirmation dialog's details."""
    lines = [_("Missing: {names}").format(names=", ".join(missing))] if missing else []
    for item in outdated:
        lines.append(
            _("Too old: {name} {installed} (DiffuX2CT needs {name}{required})").format(
                name=item["name"], installed=item["installed"], required=item["required"]
            )
        )
    return "\n".join(lines)


class InstallLogic:
    """Installs or upgrades packages after the user agreed; one installation at a time (Slicer processes GUI events
    while pip runs, so a second click could otherwise start a second installation).

    Slicer's functions are the defaults, looked up when first needed so the class loads without the application:
    ``pip_install(arguments)`` and ``run_module(name, arguments)`` (both run a child process),
    ``confirm(text, details)``, ``torch_logic()`` (a ``PyTorchUtilsLogic``, None without the PyTorch extension)
    and ``extensions_manager()``."""

    def __init__(
        self,
        pip_install: Callable[[list[str]], object] | None = None,
        run_module: Callable[[str, list[str]], object] | None = None,
        confirm: Callable[[str, str], bool] | None = None,
        torch_logic: Callable[[], object] | None = None,
        extensions_manager: Callable[[], object] | None = None,
    ) -> None:
        self._pip_install = pip_install
        self._run_module = run_module
        self._confirm = confirm
        self._torch_logic = torch_logic
        self._extensions_manager = extensions_manager
        self.installing = False

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

    def torch_logic(self):
        """The PyTorch extension's logic, or None when the extension is not loaded (importing it loads no torch)."""
        if self._torch_logic is not None:
            return self._torch_logic()
        try:
            import PyTorchUtils
        except ImportError:
            return None
        return PyTorchUtils.PyTorchUtilsLogic()

    def extensions_manager(self):
        if self._extensions_manager is not None:
            return self._extensions_manager()
        import slicer

        return slicer.app.extensionsManagerModel()

    def install(self, missing: list[str], question: str, outdated: list[dict] = (), backend: str = "") -> bool:
        """Install ``missing`` and upgrade ``outdated`` (as the probe reports them) after the user agreed to
        ``question``. False when the user declined or an installation is already running; a failure is an
        InputError; :class:`RestartRequired` when the PyTorch extension must be loaded first."""
        if self.installing or not (missing or outdated):
            return False
        outdated_names = [item["name"] for item in outdated]
        self._refuse_slicer_bundled(missing, outdated)
        torch_logic = None
        if "torch" in missing or "torch" in outdated_names:
            torch_logic = self.torch_logic()
            if torch_logic is None:
                return self.offer_pytorch_extension()
        if not self.confirm(question, describe(missing, outdated)):
            return False
        self.installing = True
        try:
            if torch_logic is not None:
                self.install_torch(torch_logic, backend)
            arguments = pip_arguments(missing, outdated_names)
            if arguments:
                self.pip_install(arguments)
        except Exception as error:  # pip and light-the-torch fail in many ways; say which step
            raise InputError(
                _("installation failed ({error}); see the Python console for pip's output").format(error=error)
            ) from None
        finally:
            self.installing = False
        return True

    @staticmethod
    def _refuse_slicer_bundled(missing: list[str], outdated: list[dict]) -> None:
        if "SimpleITK" in missing:
            raise InputError(_("Slicer's own SimpleITK cannot be imported; reinstall Slicer"))
        for item in outdated:
            if item["name"] in SLICER_BUNDLED:
                raise InputError(
                    _(
                        "Slicer's own {name} {installed} is older than DiffuX2CT needs ({required}); update Slicer"
                    ).format(**item)
                )

    def install_torch(self, torch_logic, backend: str = "") -> None:
        """torch, in the version DiffuX2CT needs, the PyTorch extension's way (light-the-torch picks the build for
        this computer's driver unless ``backend`` names one), in a child process: Slicer never imports torch."""
        if importlib.util.find_spec("light_the_torch") is None:
            install_ltt = getattr(type(torch_logic), "_installLightTheTorch", None)
            if install_ltt is not None:
                install_ltt()
            else:
                self.pip_install([LIGHT_THE_TORCH])
        self.run_module("light_the_torch", torch_arguments(torch_logic, backend))

    def offer_pytorch_extension(self) -> bool:
        """torch is installed through Slicer's PyTorch extension: offer to install it (as SlicerNNUnet does).
        False when declined; otherwise :class:`RestartRequired` (the extension loads after a restart)."""
        manager = self.extensions_manager()
        if not manager.isExtensionInstalled(PYTORCH_EXTENSION):
            question = _(
                "DiffuX2CT installs PyTorch through Slicer's PyTorch extension, which is not installed. Install the"
                " PyTorch extension now? Slicer must be restarted afterwards, before PyTorch itself is installed."
            )
            details = _("The PyTorch extension picks the PyTorch build that suits this computer's graphics driver.")
            if not self.confirm(question, details):
                return False
            if not manager.installExtensionFromServer(PYTORCH_EXTENSION, False):
                raise InputError(
                    _("the PyTorch extension could not be installed; install it from the Extensions Manager")
                )
        raise RestartRequired(
            _("The PyTorch extension is installed: restart Slicer, then press Reconstruct again to install PyTorch.")
        )
