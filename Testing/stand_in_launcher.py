"""A stand-in for Slicer's ``PythonSlicer`` (CTKAppLauncher, ``Base/ctkAppLauncher.cpp``): runs its arguments as a
child process that shares its stdin, stdout and stderr, forwards no signal, and when the child dies from a signal
prints the launcher's "exit abnormally" line and exits with 1."""

import subprocess
import sys

if __name__ == "__main__":
    child = subprocess.Popen(sys.argv[1:])
    code = child.wait()
    if code < 0:
        print(f"[{sys.argv[1]}] exit abnormally - Report the problem.", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(code)
