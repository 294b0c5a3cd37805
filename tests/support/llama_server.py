"""``python -m llama_cpp.server``, with llama.cpp's AMX matrix kernels turned off.

On some CPUs that advertise AMX (this project's shared test machine among them), the AMX
kernels of the pinned llama.cpp crash (SIGSEGV in ``ggml_backend_amx_mul_mat``) on any
prompt longer than one token. llama-cpp-python does not expose llama.cpp's
``use_extra_bufts`` switch, so this launcher sets it in the default model parameters and
then runs the real server module with the same arguments. Tests use it only where the CPU
has AMX (:func:`needs_launcher`); elsewhere they run ``python -m llama_cpp.server`` itself.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def needs_launcher() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def server_command() -> list[str]:
    """The program prefix an engine config's ``command`` takes to run the server here."""
    if needs_launcher():
        return [sys.executable, str(Path(__file__).resolve())]
    return [sys.executable, "-m", "llama_cpp.server"]


def _main() -> None:
    import llama_cpp.llama_cpp as native

    default = native.llama_model_default_params

    def without_extra_buffers():  # type: ignore[no-untyped-def]
        params = default()
        params.use_extra_bufts = False
        return params

    native.llama_model_default_params = without_extra_buffers
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
