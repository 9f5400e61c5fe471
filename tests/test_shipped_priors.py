"The shipped priors, now one table per dataset, give exactly the `AttributionPrior`s they gave as dict cells (fixture written before the change)."
import json
from pathlib import Path
import pytest
from llmkd.data import shipped_priors, shipped_prior

REF = json.loads((Path(__file__).parent/'fixtures'/'shipped_priors.json').read_text())


def test_same_datasets(): assert shipped_priors() == sorted(REF)


@pytest.mark.parametrize('name', sorted(REF))
def test_identical_prior(name):
    p, r = shipped_prior(name), REF[name]
    assert p.features == r['features'] and p.classes == r['classes']
    assert p.estimates.tolist() == r['estimates']          # scores, exactly, in the same order
    assert p.provenance == r['provenance'] and p.reasoning == r['reasoning']   # task, date and reasoning text to the letter
