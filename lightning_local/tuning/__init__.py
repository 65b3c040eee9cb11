"""Hyper-parameter search for ``lightning-local tune``: the same budget for every learning rule, with Optuna.

* :mod:`.space` - the searched settings a learner declares (or a ``--space`` file), checked;
* :mod:`.study` - the Optuna storage, opened safely and resumed in place;
* :mod:`.trial` - one trial, a normal ``fit`` in its own folder, and its outcome;
* :mod:`.reporting` - the Callback through which a trial reports ``val_acc`` and gets pruned;
* :mod:`.search` - the ask/run/tell loop on the benchmark's executors (local or Ray);
* :mod:`.outputs` - ``best.yaml``, ``trials.csv`` and the plots.
"""

from .reporting import ReportToStudy
from .search import SearchSetup, run_search
from .space import Parameter, SpaceError, learner_space, load_space_file
from .study import StudyError

__all__ = ["Parameter", "ReportToStudy", "SearchSetup", "SpaceError", "StudyError", "learner_space",
           "load_space_file", "run_search"]
