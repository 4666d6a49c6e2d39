"""The web page's built assets (`static/`, produced from web/ by `npm run build`; not in git)."""

from pathlib import Path

STATIC = Path(__file__).parent / "static"
