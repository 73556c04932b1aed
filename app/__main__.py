"""python -m app: start the Streamlit chat on 127.0.0.1 with usage statistics off."""

import os
import sys
from pathlib import Path

FLAGS = ["--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]

if __name__ == "__main__":
    from app.settings import load_settings

    load_settings()  # offline and telemetry variables, inherited by the server
    script = str(Path(__file__).with_name("ui.py"))
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", script, *FLAGS, *sys.argv[1:]])
