"""What a learned optimiser is trained and evaluated on.

A problem is pure: ``init(seed)`` gives initial parameters, ``loss(params,
batch)`` is written with ``keras.ops``, and ``batches(seed, start, count)``
gives the batches of steps ``start .. start + count - 1`` of the data stream
that ``seed`` picks, stacked on a leading axis. The stream is a function of
(seed, step) alone, so a run resumed mid-way, a learned optimiser and a
baseline all see identical batches. ``build_model(params)`` gives the
equivalent ``keras.Model`` whose ``trainable_variables`` line up with
``params``.
"""



class Problem:
    @classmethod
    def validate_config(cls, prefix, kwargs):
        """Raises ConfigError naming ``<prefix><key>`` for a value out of range."""

    def init(self, seed):
        """Initial parameters: a list of float32 numpy arrays."""
        raise NotImplementedError

    def loss(self, params, batch):
        """Scalar training loss of ``params`` on ``batch``."""
        raise NotImplementedError

    def batches(self, seed, start, count):
        """Batches ``start .. start + count - 1`` of stream ``seed``, stacked on axis 0."""
        raise NotImplementedError

    def validation_batch(self):
        """Held-out data for validation loss and accuracy, or None."""
        return

    def accuracy(self, params, batch):
        """Classification accuracy, or None where it means nothing."""
        return

    def build_model(self, params):
        """A ``keras.Model`` computing the same function, its weights set to ``params``."""
        raise NotImplementedError
