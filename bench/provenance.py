"""What a benchmark's JSON records about where it ran: the commit of this checkout."""
import os
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def commit_of() -> str:
    """The short commit of the repository (GRAT_COMMIT overrides it: a GPU host's copy of the
    tree may carry a stale .git), or "unknown" outside a git checkout."""
    if os.environ.get("GRAT_COMMIT"):
        return os.environ["GRAT_COMMIT"]
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"
