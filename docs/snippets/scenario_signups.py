"""The pre-launch sign-ups each shipped scenario states, drawn by the log generator's rule.

A scenario's ``prelaunch_signups`` is public, like its ``market_estimate``; its value in each shipped
file comes from the same rule the logs' world uses (``models.log_generator.prelaunch_signups``: four
weeks of the launch's innovators, Bass p of the true market, with a log-normal error of 0.3), one draw
from a stream seeded by the scenario and product names, so that no value was picked by hand. A steady
staple (a weekly estimate) has no launch and states none. Prints one line per product, to be copied
into the files.

    PYTHONPATH=. python docs/snippets/scenario_signups.py
"""

import zlib

import numpy as np

from models.log_generator import SIGNUP_WEEKS, prelaunch_signups
from scenarios import list_scenarios, load_scenario

for path in list_scenarios():
    name = path.stem
    scenario = load_scenario(path)
    for product in scenario.products:
        truth = scenario.truth.products[product.name]
        if product.market_estimate_basis == "weekly" or truth.diffusion != "bass":
            continue
        rng = np.random.default_rng(zlib.crc32(f"{name}/{product.name}".encode()))
        signups = prelaunch_signups(truth.market_size, truth.bass_p, rng)
        expected = SIGNUP_WEEKS * truth.bass_p * truth.market_size
        print(f"{name} / {product.name}: prelaunch_signups {signups:.0f} (the rule's mean {expected:.0f}); stated {product.prelaunch_signups}")
