"""TensorBoard event files written with the ``tensorboard`` package alone.

``tf.summary`` needs TensorFlow, and so does TensorBoard's ``EventFileWriter``
whenever TensorFlow is installed (it creates folders through ``tf.io.gfile``);
its record format and protocol buffers do not. Runs log the same files on
either backend, and a JAX run never imports TensorFlow for them.
"""

import glob
import itertools
import os
import socket
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

_writers = itertools.count()  # two logs opened in the same second get different files


class ScalarLog:
    """TensorBoard scalars under ``logdir``."""

    def __init__(self, logdir):
        os.makedirs(logdir, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_writers)}")
        self._file = open(os.path.join(logdir, name), "ab")  # noqa: SIM115  (open for the run)
        self._records = RecordWriter(self._file)
        self._append(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, step, scalars):
        values = [summary_pb2.Summary.Value(tag=name, simple_value=float(value))
                  for name, value in scalars.items()]
        self._append(event_pb2.Event(wall_time=time.time(), step=int(step),
                                     summary=summary_pb2.Summary(value=values)))

    def _append(self, event):
        self._records.write(event.SerializeToString())
        self._file.flush()


def read_scalars(logdir):
    """``{(tag, step): [values]}`` over every event file under ``logdir``."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    scalars = {}
    for path in sorted(glob.glob(os.path.join(logdir, "*tfevents*"))):
        for event in LegacyEventFileLoader(path).Load():  # as written, not migrated
            for value in event.summary.value:
                scalars.setdefault((value.tag, event.step), []).append(value.simple_value)
    return scalars
