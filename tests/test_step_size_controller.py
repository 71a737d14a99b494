"""The learned step-size controller's features against hand-computed values."""

import numpy as np
from keras import ops
from rule_checks import numpy_controller_features

from l2o.optimizers.step_size_controller import StepSizeController

TIMESCALES = [3.0, 30.0]


def test_controller_features_by_hand():
    """Gradient norm against its start, its running minimum and its trend, Adam's
    signal-to-noise ratio and the step features, over two tensors and five steps whose
    gradient norms rise, fall and rise again (so the running minimum matters)."""
    controller = StepSizeController([4], [1e-4, 0.5], 0.01, TIMESCALES)
    generator = np.random.default_rng(5)
    shapes, norms = [(3, 2), (2,)], ops.zeros((4,), "float64")
    expected_norms = np.zeros(4)
    for t, scale in enumerate((1.0, 4.0, 0.01, 0.02, 0.5), start=1):
        grads = [generator.standard_normal(shape) * scale for shape in shapes]
        adams = [generator.standard_normal(shape).reshape(-1) * 0.1 for shape in shapes]
        step_features = np.tanh(t / np.array(TIMESCALES))
        got, norms = controller.features(
            [ops.convert_to_tensor(g) for g in grads], [ops.convert_to_tensor(a) for a in adams],
            norms, ops.convert_to_tensor(float(t), "float64"),
            ops.convert_to_tensor(step_features))
        flat = np.concatenate([g.reshape(-1) for g in grads])
        expected, expected_norms = numpy_controller_features(
            flat, np.concatenate(adams), expected_norms, t, step_features)
        np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ops.convert_to_numpy(norms), expected_norms, rtol=1e-9)
    # After the fall and a partial recovery the slow average sits above its minimum.
    assert expected[1] > 0.0
