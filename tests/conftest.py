import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads

import pytest  # noqa: E402
import torch  # noqa: E402

# The suite is sized for 2 cores; keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def compose_cfg():
    """Compose the project's root config with command-line style overrides."""
    from hydra import compose, initialize_config_dir

    from lasr.config import conf_dir

    def _compose(*overrides: str, config_name: str = "config"):
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))

    return _compose
