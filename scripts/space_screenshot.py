"""Screenshot of the Space after a prediction: launches spaces_app/app.py and drives headless Chromium.

    python scripts/space_screenshot.py IMAGE --model MODEL_DIR --output spaces_app/screenshot.png

Needs the `demo` and `dev` extras (gradio, playwright) and Debian's ``chromium`` (``apt-get install -y
chromium``); Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "spaces_app" / "app.py"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def load_app_module():
    """Import spaces_app/app.py as the module ``space_app`` (it is a Space, not a package)."""
    spec = importlib.util.spec_from_file_location("space_app", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules["space_app"] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot(
    url: str, image: Path, output: Path, chromium: str = "/usr/bin/chromium", timeout_s: float = 120
) -> None:
    """Open ``url``, upload ``image``, click Analyze, wait for the annotated image and the plot, save ``output``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(url, timeout=timeout_s * 1000)
            page.locator("#photo input[type=file]").set_input_files(str(image))
            page.locator("#photo img").first.wait_for(timeout=timeout_s * 1000)
            page.locator("#analyze").click()
            page.locator("#annotated img").first.wait_for(timeout=timeout_s * 1000)
            page.locator("#circumplex img").first.wait_for(timeout=timeout_s * 1000)
            page.wait_for_timeout(500)  # let the panels finish their transition
            page.screenshot(path=str(output), full_page=True)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--output", type=Path, default=Path("spaces_app/screenshot.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    app = load_app_module()
    demo = app.build_demo(args.model)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, theme=app.THEME
    )
    try:
        screenshot(url, args.image, args.output, args.chromium)
    finally:
        demo.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
