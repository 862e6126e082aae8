#!/usr/bin/env python3
"""Check an HTML report as a person would: open it in headless Chromium, screenshot it, and fail if
any image or other asset is missing or the page renders blank.

    python scripts/check_report.py report/index.html [--screenshot report/screenshot.png]
                                   [--allow-missing-browser] [--browser PATH] [--timeout 120]

Three checks, in order:

1. static: every local file the HTML references (img/source/script/link/a/iframe, CSS url(...))
   exists beside it, no asset is loaded from the network (http(s)://, //host) — the report
   must be self-contained; plain <a> links to web pages are allowed — and every <img> points to a
   format browsers display (PNG, JPEG, GIF, WebP, AVIF, SVG, BMP, ICO: a PDF or TIFF shows nothing);
2. in the browser: a copy of the page with a probe script appended (written next to the page, so
   relative paths resolve the same, and removed afterwards) is loaded with ``--dump-dom``; on the
   ``load`` event the probe lists every <img> that did not decode (``naturalWidth == 0``);
3. a screenshot of the page itself, which must not be blank (one flat colour).

Exit status: 0 all good; 1 a check failed; 2 no Chromium found (0 instead, with a message, when
``--allow-missing-browser`` is given and the static check passed). The browser runs with
``--headless --no-sandbox --disable-gpu --disable-background-networking`` and a throw-away profile.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--hide-scrollbars", "--mute-audio")
WINDOW = "1400,4000"
PROBE_ID = "llvbench-report-probe"
# Appended to a copy of the page: after every image has loaded or failed, list the broken ones.
PROBE = ("<script>window.addEventListener('load',function(){var bad=[],imgs=document.images;"
         "for(var i=0;i<imgs.length;i++){if(!imgs[i].complete||imgs[i].naturalWidth===0)"
         "bad.push(imgs[i].getAttribute('src'));}var pre=document.createElement('pre');"
         f"pre.id='{PROBE_ID}';pre.textContent=JSON.stringify({{images:imgs.length,broken:bad}});"
         "document.body.appendChild(pre);});</script>")
# Attributes that make the browser fetch something when the page loads (a[href] only on a click).
ASSET_ATTRS = {("img", "src"), ("img", "srcset"), ("source", "src"), ("source", "srcset"), ("script", "src"),
               ("link", "href"), ("iframe", "src"), ("video", "src"), ("video", "poster"), ("audio", "src"),
               ("embed", "src"), ("object", "data"), ("input", "src")}
# What an <img> displays in current browsers, by file suffix (file: pages have no Content-Type).
BROWSER_IMAGE_SUFFIXES = (".png", ".apng", ".jpg", ".jpeg", ".jfif", ".pjpeg", ".pjp", ".gif", ".webp", ".avif",
                          ".svg", ".bmp", ".ico", ".cur")
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)['\"]?\s*\)")


class _References(HTMLParser):
    """Collects (tag, attribute, value) of everything a page references, and CSS url()s."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if (tag, name) in ASSET_ATTRS or (tag == "a" and name == "href"):
                values = [v.strip().split()[0] for v in value.split(",") if v.strip()] if name == "srcset" else [value]
                self.refs += [(tag, name, v) for v in values]
            elif name == "style":
                self.refs += [("style", "url", u) for u in CSS_URL.findall(value)]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.refs += [("style", "url", u) for u in CSS_URL.findall(data)]


def references(html_text: str) -> list[tuple[str, str, str]]:
    """(tag, attribute, url) of every reference in a page, in document order."""
    parser = _References()
    parser.feed(html_text)
    return parser.refs


def local_file(page: Path, url: str) -> Path | None:
    """The file a relative or file: URL points to, or None for anchors, data: and web URLs."""
    parts = urlsplit(url)
    if url.startswith("#") or parts.scheme in ("data", "mailto", "javascript"):
        return None
    if parts.scheme in ("http", "https") or url.startswith("//"):
        return None
    path = unquote(parts.path)
    if not path:
        return None
    return Path(path) if parts.scheme == "file" or path.startswith("/") else page.parent / path


def not_displayable(url: str) -> bool:
    """True when an <img> with this URL cannot show anything in a browser: a data: URL of another
    media type, or a file whose suffix is not a browser image format (e.g. figures/x.pdf)."""
    if url.startswith("data:"):
        return not url[5:].lower().startswith("image/")
    return Path(unquote(urlsplit(url).path)).suffix.lower() not in BROWSER_IMAGE_SUFFIXES


