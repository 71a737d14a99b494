"""TensorBoard event files written with the ``tensorboard`` package alone.

``tf.summary`` needs TensorFlow; the event-file writer and protocol buffers
that ship with TensorBoard do not, so runs log the same files on either
backend.
"""

import glob
import os
import time

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class ScalarLog:
    """TensorBoard scalars under ``logdir``."""

    def __init__(self, logdir):
        self._writer = EventFileWriter(logdir)

    def write(self, step, scalars):
        values = [summary_pb2.Summary.Value(tag=name, simple_value=float(value))
                  for name, value in scalars.items()]
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                               summary=summary_pb2.Summary(value=values)))
        self._writer.flush()


def read_scalars(logdir):
    """``{(tag, step): [values]}`` over every event file under ``logdir``."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(logdir, "*tfevents*"))):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                scalars.setdefault((value.tag, event.step), []).append(value.simple_value)
    return scalars
