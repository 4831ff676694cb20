"""``ablate-report``: a finished or partial sweep as a folder holding ``README.md`` and PNG plots.

One job per module: :mod:`.records` reads runs (local files or wandb) into a :class:`Sweep`; :mod:`.arms` decides
each row's reference and compares it (:mod:`.compare`: paired over shared seeds, else Welch, the family
corrected, four verdicts; :mod:`.power`: what each comparison could see); :mod:`.factorial` estimates a design's
effects; :mod:`.tuning` and :mod:`.curves` compare arms at their own best learning rate; :mod:`.analysis` computes
all of it once; :mod:`.text`, :mod:`.readme` and :mod:`.plots` write it (:mod:`.shell`: commands as shell lines);
:mod:`.cli` is the command line.
"""

from ablate.report.analysis import Report
from ablate.report.arms import reference_arm, resolve_baseline, spread
from ablate.report.cli import main, write_report
from ablate.report.factorial import interactions, main_effects
from ablate.report.records import Sweep, full_command, load_local, run_from_wandb
from ablate.report.text import arms_table

__all__ = ["Report", "Sweep", "arms_table", "full_command", "interactions", "load_local", "main", "main_effects",
           "reference_arm", "resolve_baseline", "run_from_wandb", "spread", "write_report"]
