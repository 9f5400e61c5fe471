"""`elicit_attributions` for Pima against a real llama.cpp server (marker `llm`; point it at a server with
LLMKD_LLAMACPP_URL, see tests/conftest.py). SmolLM2-135M is weak: the test accepts a valid prior or the named error,
and checks the bounds on requests and that a rerun pays only for what failed. Several minutes on a 2-core CPU."""
import numpy as np
import pytest

from llmkd.teacher import Teacher
from llmkd.priors import TaskDescription, elicit_attributions, elicit_dry_run, ElicitationError

PIMA_DESC = {'npreg': 'Number of pregnancies', 'glu': 'Plasma glucose concentration in an oral glucose tolerance test',
             'bp': 'Diastolic blood pressure (mm Hg)', 'skin': 'Triceps skin fold thickness (mm)', 'bmi': 'Body mass index',
             'ped': 'Diabetes pedigree function', 'age': 'Age in years'}


def pima_task():
    import pandas as pd
    df = pd.DataFrame({c: [1.0, 2.0] for c in PIMA_DESC} | {'type': ['No', 'Yes']})
    return TaskDescription.from_df(df, 'type', 'Predict whether a Pima Indian woman has diabetes (WHO criteria).', PIMA_DESC,
                                   class_descriptions={'Yes': 'has diabetes', 'No': 'no diabetes'})


@pytest.mark.llm
def test_pima_prior_from_llamacpp(llamacpp, tmp_path):
    task, n, reasks = pima_task(), 5, 2
    def run():
        t = Teacher('smollm2', llamacpp, timeout=600, concurrency=2, cache_dir=tmp_path)
        try: return t, elicit_attributions(task, t, n_estimates=n, max_reasks=reasks, max_tokens=400, progress=False)
        except ElicitationError as e: return t, e
    t1, r1 = run()
    assert t1.usage.requests - t1.usage.retries <= n*(1 + reasks)          # bounded: one class, n parts, re-asks
    if isinstance(r1, ElicitationError):
        assert set(r1.missing) == {'Yes'} and r1.missing['Yes'] and set(r1.missing['Yes']) <= set(PIMA_DESC)
        assert all(f in str(r1) for f in r1.missing['Yes'])
    else:
        assert r1.features == list(PIMA_DESC) and np.isfinite(r1.estimates).all() and (np.abs(r1.estimates) <= 10).all()
        assert all(1 <= k <= n for k in r1.provenance['estimates_per_feature']['Yes'].values())
    assert t1.learned['n'] == 'ignored' and elicit_dry_run(task, t1, n_estimates=n, max_tokens=400).requests <= n
    t2, r2 = run()                                                           # a rerun pays only for the invalid parts
    n_valid_parts = t2.usage.cache_hits
    assert t2.usage.cache_misses <= t1.usage.cache_misses and n_valid_parts + t2.usage.cache_misses >= n
