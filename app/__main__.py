"""python -m app: start the Streamlit chat on 127.0.0.1 with usage statistics, magic and Deploy off."""

import os
import sys
from pathlib import Path

FLAGS = ["--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
# Also in app/.streamlit/config.toml; as flags they hold even over a user's own Streamlit config.
FLAGS += ["--runner.magicEnabled", "false", "--client.toolbarMode", "minimal"]

if __name__ == "__main__":
    from core.settings import load_settings

    load_settings()  # offline and telemetry variables, inherited by the server
    script = str(Path(__file__).with_name("ui.py"))
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", script, *FLAGS, *sys.argv[1:]])
