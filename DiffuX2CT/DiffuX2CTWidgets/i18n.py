"""Slicer's translation functions (``_`` marks user-visible text), or pass-throughs where Slicer's translation
layer is absent (slicer-core in the tests, Slicer before 5.4)."""

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:

    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text
