"""Forward-mode meta-gradients for small-state linear systems: RTRL and UORO.

For inner dynamics s_{t+1} = A s_t + theta b with a scalar meta-parameter
theta (influence balancing, ``l2o.problems.influence``), the influence
J_t = ds_t/dtheta obeys J_{t+1} = A J_t + b. RTRL carries J exactly, online,
across truncations; the gradient of a loss 0.5 (s[0] - 1)^2 is (s[0] - 1) J[0].

UORO (Tallec and Ollivier 2017) carries an unbiased rank-one estimate
J ~ s_tilde * theta_tilde instead: with random signs nu each step,
    s_tilde <- rho_0 A s_tilde + rho_1 nu,
    theta_tilde <- theta_tilde / rho_0 + (nu . b) / rho_1,
rho_0 = sqrt(|theta_tilde| / ||A s_tilde||), rho_1 = sqrt(|nu . b| / ||nu||)
(the variance-minimising choice, guarded against zeros).
"""

import numpy as np


class RTRL:
    def __init__(self, transition, state):
        self.a, self.b = transition
        self.state = np.array(state, np.float64)
        self.influence = np.zeros_like(self.state)

    def estimate(self, theta, steps):
        """Advances ``steps`` steps; returns (gradient, loss) of the truncation's final loss."""
        for _ in range(steps):
            self.influence = self.a @ self.influence + self.b
            self.state = self.a @ self.state + theta * self.b
        error = self.state[0] - 1.0
        return error * self.influence[0], 0.5 * error ** 2


class UORO:
    def __init__(self, transition, state, generator):
        self.a, self.b = transition
        self.state = np.array(state, np.float64)
        self.state_tilde = np.zeros_like(self.state)
        self.theta_tilde = 0.0
        self.generator = generator

    def estimate(self, theta, steps):
        tiny = 1e-12
        for _ in range(steps):
            nu = self.generator.choice([-1.0, 1.0], size=self.state.shape)
            propagated = self.a @ self.state_tilde
            rho_0 = np.sqrt((abs(self.theta_tilde) + tiny) / (np.linalg.norm(propagated) + tiny))
            rho_1 = np.sqrt((abs(nu @ self.b) + tiny) / (np.linalg.norm(nu) + tiny))
            self.state_tilde = rho_0 * propagated + rho_1 * nu
            self.theta_tilde = self.theta_tilde / rho_0 + (nu @ self.b) / rho_1
            self.state = self.a @ self.state + theta * self.b
        error = self.state[0] - 1.0
        return error * self.state_tilde[0] * self.theta_tilde, 0.5 * error ** 2
