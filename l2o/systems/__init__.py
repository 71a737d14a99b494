"""The PES and PIS papers' own systems, outside the config problems of ``l2o.problems``.

``recurrent`` (``RecurrentSystem``: s_{t+1} = f(s_t, theta, t) with losses L_t, what the
online estimators of ``l2o.estimators.online`` and the ES/PES population maths run on) and
its instances, influence balancing (``influence``), toy 2-D regression (``toy2d``), ridge
penalties on UCI data (``ridge``) and a character LSTM (``char_lstm``); MuJoCo-style
control (``control``); the unnormalised densities of the PIS experiments (``densities``).
Benchmarks and tests import them by module; no config names them.
"""
