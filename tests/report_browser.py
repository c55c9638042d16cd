"""Render an HTML report in headless Chromium: screenshot, loaded images, console/resource errors.

No CDP or browser driver: a copy of the page gets a small script at the top of
<head> that records errors (window ``error`` events in the capture phase catch
failed images too; ``console.error`` is wrapped) and, after ``load``, writes
the image count, the loaded count and the errors into ``<body data-check>``;
``--dump-dom`` prints the DOM once the page has settled.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
          "--virtual-time-budget=5000"]

_PROBE = """<script>
(function(){var errs=[];
window.addEventListener('error',function(e){var t=e.target;errs.push(t&&t.tagName?('failed to load '+t.tagName+' '+
 String(t.src||'').slice(0,60)):String(e.message));},true);
var ce=console.error;console.error=function(){errs.push(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};
window.addEventListener('load',function(){var imgs=Array.prototype.slice.call(document.images);
var ok=imgs.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;
document.body.setAttribute('data-check',JSON.stringify({images:imgs.length,loaded:ok,errors:errs}));});
})();</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render(html_path: Path, browser: str, timeout: float = 120.0) -> dict:
    """{"images", "loaded", "errors", "screenshot": Path} for ``html_path``."""
    html_path = Path(html_path)
    work = Path(tempfile.mkdtemp(prefix="render-"))
    page = html_path.read_text(encoding="utf-8")
    probed = work / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    try:
        dom = subprocess.run([browser, *_FLAGS, f"--user-data-dir={work / 'profile-dom'}", "--dump-dom",
                              probed.as_uri()], capture_output=True, text=True, timeout=timeout)
        shot = work / "shot.png"
        subprocess.run([browser, *_FLAGS, f"--user-data-dir={work / 'profile-shot'}", f"--screenshot={shot}",
                        "--window-size=1200,2400", html_path.resolve().as_uri()],
                       capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"chromium did not finish rendering {html_path} in {timeout} s") from exc
    match = re.search(r"data-check=\"([^\"]*)\"", dom.stdout)
    if match is None:
        raise RuntimeError(f"the page did not finish loading in chromium (rc {dom.returncode}); stderr tail: "
                           f"{dom.stderr[-800:]}")
    import html as _html
    result = json.loads(_html.unescape(match.group(1)))
    result["screenshot"] = shot
    return result
