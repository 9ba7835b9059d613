"""Run one export in a child process, for the kill-and-resume tests (only its doctests, none, are collected).

Usage: python _export_child.py OUT FORMAT LAYOUT RESUME(0|1) SLOW_S

Writes are slowed by SLOW_S seconds (before and after each unit's data write) so that a SIGKILL sent at
a random moment often lands inside a write or between a write and its completion mark.
"""

import sys
import time
import warnings

import torch  # noqa: F401  (imported before READY: kill points fall in the export, not in imports)

import xrembed
import xrembed.testing

xrembed.testing.register_test_models()  # a fresh process: dofa-tiny is not registered by the import
from xrembed.export import store

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _export_scenario import MODELS, OUTPUT, spatials


def slowed(fn, slow: float):
    def wrapper(*args, **kwargs):
        time.sleep(slow)
        result = fn(*args, **kwargs)
        time.sleep(slow)
        return result

    return wrapper


def main() -> None:
    warnings.simplefilter("ignore")
    out, fmt, layout, resume, slow = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", float(sys.argv[5])
    store.write_group = slowed(store.write_group, slow)
    store.write_stack_row = slowed(store.write_stack_row, slow)
    target = xrembed.ExportTarget.combined(out) if layout == "combined" else xrembed.ExportTarget.per_item(out)
    print("READY", flush=True)
    xrembed.export_batch(
        spatials=spatials(), temporal=None, models=MODELS, target=target, output=OUTPUT,
        config=xrembed.ExportConfig(format=fmt, resume=resume, continue_on_error=True, show_progress=False,
                                    num_workers=2),
        source=xrembed.sample_path(),
    )
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