def static_problems(page: Path) -> tuple[list[str], int]:
    """(problems, number of local files checked) for the page's references."""
    problems, checked = [], 0
    for tag, attr, url in references(page.read_text(encoding="utf-8")):
        parts = urlsplit(url)
        remote = parts.scheme in ("http", "https") or url.startswith("//")
        if remote and (tag, attr) != ("a", "href"):
            problems.append(f"<{tag} {attr}> loads {url} from the network: the report must be self-contained")
            continue
        if tag == "img" and not_displayable(url):
            problems.append(f"<img {attr}> shows {url}, which browsers do not display as an image "
                            "(use PNG, JPEG, GIF, WebP, AVIF or SVG)")
        target = local_file(page, url)
        if target is None:
            continue
        checked += 1
        if not target.is_file():
            problems.append(f"<{tag} {attr}> references {url}, which does not exist ({target})")
    return problems, checked


def find_browser(explicit: str | None = None) -> str | None:
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def run_browser(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Chromium with the report flags and a throw-away profile folder."""
    with tempfile.TemporaryDirectory(prefix="llvbench-chromium-") as profile:
        cmd = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def broken_images(browser: str, page: Path, timeout: float) -> tuple[int, list[str]]:
    """(images on the page, srcs of those that did not load) as Chromium sees them."""
    probe = page.parent / f".{page.stem}.check-{uuid.uuid4().hex[:8]}.html"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE,
                     encoding="utf-8")
    try:
        # The virtual time budget lets every image load (or fail) before the DOM is dumped.
        done = run_browser(browser, ["--virtual-time-budget=30000", "--dump-dom", probe.resolve().as_uri()],
                           timeout)
    finally:
        probe.unlink(missing_ok=True)
    match = re.search(rf'<pre id="{PROBE_ID}">(.*?)</pre>', done.stdout, re.S)
    if not match:
        raise RuntimeError(f"the page did not finish loading in Chromium (exit {done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    import html

    found = json.loads(html.unescape(match.group(1)))
    return int(found["images"]), list(found["broken"])


def screenshot(browser: str, page: Path, out: Path, timeout: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    done = run_browser(browser, ["--virtual-time-budget=30000", f"--screenshot={out.resolve()}",
                                 page.resolve().as_uri()], timeout)
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-500:]}")


def blank_reason(png: Path) -> str | None:
    """Why a screenshot looks blank (one flat colour, almost no ink), or None if it shows content."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as img:
        gray = np.asarray(img.convert("L"), dtype=np.float32)
    background = float(np.median(gray))
    ink = float((np.abs(gray - background) > 24).mean())
    if gray.std() < 2.0:
        return f"the screenshot is a flat colour (std {gray.std():.2f})"
    if ink < 0.002:
        return f"the screenshot is almost empty ({ink:.2%} of pixels differ from the background)"
    return None


def check(page: Path, screenshot_path: Path | None, browser: str | None, allow_missing_browser: bool,
          timeout: float) -> int:
    if not page.is_file():
        print(f"FAIL: {page} does not exist", file=sys.stderr)
        return 1
    problems, checked = static_problems(page)
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    print(f"static: {checked} local references checked, {len(problems)} problem(s)")
    if problems:
        return 1
    if browser is None:
        if allow_missing_browser:
            print("SKIPPED: no Chromium found (install the Debian package 'chromium'); only the static check ran")
            return 0
        print("FAIL: no Chromium found on PATH (install the Debian package 'chromium', or pass --browser, "
              "or --allow-missing-browser to skip the browser checks)", file=sys.stderr)
        return 2
    try:
        n_images, broken = broken_images(browser, page, timeout)
        for src in broken:
            print(f"FAIL: image {src} did not load in Chromium", file=sys.stderr)
        print(f"browser: {n_images} images, {len(broken)} broken")
        with tempfile.TemporaryDirectory(prefix="llvbench-shot-") as tmp:
            shot = screenshot_path or Path(tmp) / "screenshot.png"
            screenshot(browser, page, shot, timeout)
            reason = blank_reason(shot)
            if reason:
                print(f"FAIL: {reason}", file=sys.stderr)
            print(f"screenshot: {shot if screenshot_path else '(temporary)'}{' blank' if reason else ' ok'}")
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        print(f"FAIL: {err}", file=sys.stderr)
        return 1
    return 1 if broken or reason else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", default="report/index.html", help="the report (default: report/index.html)")
    parser.add_argument("--screenshot", type=Path, help="keep the screenshot here (PNG); default: a temporary file")
    parser.add_argument("--browser", help="Chromium executable (default: chromium on PATH, or $CHROMIUM)")
    parser.add_argument("--allow-missing-browser", action="store_true",
                        help="exit 0 after the static check when no Chromium is installed")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per browser run (default 120)")
    args = parser.parse_args(argv)
    browser = find_browser(args.browser)
    if args.browser and browser is None:
        print(f"FAIL: browser {args.browser} not found", file=sys.stderr)
        return 2
    return check(Path(args.page), args.screenshot, browser, args.allow_missing_browser, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
