"""Teacher trajectories for imitation learning.

A teacher is any Keras optimiser. For an imitation truncation it is run from
the truncation's starting parameters on the same batches the learned
optimiser will see, and its parameters after each step are the targets (see
``l2o.estimators.unroll`` for the loss). Each truncation starts the teacher
afresh: its own state (Adam's moments, say) does not carry over.
"""

import copy

import keras
import numpy as np
from keras import ops

from l2o import backend


class Teacher:
    """One Keras optimiser, compiled once per problem, restartable from any parameters."""

    def __init__(self, spec, problem):
        self.problem = problem
        self.variables = [keras.Variable(p) for p in problem.init(0)]
        self.optimizer = keras.optimizers.get(copy.deepcopy(spec))
        self.optimizer.build(self.variables)
        self.initial_state = [np.asarray(v.numpy()) for v in self.optimizer.variables]
        self.step = backend.make_train_step(problem.loss, self.variables, self.optimizer)

    def targets(self, params, batches):
        """The teacher's parameters after each step: one array per parameter, steps on axis 0."""
        for variable, value in zip(self.variables, params):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, self.initial_state):
            variable.assign(value)
        length = len(batches[0])
        trajectory = [[] for _ in self.variables]
        for step in range(length):
            self.step(tuple(ops.convert_to_tensor(b[step]) for b in batches))
            for column, variable in zip(trajectory, self.variables):
                column.append(np.asarray(variable.numpy()))
        return [np.stack(column) for column in trajectory]
