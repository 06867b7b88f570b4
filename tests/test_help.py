"""``python run.py --help`` prints the project's help (conf/hydra/help/alm.yaml), not Hydra's default.

It must name the method's documentation and the weight that users confuse: the paper's w2 is
``method.w_cond`` (docs/method.md §3). Needs ``- override hydra/help: alm`` in the defaults list of
conf/config.yaml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_help_names_the_method_doc_and_the_weight_keys():
    out = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "docs/method.md" in text, "conf/config.yaml must select the project's help: - override hydra/help: alm"
    assert "method.w_cond" in text
    assert "sweeping the paper's w2 must sweep" in text and "method.w_cond, not method.w2" in text
    assert "method: alm" in text  # the config groups ($APP_CONFIG_GROUPS) are listed
    assert "$" not in text.replace("${", "")  # every $PLACEHOLDER of the template was substituted
