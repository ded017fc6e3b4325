"""Stand-in for the scene generator's `active_level`, which score_echo.py imports but the shared
echo-scene folder does not ship. Active speech level of x: mean power of the 20 ms frames within
15.9 dB of the level (the P.56 margin), found by fixed-point iteration. The shared baselines were
computed with the generator's own definition, so absolute ERLE figures may differ slightly."""
import numpy as np


def active_level(x, fs=16000, frame_s=0.02):
    x = np.asarray(x, dtype=np.float64)
    n = int(fs * frame_s)
    k = len(x) // n
    if k == 0:
        return float(np.mean(x ** 2) + 1e-20)
    p = np.mean(x[:k * n].reshape(k, n) ** 2, axis=1)
    lvl = float(np.mean(p)) + 1e-20
    for _ in range(10):
        act = p > lvl * 10 ** (-15.9 / 10)
        if not act.any():
            break
        lvl = float(np.mean(p[act])) + 1e-20
    return lvl
