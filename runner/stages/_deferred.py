"""The one lock every deferred import of the shipped stages holds.

The stages import scikit-learn, scipy and threadpoolctl when they run, not when
they register, so that loading the registry (every CLI command does) stays fast.
Two branches of a parallel group on the threads executor can then be the first
to import them at the same moment, and CPython's per-module import locks let one
thread see the other's half-initialised package: ``ImportError: cannot import
name 'clone' from partially initialized module 'sklearn.base'``. Importing under
one process-wide lock makes the first import whole before anyone else looks; once
a module is loaded, taking the lock costs well under a microsecond.

A stage of your own that defers a heavy import and may run on the threads
executor should do the same::

    from runner.stages import deferred_imports

    with deferred_imports:
        from sklearn.linear_model import Ridge
"""

from __future__ import annotations

import threading

deferred_imports = threading.RLock()
