"""TensorFlow's start-up lines, held back when they say nothing to act on.

Importing TensorFlow and probing its devices prints, on every run, notices
from C++ before logging is configured: the CUDA stub probing for drivers on a
machine without a GPU (and failing ``cuInit``), the oneDNN round-off notice,
the CPU instruction-set notice, duplicate CUDA plug-in registrations. They
come from C++ before ``TF_CPP_MIN_LOG_LEVEL`` is read, so they are caught on
the file descriptor: :func:`import_tensorflow` points descriptor 2 at a
temporary file while TensorFlow loads and lists its devices, then writes back
every line that is not one of those notices (errors and warnings of any other
kind pass). ``KERAS_GATED_TSN_TF_LOGS=1`` turns the filter off.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

#: Start-up notices dropped (source files of TensorFlow's C++ logging).
_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN custom operations|cudart_stub\.cc"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit|cpu_feature_guard\.cc|^To enable the following instructions"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|cuda_executor\.cc:\d+\] could not open"
)


def import_tensorflow():
    """Imports TensorFlow (and lists its devices) with the start-up notices held back.

    Returns:
        The ``tensorflow`` module.
    """
    if "tensorflow" in sys.modules or os.environ.get("KERAS_GATED_TSN_TF_LOGS"):
        import tensorflow

        return tensorflow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow

            tensorflow.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _NOISE.search(line)))
            sys.stderr.flush()
    return tensorflow
